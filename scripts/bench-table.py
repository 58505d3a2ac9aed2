#!/usr/bin/env python3
"""Prints `make bench`'s table from the rows the benches appended to a
results file (one JSON object per line; server/src/commands/bench_report.rs
writes them): measure, value, baseline, ratio, aim, met. The machine it ran
on comes first, as the README carries it.

    scripts/bench-table.py <results.jsonl>
"""

import json
import os
import platform
import sys


def number(v, unit):
    if v is None:
        return ""
    if unit in ("events/s", "requests/s", "rows/s"):
        return f"{v:,.0f} {unit}"
    if unit == "ms":
        return f"{v:,.1f} ms"
    if unit == "s":
        return f"{v:,.2f} s"
    return f"{v:,.1f} {unit}"


def aim_text(aim, unit):
    if not aim:
        return ""
    kind, value = aim["kind"], aim["value"]
    if kind == "at_least":
        return f"≥ {number(value, unit)}"
    if kind == "at_most":
        return f"≤ {number(value, unit)}"
    return f"ratio ≥ {value:g}"


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = []
    with open(sys.argv[1]) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{sys.argv[1]}:{n}: not a JSON row: {e}")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"Machine: {os.cpu_count()} cores ({cpu()}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}")
    print()
    print("| Measure | Value | Baseline (same run) | Ratio | Aim | Met? |")
    print("|---|---:|---|---:|---|---|")
    met = missed = 0
    for r in rows:
        unit = r.get("unit", "")
        baseline = ""
        if r.get("baseline") is not None:
            baseline = f"{number(r['baseline'], unit)} ({r.get('baseline_is') or 'baseline'})"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        verdict = {True: "yes", False: "**no**", None: ""}[r.get("met")]
        met += r.get("met") is True
        missed += r.get("met") is False
        value = number(r.get("value"), unit) or "(not measured)"
        print(f"| {r['measure']} | {value} | {baseline} | {ratio} | {aim_text(r.get('aim'), unit)} | {verdict} |")
    print()
    print(f"{len(rows)} measures; of those with an aim, {met} met and {missed} not met.")


if __name__ == "__main__":
    main()

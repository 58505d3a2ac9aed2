#!/usr/bin/env python3
"""Ingest throughput with 1, 2 and 3 replicas on one PostgreSQL (README:
Performance, "Several replicas").

    replicas-bench.py CUSTOS_BINARY [EVENTS] [ROUNDS]

A throw-away PostgreSQL cluster. In each round, first the baseline: plain
inserts (binary COPY) of rows of the same size, in transactions of the same
size, no crypto, no sequencer (`custos bench ingest`'s own baseline), and
one Custos process into a fresh database; then, each into a fresh database,
2 and 3 Custos processes at once (`custos bench ingest --existing-ok`,
each with its own sequencer, 32 clients and EVENTS/k events), started at
the same moment. Throughput with k processes is all their events over the
slowest one's time. Every database's chain is then checked with `custos
verify --with-kek`. Prints one line per round and a summary line with
the medians over ROUNDS (default 3); exits non-zero, saying why, when a run
or a verification fails.

The cluster runs without fsync (scripts/pg-throwaway.sh), for the baseline
as for Custos: the figures say where the serialisation point is, not what a
durable disk gives.
"""

import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(why):
    sys.exit(f"replicas-bench: {why}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    work = tempfile.mkdtemp(prefix="custos-replicas-bench-")
    os.chmod(work, 0o711)  # the postgres user reaches its directory
    pg = os.path.join(work, "pg")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOS_")}
    env.update({"CUSTOS_KEK": base64.b64encode(secrets.token_bytes(32)).decode(), "CUSTOS_LOG__FILTER": "warn",
                "CUSTOS_DATA_DIR": os.path.join(work, "data")})
    url = subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "start", pg], check=True, capture_output=True,
                         text=True).stdout.strip()
    base_url = url.rsplit("/", 1)[0]
    n_db = 0

    def fresh():
        nonlocal n_db
        n_db += 1
        name = f"bench{n_db}"
        subprocess.run(["psql", "-q", url, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return f"{base_url}/{name}"

    def verify(db):
        r = subprocess.run([binary, "verify", "--with-kek"], env=dict(env, CUSTOS_DATABASE__URL=db),
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"the chain of {db} does not verify:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    def bench(db, n, extra):
        cmd = [binary, "bench", "ingest", "--database", db, "--events", str(n), "--no-verify", "--json", *extra]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(p):
        out, err = p.communicate()
        if p.returncode != 0:
            fail(f"`custos bench ingest` failed:\n{err[-3000:]}")
        return json.loads(out[out.index("{"):])

    summary = {1: [], 2: [], 3: [], "baseline": []}
    try:
        for r in range(rounds):
            line = {}
            one = fresh()
            res = result(bench(one, events, ["--baseline-database", fresh()]))
            verify(one)
            summary["baseline"].append(res["baseline_inserts_per_sec"])
            summary[1].append(res["ingest_events_per_sec"])
            line["baseline"] = round(res["baseline_inserts_per_sec"])
            line["r1"] = round(res["ingest_events_per_sec"])
            for k in (2, 3):
                db = fresh()
                # The database migrated and its keys made once, so that k
                # processes start on the same keys.
                result(bench(db, 1, ["--no-baseline"]))
                # Time to generate each process's events, open and migrate:
                # 15 s and a second per 20,000 events.
                start_at = int(time.time() * 1000) + 15_000 + events // k // 20
                procs = [bench(db, events // k, ["--no-baseline", "--existing-ok", "--start-at-ms", str(start_at)])
                         for _ in range(k)]
                results = [result(p) for p in procs]
                rate = (events // k) * k / max(x["ingest_secs"] for x in results)
                verify(db)
                summary[k].append(rate)
                line[f"r{k}"] = round(rate)
            print(f"replicas-bench: round {r + 1}: {json.dumps(line)}", flush=True)
        med = {k: statistics.median(v) for k, v in summary.items()}
        figures = {
            "events": events,
            "baseline_rows_per_s": round(med["baseline"]),
            **{f"replicas_{k}_events_per_s": round(med[k]) for k in (1, 2, 3)},
            **{f"replicas_{k}_vs_baseline": round(med[k] / med["baseline"], 2) for k in (1, 2, 3)},
            **{f"replicas_{k}_vs_one": round(med[k] / med[1], 2) for k in (2, 3)},
            "chains": "intact",
        }
        print(f"replicas-bench: medians of {rounds}: {json.dumps(figures)}", flush=True)
    finally:
        subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "stop", pg], capture_output=True)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks OCSF event records (NDJSON on stdin) against the OCSF schema.

The schema is the official ocsf-schema repository compiled by the PyPI
package ocsf-lib (`python -m ocsf.compile`), trimmed to the classes Custos
emits by scripts/ocsf-trim.py (see the README). For every record: the class
exists; every required attribute of the class (and of every object inside)
is present; no attribute is unknown to the class or object; scalar types
match (strings, integers, booleans, numbers, regex-checked types); enum
attributes (the *_id fields) hold a defined value; type_uid is
class_uid * 100 + activity_id. Prints one line per problem; exits 1 when
there is one, 0 when every record conforms.

    scripts/ocsf-check.py SCHEMA.json < records.ndjson
"""
import json
import re
import sys


def main():
    schema = json.load(open(sys.argv[1]))
    by_uid = {c["uid"]: (name, c) for name, c in schema["classes"].items()}
    types = schema["types"]
    objects = schema["objects"]
    problems = []

    def base_type(t):
        seen = set()
        while t in types and types[t].get("type") and t not in seen:
            seen.add(t)
            t = types[t]["type"]
        return t

    def check_scalar(path, t, v):
        b = base_type(t)
        ok = {
            "string_t": lambda x: isinstance(x, str),
            "integer_t": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "long_t": lambda x: isinstance(x, int) and not isinstance(x, bool),
            "float_t": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
            "boolean_t": lambda x: isinstance(x, bool),
            "json_t": lambda x: True,
        }.get(b, lambda x: True)(v)
        if not ok:
            problems.append(f"{path}: {v!r} is not a {t} ({b})")
            return
        rx = types.get(t, {}).get("regex")
        if rx and isinstance(v, str) and not re.match(rx, v):
            problems.append(f"{path}: {v!r} does not match {t}")

    def check_attrs(path, attrs, value):
        if not isinstance(value, dict):
            problems.append(f"{path}: not an object")
            return
        for k, a in attrs.items():
            if a["requirement"] == "required" and k not in value:
                problems.append(f"{path}.{k}: required, missing")
        for k, v in value.items():
            a = attrs.get(k)
            if a is None:
                problems.append(f"{path}.{k}: not an attribute of this class or object")
                continue
            items = v if a.get("is_array") else [v]
            if a.get("is_array") and not isinstance(v, list):
                problems.append(f"{path}.{k}: should be an array")
                continue
            for i, item in enumerate(items):
                p = f"{path}.{k}" + (f"[{i}]" if a.get("is_array") else "")
                if a.get("object_type"):
                    o = a["object_type"]
                    if o == "object":
                        # Free-form (`unmapped`): any object.
                        if not isinstance(item, dict):
                            problems.append(f"{p}: not an object")
                    elif o in objects:
                        check_attrs(p, objects[o]["attributes"], item)
                    elif not isinstance(item, dict):
                        problems.append(f"{p}: not an object")
                else:
                    check_scalar(p, a["type"], item)
                    if a.get("enum") and str(item) not in a["enum"]:
                        problems.append(f"{p}: {item!r} is not one of {a['enum']}")

    n = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        n += 1
        r = json.loads(line)
        uid = r.get("class_uid")
        if uid not in by_uid:
            problems.append(f"record {n}: class_uid {uid!r} is not a class Custos maps")
            continue
        name, c = by_uid[uid]
        before = len(problems)
        check_attrs(f"record {n} ({name})", c["attributes"], r)
        if r.get("type_uid") != uid * 100 + r.get("activity_id", -1):
            problems.append(f"record {n}: type_uid {r.get('type_uid')} is not class_uid * 100 + activity_id")
        if len(problems) > before + 20:
            break
    for p in problems:
        print(p)
    print(f"{n} record(s), {len(problems)} problem(s) (OCSF {schema['version']})", file=sys.stderr)
    sys.exit(1 if problems or n == 0 else 0)


if __name__ == "__main__":
    main()

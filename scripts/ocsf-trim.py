#!/usr/bin/env python3
"""Trims the compiled OCSF schema to what validating Custos's records needs:
the classes Custos emits, the objects they reach, the types; descriptions
dropped. How the vendored copy was made (ocsf-lib from PyPI, the schema
repository github.com/ocsf/ocsf-schema):

    python -m ocsf.compile ocsf-schema > compiled.json
    scripts/ocsf-trim.py compiled.json > server/engine/tests/it/vectors/ocsf-schema.json
"""
import json, sys
d = json.load(open(sys.argv[1]))
want = ["base_event", "authentication", "account_change", "entity_management", "api_activity"]
def slim_attrs(attrs):
    out = {}
    for k, v in attrs.items():
        # Attributes a profile adds are required only of records that
        # name that profile (metadata.profiles); Custos names none.
        req = "optional" if v.get("profile") else (v.get("requirement") or "optional")
        a = {"type": v.get("type"), "requirement": req}
        if v.get("is_array"): a["is_array"] = True
        if v.get("type") in d["objects"]: a["object_type"] = v["type"]
        if v.get("enum"): a["enum"] = sorted(v["enum"].keys())
        out[k] = a
    return out
classes = {}
for name in want:
    c = d["classes"][name]
    classes[name] = {"uid": c["uid"], "attributes": slim_attrs(c["attributes"])}
objects = {}
todo = [a.get("object_type") for c in classes.values() for a in c["attributes"].values() if a.get("object_type")]
while todo:
    o = todo.pop()
    if o in objects or o not in d["objects"]:
        continue
    objects[o] = {"attributes": slim_attrs(d["objects"][o]["attributes"])}
    todo += [a.get("object_type") for a in objects[o]["attributes"].values() if a.get("object_type")]
types = {k: {"type": v.get("type"), "regex": v.get("regex")} for k, v in d["types"].items()}
json.dump({"version": d["version"], "classes": classes, "objects": objects, "types": types}, sys.stdout, separators=(",", ":"), sort_keys=True)

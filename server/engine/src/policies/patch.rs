//! RFC 6902 JSON Patch between two policy documents (the subset a diff
//! needs: add, remove, replace), applying one, and the canonical bytes a
//! document's SHA-256 is taken over (keys sorted at every level, no
//! whitespace), so the ledger's record of a change reproduces the stored
//! version byte for byte.

use custos_model::PatchOp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `v` with every object's keys in sorted order.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The canonical JSON bytes of a document.
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&canonical(v)).unwrap_or_default()
}

/// SHA-256 of the canonical bytes, in hex.
pub fn sha256_hex(v: &Value) -> String {
    hex::encode(Sha256::digest(canonical_bytes(v)))
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The patch turning `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    diff_at("", from, to, &mut ops);
    ops
}

fn diff_at(path: &str, from: &Value, to: &Value, ops: &mut Vec<PatchOp>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}/{}", escape(k));
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_at(&p, x, y, ops),
                    (Some(_), None) => ops.push(PatchOp::Remove { path: p }),
                    (None, Some(y)) => ops.push(PatchOp::Add { path: p, value: y.clone() }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let common = a.len().min(b.len());
            for i in 0..common {
                diff_at(&format!("{path}/{i}"), &a[i], &b[i], ops);
            }
            for (i, item) in b.iter().enumerate().skip(common) {
                ops.push(PatchOp::Add { path: format!("{path}/{i}"), value: item.clone() });
            }
            // From the end, so each index is still valid when removed.
            for i in (common..a.len()).rev() {
                ops.push(PatchOp::Remove { path: format!("{path}/{i}") });
            }
        }
        (x, y) if x == y => {}
        (_, y) => ops.push(PatchOp::Replace { path: path.to_owned(), value: y.clone() }),
    }
}

/// Applies a patch to `doc`.
pub fn apply(doc: &Value, patch: &[PatchOp]) -> Result<Value, String> {
    let mut out = doc.clone();
    for op in patch {
        match op {
            PatchOp::Add { path, value } => put(&mut out, path, value.clone(), true)?,
            PatchOp::Replace { path, value } => put(&mut out, path, value.clone(), false)?,
            PatchOp::Remove { path } => remove(&mut out, path)?,
        }
    }
    Ok(out)
}

/// The parent of `path` and the last token.
fn split(path: &str) -> Result<(Vec<String>, String), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not a JSON pointer"));
    }
    let mut tokens: Vec<String> = path[1..].split('/').map(unescape).collect();
    let last = tokens.pop().unwrap_or_default();
    Ok((tokens, last))
}

fn walk<'a>(doc: &'a mut Value, tokens: &[String], path: &str) -> Result<&'a mut Value, String> {
    let mut at = doc;
    for t in tokens {
        at = match at {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("`{path}`: nothing at `{t}`"))?;
    }
    Ok(at)
}

fn put(doc: &mut Value, path: &str, value: Value, insert: bool) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match walk(doc, &parent, path)? {
        Value::Object(m) => {
            if !insert && !m.contains_key(&last) {
                return Err(format!("`{path}`: nothing to replace"));
            }
            m.insert(last, value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| format!("`{path}`: bad index"))?
            };
            match (insert, i) {
                (true, i) if i <= a.len() => a.insert(i, value),
                (false, i) if i < a.len() => a[i] = value,
                _ => return Err(format!("`{path}`: index out of range")),
            }
        }
        _ => return Err(format!("`{path}`: not in an object or array")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<(), String> {
    let (parent, last) = split(path)?;
    let gone = match walk(doc, &parent, path)? {
        Value::Object(m) => m.remove(&last).is_some(),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    };
    if gone { Ok(()) } else { Err(format!("`{path}`: nothing to remove")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_applied_to_its_source_gives_its_target() {
        let cases = [
            (json!({"rules": [1, 2, 3]}), json!({"rules": [1, 5]})),
            (json!({"rules": [1]}), json!({"rules": [1, {"a": 2}, 3]})),
            (json!({"a/b": {"c~d": 1}, "x": true}), json!({"a/b": {"c~d": 2}, "y": null})),
            (json!({"a": [ {"k": 1, "j": [1, 2]} ]}), json!({"a": [ {"k": 1, "j": [2]} ]})),
            (json!(1), json!({"a": 1})),
            (json!({"same": [1]}), json!({"same": [1]})),
        ];
        for (a, b) in cases {
            let p = diff(&a, &b);
            assert_eq!(apply(&a, &p).unwrap(), b, "{a} -> {b} by {p:?}");
        }
        assert!(diff(&json!({"x": 1}), &json!({"x": 1})).is_empty());
        let p = diff(&json!({"rules": [{"action": "redact"}]}), &json!({"rules": [{"action": "partial"}]}));
        assert_eq!(p, vec![PatchOp::Replace { path: "/rules/0/action".into(), value: json!("partial") }]);
        assert_eq!(serde_json::to_value(&p).unwrap()[0]["op"], "replace", "RFC 6902 wire form");
    }

    #[test]
    fn bad_patches_are_refused_and_hashes_ignore_key_order() {
        assert!(apply(&json!({"a": 1}), &[PatchOp::Remove { path: "/b".into() }]).is_err());
        assert!(apply(&json!({"a": [1]}), &[PatchOp::Add { path: "/a/5".into(), value: json!(1) }]).is_err());
        assert!(apply(&json!({"a": 1}), &[PatchOp::Replace { path: "a".into(), value: json!(1) }]).is_err());
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"d": 2, "c": 3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"c": 3, "d": 2}, "b": 1}"#).unwrap();
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
        assert_eq!(canonical_bytes(&a), br#"{"a":{"c":3,"d":2},"b":1}"#);
    }
}

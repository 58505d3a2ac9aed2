//! Ledger entries as applications' events become them: the ledger's tests,
//! its benchmarks and `custos bench ingest` all use [`entry`].

use custos_engine::ledger::types::HeaderFields;
use custos_engine::ledger::{Ledger, NewEntry, Receipt};

const ACTIONS: &[(&str, &str)] = &[
    ("authentication", "user.login"),
    ("authentication", "user.logout"),
    ("authorization", "permission.check"),
    ("admin", "user.update"),
    ("policy", "policy.update"),
    ("data_access", "document.read"),
    ("mcp", "mcp.request"),
    ("tool", "tool.invoke"),
    ("configuration", "config.change"),
    ("network", "firewall.rule.update"),
    ("notification", "notification.send"),
];

/// When entry 0 happened (2025-11-24); entry `i` is `i` ms later.
pub const T0_US: i64 = 1_764_000_000_000_000;

/// Entry `i`: a realistic event whose payload is 300-600 bytes, the same
/// for the same `i` (except its fresh event id). Actions cycle through the
/// kinds of events Custos records; one in twenty fails, one in twenty is
/// denied.
pub fn entry(i: u64) -> NewEntry {
    let (category, action) = ACTIONS[(i % ACTIONS.len() as u64) as usize];
    let outcome = match i % 20 {
        0 => "failure",
        1 => "denied",
        _ => "success",
    };
    let mut payload = serde_json::json!({
        "actor": {"id": format!("user-{}", i % 503), "kind": "user", "name": format!("User {}", i % 503),
                  "ip": format!("10.{}.{}.{}", i % 7, i % 251, i % 13), "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                  "session_id": format!("s-{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))},
        "resource": {"type": "document", "id": format!("doc-{}", i % 10_007)},
        "source": {"application": "portal", "host": format!("app-{}.internal", i % 4), "channel": "api"},
        "correlation": {"request_id": format!("req-{i:012}"), "trace_id": format!("{:032x}", i.wrapping_mul(31))},
        "metrics": {"duration_ms": i % 900, "status_code": if outcome == "success" { 200 } else { 403 }},
    });
    let target = 300 + (i.wrapping_mul(7919) % 301) as usize;
    let len = payload.to_string().len();
    // `,"details":{"note":""}` adds 22 bytes around the padding.
    if len + 22 < target {
        payload["details"] = serde_json::json!({ "note": "x".repeat(target - len - 22) });
    }
    NewEntry {
        event_id: uuid::Uuid::now_v7(),
        occurred_at_us: T0_US + i as i64 * 1000,
        fields: HeaderFields {
            category: category.into(),
            action: action.into(),
            outcome: outcome.into(),
            severity: if outcome == "success" { "info".into() } else { "warning".into() },
            actor_id: Some(format!("user-{}", i % 503)),
            actor_kind: Some("user".into()),
            resource_type: Some("document".into()),
            resource_id: Some(format!("doc-{}", i % 10_007)),
            tenant: Some(format!("tenant-{}", i % 3)),
            channel: Some("api".into()),
            source_app: Some("portal".into()),
        },
        payload: payload.to_string().into_bytes(),
        duration_ms: None,
    }
}

/// Appends entries `0..n` in batches of `batch`.
pub async fn fill(ledger: &Ledger, n: u64, batch: u64) -> Vec<Receipt> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let k = batch.min(n - i);
        out.extend(ledger.append((i..i + k).map(entry).collect()).await.unwrap());
        i += k;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_are_between_300_and_600_bytes() {
        let sizes: Vec<usize> = (0..2000).map(|i| super::entry(i).payload.len()).collect();
        let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
        assert!(min >= 300 && max <= 600, "payload sizes {min}..={max}");
        assert!(max - min > 150, "sizes vary: {min}..={max}");
    }
}

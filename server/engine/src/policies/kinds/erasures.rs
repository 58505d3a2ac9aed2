//! Erasure requests (GDPR Art. 17) as a policy kind: each request names one
//! data subject (an actor, a pseudonym as stored, or a resource) and why.
//! A request takes effect when its version is approved by a second person
//! (the policy store's review): the retention service then archives and
//! removes that subject's events (tombstones, as retention does), except
//! those under a legal hold, and records the erasure. Requests are never
//! removed or rewritten once filed: the policy is their register. The
//! dry-run counts each new request's events. Proposing needs
//! `retention:manage`.

use custos_model::{PolicyVersion, TestReport, TestRow};
use serde_json::{Value, json};

use super::{KindFuture, PolicyKind, Sample};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::retention::doc::{ERASURES_KIND, ErasuresDoc};
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// The erasure kind.
#[derive(Debug, Clone, Copy)]
pub struct ErasuresKind;

impl PolicyKind for ErasuresKind {
    fn name(&self) -> &'static str {
        ERASURES_KIND
    }

    fn title(&self) -> &'static str {
        "Erasure requests"
    }

    fn permission(&self) -> Permission {
        Permission::RetentionManage
    }

    fn defaults(&self) -> Value {
        json!({"requests": []})
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = ErasuresDoc::parse(doc)?;
        d.check()?;
        serde_json::to_value(&d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match ErasuresDoc::parse(doc) {
            Ok(d) if d.requests.is_empty() => "No erasure request".into(),
            Ok(d) => format!(
                "{} erasure request(s): {}",
                d.requests.len(),
                d.requests.iter().map(|r| format!("{} ({})", r.id, r.subject)).collect::<Vec<_>>().join(", ")
            ),
            Err(e) => e.reason,
        }
    }

    fn test<'a>(
        &'a self,
        events: &'a Events,
        current: &'a Value,
        doc: &'a Value,
        _sample: Sample,
    ) -> KindFuture<'a, TestReport> {
        Box::pin(async move {
            let proposed = ErasuresDoc::parse(doc).map_err(crate::policies::PolicyError::Invalid)?;
            let in_force = ErasuresDoc::parse(current).unwrap_or_default();
            proposed.check_change(&in_force).map_err(crate::policies::PolicyError::Invalid)?;
            let conn = events.ledger().db().conn();
            let b = events.ledger().db().backend();
            let mut rows = Vec::new();
            let mut total = 0;
            for (i, r) in proposed.requests.iter().enumerate() {
                if in_force.requests.iter().any(|o| o.id == r.id) {
                    continue;
                }
                let f = r.filter(&format!("content.requests[{i}]")).map_err(crate::policies::PolicyError::Invalid)?;
                let (actors, resources) = events.masked_forms(&f);
                let (sql, values) = crate::events::search::count_sql(&f, &actors, &resources, b);
                let n: i64 = sea_orm::ConnectionTrait::query_one_raw(conn, stmt_for(b, &sql, values))
                    .await
                    .map_err(|e| crate::policies::PolicyError::Conflict(e.to_string()))?
                    .and_then(|row| row.try_get("", "n").ok())
                    .unwrap_or(0);
                total += n.max(0) as u64;
                rows.push(TestRow {
                    label: format!("events of {} (request {})", r.subject, r.id),
                    current: 0,
                    proposed: n.max(0) as u64,
                    examples: vec![],
                });
            }
            Ok(TestReport {
                kind: self.name().into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: total,
                from: None,
                to: Some(rfc3339(events.ledger().now_us())),
                rows,
                notes: vec![
                    "Once approved, these events are archived and removed (tombstones keep the chain and the proofs), \
                     except those under a legal hold, which stay and are counted in the erasure's record."
                        .into(),
                ],
            })
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The retention service carries out the requests not yet done.
        Box::pin(async { Ok(()) })
    }
}

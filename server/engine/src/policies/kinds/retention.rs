//! Retention as a policy kind: the rules (`retention::doc`), version 0
//! keeping everything forever. The dry-run is the run's own scan: what a
//! run would remove now, in force vs proposed, with the legal holds in
//! force. Proposing needs `retention:manage`; a rule below the floor
//! (`retention.min_days`) needs `admin` as well.

use custos_model::{PolicyVersion, TestReport, TestRow};
use serde_json::{Value, json};

use super::{KindFuture, PolicyKind, Sample};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::retention::doc::{HOLDS_KIND, HoldsDoc, RETENTION_KIND, RetentionDoc};
use crate::time::rfc3339;

/// The retention kind.
#[derive(Debug, Clone, Copy)]
pub struct RetentionKind;

fn canonical<T: serde::Serialize>(d: &T) -> Result<Value, FieldError> {
    serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
}

pub(crate) fn conflict(e: impl std::fmt::Display) -> crate::policies::PolicyError {
    crate::policies::PolicyError::Conflict(e.to_string())
}

/// The legal holds in force (none before the kind's first version).
pub(crate) async fn holds_in_force(events: &Events) -> Result<HoldsDoc, crate::policies::PolicyError> {
    let current = crate::policies::in_force(events.ledger().db().conn(), HOLDS_KIND).await.map_err(conflict)?;
    match current {
        Some((_, content)) => HoldsDoc::parse(&content).map_err(|e| conflict(e.reason)),
        None => Ok(HoldsDoc::default()),
    }
}

/// The retention policy in force.
pub(crate) async fn retention_in_force(events: &Events) -> Result<RetentionDoc, crate::policies::PolicyError> {
    let current = crate::policies::in_force(events.ledger().db().conn(), RETENTION_KIND).await.map_err(conflict)?;
    Ok(current.and_then(|(_, c)| RetentionDoc::parse(&c).ok()).unwrap_or_default())
}

/// A dry-run report: what a run would remove now under each pair.
pub(crate) async fn compare(
    kind: &str,
    events: &Events,
    doc: &Value,
    (r_now, h_now): (&RetentionDoc, &HoldsDoc),
    (r_new, h_new): (&RetentionDoc, &HoldsDoc),
) -> Result<TestReport, crate::policies::PolicyError> {
    let now = crate::retention::plan(events, r_now, h_now).await.map_err(conflict)?;
    let new = crate::retention::plan(events, r_new, h_new).await.map_err(conflict)?;
    let mut labels: Vec<String> = now.by_rule.iter().chain(&new.by_rule).map(|(k, _)| k.clone()).collect();
    labels.sort();
    labels.dedup();
    let count = |list: &[(String, u64)], k: &str| list.iter().find(|(x, _)| x == k).map_or(0, |(_, n)| *n);
    let mut rows: Vec<TestRow> = labels
        .iter()
        .map(|l| TestRow {
            label: format!("removed now under rule {l}"),
            current: count(&now.by_rule, l),
            proposed: count(&new.by_rule, l),
            examples: vec![],
        })
        .collect();
    rows.push(TestRow {
        label: "kept by legal holds (expired)".into(),
        current: now.held,
        proposed: new.held,
        examples: vec![],
    });
    let mut notes = vec![format!(
        "A run now would remove {} event(s) as proposed ({} under the policy in force), of {} entries looked at.",
        new.removable, now.removable, new.scanned
    )];
    for c in new.by_category_month.iter().take(24) {
        notes.push(format!("{} recorded in {}: {} event(s) would be removed", c.category, c.month, c.events));
    }
    Ok(TestReport {
        kind: kind.into(),
        sha256: crate::policies::patch::sha256_hex(doc),
        events: new.removable,
        from: new.oldest.map(|(_, at)| at),
        to: Some(rfc3339(events.ledger().now_us())),
        rows,
        notes,
    })
}

impl PolicyKind for RetentionKind {
    fn name(&self) -> &'static str {
        RETENTION_KIND
    }

    fn title(&self) -> &'static str {
        "Retention"
    }

    fn permission(&self) -> Permission {
        Permission::RetentionManage
    }

    fn needs(&self, doc: &Value) -> Vec<(Permission, &'static str)> {
        RetentionDoc::parse(doc)
            .ok()
            .filter(RetentionDoc::overrides_floor)
            .map(|_| {
                (Permission::Admin, "a rule below the retention floor (retention.min_days) is an admin's override")
            })
            .into_iter()
            .collect()
    }

    fn defaults(&self) -> Value {
        json!({"rules": [], "default_days": null})
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = RetentionDoc::parse(doc)?;
        d.check()?;
        canonical(&d)
    }

    fn summary(&self, doc: &Value) -> String {
        match RetentionDoc::parse(doc) {
            Ok(d) => d.summary(),
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
            let proposed = RetentionDoc::parse(doc).map_err(crate::policies::PolicyError::Invalid)?;
            let in_force = RetentionDoc::parse(current).unwrap_or_default();
            let holds = holds_in_force(events).await?;
            compare(self.name(), events, doc, (&in_force, &holds), (&proposed, &holds)).await
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // Each run reads the version in force.
        Box::pin(async { Ok(()) })
    }
}

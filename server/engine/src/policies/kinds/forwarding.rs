//! SIEM forwarding as a policy kind: the destinations (`forward::dest`),
//! version 0 having none. Secrets given in clear are sealed under the KEK
//! before anything is stored or recorded. The dry-run counts the events of
//! the period each destination's filter takes. Proposing needs
//! `siem:manage`.

use custos_model::{PolicyVersion, TestReport, TestRow};
use serde_json::{Value, json};

use super::{KindFuture, PolicyKind, Sample};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::forward::dest::{ForwardingDoc, seal_all};
use crate::identity::permission::Permission;
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// The forwarding kind.
#[derive(Debug, Clone, Copy)]
pub struct ForwardingKind;

fn invalid(e: FieldError) -> crate::policies::PolicyError {
    crate::policies::PolicyError::Invalid(e)
}

fn canonical(d: &ForwardingDoc) -> Result<Value, FieldError> {
    serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
}

impl PolicyKind for ForwardingKind {
    fn name(&self) -> &'static str {
        crate::forward::KIND
    }

    fn title(&self) -> &'static str {
        "SIEM forwarding"
    }

    fn permission(&self) -> Permission {
        Permission::SiemManage
    }

    fn defaults(&self) -> Value {
        json!({"destinations": []})
    }

    fn prepare(&self, events: &Events, doc: Value) -> Result<Value, FieldError> {
        let mut d = ForwardingDoc::parse(&doc)?;
        d.check(false)?;
        seal_all(events.ledger(), &mut d)?;
        canonical(&d)
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = ForwardingDoc::parse(doc)?;
        d.check(true)?;
        canonical(&d)
    }

    fn summary(&self, doc: &Value) -> String {
        match ForwardingDoc::parse(doc) {
            Ok(d) if d.destinations.is_empty() => "No destination: nothing is forwarded".into(),
            Ok(d) => {
                let on: Vec<String> = d
                    .destinations
                    .iter()
                    .filter(|x| x.enabled)
                    .map(|x| format!("{} ({} {})", x.name, x.kind, x.format))
                    .collect();
                format!("{} destination(s) on: {}", on.len(), on.join(", "))
            }
            Err(e) => e.reason,
        }
    }

    fn test<'a>(
        &'a self,
        events: &'a Events,
        current: &'a Value,
        doc: &'a Value,
        sample: Sample,
    ) -> KindFuture<'a, TestReport> {
        Box::pin(async move {
            let proposed = ForwardingDoc::parse(doc).map_err(invalid)?;
            let in_force = ForwardingDoc::parse(current).unwrap_or_default();
            let conn = events.ledger().db().conn();
            let b = events.ledger().db().backend();
            let count = |d: &crate::forward::dest::DestinationDef| {
                let d = d.clone();
                async move {
                    let mut f = d.search_filter().map_err(invalid)?;
                    f.from_us = Some(sample.since_us);
                    let (actors, resources) = events.masked_forms(&f);
                    let (sql, values) = crate::events::search::count_sql(&f, &actors, &resources, b);
                    let row = sea_orm::ConnectionTrait::query_one_raw(conn, stmt_for(b, &sql, values))
                        .await
                        .map_err(|e| crate::policies::PolicyError::Conflict(e.to_string()))?;
                    let n: i64 = row.and_then(|r| r.try_get("", "n").ok()).unwrap_or(0);
                    Ok::<u64, crate::policies::PolicyError>(n.max(0) as u64)
                }
            };
            let mut rows = Vec::new();
            let mut total = 0;
            for d in &proposed.destinations {
                let would = if d.enabled { count(d).await? } else { 0 };
                let was = match in_force.destinations.iter().find(|x| x.id == d.id && x.enabled) {
                    Some(x) => count(x).await?,
                    None => 0,
                };
                total = total.max(would);
                rows.push(TestRow {
                    label: format!("{} ({}, {}){}", d.name, d.kind, d.format, if d.enabled { "" } else { ", off" }),
                    current: was,
                    proposed: would,
                    examples: vec![],
                });
            }
            Ok(TestReport {
                kind: self.name().into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: total,
                from: Some(rfc3339(sample.since_us)),
                to: Some(rfc3339(events.ledger().now_us())),
                rows,
                notes: vec![format!(
                    "Events since {} each destination's filter takes (in force, and as proposed). Use a destination's \
                     preview and test on the forwarding page to see its format and try it for real.",
                    rfc3339(sample.since_us)
                )],
            })
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The forwarder reads the version in force on each pass.
        Box::pin(async { Ok(()) })
    }
}

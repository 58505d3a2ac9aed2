//! Notifications as a policy kind: channels, routes and templates
//! (`notify::channels`), version 0 having none. Secrets given in clear in a
//! proposal are sealed under the KEK before it is stored or recorded
//! ([`PolicyKind::prepare`]); what is stored never holds one. The dry-run
//! says which alerts of the period each channel would have been sent.
//! Proposing needs `notification:manage`.

use std::collections::BTreeMap;

use custos_model::{PolicyVersion, TestReport, TestRow};
use serde_json::{Value, json};

use super::{KindFuture, PolicyKind, Sample};
use crate::alerts::store::{AlertQuery, list};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::notify::channels::{NotificationsDoc, seal_all};
use crate::time::rfc3339;

/// The notifications kind.
#[derive(Debug, Clone, Copy)]
pub struct NotificationsKind;

fn invalid(e: FieldError) -> crate::policies::PolicyError {
    crate::policies::PolicyError::Invalid(e)
}

impl PolicyKind for NotificationsKind {
    fn name(&self) -> &'static str {
        crate::notify::KIND
    }

    fn title(&self) -> &'static str {
        "Notifications"
    }

    fn permission(&self) -> Permission {
        Permission::NotificationManage
    }

    fn defaults(&self) -> Value {
        json!({"channels": [], "routes": []})
    }

    fn prepare(&self, events: &Events, doc: Value) -> Result<Value, FieldError> {
        let mut d = NotificationsDoc::parse(&doc)?;
        d.check(false)?;
        seal_all(events.ledger(), &mut d)?;
        serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = NotificationsDoc::parse(doc)?;
        d.check(true)?;
        serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match NotificationsDoc::parse(doc) {
            Ok(d) if d.channels.is_empty() => "No channel: alerts reach the inbox only".into(),
            Ok(d) => {
                let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
                for c in d.channels.iter().filter(|c| c.enabled) {
                    *kinds.entry(c.kind.as_str()).or_default() += 1;
                }
                let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
                format!(
                    "{} channel(s) on ({}), {} route(s)",
                    kinds.values().sum::<usize>(),
                    list.join(", "),
                    d.routes.len()
                )
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
            let proposed = NotificationsDoc::parse(doc).map_err(invalid)?;
            let in_force = NotificationsDoc::parse(current).unwrap_or_default();
            // The alerts opened in the period, as they would have been routed.
            let mut q = AlertQuery { from_us: Some(sample.since_us), limit: 200, ..Default::default() };
            let mut seen = 0u64;
            let mut was: BTreeMap<String, u64> = BTreeMap::new();
            let mut would: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let page = list(events, &q).await.map_err(|e| crate::policies::PolicyError::Conflict(e.to_string()))?;
                for a in &page.items {
                    seen += 1;
                    for c in in_force.route(&a.rule_id, &a.severity) {
                        *was.entry(c.id.clone()).or_default() += 1;
                    }
                    for c in proposed.route(&a.rule_id, &a.severity) {
                        *would.entry(c.id.clone()).or_default() += 1;
                    }
                }
                match page.next_cursor {
                    Some(c) if seen < 10_000 => q.cursor = Some(c),
                    _ => break,
                }
            }
            let rows = proposed
                .channels
                .iter()
                .map(|c| TestRow {
                    label: format!("{} ({}){}", c.name, c.kind, if c.enabled { "" } else { ", off" }),
                    current: was.get(&c.id).copied().unwrap_or(0),
                    proposed: would.get(&c.id).copied().unwrap_or(0),
                    examples: vec![],
                })
                .collect();
            Ok(TestReport {
                kind: self.name().into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: seen,
                from: Some(rfc3339(sample.since_us)),
                to: Some(rfc3339(events.ledger().now_us())),
                rows,
                notes: vec![format!(
                    "Messages each channel would have been sent for the {seen} alert(s) opened since {} (with the \
                     routes in force, and as proposed). Use a channel's test button to try it for real.",
                    rfc3339(sample.since_us)
                )],
            })
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The notifier reads the version in force on each pass.
        Box::pin(async { Ok(()) })
    }
}

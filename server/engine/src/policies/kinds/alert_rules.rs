//! Alert rules as a policy kind: `{"rules": [Rule, …]}`, version 0 being
//! the built-in pack. Changes are proposed, tried on history by the
//! evaluator that runs live (`alerts::dry_run`) and reviewed like any
//! policy. The live evaluator (`alerts::live`) reads the version in force
//! on every pass, before the events it judges, and rebuilds its windows
//! when it changes.

use std::collections::BTreeSet;

use custos_model::{PolicyVersion, TestReport, TestRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KindFuture, PolicyKind, Sample};
use crate::alerts::rules::{Rule, builtin_rules};
use crate::alerts::{WouldHaveFired, dry_run};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::time::rfc3339;

/// The alert rules kind.
#[derive(Debug, Clone, Copy)]
pub struct AlertRulesKind;

/// Its document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesDoc {
    /// The rules, ids unique.
    pub rules: Vec<Rule>,
}

/// Most rules in one document.
const MAX_RULES: usize = 200;

fn parse(doc: &Value) -> Result<AlertRulesDoc, FieldError> {
    super::parse_rules_doc::<AlertRulesDoc, Rule>(doc, "a list of alert rules")
}

impl PolicyKind for AlertRulesKind {
    fn name(&self) -> &'static str {
        "alert_rules"
    }

    fn title(&self) -> &'static str {
        "Alert rules"
    }

    fn permission(&self) -> Permission {
        Permission::AlertManage
    }

    fn defaults(&self) -> Value {
        serde_json::to_value(AlertRulesDoc { rules: builtin_rules() }).unwrap_or_default()
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = parse(doc)?;
        if d.rules.len() > MAX_RULES {
            return Err(FieldError { path: "content.rules".into(), reason: format!("at most {MAX_RULES} rules") });
        }
        let mut ids = BTreeSet::new();
        for (i, r) in d.rules.iter().enumerate() {
            r.check().map_err(|(f, reason)| FieldError { path: format!("content.rules[{i}].{f}"), reason })?;
            if !ids.insert(r.id.as_str()) {
                return Err(FieldError {
                    path: format!("content.rules[{i}].id"),
                    reason: format!("`{}` is used by another rule", r.id),
                });
            }
        }
        serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match parse(doc) {
            Ok(d) => {
                let on = d.rules.iter().filter(|r| r.enabled).count();
                format!("{on} of {} rule(s) enabled", d.rules.len())
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
            let proposed = parse(doc).map_err(crate::policies::PolicyError::Invalid)?;
            let in_force = parse(current).map(|d| d.rules).unwrap_or_default();
            let now = events.ledger().now_us();
            // Rules look at windows of history, not at single events: up to
            // twenty times the sample's size, in commit order.
            let max = (sample.limit * 20).clamp(1_000, 100_000);
            // Up to the furthest an event may be ahead of the clock.
            let to = now + events.limits().max_future_secs * crate::time::SECOND_US;
            let was = dry_run(events, in_force, sample.since_us, to, max).await?;
            let run = dry_run(events, proposed.rules.clone(), sample.since_us, to, max).await?;
            let (would, was) = (&run.fired, &was.fired);
            let none = WouldHaveFired::default();
            let rows = proposed
                .rules
                .iter()
                .map(|r| TestRow {
                    label: format!("{}{}", r.name, if r.enabled { "" } else { " (off)" }),
                    current: was.get(&r.id).unwrap_or(&none).alerts,
                    proposed: would.get(&r.id).unwrap_or(&none).alerts,
                    examples: vec![],
                })
                .collect();
            let mut notes = vec![format!(
                "Alerts each rule would have opened over the events that occurred since {}, by the evaluator that \
                 runs live (repeats within a rule's cooldown are counted into the open alert, not here).",
                rfc3339(sample.since_us)
            )];
            if run.cut {
                notes.push(format!("Only the first {max} events of the period were evaluated."));
            }
            let firsts: Vec<String> = proposed
                .rules
                .iter()
                .filter_map(|r| {
                    let w = would.get(&r.id)?;
                    (!w.first_seqs.is_empty()).then(|| format!("{}: seq {}", r.id, w.first_seqs[0]))
                })
                .collect();
            if !firsts.is_empty() {
                notes.push(format!(
                    "First matches (ledger positions, open them in the explorer): {}.",
                    firsts.join("; ")
                ));
            }
            Ok(TestReport {
                kind: self.name().into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: run.events,
                from: Some(rfc3339(sample.since_us)),
                to: Some(rfc3339(now)),
                rows,
                notes,
            })
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The store's version is the rules' only copy.
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The live evaluator reads the version in force itself (on the
        // replica holding its lease).
        Box::pin(async { Ok(()) })
    }
}

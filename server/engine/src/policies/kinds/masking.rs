//! The masking policy as a kind: `{"rules": [MaskRule, …]}`, checked,
//! tested and put in force by the events service's own masking code.

use custos_model::{MaskAction, MaskRule, PolicyVersion, TestExample, TestReport, TestRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{KindFuture, PolicyKind, Sample};
use crate::events::mask::default_rules;
use crate::events::validate::FieldError;
use crate::events::{Events, EventsError};
use crate::identity::permission::Permission;
use crate::time::rfc3339;

/// The masking kind.
#[derive(Debug, Clone, Copy)]
pub struct MaskingKind;

/// Its document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingDoc {
    /// The rules, one per detector.
    pub rules: Vec<MaskRule>,
}

fn parse(doc: &Value) -> Result<MaskingDoc, FieldError> {
    super::parse_rules_doc::<MaskingDoc, MaskRule>(doc, "a masking policy")
}

/// `redact`, `partial 4`, `pseudonymize`.
pub fn action_label(a: MaskAction) -> String {
    match a {
        MaskAction::Redact => "redact".into(),
        MaskAction::Partial { keep_last } => format!("partial, keep last {keep_last}"),
        MaskAction::Pseudonymize => "pseudonymize".into(),
    }
}

fn rule_label(r: &MaskRule) -> String {
    let mut s = format!("{}: {}", r.detector.as_str(), action_label(r.action));
    if r.keep_original {
        s.push_str(", keeps original");
    }
    if !r.enabled {
        s.push_str(" (off)");
    }
    s
}

impl PolicyKind for MaskingKind {
    fn name(&self) -> &'static str {
        "masking"
    }

    fn title(&self) -> &'static str {
        "Masking of personal data"
    }

    fn permission(&self) -> Permission {
        Permission::PolicyManage
    }

    fn defaults(&self) -> Value {
        serde_json::to_value(MaskingDoc { rules: default_rules() }).unwrap_or_default()
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = parse(doc)?;
        Events::check(d.rules.clone()).map_err(|e| match e {
            EventsError::Invalid(f) => FieldError { path: format!("content.{}", f.path), reason: f.reason },
            other => FieldError { path: "content.rules".into(), reason: other.to_string() },
        })?;
        serde_json::to_value(d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match parse(doc) {
            Ok(d) => {
                let on: Vec<String> = d.rules.iter().filter(|r| r.enabled).map(rule_label).collect();
                let off = d.rules.iter().filter(|r| !r.enabled).count();
                let mut s = format!("{} rule(s): {}", on.len(), on.join("; "));
                if off > 0 {
                    s.push_str(&format!("; {off} off"));
                }
                s
            }
            Err(e) => e.reason,
        }
    }

    fn test<'a>(
        &'a self,
        events: &'a Events,
        _current: &'a Value,
        doc: &'a Value,
        sample: Sample,
    ) -> KindFuture<'a, TestReport> {
        // The events service masks with the policy in force itself.
        Box::pin(async move {
            let d = parse(doc).map_err(crate::policies::PolicyError::Invalid)?;
            let run = events.masking_dry_run(d.rules, sample.since_us, sample.limit).await?;
            let rows = run
                .rules
                .iter()
                .map(|r| TestRow {
                    label: rule_label(r),
                    current: run.current.get(&r.detector).copied().unwrap_or(0),
                    proposed: run.proposed.get(&r.detector).copied().unwrap_or(0),
                    examples: run
                        .examples
                        .get(&r.detector)
                        .map(|l| {
                            l.iter()
                                .map(|(id, before, after)| TestExample {
                                    event_id: id.clone(),
                                    before: before.clone(),
                                    after: after.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect();
            let mut notes = vec![
                "Counts are values masked in the sample: each event as it was sent where the policy of its day kept \
                 the original, else as it was stored (a value masked then without keeping the original is counted \
                 as it is now)."
                    .to_owned(),
                "Examples come only from values stored in clear (what readers of the log already see): originals \
                 kept for unmasking are counted, never shown."
                    .to_owned(),
            ];
            if run.restored > 0 {
                notes.push(format!("{} kept original value(s) were put back for the counts.", run.restored));
            }
            Ok(TestReport {
                kind: self.name().into(),
                sha256: crate::policies::patch::sha256_hex(doc),
                events: run.events,
                from: run.from_us.map(rfc3339),
                to: run.to_us.map(rfc3339),
                rows,
                notes,
            })
        })
    }

    fn persist<'a>(&'a self, tx: &'a sea_orm::DatabaseTransaction, v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async move {
            let d = parse(&v.content).map_err(crate::policies::PolicyError::Invalid)?;
            let at = crate::time::parse_rfc3339(v.created_at.as_deref().unwrap_or_default()).unwrap_or_default();
            Events::insert_masking_version(tx, v.version, &d.rules, at, &v.author_name, &v.reason).await?;
            Ok(())
        })
    }

    fn apply<'a>(&'a self, events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        // The events service reads the version it puts in force from
        // `masking_policy_versions`, written by `persist`.
        Box::pin(async move { Ok(events.refresh_policy().await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_document_names_the_rule_at_fault() {
        let k = MaskingKind;
        let e = k.validate(&json!({"rules": [{"detector": "secret_key", "action": {"type": "redact"}}, {"detector": "dna", "action": {"type": "redact"}}]})).unwrap_err();
        assert_eq!(e.path, "content.rules[1]");
        assert!(e.reason.contains("dna"), "{}", e.reason);
        let e = k.validate(&json!({"rulez": []})).unwrap_err();
        assert_eq!(e.path, "content");
        let e = k.validate(&json!({"rules": []})).unwrap_err();
        assert_eq!(e.path, "content.rules", "{e:?}");
        assert!(k.validate(&k.defaults()).is_ok());
        assert!(k.summary(&k.defaults()).starts_with("7 rule(s): secret_key: redact"), "{}", k.summary(&k.defaults()));
    }
}

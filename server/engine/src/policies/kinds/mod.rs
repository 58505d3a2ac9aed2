//! The policy kinds: each a typed document with a validator, a summary, a
//! dry-run against history with the live feature's own code, and how a
//! version is written and put in force. Adding a kind is a file here and a
//! line in [`all`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use custos_model::{PolicyVersion, TestReport};
use sea_orm::DatabaseTransaction;
use serde_json::Value;

use super::PolicyError;
use super::review::ReviewRule;
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;

pub mod alert_rules;
pub mod erasures;
pub mod forwarding;
pub mod legal_holds;
pub mod masking;
pub mod notifications;
pub mod report_schedules;
pub mod retention;

/// A kind's asynchronous step.
pub type KindFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PolicyError>> + Send + 'a>>;

/// Which history a dry-run looks at.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Events recorded since (µs).
    pub since_us: i64,
    /// At most this many, newest first.
    pub limit: u64,
}

/// One policy kind.
pub trait PolicyKind: Send + Sync + 'static {
    /// Its name in paths and the ledger: `[a-z_]+`, never `trail` or
    /// `proposals`.
    fn name(&self) -> &'static str;
    /// For people.
    fn title(&self) -> &'static str;
    /// What proposing a change needs (besides `policy:read`).
    fn permission(&self) -> Permission;
    /// Its review rule unless configured (`[policies.<kind>]`).
    fn default_rule(&self) -> ReviewRule {
        ReviewRule::default()
    }
    /// Version 0: the built-in defaults. Never change them in a later
    /// release: the first version's recorded patch is taken from them, and
    /// the trail rebuilt from the ledger replays it onto them.
    fn defaults(&self) -> Value;
    /// What a proposal's document becomes before it is checked, stored or
    /// recorded: e.g. secrets given in clear, sealed. The default keeps it.
    fn prepare(&self, _events: &Events, doc: Value) -> Result<Value, FieldError> {
        Ok(doc)
    }
    /// Permissions this document needs beyond [`PolicyKind::permission`]
    /// (e.g. a retention rule below the floor needs `admin`), each with why.
    fn needs(&self, _doc: &Value) -> Vec<(Permission, &'static str)> {
        Vec::new()
    }
    /// Parses and checks a document; returns its canonical form (every
    /// field spelt out), or the field at fault (paths under `content`).
    fn validate(&self, doc: &Value) -> Result<Value, FieldError>;
    /// One line for people.
    fn summary(&self, doc: &Value) -> String;
    /// A dry-run of a (valid) document over recent history, with the code
    /// the live feature uses (`sample` bounds it; a kind whose effect is
    /// not per event may read history its own way, within the same bound).
    /// `current` is the version in force, for comparison.
    fn test<'a>(
        &'a self,
        events: &'a Events,
        current: &'a Value,
        doc: &'a Value,
        sample: Sample,
    ) -> KindFuture<'a, TestReport>;
    /// Writes what the live feature reads, in the activation's transaction.
    fn persist<'a>(&'a self, tx: &'a DatabaseTransaction, version: &'a PolicyVersion) -> KindFuture<'a, ()>;
    /// Puts `active` (the newest stored version) in force on this replica
    /// (idempotent; other replicas call it from their refresh). A kind may
    /// read its own table instead, as masking does.
    fn apply<'a>(&'a self, events: &'a Events, active: &'a PolicyVersion) -> KindFuture<'a, ()>;
}

/// Parses a `{"rules": [R, …]}` document of type `D`; when it does not
/// parse, names the first rule at fault (`content.rules[i]`) or, when the
/// shape itself is wrong, `content` with `what` the document should be.
pub(crate) fn parse_rules_doc<D, R>(doc: &Value, what: &str) -> Result<D, FieldError>
where
    D: serde::de::DeserializeOwned,
    R: serde::de::DeserializeOwned,
{
    serde_json::from_value(doc.clone()).map_err(|e| {
        let bad_rule = doc.get("rules").and_then(Value::as_array).and_then(|rules| {
            rules.iter().enumerate().find_map(|(i, r)| {
                serde_json::from_value::<R>(r.clone())
                    .err()
                    .map(|e| FieldError { path: format!("content.rules[{i}]"), reason: e.to_string() })
            })
        });
        bad_rule.unwrap_or_else(|| FieldError {
            path: "content".into(),
            reason: format!("not {what} ({{\"rules\": [...]}}): {e}"),
        })
    })
}

/// Every kind, in display order.
pub fn all() -> Vec<Arc<dyn PolicyKind>> {
    vec![
        Arc::new(masking::MaskingKind),
        Arc::new(alert_rules::AlertRulesKind),
        Arc::new(notifications::NotificationsKind),
        Arc::new(forwarding::ForwardingKind),
        Arc::new(retention::RetentionKind),
        Arc::new(legal_holds::LegalHoldsKind),
        Arc::new(erasures::ErasuresKind),
        Arc::new(report_schedules::ReportSchedulesKind),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn kind_names_are_path_segments_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in super::all() {
            let n = k.name();
            assert!(!n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
            assert!(!["trail", "proposals"].contains(&n), "{n} is a route");
            assert!(seen.insert(n), "{n} twice");
            assert!(k.validate(&k.defaults()).is_ok(), "{n}'s defaults are valid");
        }
    }
}

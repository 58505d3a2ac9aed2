//! Alerts: what the rules opened, as the API answers them and the inbox
//! shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Nobody has looked at it yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Done with; a new firing of its rule and group opens a new alert.
    Resolved,
}

impl AlertStatus {
    /// The word used in the API, the database and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// From its word.
    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "open" => Some(AlertStatus::Open),
            "acknowledged" => Some(AlertStatus::Acknowledged),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// A step in an alert's life after it opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertStep {
    /// `acknowledged`, `resolved` or `commented`.
    pub step: String,
    /// Who (`user:<id>`).
    pub principal: String,
    /// Their name then.
    pub name: String,
    /// When (RFC 3339).
    pub at: String,
    /// What they said (masked by the policy in force).
    #[serde(default)]
    pub comment: String,
    /// The ledger entry that records it.
    pub seq: u64,
}

/// An alert a rule opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// Its id.
    pub id: String,
    /// The rule that opened it.
    pub rule_id: String,
    /// The rule's name then.
    pub rule_name: String,
    /// The rule's severity.
    pub severity: String,
    /// The group's values by field (e.g. `{"actor": "mallory"}`); empty
    /// when the rule does not group.
    pub group: BTreeMap<String, String>,
    /// Where it is.
    pub status: AlertStatus,
    /// Matches counted into it (the firing's count, then one per repeat).
    pub matches: u64,
    /// Ledger positions of the matches that opened it, then of the repeats
    /// (at most 50).
    pub seqs: Vec<u64>,
    /// When it opened (RFC 3339; the commit time of the last match).
    pub opened_at: String,
    /// When a match was last counted into it.
    pub last_at: String,
    /// The ledger entry recording its opening (`custos.alert.opened`).
    pub opened_seq: Option<u64>,
    /// The version of the alert rules in force when it opened.
    pub rules_version: u64,
    /// The explorer's query for its events (`action=…&actor=…&from=…&to=…`).
    pub explore: String,
    /// Acknowledgements, comments, resolution, oldest first.
    pub history: Vec<AlertStep>,
    /// The silence that kept it from being sent, if one did.
    #[serde(default)]
    pub silenced_by: Option<String>,
}

/// A silence: alerts it covers are opened and shown, not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertSilence {
    /// Its id.
    pub id: String,
    /// The rule it silences (none: any rule).
    pub rule: Option<String>,
    /// Group values an alert must have, all of them.
    pub group: BTreeMap<String, String>,
    /// From (RFC 3339).
    pub starts_at: String,
    /// Until (RFC 3339; when it was ended, if early).
    pub ends_at: String,
    /// Ended before its time.
    pub ended_early: bool,
    /// Why (masked by the policy in force).
    pub reason: String,
    /// Who (`user:<id>`).
    pub author: String,
    /// Their name then.
    pub author_name: String,
    /// The ledger entry that records it.
    pub seq: u64,
}

/// Alerts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertPage {
    /// This page.
    pub items: Vec<Alert>,
    /// The next page's cursor, if there is one.
    pub next_cursor: Option<String>,
    /// How many alerts are open, acknowledged and resolved (all rules).
    pub counts: BTreeMap<String, u64>,
}

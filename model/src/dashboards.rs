//! The dashboards' figures: analytics, compliance, keys.

use serde::{Deserialize, Serialize};

use crate::{CheckStatus, ValueCount};

/// A named series of counts, one per bucket of [`Analytics::buckets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Series {
    /// The value counted (a category, an outcome…).
    pub name: String,
    /// One count per bucket.
    pub counts: Vec<u64>,
}

/// Counts by outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomeCounts {
    /// Outcome `success`.
    pub success: u64,
    /// Outcome `failure`.
    pub failure: u64,
    /// Outcome `denied`.
    pub denied: u64,
    /// Outcome `error`.
    pub error: u64,
}

impl OutcomeCounts {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.success + self.failure + self.denied + self.error
    }

    /// Adds `n` to `outcome` (unknown outcomes are ignored).
    pub fn add(&mut self, outcome: &str, n: u64) {
        match outcome {
            "success" => self.success += n,
            "failure" => self.failure += n,
            "denied" => self.denied += n,
            "error" => self.error += n,
            _ => {}
        }
    }
}

/// One action's counts by outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionMetrics {
    /// Category of the action.
    pub category: String,
    /// The action.
    pub action: String,
    /// Counts by outcome.
    pub outcomes: OutcomeCounts,
}

/// One tool, MCP server, plugin or notification channel (by resource id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceMetrics {
    /// The resource id (`""` when the events had none).
    pub name: String,
    /// Counts by outcome.
    pub outcomes: OutcomeCounts,
    /// Events that carried `metrics.duration_ms`.
    pub timed: u64,
    /// Median duration (ms), from the latency histogram (within 19%).
    pub p50_ms: Option<f64>,
    /// 95th percentile duration (ms).
    pub p95_ms: Option<f64>,
    /// 99th percentile duration (ms).
    pub p99_ms: Option<f64>,
    /// Start of the last hour with an event (RFC 3339).
    pub last_seen: String,
    /// Outcome counts in that last hour: the current status.
    pub last_hour: OutcomeCounts,
}

/// Sign-in figures (actions ending in `login`, containing `mfa`, containing `lockout`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthMetrics {
    /// Successful sign-ins.
    pub successes: u64,
    /// Failed or denied sign-ins.
    pub failures: u64,
    /// Successful MFA verifications.
    pub mfa: u64,
    /// Account lockouts.
    pub lockouts: u64,
}

/// How long one dashboard query took on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryTime {
    /// Query name.
    pub name: String,
    /// Milliseconds.
    pub ms: f64,
}

/// The analytics dashboard's data over a period, from the rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Analytics {
    /// Period start (RFC 3339, rounded down to the hour).
    pub from: String,
    /// Period end (RFC 3339, rounded up to the hour).
    pub to: String,
    /// `hour` or `day`.
    pub bucket: String,
    /// Bucket starts (RFC 3339).
    pub buckets: Vec<String>,
    /// Events in the period.
    pub total: u64,
    /// Events by outcome.
    pub outcomes: OutcomeCounts,
    /// (failure + error) / total, 0 when there are none.
    pub failure_rate: f64,
    /// denied / total.
    pub denial_rate: f64,
    /// Events per bucket by category.
    pub by_category: Vec<Series>,
    /// Events per bucket by outcome.
    pub by_outcome: Vec<Series>,
    /// Most frequent actions.
    pub top_actions: Vec<ValueCount>,
    /// Most active actors.
    pub top_actors: Vec<ValueCount>,
    /// Sign-in figures.
    pub authentication: AuthMetrics,
    /// Authentication actions by outcome.
    pub auth_actions: Vec<ActionMetrics>,
    /// MCP actions (requests, connections…) by outcome.
    pub mcp_actions: Vec<ActionMetrics>,
    /// Notification actions by outcome.
    pub notification_actions: Vec<ActionMetrics>,
    /// Tools: invocations, outcomes, latency.
    pub tools: Vec<ResourceMetrics>,
    /// MCP servers.
    pub mcp_servers: Vec<ResourceMetrics>,
    /// Plugins.
    pub plugins: Vec<ResourceMetrics>,
    /// Notification channels.
    pub notification_channels: Vec<ResourceMetrics>,
    /// Time each query took.
    pub queries: Vec<QueryTime>,
}

/// What shows a check's evidence: typed, so each client presents it its
/// own way (the UI links the explorer or the integrity page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// What it shows.
    pub label: String,
    /// Where it is.
    pub about: EvidenceOf,
}

/// The kinds of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceOf {
    /// The events matching a search: `GET /api/audit`'s (and the
    /// explorer's) parameters, e.g. `category`, `action`, `range`.
    Events {
        /// Parameter name to value.
        filters: std::collections::BTreeMap<String, String>,
    },
    /// The verification runs and their reports.
    Verifications,
    /// The signed checkpoints and the public key that checks them.
    Checkpoints,
    /// The data keys and their rotation.
    Keys,
    /// The masking policy in force.
    MaskingPolicy,
    /// The masking policy's versions.
    MaskingPolicyHistory,
    /// The alert inbox.
    Alerts,
    /// The alert rules in force.
    AlertRules,
    /// The SIEM destinations and their health.
    Forwarding,
    /// Retention: rules, legal holds, runs and archives.
    Retention,
    /// The backups.
    Backups,
}

impl Evidence {
    /// Evidence of a kind.
    pub fn new(label: &str, about: EvidenceOf) -> Evidence {
        Evidence { label: label.into(), about }
    }

    /// The events matching `filters` (name, value pairs).
    pub fn events(label: &str, filters: &[(&str, &str)]) -> Evidence {
        let filters = filters.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Evidence::new(label, EvidenceOf::Events { filters })
    }
}

/// One fact about the system, computed when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceCheck {
    /// Stable id, e.g. `chain_verified`.
    pub id: String,
    /// What is checked.
    pub title: String,
    /// `pass`, `warn`, `fail`, `no_evidence` or `not_configured`.
    pub status: CheckStatus,
    /// What was found, with the figures.
    pub detail: String,
    /// Where to see the evidence.
    pub evidence: Vec<Evidence>,
}

/// A control of a framework and the checks that evidence it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceControl {
    /// Control id, e.g. `CC7.2`, `A.8.15`, `AU-9`.
    pub id: String,
    /// Its name.
    pub title: String,
    /// The worst status of its checks.
    pub status: CheckStatus,
    /// Ids of the checks (see [`ComplianceReport::checks`]).
    pub checks: Vec<String>,
}

/// A framework's logging-related controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceFramework {
    /// Short id, e.g. `soc2`.
    pub id: String,
    /// Name, e.g. `SOC 2`.
    pub name: String,
    /// Controls.
    pub controls: Vec<ComplianceControl>,
}

/// The compliance dashboard: checks computed now, mapped to controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceReport {
    /// When computed (RFC 3339).
    pub generated_at: String,
    /// Hours within which the chain must have been verified.
    pub verify_within_hours: u64,
    /// The checks.
    pub checks: Vec<ComplianceCheck>,
    /// Frameworks and their controls.
    pub frameworks: Vec<ComplianceFramework>,
}

/// A data key or the signing key, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    /// Key id.
    pub key_id: u32,
    /// `data` or `signing`.
    pub purpose: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// The data key new events are sealed with.
    pub current: bool,
}

/// Key status for the integrity page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyStatus {
    /// The checkpoint signer's public key (C2SP vkey).
    pub public_key: String,
    /// The data key in use.
    pub current_key_id: u32,
    /// Days since the current data key was created.
    pub current_key_age_days: f64,
    /// All keys, newest first.
    pub keys: Vec<KeyInfo>,
}

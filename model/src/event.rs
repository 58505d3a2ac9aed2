//! The audit event as accepted and stored, and its vocabulary.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Outcome, Severity};

/// Event categories.
pub const CATEGORIES: [&str; 15] = [
    "authentication",
    "authorization",
    "admin",
    "policy",
    "data_access",
    "configuration",
    "infrastructure",
    "network",
    "mcp",
    "tool",
    "notification",
    "plugin",
    "system",
    "security",
    "integrity",
];
/// Outcomes.
pub const OUTCOMES: [&str; 4] = Outcome::WORDS;
/// Severities, lowest first.
pub const SEVERITIES: [&str; 6] = Severity::WORDS;
/// Kinds of actor.
pub const ACTOR_KINDS: [&str; 4] = ["user", "service", "api_key", "system"];

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// Stable id (user id, service name…).
    pub id: String,
    /// user, service, api_key or system.
    pub kind: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The source system's session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resource {
    /// Its type, e.g. `document`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where the event came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    /// Sending application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// api, ui, cli, mcp, syslog…
    pub channel: String,
}

/// Links to other events and requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Correlation {
    /// Request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Parent event or span id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

/// Measurements (tool usage, performance, plugins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metrics {
    /// Duration in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// HTTP or tool status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Bytes transferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A validated audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Event id (UUIDv7 unless the client chose one: it is the idempotency key).
    pub id: Uuid,
    /// When it happened, µs since the epoch.
    pub occurred_at_us: i64,
    /// Category.
    pub category: String,
    /// Dotted verb, e.g. `user.login`.
    pub action: String,
    /// success, failure, denied or error.
    pub outcome: Outcome,
    /// Why, for failures and denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// debug … critical.
    pub severity: Severity,
    /// Who.
    pub actor: Actor,
    /// What.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Tenant or workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where from.
    pub source: Source,
    /// Links.
    #[serde(default)]
    pub correlation: Correlation,
    /// Measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Free context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

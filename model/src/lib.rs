//! Shared typed models: the audit event (docs/ARCHITECTURE.md §2) as accepted and
//! stored, and the shapes the API takes and returns. Plain serde, so the
//! browser (wasm32) and the server use the same types.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
pub const OUTCOMES: [&str; 4] = ["success", "failure", "denied", "error"];
/// Severities, lowest first.
pub const SEVERITIES: [&str; 6] = ["debug", "info", "notice", "warning", "error", "critical"];
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
    pub outcome: String,
    /// Why, for failures and denials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// debug … critical.
    pub severity: String,
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

// ---- Masking rules ----

/// What a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// E-mail addresses.
    Email,
    /// Phone numbers.
    Phone,
    /// Payment card numbers (Luhn).
    PaymentCard,
    /// IBANs (mod 97).
    Iban,
    /// US social security numbers.
    UsSsn,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// Values of `details` keys named like secrets.
    SecretKey,
}

impl Detector {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::PaymentCard => "payment_card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::IpAddress => "ip_address",
            Detector::SecretKey => "secret_key",
        }
    }
}

/// What a rule does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MaskAction {
    /// Replace with `[detector]`.
    Redact,
    /// Keep the last `keep_last` characters (e-mail: the domain).
    Partial {
        /// Characters kept at the end.
        keep_last: u8,
    },
    /// Replace with a keyed pseudonym `pseu:<24 hex>`.
    Pseudonymize,
}

/// One masking rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Detector.
    pub detector: Detector,
    /// Action.
    pub action: MaskAction,
    /// Keep the original value in the encrypted payload, for unmasking.
    #[serde(default)]
    pub keep_original: bool,
    /// Applied.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A masking policy: one version of the rule list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaskingPolicy {
    /// Version (0: the built-in defaults, never changed by anyone).
    pub version: u64,
    /// The rules.
    pub rules: Vec<MaskRule>,
    /// When it was saved (RFC 3339); None for the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Who saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

// ---- API shapes ----

/// What the ledger gave one ingested event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestReceipt {
    /// Ledger position.
    pub seq: u64,
    /// Event id.
    pub id: Uuid,
    /// Commit time (RFC 3339, µs).
    pub recorded_at: String,
    /// True when the id was already committed: this is the stored result.
    pub duplicate: bool,
    /// True when the id was already committed for a different event (or by
    /// another submitter: ids are scoped per submitter, and such a receipt
    /// has seq 0 and tells nothing of the other event): the new one was not
    /// stored (the answer is then 409).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conflict: bool,
}

/// An event as read back: header and decrypted (masked) payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// Ledger position.
    pub seq: u64,
    /// Event id.
    pub id: Uuid,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    /// When the ledger committed it (RFC 3339).
    pub recorded_at: String,
    /// Category.
    pub category: String,
    /// Action.
    pub action: String,
    /// Outcome.
    pub outcome: String,
    /// Why (failures, denials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Severity.
    pub severity: String,
    /// Who.
    pub actor: Actor,
    /// What.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where from.
    pub source: Source,
    /// Links.
    pub correlation: Correlation,
    /// Measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Context (masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// The original values of masked fields (field path -> value): only for
    /// callers allowed to unmask who asked to, and only what the masking
    /// rules kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmasked: Option<std::collections::BTreeMap<String, String>>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchPage {
    /// The events, in the requested order.
    pub items: Vec<EventView>,
    /// Pass as `cursor` for the next page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// With `q`: entries examined for this page (at most the scan bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned: Option<u64>,
}

/// A count in a time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BucketCount {
    /// Bucket start (RFC 3339).
    pub start: String,
    /// Events that occurred in it.
    pub count: u64,
}

/// A value and its count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValueCount {
    /// The value.
    pub value: String,
    /// Its count.
    pub count: u64,
}

/// Statistics over a time range, from the rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Range start (RFC 3339, inclusive, rounded down to the bucket).
    pub from: String,
    /// Range end (RFC 3339, exclusive).
    pub to: String,
    /// minute, hour or day.
    pub bucket: String,
    /// Total events in the range.
    pub total: u64,
    /// Counts per bucket (empty buckets included).
    pub series: Vec<BucketCount>,
    /// Top values per dimension (action, actor, outcome, category…).
    pub top: std::collections::BTreeMap<String, Vec<ValueCount>>,
}

/// Export formats.
pub const EXPORT_FORMATS: [&str; 5] = ["csv", "json", "ndjson", "xlsx", "pdf"];

/// The checkpoint an export was taken against: every exported row is in
/// the tree of `size` leaves whose root the note signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestCheckpoint {
    /// Tree size (entries covered).
    pub size: u64,
    /// Merkle root (hex).
    pub root: String,
    /// The signed checkpoint note.
    pub note: String,
}

/// What an export contained and how to check it. The manifest file Custos
/// hands out is this JSON signed as a note by the ledger's key, so anyone
/// with the public key can check it offline (`custos verify-export`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportManifest {
    /// Manifest format version (1).
    pub manifest_version: u32,
    /// The export's id.
    pub export_id: Uuid,
    /// csv, json, ndjson, xlsx or pdf.
    pub format: String,
    /// The file name it was offered under.
    pub file_name: String,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Events exported.
    pub rows: u64,
    /// Lowest and highest seq exported (absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// Highest seq exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// SHA-256 over the exported entries' leaf hashes, in file order (hex):
    /// ties the rows to the sealed ledger.
    pub entries_sha256: String,
    /// The search filters, as query parameters.
    pub filters: Vec<(String, String)>,
    /// When it was generated (RFC 3339).
    pub generated_at: String,
    /// Who generated it.
    pub generated_by: String,
    /// The ledger's origin (its key name).
    pub origin: String,
    /// The checkpoint every exported row is covered by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ManifestCheckpoint>,
}

/// A background export (the UI's way: progress, then download).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportJob {
    /// The export's id (also the manifest's).
    pub id: Uuid,
    /// The format.
    pub format: String,
    /// running, done or failed.
    pub state: String,
    /// Rows written so far.
    pub rows: u64,
    /// Rows expected (absent when unknown, e.g. with free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Bytes written so far.
    pub bytes: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file name, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The manifest, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ExportManifest>,
}

/// Matching events per time bucket (the explorer's histogram).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Histogram {
    /// Range start (RFC 3339, inclusive).
    pub from: String,
    /// Range end (RFC 3339, exclusive).
    pub to: String,
    /// Bucket width in seconds.
    pub bucket_seconds: u64,
    /// Matching events in the range.
    pub total: u64,
    /// Counts per bucket, empty buckets included.
    pub series: Vec<BucketCount>,
}

/// A saved explorer search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SavedSearch {
    /// Its id.
    pub id: String,
    /// Its name (unique per owner).
    pub name: String,
    /// The explorer's query string (`action=user.*&range=24h`).
    pub query: String,
    /// Visible to everyone who may search.
    pub shared: bool,
    /// Who saved it.
    pub owner: String,
    /// Whether the caller saved it (and may delete it).
    pub mine: bool,
    /// When (RFC 3339).
    pub created_at: String,
}

/// A client error: what was wrong, per field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldProblem {
    /// Where: `occurred_at`, `[3].actor.id`, `line 7`, `limit`.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The body of every 4xx/5xx from `/api`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Short machine-readable code (`invalid_request`, `forbidden`…).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Per-field problems, when the request had any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
}

/// An event as a client sends it to `POST /api/audit/events` (the wire
/// form; the server validates it field by field and reports every problem
/// with its path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// A UUID chosen by the client: the idempotency key (a retry with the
    /// same id returns the stored receipt). Default: a new UUIDv7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it happened, RFC 3339 (`2026-11-26T14:03:00Z`); at most 5
    /// minutes ahead of the server's clock and 10 years back.
    pub occurred_at: String,
    /// authentication, authorization, admin, policy, data_access,
    /// configuration, infrastructure, network, mcp, tool, notification,
    /// plugin, system, security or integrity.
    pub category: String,
    /// A dotted verb of letters, digits, `_` and `-`: `user.login`,
    /// `mcp.request` (at most 128 characters).
    pub action: String,
    /// success, failure, denied or error.
    pub outcome: String,
    /// Why (failures, denials); at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// debug, info (default), notice, warning, error or critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Who: `id` (required, at most 256) and `kind` (user, service, api_key,
    /// system); optional name, ip (an IPv4/IPv6 address), user_agent,
    /// session_id.
    pub actor: Actor,
    /// What: `type` (required), optional id and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// Tenant or workspace (at most 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where from: application, host, channel (default `api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// request_id, trace_id, parent_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Correlation>,
    /// duration_ms, status_code, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Free JSON context: at most 16 KiB serialised and 8 levels deep.
    /// Masked before it is stored (see the masking policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

// --- dashboards ------------------------------------------------------------

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

/// Where the evidence for a check is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceLink {
    /// What it shows.
    pub label: String,
    /// A page of this server (explorer query, integrity page) or an API URL.
    pub href: String,
}

/// One fact about the system, computed when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceCheck {
    /// Stable id, e.g. `chain_verified`.
    pub id: String,
    /// What is checked.
    pub title: String,
    /// `pass`, `warn`, `fail` or `not_configured`.
    pub status: String,
    /// What was found, with the figures.
    pub detail: String,
    /// Where to see the evidence.
    pub evidence: Vec<EvidenceLink>,
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
    pub status: String,
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

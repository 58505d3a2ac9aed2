//! What the API takes and returns: receipts, views, pages, statistics,
//! exports, saved searches, errors.

use serde::{Deserialize, Serialize};

use crate::{Actor, Correlation, JobState, Metrics, Resource, Source};
use uuid::Uuid;

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
    pub state: JobState,
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

/// The stable code of an error: one per kind of failure, each with its
/// HTTP status. The wire form is the snake_case name (`invalid_request`);
/// the README lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a parameter or field is wrong; `fields` names each one.
    InvalidRequest,
    /// 400: the body is not valid JSON (or NDJSON).
    MalformedBody,
    /// 401: neither signed in nor an API key.
    Unauthenticated,
    /// 401: the API key is unknown, revoked or expired.
    InvalidApiKey,
    /// 403: the caller lacks the permission this needs.
    Forbidden,
    /// 403: the signed-in user must first change the password or enrol MFA.
    SetupRequired,
    /// 404: no such thing (event, job, export, route).
    NotFound,
    /// 404: the export is still being written.
    NotReady,
    /// 405: the path is served, not with this method.
    MethodNotAllowed,
    /// 409: the state changed first (a concurrent change, a reused id).
    Conflict,
    /// 410: it existed and has expired.
    Gone,
    /// 413: the body (or one of its texts) is larger than allowed.
    PayloadTooLarge,
    /// 413: more events in one request than allowed.
    TooManyEvents,
    /// 415: the Content-Type is not accepted.
    UnsupportedMediaType,
    /// 422: events failed validation; `fields` names each problem.
    InvalidEvents,
    /// 429: too much at once; `Retry-After` says when to try again.
    TooManyRequests,
    /// 500: the server failed; quote `operation_id`.
    InternalError,
    /// 500: an export could not be written (disk, format); the ledger is fine.
    ExportFailed,
    /// 503: the ledger cannot record or read right now; nothing was changed.
    LedgerUnavailable,
    /// 503: the server is busy (password hashing slots); try again.
    Busy,
}

impl ErrorCode {
    /// Every code, in the README's order.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::InvalidRequest,
        ErrorCode::MalformedBody,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidApiKey,
        ErrorCode::Forbidden,
        ErrorCode::SetupRequired,
        ErrorCode::NotFound,
        ErrorCode::NotReady,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::Gone,
        ErrorCode::PayloadTooLarge,
        ErrorCode::TooManyEvents,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidEvents,
        ErrorCode::TooManyRequests,
        ErrorCode::InternalError,
        ErrorCode::ExportFailed,
        ErrorCode::LedgerUnavailable,
        ErrorCode::Busy,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::SetupRequired => "setup_required",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyEvents => "too_many_events",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidEvents => "invalid_events",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::ExportFailed => "export_failed",
            ErrorCode::LedgerUnavailable => "ledger_unavailable",
            ErrorCode::Busy => "busy",
        }
    }

    /// Its HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::MalformedBody => 400,
            ErrorCode::Unauthenticated | ErrorCode::InvalidApiKey => 401,
            ErrorCode::Forbidden | ErrorCode::SetupRequired => 403,
            ErrorCode::NotFound | ErrorCode::NotReady => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge | ErrorCode::TooManyEvents => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidEvents => 422,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::InternalError | ErrorCode::ExportFailed => 500,
            ErrorCode::LedgerUnavailable | ErrorCode::Busy => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error, 4xx and 5xx alike, from `/api`, the access
/// layer and the UI's server functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// Per-field problems, when the request had any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldProblem>,
    /// For a 5xx: quote it to an operator; the cause is in the server's log
    /// under this id (never in the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
}

impl std::fmt::Display for ErrorBody {
    /// The message, each field problem, and the operation id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fields.is_empty() {
            f.write_str(&self.message)?;
        } else {
            let list: Vec<String> = self.fields.iter().map(|p| format!("{}: {}", p.path, p.reason)).collect();
            f.write_str(&list.join("; "))?;
        }
        if let Some(op) = &self.operation_id {
            write!(f, " (operation {op})")?;
        }
        Ok(())
    }
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
    pub outcome: crate::Outcome,
    /// Why (failures, denials); at most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// debug, info (default), notice, warning, error or critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<crate::Severity>,
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

#[cfg(test)]
mod error_code_tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_distinct_match_their_wire_form_and_are_in_the_readme() {
        let readme = include_str!("../../README.md");
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
            assert!(ErrorCode::ALL[i + 1..].iter().all(|o| o.as_str() != c.as_str()), "{c} twice");
            assert!((400..600).contains(&c.status()));
            let row = format!("| `{}` | {} |", c.as_str(), c.status());
            assert!(readme.contains(&row), "README lacks the row `{row}`");
        }
    }
}

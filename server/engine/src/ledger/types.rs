//! Value types of the ledger core.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The filterable fields of an event, stored in clear (already masked).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeaderFields {
    /// Event category, e.g. `authentication`.
    pub category: String,
    /// Dotted verb, e.g. `user.login`.
    pub action: String,
    /// success, failure, denied or error.
    pub outcome: String,
    /// info … critical.
    pub severity: String,
    /// Who acted (possibly pseudonymised).
    pub actor_id: Option<String>,
    /// user, service, api_key or system.
    pub actor_kind: Option<String>,
    /// What was acted on: its type.
    pub resource_type: Option<String>,
    /// What was acted on: its id.
    pub resource_id: Option<String>,
    /// Tenant or workspace.
    pub tenant: Option<String>,
    /// api, ui, cli, mcp, syslog…
    pub channel: Option<String>,
    /// The application that sent the event.
    pub source_app: Option<String>,
}

/// The complete clear header of a committed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    /// Ledger position, 1-based and gapless.
    pub seq: u64,
    /// Event id (UUIDv7 or the client's idempotency key).
    pub event_id: Uuid,
    /// When the event happened at its source, µs since the Unix epoch.
    pub occurred_at_us: i64,
    /// When the ledger committed it, µs since the Unix epoch.
    pub recorded_at_us: i64,
    /// The filterable fields.
    pub fields: HeaderFields,
}

/// An entry as stored: header, sealed payload and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Clear header.
    pub header: EntryHeader,
    /// Data key that sealed the payload.
    pub key_id: u32,
    /// CBC initialisation vector.
    pub iv: [u8; 16],
    /// AES-256-CBC ciphertext of the payload.
    pub ciphertext: Vec<u8>,
    /// HMAC-SHA256 over the MAC input (see `encoding`).
    pub mac: [u8; 32],
    /// RFC 6962 leaf hash of the record.
    pub leaf_hash: Hash,
    /// Chain value after this entry.
    pub chain_hash: Hash,
}

//! SIEM forwarding: each destination's health, a test, a preview, a replay.

use serde::{Deserialize, Serialize};

/// One destination as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DestinationHealth {
    /// Its id in the forwarding policy.
    pub id: String,
    /// For people.
    pub name: String,
    /// `syslog`, `splunk_hec` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `json`, `cef`, `leef`, `ocsf` or `ecs`.
    pub format: String,
    /// Where it sends (host:port and transport, or the URL), without secrets.
    pub address: String,
    /// Turned on in the policy.
    pub enabled: bool,
    /// Paused by a person.
    pub paused: bool,
    /// `ok`, `failing`, `paused`, `off`, `starting` (not yet run).
    pub state: String,
    /// The last ledger position delivered (none before the first run).
    pub cursor: Option<u64>,
    /// The ledger's last position.
    pub head: u64,
    /// Ledger entries after the cursor (an upper bound with a filter).
    pub lag_events: u64,
    /// How long the oldest entry not delivered has waited (seconds).
    pub lag_seconds: f64,
    /// Events delivered since the destination was created.
    pub delivered: u64,
    /// UDP messages cut at the size cap.
    pub truncated: u64,
    /// The last signed checkpoint sent (its tree size).
    pub checkpoint_size: u64,
    /// Failed tries in a row.
    pub failures: u32,
    /// Since when it has been failing (RFC 3339), while it is.
    pub failing_since: Option<String>,
    /// Signed checkpoints are sent too.
    pub checkpoints: bool,
    /// When it last delivered (RFC 3339).
    pub last_success_at: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When (RFC 3339).
    pub last_error_at: Option<String>,
    /// The next try after a failure (RFC 3339).
    pub next_try_at: Option<String>,
    /// A replay asked for and not yet begun: events after this position.
    pub replay_pending: Option<u64>,
    /// The replica forwarding it now.
    pub holder: Option<String>,
}

/// Every destination of the forwarding policy in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardingStatus {
    /// The policy version in force.
    pub version: u64,
    /// Its destinations, in its order.
    pub destinations: Vec<DestinationHealth>,
}

/// How a test went: a real event recorded for it, sent at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardTest {
    /// Delivered (accepted by the receiver, or written on a live stream).
    pub delivered: bool,
    /// The test event's ledger position (it is also forwarded in order later).
    pub seq: u64,
    /// The HTTP status, if one came.
    pub response_code: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A destination's format on a real recent event, as it would be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardPreview {
    /// The event shown (the newest the filter takes), if there is one.
    pub seq: Option<u64>,
    /// The record in the format (JSON pretty-printed).
    pub record: String,
    /// What goes on the wire (a syslog frame, a HEC event, a webhook body).
    pub wire: String,
}

/// A replay: forward again from a ledger position or a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayRequest {
    /// The first ledger position sent again.
    #[serde(default)]
    pub from_seq: Option<u64>,
    /// Or: the first entry committed at or after this time (RFC 3339).
    #[serde(default)]
    pub from_time: Option<String>,
    /// Why (recorded).
    pub reason: String,
}

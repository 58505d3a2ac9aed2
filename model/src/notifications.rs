//! Notifications: the log of every delivery attempt, and a channel's test.

use serde::{Deserialize, Serialize};

/// One try to deliver one message over one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationAttempt {
    /// Its position in the log (newest highest).
    pub id: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The message (its outbox entry); the same on every retry.
    pub message_id: String,
    /// The alert it is about; none for a channel's test.
    pub alert_id: Option<String>,
    /// The rule that opened the alert.
    pub rule_id: Option<String>,
    /// The channel.
    pub channel_id: String,
    /// `email`, `webhook`, `slack`, `teams`, `mattermost`.
    pub channel_type: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// `delivered`, `failed` (to be retried) or `dead` (given up).
    pub status: String,
    /// The HTTP status or SMTP reply code, if one came.
    pub response_code: Option<u16>,
    /// How long the try took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A page of the log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationLog {
    /// This page.
    pub items: Vec<NotificationAttempt>,
    /// The next page's cursor, if there is one.
    pub next_cursor: Option<String>,
    /// Messages waiting for a (re)try now.
    pub pending: u64,
    /// Messages given up on.
    pub dead: u64,
}

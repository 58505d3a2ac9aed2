//! Times as the API writes and reads them: RFC 3339 with microseconds, UTC.
//! (Stored times are µs since the Unix epoch.)

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 with microseconds, UTC.
pub fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| us.to_string())
}

/// Parses an RFC 3339 date-time to µs since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

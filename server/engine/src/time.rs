//! Times as Custos stores and writes them: µs since the Unix epoch, UTC,
//! written as RFC 3339. [`Timestamp`] is the one formatter and parser;
//! [`rfc3339`] and [`parse_rfc3339`] are its shorthands for raw µs.

use chrono::{DateTime, SecondsFormat, Utc};

pub use custos_model::time::{DAY_US, HOUR_US, MINUTE_US, SECOND_US};

/// A point in time: µs since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The time `us` µs after the epoch.
    pub const fn from_micros(us: i64) -> Timestamp {
        Timestamp(us)
    }

    /// µs since the epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time (any offset).
    pub fn parse(s: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| Timestamp(t.timestamp_micros()))
    }

    /// RFC 3339 with microseconds, UTC (`2026-12-01T17:56:04.123456Z`): what
    /// the API, the exports and the ledger's views write. Out of chrono's
    /// range (never for a stored time), the µs as a number.
    pub fn rfc3339(self) -> String {
        self.format(SecondsFormat::Micros)
    }

    /// RFC 3339 to the second, UTC, for people (`2026-12-01T17:56:04Z`).
    pub fn rfc3339_seconds(self) -> String {
        self.format(SecondsFormat::Secs)
    }

    fn format(self, precision: SecondsFormat) -> String {
        DateTime::<Utc>::from_timestamp_micros(self.0)
            .map(|t| t.to_rfc3339_opts(precision, true))
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// RFC 3339 with microseconds, UTC, of µs since the epoch.
pub fn rfc3339(us: i64) -> String {
    Timestamp(us).rfc3339()
}

/// Parses an RFC 3339 date-time to µs since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    Timestamp::parse(s).map(Timestamp::micros)
}

/// Exponential backoff: the wait after `failures` failures in a row,
/// `base_us` after the first, doubling, at most `cap_us`.
pub fn backoff_us(base_us: i64, failures: u32, cap_us: i64) -> i64 {
    base_us.saturating_mul(1i64 << failures.saturating_sub(1).min(30)).min(cap_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_format_round_trips() {
        let t = Timestamp::from_micros(1_764_611_764_123_456);
        assert_eq!(t.rfc3339(), "2025-12-01T17:56:04.123456Z");
        assert_eq!(t.rfc3339_seconds(), "2025-12-01T17:56:04Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(parse_rfc3339("2025-12-01T18:56:04.123456+01:00"), Some(t.micros()), "any offset");
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(DAY_US, 86_400_000_000);
    }
}

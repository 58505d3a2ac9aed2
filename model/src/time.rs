//! Time as Custos stores it: microseconds since the Unix epoch (UTC).
//! The named spans replace the literals (`86_400_000_000`) that code used
//! to repeat; formatting and parsing live with the engine's `Timestamp`.

/// One second in µs.
pub const SECOND_US: i64 = 1_000_000;
/// One minute in µs.
pub const MINUTE_US: i64 = 60 * SECOND_US;
/// One hour in µs.
pub const HOUR_US: i64 = 60 * MINUTE_US;
/// One day in µs.
pub const DAY_US: i64 = 24 * HOUR_US;

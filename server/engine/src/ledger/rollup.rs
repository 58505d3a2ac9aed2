//! Rollups: event counts per minute and per dimension value, so statistics
//! never scan the ledger. They never disagree with it: on PostgreSQL each
//! commit writes its counts, in its transaction, as one row of
//! `audit_rollup_deltas` that any replica folds into `audit_rollups` a few
//! times a second ([`fold_pg`]), and readers read the view
//! `audit_rollups_current` (the table and the waiting rows); on SQLite the
//! writer holds them for up to a second and writes them exactly (see
//! [`super::rollup_buffer`]). A failed commit counts nothing.
//!
//! `bucket` is in minutes since the Unix epoch of `occurred_at`: the minute
//! itself for the `total` dimension (value ''), which draws the time series;
//! the whole hour for the ranked dimensions (`category`, `action`,
//! `outcome`, `severity`, `actor`, `channel`, `tenant`), which keeps their
//! rows (and the upserts that write them) 60 times fewer when events are spread
//! in time. Three more dimensions feed the dashboards, also per hour:
//! `action_outcome` (value `category/outcome/action`), `resource_outcome`
//! (value `category/outcome/resource id`, for the categories and resource
//! types in [`RESOURCE_KINDS`]: tools, MCP servers, plugins and notification
//! channels, whose ids are few) and `latency` (value `category/bucket/resource id`: a
//! logarithmic histogram of `metrics.duration_ms` for those categories, see
//! [`latency_bucket`]). The free-form part is always last, so a value splits
//! on its first two `/`. The dashboards' dimensions ([`DAILY`]: actions by
//! outcome, resources, latency) also have a daily twin, `<dimension>:day` (bucket: the day's first minute), so that a
//! period of weeks reads whole days from it and only the partial days at
//! its edges from the hourly rows (see [`period_filter`]); the others have
//! few values and read hourly rows (a month of categories is 10,000 rows). Rollups are derived data: they
//! are not part of the sealed record and a purge leaves them in place.
//!
//! Readers ask for the counts to be settled first
//! ([`super::Ledger::settle_rollups`]: SQLite's writer writes what it
//! holds; nothing to do on PostgreSQL, where the view counts the waiting
//! rows).

use crate::time::MINUTE_US;
use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Value};

use super::error::LedgerError;
use super::types::StoredEntry;
use crate::storage::stmt_for;

/// The dimensions counted.
pub const DIMENSIONS: [&str; 11] = [
    "total",
    "category",
    "action",
    "outcome",
    "severity",
    "actor",
    "channel",
    "tenant",
    "action_outcome",
    "resource_outcome",
    "latency",
];

/// (category, resource type) of the resources counted by id, with their
/// latency: tools, MCP servers, plugins, notification channels. Other
/// resources (documents, users, records…) have unbounded ids and are not
/// counted: each id would be a row per hour.
pub const RESOURCE_KINDS: [(&str, &str); 4] =
    [("tool", "tool"), ("mcp", "mcp_server"), ("plugin", "plugin"), ("notification", "channel")];

/// Latency histogram buckets per doubling: bucket `i` holds durations in
/// `[2^(i/4), 2^((i+1)/4))` ms, so a percentile read from it is within 19%.
pub const LATENCY_STEPS: f64 = 4.0;
/// The last latency bucket (about 2^24 ms = 4.7 hours and beyond).
pub const LATENCY_MAX_BUCKET: i64 = 96;

/// The latency bucket of a duration in milliseconds (under 1 ms: bucket 0).
pub fn latency_bucket(ms: f64) -> i64 {
    if !ms.is_finite() || ms <= 1.0 {
        return 0;
    }
    ((ms.log2() * LATENCY_STEPS).floor() as i64).clamp(0, LATENCY_MAX_BUCKET)
}

/// The duration a latency bucket stands for: its geometric middle (ms).
pub fn latency_value(bucket: i64) -> f64 {
    if bucket <= 0 {
        return 1.0;
    }
    ((bucket as f64 + 0.5) / LATENCY_STEPS).exp2()
}

/// Microseconds per bucket.
pub const BUCKET_US: i64 = MINUTE_US;

/// (dimension, value, bucket) -> count.
pub type Counts = HashMap<(&'static str, String, i64), i64>;

/// The dimensions with a daily twin (each twin is one more key per value
/// and batch): the dashboards' own. The others read hourly rows (a
/// month of actors is ~100,000 rows for 140 actors).
pub const DAILY: [&str; 3] = ["action_outcome", "resource_outcome", "latency"];

/// The daily twin of a dimension in [`DAILY`].
pub fn day_of(dim: &str) -> &'static str {
    match dim {
        "action_outcome" => "action_outcome:day",
        "resource_outcome" => "resource_outcome:day",
        "latency" => "latency:day",
        _ => "unknown:day",
    }
}

/// Rows of a ranked dimension covering the minutes `[lo, hi)` (whole
/// hours): whole days from the daily twin, the partial days at the edges
/// from the hourly rows. A SQL condition and its parameters.
pub fn period_filter(dim: &str, lo: i64, hi: i64) -> (String, Vec<Value>) {
    let d0 = lo.div_euclid(1440) * 1440 + if lo.rem_euclid(1440) == 0 { 0 } else { 1440 };
    let d1 = hi.div_euclid(1440) * 1440;
    let b = |v: i64| Value::BigInt(Some(v));
    if d0 >= d1 || !DAILY.contains(&dim) {
        return ("(dimension = ? AND bucket >= ? AND bucket < ?)".into(), vec![dim.into(), b(lo), b(hi)]);
    }
    (
        "((dimension = ? AND bucket >= ? AND bucket < ?) OR (dimension = ? AND bucket >= ? AND bucket < ?) \
         OR (dimension = ? AND bucket >= ? AND bucket < ?))"
            .into(),
        vec![day_of(dim).into(), b(d0), b(d1), dim.into(), b(lo), b(d0), dim.into(), b(d1), b(hi)],
    )
}

/// Counts a batch of entries; `durations[i]` is entry `i`'s
/// `metrics.duration_ms`, if it had one.
pub fn aggregate(entries: &[StoredEntry], durations: &[Option<f64>]) -> Counts {
    let mut out = Counts::new();
    for (i, e) in entries.iter().enumerate() {
        let minute = e.header.occurred_at_us.div_euclid(BUCKET_US);
        let hour = minute.div_euclid(60) * 60;
        let day = minute.div_euclid(1440) * 1440;
        let f = &e.header.fields;
        let mut add = |dim: &'static str, value: &str| {
            if dim == "total" {
                *out.entry((dim, value.to_owned(), minute)).or_insert(0) += 1;
                return;
            }
            *out.entry((dim, value.to_owned(), hour)).or_insert(0) += 1;
            if DAILY.contains(&dim) {
                *out.entry((day_of(dim), value.to_owned(), day)).or_insert(0) += 1;
            }
        };
        add("total", "");
        add("category", &f.category);
        add("action", &f.action);
        add("outcome", &f.outcome);
        add("severity", &f.severity);
        if let Some(v) = &f.actor_id {
            add("actor", v);
        }
        if let Some(v) = &f.channel {
            add("channel", v);
        }
        if let Some(v) = &f.tenant {
            add("tenant", v);
        }
        add("action_outcome", &format!("{}/{}/{}", f.category, f.outcome, f.action));
        if RESOURCE_KINDS.iter().any(|(c, t)| f.category == *c && f.resource_type.as_deref() == Some(*t)) {
            let id = f.resource_id.as_deref().unwrap_or("");
            add("resource_outcome", &format!("{}/{}/{id}", f.category, f.outcome));
            if let Some(ms) = durations.get(i).copied().flatten() {
                add("latency", &format!("{}/{}/{id}", f.category, latency_bucket(ms)));
            }
        }
    }
    out
}

pub(crate) const UPSERT: &str = "INSERT INTO audit_rollups (dimension, value, bucket, count) VALUES (?, ?, ?, ?) \
    ON CONFLICT (dimension, value, bucket) DO UPDATE SET count = audit_rollups.count + excluded.count";

/// Adds counts on a direct SQLite connection (in its transaction). On
/// SQLite the writer holds its counts for about a second before writing
/// them (see [`super::rollup_buffer`]).
pub fn write_counts_direct(conn: &rusqlite::Connection, counts: &Counts) -> Result<(), LedgerError> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(UPSERT)?;
    for ((dim, value, bucket), count) in counts {
        stmt.execute(rusqlite::params![dim, value, bucket, count])?;
    }
    Ok(())
}

/// On PostgreSQL, in `conn`'s transaction: takes the folds' lock (held
/// until the transaction ends) and moves the commits' counts waiting in
/// `audit_rollup_deltas` into `audit_rollups`. `all`: every row, waiting
/// for the lock (a removal, shutdown); otherwise the oldest 1,000 rows, and
/// nothing if another fold or a removal holds the lock (the background
/// fold: the next tick, or that other fold, takes them). Returns how many
/// keys were added to.
pub async fn fold_pg(conn: &impl ConnectionTrait, all: bool) -> Result<u64, LedgerError> {
    use super::pg_direct::{FOLD_ALL, FOLD_LOCK, FOLD_LOCK_TRY, FOLD_SLICE};
    if all {
        conn.execute_unprepared(FOLD_LOCK).await?;
        return Ok(conn.execute_unprepared(FOLD_ALL).await?.rows_affected());
    }
    let stmt = sea_orm::Statement::from_string(conn.get_database_backend(), FOLD_LOCK_TRY.to_owned());
    let got = match conn.query_one_raw(stmt).await? {
        Some(row) => row.try_get_by_index::<bool>(0)?,
        None => false,
    };
    if !got {
        return Ok(0);
    }
    Ok(conn.execute_unprepared(FOLD_SLICE).await?.rows_affected())
}

/// An entry's `metrics.duration_ms`, read from its sealed payload (for a
/// removal's subtraction, or counting the entries a stopped writer left
/// uncounted). `None` without the key or the
/// field.
pub fn duration_of(keys: &super::keyring::Keyring, e: &StoredEntry) -> Option<f64> {
    let key = keys.get(e.key_id)?;
    let plain = key.open(&super::encoding::header_bytes(&e.header), &e.iv, &e.ciphertext, &e.mac).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&plain).ok()?;
    v.get("metrics")?.get("duration_ms")?.as_f64()
}

/// Takes removed entries out of the counts (in the removal's transaction),
/// deleting the rows that reach zero: the dashboards then count what the
/// ledger holds, and an erased actor's name leaves the actor counts too.
pub async fn subtract_orm(
    conn: &impl ConnectionTrait,
    entries: &[StoredEntry],
    durations: &[Option<f64>],
) -> Result<(), LedgerError> {
    let b = conn.get_database_backend();
    let counts: Vec<_> = aggregate(entries, durations).into_iter().collect();
    for chunk in counts.chunks(500) {
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for ((dim, value, bucket), count) in chunk {
            values.extend([
                Value::from(dim.to_string()),
                Value::from(value.clone()),
                Value::BigInt(Some(*bucket)),
                Value::BigInt(Some(-*count)),
            ]);
        }
        let sql = format!(
            "INSERT INTO audit_rollups (dimension, value, bucket, count) VALUES {} \
             ON CONFLICT (dimension, value, bucket) DO UPDATE SET count = audit_rollups.count + excluded.count",
            vec!["(?,?,?,?)"; chunk.len()].join(",")
        );
        conn.execute_raw(stmt_for(b, &sql, values)).await?;
        let mut keys = Vec::with_capacity(chunk.len() * 3);
        for ((dim, value, bucket), _) in chunk {
            keys.extend([Value::from(dim.to_string()), Value::from(value.clone()), Value::BigInt(Some(*bucket))]);
        }
        let sql = format!(
            "DELETE FROM audit_rollups WHERE count <= 0 AND ({})",
            vec!["(dimension = ? AND value = ? AND bucket = ?)"; chunk.len()].join(" OR ")
        );
        conn.execute_raw(stmt_for(b, &sql, keys)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_whole_days_from_the_daily_rows() {
        // Within one day: hourly rows only.
        let (sql, v) = period_filter("latency", 600, 780);
        assert_eq!(sql.matches("dimension = ?").count(), 1);
        assert_eq!(v.len(), 3);
        // Few values: hourly rows only.
        let (sql, _) = period_filter("category", 0, 30 * 1440);
        assert_eq!(sql.matches("dimension = ?").count(), 1);
        // 2 days and 2 partial days around them.
        let (sql, v) = period_filter("latency", 1440 - 120, 3 * 1440 + 60);
        assert_eq!(sql.matches("dimension = ?").count(), 3);
        let ints: Vec<_> =
            v.iter().filter_map(|x| if let Value::BigInt(Some(i)) = x { Some(*i) } else { None }).collect();
        assert_eq!(ints, vec![1440, 3 * 1440, 1320, 1440, 3 * 1440, 3 * 1440 + 60]);
        assert_eq!(v[0], Value::from("latency:day"));
        for d in DAILY {
            assert_eq!(day_of(d), format!("{d}:day"));
        }
    }

    #[test]
    fn latency_buckets_are_logarithmic_and_bounded() {
        assert_eq!(latency_bucket(0.0), 0);
        assert_eq!(latency_bucket(-5.0), 0);
        assert_eq!(latency_bucket(f64::NAN), 0);
        assert_eq!(latency_bucket(2.0), 4);
        assert_eq!(latency_bucket(1024.0), 40);
        assert_eq!(latency_bucket(1e12), LATENCY_MAX_BUCKET);
        // The middle of a bucket is within 19% of anything in it.
        for ms in [1.5, 7.0, 42.0, 180.0, 999.0, 12_345.0] {
            let v = latency_value(latency_bucket(ms));
            assert!((v / ms - 1.0).abs() < 0.19, "{ms} -> {v}");
        }
    }
}

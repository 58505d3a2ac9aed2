//! Rollups: event counts per minute and per dimension value, written in the
//! same transaction as the entries they count, so statistics never scan the
//! ledger and never disagree with it (a failed commit counts nothing).
//!
//! `bucket` is in minutes since the Unix epoch of `occurred_at`: the minute
//! itself for the `total` dimension (value ''), which draws the time series;
//! the whole hour for the ranked dimensions (`category`, `action`,
//! `outcome`, `severity`, `actor`, `channel`, `tenant`), which keeps their
//! rows (and the commit's upserts) 60 times fewer when events are spread
//! in time. Rollups are derived data: they
//! are not part of the sealed record and a purge leaves them in place.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Value};

use super::error::LedgerError;
use super::types::StoredEntry;
use crate::storage::stmt_for;

/// The dimensions counted.
pub const DIMENSIONS: [&str; 8] = ["total", "category", "action", "outcome", "severity", "actor", "channel", "tenant"];

/// Microseconds per bucket.
pub const BUCKET_US: i64 = 60_000_000;

/// (dimension, value, bucket) -> count.
pub type Counts = HashMap<(&'static str, String, i64), i64>;

/// Counts a batch of entries.
pub fn aggregate(entries: &[StoredEntry]) -> Counts {
    let mut out = Counts::new();
    for e in entries {
        let minute = e.header.occurred_at_us.div_euclid(BUCKET_US);
        let hour = minute.div_euclid(60) * 60;
        let f = &e.header.fields;
        let mut add = |dim: &'static str, value: &str| {
            let bucket = if dim == "total" { minute } else { hour };
            *out.entry((dim, value.to_owned(), bucket)).or_insert(0) += 1;
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
    }
    out
}

const UPSERT: &str = "INSERT INTO audit_rollups (dimension, value, bucket, count) VALUES (?, ?, ?, ?) \
    ON CONFLICT (dimension, value, bucket) DO UPDATE SET count = audit_rollups.count + excluded.count";

/// Adds a batch's counts on a direct SQLite connection (in its transaction).
pub fn write_direct(conn: &rusqlite::Connection, entries: &[StoredEntry]) -> Result<(), LedgerError> {
    let mut stmt = conn.prepare_cached(UPSERT)?;
    for ((dim, value, bucket), count) in aggregate(entries) {
        stmt.execute(rusqlite::params![dim, value, bucket, count])?;
    }
    Ok(())
}

/// Adds a batch's counts through sea-orm (in the caller's transaction).
pub async fn write_orm(conn: &impl ConnectionTrait, entries: &[StoredEntry]) -> Result<(), LedgerError> {
    let b = conn.get_database_backend();
    let counts: Vec<_> = aggregate(entries).into_iter().collect();
    // 4 parameters a row; 500 rows a statement.
    for chunk in counts.chunks(500) {
        let sql = format!(
            "INSERT INTO audit_rollups (dimension, value, bucket, count) VALUES {} \
             ON CONFLICT (dimension, value, bucket) DO UPDATE SET count = audit_rollups.count + excluded.count",
            vec!["(?,?,?,?)"; chunk.len()].join(",")
        );
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for ((dim, value, bucket), count) in chunk {
            values.extend([
                Value::from(dim.to_string()),
                Value::from(value.clone()),
                Value::BigInt(Some(*bucket)),
                Value::BigInt(Some(*count)),
            ]);
        }
        conn.execute_raw(stmt_for(b, &sql, values)).await?;
    }
    Ok(())
}

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
/// (std's SipHash: the held counts' map lives up to a second with keys from
/// clients' events; only [`aggregate`]'s per-batch tally uses foldhash).
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

/// A key of [`aggregate`]'s tally, borrowing the entries' own strings: a
/// value is made into a `String` once per distinct key and batch, not once
/// per entry and key (10-16 allocations per entry before; see the
/// `batch_1000` benchmark and docs/performance.md).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Tally<'a> {
    /// A dimension whose value is one field.
    Field { dim: &'static str, value: &'a str },
    /// A value spelled `category/outcome/rest` (actions and resources by
    /// outcome).
    Triple { dim: &'static str, category: &'a str, outcome: &'a str, rest: &'a str },
    /// A value spelled `category/latency bucket/resource id`.
    Latency { dim: &'static str, category: &'a str, bucket: i64, id: &'a str },
}

impl Tally<'_> {
    fn into_key(self, bucket: i64) -> (&'static str, String, i64) {
        match self {
            Tally::Field { dim, value } => (dim, value.to_owned(), bucket),
            Tally::Triple { dim, category, outcome, rest } => (dim, format!("{category}/{outcome}/{rest}"), bucket),
            Tally::Latency { dim, category, bucket: b, id } => (dim, format!("{category}/{b}/{id}"), bucket),
        }
    }

    fn dim(&self) -> &'static str {
        match self {
            Tally::Field { dim, .. } | Tally::Triple { dim, .. } | Tally::Latency { dim, .. } => dim,
        }
    }

    /// The same value under the dimension's daily twin.
    fn daily(self) -> Self {
        match self {
            Tally::Field { dim, value } => Tally::Field { dim: day_of(dim), value },
            Tally::Triple { dim, category, outcome, rest } => {
                Tally::Triple { dim: day_of(dim), category, outcome, rest }
            }
            Tally::Latency { dim, category, bucket, id } => Tally::Latency { dim: day_of(dim), category, bucket, id },
        }
    }
}

/// Counts a batch of entries; `durations[i]` is entry `i`'s
/// `metrics.duration_ms`, if it had one.
pub fn aggregate<'a>(entries: &'a [StoredEntry], durations: &[Option<f64>]) -> Counts {
    let mut tally: HashMap<(Tally<'a>, i64), i64, foldhash::fast::RandomState> = HashMap::default();
    for (i, e) in entries.iter().enumerate() {
        let minute = e.header.occurred_at_us.div_euclid(BUCKET_US);
        let hour = minute.div_euclid(60) * 60;
        let day = minute.div_euclid(1440) * 1440;
        let f = &e.header.fields;
        let mut add = |key: Tally<'a>| {
            let dim = key.dim();
            if dim == "total" {
                *tally.entry((key, minute)).or_insert(0) += 1;
                return;
            }
            if DAILY.contains(&dim) {
                *tally.entry((key.clone().daily(), day)).or_insert(0) += 1;
            }
            *tally.entry((key, hour)).or_insert(0) += 1;
        };
        add(Tally::Field { dim: "total", value: "" });
        add(Tally::Field { dim: "category", value: &f.category });
        add(Tally::Field { dim: "action", value: &f.action });
        add(Tally::Field { dim: "outcome", value: &f.outcome });
        add(Tally::Field { dim: "severity", value: &f.severity });
        if let Some(v) = &f.actor_id {
            add(Tally::Field { dim: "actor", value: v });
        }
        if let Some(v) = &f.channel {
            add(Tally::Field { dim: "channel", value: v });
        }
        if let Some(v) = &f.tenant {
            add(Tally::Field { dim: "tenant", value: v });
        }
        add(Tally::Triple { dim: "action_outcome", category: &f.category, outcome: &f.outcome, rest: &f.action });
        if RESOURCE_KINDS.iter().any(|(c, t)| f.category == *c && f.resource_type.as_deref() == Some(*t)) {
            let id = f.resource_id.as_deref().unwrap_or("");
            add(Tally::Triple { dim: "resource_outcome", category: &f.category, outcome: &f.outcome, rest: id });
            if let Some(ms) = durations.get(i).copied().flatten() {
                add(Tally::Latency { dim: "latency", category: &f.category, bucket: latency_bucket(ms), id });
            }
        }
    }
    let mut out = Counts::with_capacity(tally.len());
    for ((key, bucket), n) in tally {
        // Two tallies can make one key only if a field holds a `/`
        // (`a/b` + `c` and `a` + `b/c`): added up, as one string was.
        *out.entry(key.into_key(bucket)).or_insert(0) += n;
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

    /// The counts as they were first defined (one owned key per entry and
    /// dimension), to check the borrowing tally against.
    fn reference(
        entries: &[StoredEntry],
        durations: &[Option<f64>],
    ) -> std::collections::BTreeMap<(String, String, i64), i64> {
        let mut out = std::collections::BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let minute = e.header.occurred_at_us.div_euclid(BUCKET_US);
            let (hour, day) = (minute.div_euclid(60) * 60, minute.div_euclid(1440) * 1440);
            let f = &e.header.fields;
            let mut add = |dim: &str, value: String| {
                if dim == "total" {
                    *out.entry((dim.to_owned(), value, minute)).or_insert(0) += 1;
                    return;
                }
                if DAILY.contains(&dim) {
                    *out.entry((format!("{dim}:day"), value.clone(), day)).or_insert(0) += 1;
                }
                *out.entry((dim.to_owned(), value, hour)).or_insert(0) += 1;
            };
            add("total", String::new());
            for (dim, v) in
                [("category", &f.category), ("action", &f.action), ("outcome", &f.outcome), ("severity", &f.severity)]
            {
                add(dim, v.clone());
            }
            for (dim, v) in [("actor", &f.actor_id), ("channel", &f.channel), ("tenant", &f.tenant)] {
                if let Some(v) = v {
                    add(dim, v.clone());
                }
            }
            add("action_outcome", format!("{}/{}/{}", f.category, f.outcome, f.action));
            if RESOURCE_KINDS.iter().any(|(c, t)| f.category == *c && f.resource_type.as_deref() == Some(*t)) {
                let id = f.resource_id.clone().unwrap_or_default();
                add("resource_outcome", format!("{}/{}/{id}", f.category, f.outcome));
                if let Some(ms) = durations[i] {
                    add("latency", format!("{}/{}/{id}", f.category, latency_bucket(ms)));
                }
            }
        }
        out
    }

    #[test]
    fn a_batch_is_counted_as_one_key_per_entry_and_dimension_would_count_it() {
        use crate::ledger::types::{EntryHeader, HeaderFields};
        // Values with `/` in them (two triples that spell the same key),
        // missing optional fields, tools with and without durations,
        // entries across an hour and a day.
        let cats = ["tool", "mcp", "authentication", "tool"];
        let actions = ["a/b", "a", "x.y", "b"];
        let outcomes = ["success", "failure", "success/a"];
        let mut entries = Vec::new();
        let mut durations = Vec::new();
        for i in 0..400u64 {
            let cat = cats[(i % 4) as usize];
            let fields = HeaderFields {
                category: cat.into(),
                action: actions[(i % 4) as usize].into(),
                outcome: outcomes[(i % 3) as usize].into(),
                severity: "info".into(),
                actor_id: (i % 5 != 0).then(|| format!("user-{}", i % 13)),
                actor_kind: None,
                resource_type: Some(match cat {
                    "tool" => "tool".into(),
                    "mcp" => {
                        if i % 2 == 0 {
                            "mcp_server".into()
                        } else {
                            "other".into()
                        }
                    }
                    _ => "session".into(),
                }),
                resource_id: (i % 7 != 0).then(|| format!("r/{}", i % 3)),
                tenant: (i % 2 == 0).then(|| "acme".into()),
                channel: (i % 3 == 0).then(|| "api".into()),
                source_app: None,
            };
            entries.push(StoredEntry {
                header: EntryHeader {
                    seq: i + 1,
                    event_id: uuid::Uuid::from_u128(i as u128),
                    // 400 entries 4 minutes apart, starting 3 hours before midnight.
                    occurred_at_us: (1440 * 20 - 180 + 4 * i as i64) * BUCKET_US,
                    recorded_at_us: 0,
                    fields,
                },
                key_id: 1,
                iv: [0; 16],
                ciphertext: Vec::new(),
                mac: [0; 32],
                leaf_hash: [0; 32],
                chain_hash: [0; 32],
            });
            durations.push((i % 3 != 0).then_some((i * 37 % 5000) as f64));
        }
        let got: std::collections::BTreeMap<_, _> =
            aggregate(&entries, &durations).into_iter().map(|((d, v, b), n)| ((d.to_owned(), v, b), n)).collect();
        let want = reference(&entries, &durations);
        assert_eq!(got, want);
        // The cases meant to be covered are there.
        assert!(want.keys().any(|(d, _, _)| d == "latency:day"));
        assert!(want.keys().any(|(d, _, _)| d == "resource_outcome"));
        assert_eq!(want.iter().filter(|((d, ..), _)| d == "total").map(|(_, n)| n).sum::<i64>(), 400);
        // `tool` + `success` + `a/b` (entries 0 and 12 in the first hour)
        // and `tool` + `success/a` + `b` (entry 11) spell one key: counted
        // together.
        let both = ("action_outcome".to_owned(), "tool/success/a/b".to_owned(), 1440 * 20 - 180);
        assert_eq!(got[&both], 3);
    }

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

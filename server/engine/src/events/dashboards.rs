//! The analytics dashboard: every figure read from the rollups the commits
//! count into (never a scan of the ledger; see `ledger::rollup`), one named
//! query per figure so that each can be timed.

use crate::time::{DAY_US, HOUR_US};
use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm::{ConnectionTrait as _, QueryResult, Value};

use super::model::{
    ActionMetrics, Analytics, AuthMetrics, OutcomeCounts, QueryTime, ResourceMetrics, Series, ValueCount,
};
use super::service::{Events, EventsError};
use crate::ledger::LedgerError;
use crate::ledger::rollup::{BUCKET_US, day_of, latency_value, period_filter};
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// The dashboard's queries, in the order they run.
pub const QUERIES: [&str; 7] =
    ["volume_by_category", "volume_by_outcome", "top_actions", "top_actors", "action_outcomes", "resources", "latency"];

/// Longest period: a year.
pub const MAX_SPAN_US: i64 = 366 * DAY_US;
/// Up to this span the series are per hour, beyond it per day.
const HOURLY_UP_TO_US: i64 = 7 * DAY_US;
/// Values kept in the "top" lists.
const TOP: i64 = 10;

fn invalid(path: &str, reason: &str) -> EventsError {
    EventsError::Invalid(super::validate::FieldError { path: path.into(), reason: reason.into() })
}

fn int(r: &QueryResult, col: &str) -> Result<i64, EventsError> {
    Ok(r.try_get::<i64>("", col).map_err(LedgerError::from)?)
}

fn text(r: &QueryResult, col: &str) -> Result<String, EventsError> {
    Ok(r.try_get::<String>("", col).map_err(LedgerError::from)?)
}

/// A period in whole hours (rollup buckets are in minutes since the epoch).
#[derive(Debug, Clone, Copy)]
struct Period {
    /// First hour's bucket (minutes).
    lo: i64,
    /// Bucket after the last hour (minutes).
    hi: i64,
    /// Chart bucket width in minutes (60 or 1440).
    width: i64,
    /// First chart bucket (minutes).
    start: i64,
    /// Number of chart buckets.
    n: usize,
}

impl Period {
    fn new(from_us: i64, to_us: i64) -> Result<Period, EventsError> {
        if to_us <= from_us {
            return Err(invalid("to", "must be after `from`"));
        }
        if to_us - from_us > MAX_SPAN_US {
            return Err(invalid("from", "the period is at most 366 days"));
        }
        let lo = from_us.div_euclid(HOUR_US) * 60;
        let hi = (to_us + HOUR_US - 1).div_euclid(HOUR_US) * 60;
        // "Last 7 days" widened to whole hours is 169 hours: still hourly.
        let width = if hi - lo <= HOURLY_UP_TO_US / BUCKET_US + 60 { 60 } else { 1440 };
        let start = lo.div_euclid(width) * width;
        let n = ((hi - start + width - 1) / width) as usize;
        Ok(Period { lo, hi, width, start, n })
    }
}

/// Where a value was last seen: the bucket and the count in it.
struct Sum {
    value: String,
    last: i64,
    last_count: u64,
}

/// Splits a `a/b/rest` rollup value.
fn split3(v: &str) -> Option<(&str, &str, &str)> {
    let mut it = v.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next()?))
}

/// The duration at quantile `q` of a latency histogram (bucket -> count).
fn quantile(hist: &BTreeMap<i64, u64>, q: f64) -> Option<f64> {
    let total: u64 = hist.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (b, c) in hist {
        seen += c;
        if seen >= rank {
            return Some((latency_value(*b) * 100.0).round() / 100.0);
        }
    }
    None
}

impl Events {
    async fn rollup_rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<QueryResult>, EventsError> {
        // Counts held by this process's writer first (SQLite; on PostgreSQL
        // the view `audit_rollups_current` counts the waiting rows itself).
        self.ledger().settle_rollups().await;
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        Ok(conn.query_all_raw(stmt_for(b, sql, values)).await?)
    }

    /// Counts per chart bucket and value of a dimension (per day from the
    /// daily rows when the chart is per day).
    async fn series_of(&self, dim: &str, p: &Period) -> Result<Vec<Series>, EventsError> {
        let (cond, values) = if p.width == 60 {
            (
                "(dimension = ? AND bucket >= ? AND bucket < ?)".to_owned(),
                vec![dim.into(), Value::BigInt(Some(p.lo)), Value::BigInt(Some(p.hi))],
            )
        } else {
            period_filter(dim, p.lo, p.hi)
        };
        let sql = format!(
            "SELECT value, (bucket - {start}) / {width} AS b, CAST(SUM(count) AS BIGINT) AS n FROM audit_rollups_current \
             WHERE {cond} GROUP BY value, (bucket - {start}) / {width}",
            start = p.start,
            width = p.width,
        );
        let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for r in self.rollup_rows(&sql, values).await? {
            let (value, i, n) = (text(&r, "value")?, int(&r, "b")?, int(&r, "n")?);
            let counts = by.entry(value).or_insert_with(|| vec![0; p.n]);
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
                *slot += n.max(0) as u64;
            }
        }
        let mut out: Vec<Series> = by.into_iter().map(|(name, counts)| Series { name, counts }).collect();
        // Biggest first: the stack reads from the bottom.
        out.sort_by_key(|s| std::cmp::Reverse(s.counts.iter().sum::<u64>()));
        Ok(out)
    }

    async fn top_of(&self, dim: &str, p: &Period) -> Result<Vec<ValueCount>, EventsError> {
        let (cond, values) = period_filter(dim, p.lo, p.hi);
        let sql = format!(
            "SELECT value, CAST(SUM(count) AS BIGINT) AS n FROM audit_rollups_current \
             WHERE {cond} GROUP BY value ORDER BY n DESC, value LIMIT {TOP}"
        );
        let mut out = Vec::new();
        for r in self.rollup_rows(&sql, values).await? {
            out.push(ValueCount { value: text(&r, "value")?, count: int(&r, "n")?.max(0) as u64 });
        }
        Ok(out)
    }

    /// Per value of a dimension over the period: its sum.
    async fn sums_of(&self, dim: &str, p: &Period) -> Result<Vec<(String, u64)>, EventsError> {
        let (cond, values) = period_filter(dim, p.lo, p.hi);
        let sql = format!(
            "SELECT value, CAST(SUM(count) AS BIGINT) AS n FROM audit_rollups_current WHERE {cond} GROUP BY value"
        );
        let mut out = Vec::new();
        for r in self.rollup_rows(&sql, values).await? {
            out.push((text(&r, "value")?, int(&r, "n")?.max(0) as u64));
        }
        Ok(out)
    }

    /// Where each value of a dimension was last seen in the period: the
    /// last hour (when within the period's last day) or else the last day,
    /// with its count there.
    async fn last_seen(&self, dim: &str, p: &Period) -> Result<Vec<Sum>, EventsError> {
        let recent = (p.hi - 1440).max(p.lo);
        let sql =
            "SELECT value, bucket, count FROM audit_rollups_current WHERE dimension = ? AND bucket >= ? AND bucket < ?";
        let mut out: BTreeMap<String, Sum> = BTreeMap::new();
        let keep = |value: String, bucket: i64, count: u64, out: &mut BTreeMap<String, Sum>| {
            let s = out.entry(value.clone()).or_insert(Sum { value, last: bucket, last_count: 0 });
            if bucket > s.last {
                (s.last, s.last_count) = (bucket, count);
            } else if bucket == s.last {
                s.last_count += count;
            }
        };
        for r in self.rollup_rows(sql, vec![dim.into(), Value::BigInt(Some(recent)), Value::BigInt(Some(p.hi))]).await?
        {
            keep(text(&r, "value")?, int(&r, "bucket")?, int(&r, "count")?.max(0) as u64, &mut out);
        }
        // Values not seen in the last day: their last day.
        let day = day_of(dim);
        let first_day = p.lo.div_euclid(1440) * 1440;
        let mut older: BTreeMap<String, Sum> = BTreeMap::new();
        for r in
            self.rollup_rows(sql, vec![day.into(), Value::BigInt(Some(first_day)), Value::BigInt(Some(recent))]).await?
        {
            let v = text(&r, "value")?;
            if !out.contains_key(&v) {
                keep(v, int(&r, "bucket")?, int(&r, "count")?.max(0) as u64, &mut older);
            }
        }
        out.extend(older);
        Ok(out.into_values().collect())
    }

    /// The analytics dashboard over `[from, to)` (widened to whole hours).
    pub async fn analytics(&self, from_us: i64, to_us: i64) -> Result<Analytics, EventsError> {
        let p = Period::new(from_us, to_us)?;
        // The queries run at once (each on its own pooled connection); each
        // reports its own time.
        async fn timed<T>(
            name: &str,
            f: impl std::future::Future<Output = Result<T, EventsError>>,
        ) -> Result<(T, QueryTime), EventsError> {
            let started = Instant::now();
            let out = f.await?;
            Ok((out, QueryTime { name: name.into(), ms: (started.elapsed().as_secs_f64() * 1e5).round() / 100.0 }))
        }
        let (c, o, ta, tr, ao, rs, lt) = tokio::join!(
            timed(QUERIES[0], self.series_of("category", &p)),
            timed(QUERIES[1], self.series_of("outcome", &p)),
            timed(QUERIES[2], self.top_of("action", &p)),
            timed(QUERIES[3], self.top_of("actor", &p)),
            timed(QUERIES[4], self.sums_of("action_outcome", &p)),
            timed(QUERIES[5], async {
                let (sums, seen) =
                    tokio::join!(self.sums_of("resource_outcome", &p), self.last_seen("resource_outcome", &p));
                Ok((sums?, seen?))
            }),
            timed(QUERIES[6], self.sums_of("latency", &p)),
        );
        let ((by_category, q0), (by_outcome, q1), (top_actions, q2), (top_actors, q3)) = (c?, o?, ta?, tr?);
        let ((action_outcomes, q4), ((resources, seen), q5), (latency, q6)) = (ao?, rs?, lt?);
        let queries = vec![q0, q1, q2, q3, q4, q5, q6];

        let mut outcomes = OutcomeCounts::default();
        for s in &by_outcome {
            outcomes.add(&s.name, s.counts.iter().sum());
        }
        let total: u64 = by_category.iter().map(|s| s.counts.iter().sum::<u64>()).sum();

        // Actions by category.
        let mut actions: BTreeMap<(String, String), OutcomeCounts> = BTreeMap::new();
        for (v, n) in &action_outcomes {
            if let Some((category, outcome, action)) = split3(v) {
                actions.entry((category.into(), action.into())).or_default().add(outcome, *n);
            }
        }
        let mut authentication = AuthMetrics::default();
        for ((category, action), o) in &actions {
            if category != "authentication" {
                continue;
            }
            if action.ends_with("login") {
                authentication.successes += o.success;
                authentication.failures += o.failure + o.denied;
            }
            if action.contains("mfa") {
                authentication.mfa += o.success;
            }
            if action.contains("lockout") {
                authentication.lockouts += o.total();
            }
        }
        let of = |cat: &str| -> Vec<ActionMetrics> {
            let mut v: Vec<ActionMetrics> = actions
                .iter()
                .filter(|((c, _), _)| c == cat)
                .map(|((c, a), o)| ActionMetrics { category: c.clone(), action: a.clone(), outcomes: o.clone() })
                .collect();
            v.sort_by_key(|a| std::cmp::Reverse(a.outcomes.total()));
            v
        };

        // Resources by category, with their latency and their status: the
        // outcomes in the last hour each was seen.
        let mut res: BTreeMap<(String, String), ResourceMetrics> = BTreeMap::new();
        for (v, n) in &resources {
            if let Some((category, outcome, name)) = split3(v) {
                res.entry((category.into(), name.into()))
                    .or_insert_with(|| ResourceMetrics {
                        name: name.into(),
                        outcomes: OutcomeCounts::default(),
                        timed: 0,
                        p50_ms: None,
                        p95_ms: None,
                        p99_ms: None,
                        last_seen: String::new(),
                        last_hour: OutcomeCounts::default(),
                    })
                    .outcomes
                    .add(outcome, *n);
            }
        }
        // The last bucket each resource was seen in, over its outcomes.
        let mut last: BTreeMap<(String, String), i64> = BTreeMap::new();
        for x in &seen {
            if let Some((category, _, name)) = split3(&x.value) {
                let l = last.entry((category.into(), name.into())).or_insert(x.last);
                *l = (*l).max(x.last);
            }
        }
        for x in &seen {
            if let Some((category, outcome, name)) = split3(&x.value) {
                let key = (category.to_owned(), name.to_owned());
                if let (Some(r), Some(l)) = (res.get_mut(&key), last.get(&key))
                    && x.last == *l
                {
                    r.last_seen = rfc3339(l * BUCKET_US);
                    r.last_hour.add(outcome, x.last_count);
                }
            }
        }
        let mut hists: BTreeMap<(String, String), BTreeMap<i64, u64>> = BTreeMap::new();
        for (v, n) in &latency {
            if let Some((category, bucket, name)) = split3(v)
                && let Ok(b) = bucket.parse::<i64>()
            {
                *hists.entry((category.into(), name.into())).or_default().entry(b).or_default() += n;
            }
        }
        for (key, h) in &hists {
            if let Some(r) = res.get_mut(key) {
                r.timed = h.values().sum();
                r.p50_ms = quantile(h, 0.50);
                r.p95_ms = quantile(h, 0.95);
                r.p99_ms = quantile(h, 0.99);
            }
        }
        let mut group = |cat: &str| -> Vec<ResourceMetrics> {
            let keys: Vec<_> = res.keys().filter(|(c, _)| c == cat).cloned().collect();
            let mut v: Vec<ResourceMetrics> = keys.iter().filter_map(|k| res.remove(k)).collect();
            v.sort_by(|a, b| b.outcomes.total().cmp(&a.outcomes.total()).then_with(|| a.name.cmp(&b.name)));
            v
        };
        let (tools, mcp_servers, plugins, notification_channels) =
            (group("tool"), group("mcp"), group("plugin"), group("notification"));
        let rate = |n: u64| if total == 0 { 0.0 } else { n as f64 / total as f64 };
        Ok(Analytics {
            from: rfc3339(p.lo * BUCKET_US),
            to: rfc3339(p.hi * BUCKET_US),
            bucket: if p.width == 60 { "hour" } else { "day" }.into(),
            buckets: (0..p.n).map(|i| rfc3339((p.start + i as i64 * p.width) * BUCKET_US)).collect(),
            total,
            failure_rate: rate(outcomes.failure + outcomes.error),
            denial_rate: rate(outcomes.denied),
            outcomes,
            by_category,
            by_outcome,
            top_actions,
            top_actors,
            authentication,
            auth_actions: of("authentication"),
            mcp_actions: of("mcp"),
            notification_actions: of("notification"),
            tools,
            mcp_servers,
            plugins,
            notification_channels,
            queries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_hours_and_pick_the_bucket() {
        let h = HOUR_US;
        let p = Period::new(10 * h + 5, 12 * h + 1).unwrap();
        assert_eq!((p.lo, p.hi, p.width, p.n), (600, 780, 60, 3));
        let p = Period::new(0, 30 * DAY_US).unwrap();
        assert_eq!((p.width, p.n), (1440, 30));
        assert!(Period::new(5, 5).is_err());
        assert!(Period::new(0, MAX_SPAN_US + 1).is_err());
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        // 90 fast (bucket 4: ~2.2 ms), 9 slow (bucket 40: ~1 s), 1 very slow.
        let h: BTreeMap<i64, u64> = [(4, 90), (40, 9), (60, 1)].into_iter().collect();
        assert_eq!(quantile(&h, 0.5), Some((latency_value(4) * 100.0).round() / 100.0));
        assert_eq!(quantile(&h, 0.95), Some((latency_value(40) * 100.0).round() / 100.0));
        assert_eq!(quantile(&h, 0.99), Some((latency_value(40) * 100.0).round() / 100.0));
        assert_eq!(quantile(&h, 1.0), Some((latency_value(60) * 100.0).round() / 100.0));
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn values_split_on_their_first_two_slashes() {
        assert_eq!(split3("tool/success/search/docs"), Some(("tool", "success", "search/docs")));
        assert_eq!(split3("tool/success/"), Some(("tool", "success", "")));
        assert_eq!(split3("tool"), None);
    }
}

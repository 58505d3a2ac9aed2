//! The explorer's histogram and saved searches.

use crate::time::{DAY_US, HOUR_US, MINUTE_US, SECOND_US};
use sea_orm::{ConnectionTrait as _, Value};
use uuid::Uuid;

use super::model::{BucketCount, Histogram, SavedSearch};
use super::search::{self, SearchFilter};
use super::service::{Events, EventsError};
use crate::ledger::LedgerError;
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// Most buckets a histogram has.
pub const MAX_BUCKETS: u64 = 500;
/// Longest saved search name and query.
const MAX_NAME: usize = 100;
const MAX_QUERY: usize = 4096;
/// Most saved searches per user.
const MAX_PER_OWNER: usize = 200;

fn invalid(path: &str, reason: &str) -> EventsError {
    EventsError::Invalid(super::validate::FieldError { path: path.into(), reason: reason.into() })
}

impl Events {
    /// Matching events per bucket over `[from, to)`, `buckets` buckets (the
    /// width rounded up to a whole second). Free text (`q`) is not applied:
    /// counting it would decrypt the whole range.
    pub async fn histogram(&self, f: &SearchFilter, buckets: u64) -> Result<Histogram, EventsError> {
        let (Some(from), Some(to)) = (f.from_us, f.to_us) else {
            return Err(invalid("from", "a histogram needs both from and to"));
        };
        // Checked: a span that is negative or overflows is refused, never
        // turned into a bucket count (it once asked for terabytes).
        let span = match to.checked_sub(from) {
            Some(span) if span > 0 => span as u64,
            _ => return Err(invalid("from", "must be before `to`")),
        };
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let second = SECOND_US as u64;
        let width = span.div_ceil(buckets).div_ceil(second).max(1).saturating_mul(second);
        let (actors, resource_ids) = self.masked_forms(f);
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let (sql, mut values) = search::histogram_sql(f, &actors, &resource_ids, b);
        values.insert(0, Value::BigInt(Some(width as i64)));
        values.insert(0, Value::BigInt(Some(from)));
        let rows = conn.query_all_raw(stmt_for(b, &sql, values)).await?;
        // INVARIANT: width >= span / buckets, so n <= buckets <= MAX_BUCKETS.
        let n = usize::try_from(span.div_ceil(width)).unwrap_or(0).min(MAX_BUCKETS as usize);
        let mut series: Vec<BucketCount> =
            (0..n).map(|i| BucketCount { start: rfc3339(from + (i as u64 * width) as i64), count: 0 }).collect();
        let mut total = 0;
        for r in rows {
            let i: i64 = r.try_get("", "b").map_err(LedgerError::from)?;
            let c: i64 = r.try_get("", "n").map_err(LedgerError::from)?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| series.get_mut(i)) {
                slot.count += c.max(0) as u64;
                total += c.max(0) as u64;
            }
        }
        Ok(Histogram { from: rfc3339(from), to: rfc3339(to), bucket_seconds: width / second, total, series })
    }

    /// The caller's saved searches and everyone's shared ones, by name.
    pub async fn saved_searches(&self, owner: &str) -> Result<Vec<SavedSearch>, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let sql = "SELECT id, owner, name, query, shared, created_at FROM saved_searches \
                   WHERE owner = ? OR shared = ? ORDER BY name, owner";
        let shared = match b {
            sea_orm::DbBackend::Postgres => Value::Bool(Some(true)),
            _ => Value::Int(Some(1)),
        };
        let rows = conn.query_all_raw(stmt_for(b, sql, vec![owner.into(), shared])).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let shared = match b {
                sea_orm::DbBackend::Postgres => r.try_get::<bool>("", "shared"),
                _ => r.try_get::<i32>("", "shared").map(|v| v != 0),
            }
            .map_err(LedgerError::from)?;
            let who: String = r.try_get("", "owner").map_err(LedgerError::from)?;
            out.push(SavedSearch {
                id: r.try_get("", "id").map_err(LedgerError::from)?,
                name: r.try_get("", "name").map_err(LedgerError::from)?,
                query: r.try_get("", "query").map_err(LedgerError::from)?,
                shared,
                mine: who == owner,
                owner: who,
                created_at: rfc3339(r.try_get("", "created_at").map_err(LedgerError::from)?),
            });
        }
        Ok(out)
    }

    /// Saves (or replaces, by name) a search of `owner`'s. The query must
    /// be a valid explorer search.
    pub async fn save_search(
        &self,
        owner: &str,
        name: &str,
        query: &str,
        shared: bool,
    ) -> Result<SavedSearch, EventsError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(invalid("name", "must be 1 to 100 characters, no control characters"));
        }
        if query.len() > MAX_QUERY {
            return Err(invalid("query", "is longer than 4096 bytes"));
        }
        check_query(query)?;
        let mine = self.saved_searches(owner).await?;
        if mine.iter().filter(|s| s.mine).count() >= MAX_PER_OWNER && !mine.iter().any(|s| s.mine && s.name == name) {
            return Err(invalid("name", "at most 200 saved searches per user; delete one first"));
        }
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let id = Uuid::now_v7().to_string();
        let now = self.ledger().now_us();
        let shared_v = match b {
            sea_orm::DbBackend::Postgres => Value::Bool(Some(shared)),
            _ => Value::Int(Some(i32::from(shared))),
        };
        conn.execute_raw(stmt_for(
            b,
            "DELETE FROM saved_searches WHERE owner = ? AND name = ?",
            vec![owner.into(), name.into()],
        ))
        .await?;
        conn.execute_raw(stmt_for(
            b,
            "INSERT INTO saved_searches (id, owner, name, query, shared, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![id.clone().into(), owner.into(), name.into(), query.into(), shared_v, now.into()],
        ))
        .await?;
        Ok(SavedSearch {
            id,
            name: name.to_owned(),
            query: query.to_owned(),
            shared,
            owner: owner.to_owned(),
            mine: true,
            created_at: rfc3339(now),
        })
    }

    /// Deletes one of `owner`'s saved searches; false if there is none.
    pub async fn delete_saved_search(&self, owner: &str, id: &str) -> Result<bool, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let r = conn
            .execute_raw(stmt_for(
                b,
                "DELETE FROM saved_searches WHERE id = ? AND owner = ?",
                vec![id.into(), owner.into()],
            ))
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// The explorer's own parameters (besides the search's).
pub const EXPLORER_PARAMETERS: [&str; 1] = ["range"];

/// Checks a saved query: the search's parameters (without paging) and the
/// explorer's `range` preset.
pub fn check_query(query: &str) -> Result<(), EventsError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = custos_model::url::decode(k).ok_or_else(|| invalid("query", "is not a valid query string"))?;
        let v = custos_model::url::decode(v).ok_or_else(|| invalid("query", "is not a valid query string"))?;
        match k.as_str() {
            "range" => {
                if parse_range(&v).is_none() {
                    return Err(invalid("query", "range must be like 15m, 24h or 7d"));
                }
            }
            "limit" | "cursor" => return Err(invalid("query", "a saved search has no paging")),
            _ => pairs.push((k, v)),
        }
    }
    SearchFilter::from_pairs(&pairs).map_err(|e| {
        let first = e.into_iter().next().map(|e| format!("{}: {}", e.path, e.reason)).unwrap_or_default();
        EventsError::Invalid(super::validate::FieldError { path: "query".into(), reason: first })
    })?;
    Ok(())
}

/// `15m`, `24h`, `7d` -> microseconds.
pub fn parse_range(s: &str) -> Option<i64> {
    // Split before the last character, not the last byte: `1€` must not
    // slice inside a character.
    let (at, _) = s.char_indices().last()?;
    let (n, unit) = s.split_at(at);
    let n: i64 = n.parse().ok().filter(|n| (1..=100_000).contains(n))?;
    let unit_us = match unit {
        "m" => MINUTE_US,
        "h" => HOUR_US,
        "d" => DAY_US,
        _ => return None,
    };
    Some(n * unit_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_queries_are_checked() {
        assert_eq!(parse_range("15m"), Some(900_000_000));
        assert_eq!(parse_range("7d"), Some(7 * 86_400_000_000));
        assert_eq!(parse_range("0h"), None);
        assert_eq!(parse_range("h"), None);
        assert_eq!(parse_range("1€"), None);
        assert_eq!(parse_range("€"), None);
        assert_eq!(parse_range(""), None);
        assert!(check_query("action=user.*&range=24h&q=caf%C3%A9").is_ok());
        assert!(check_query("range=forever").is_err());
        assert!(check_query("bogus=1").is_err());
        assert!(check_query("cursor=x").is_err());
    }
}

//! Search filters: parsed from query parameters, turned into one SQL
//! statement over the clear header columns, paged by keyset, never OFFSET:
//! on `seq` in ledger order (tails, exports, the engines), on
//! `(occurred_at, seq)` in event-time order (`by_time`, the API's pages).
//!
//! Multi-valued filters take repeated parameters and comma lists alike
//! (`action=a&action=b` = `action=a,b`); values within one filter are ORed,
//! filters are ANDed. An action ending in `.*` is a prefix (`user.*`).

use base64::Engine as _;
use sea_orm::Value;

use super::validate::FieldError;
use crate::ledger::store::{ENTRY_COLUMNS, seq_value};

/// Longest value of any filter.
pub const MAX_VALUE_LEN: usize = 256;
/// Most values in one multi-valued filter.
pub const MAX_VALUES: usize = 50;
/// Longest free-text query.
pub const MAX_Q_LEN: usize = 200;

/// A parsed search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    /// Actor ids.
    pub actors: Vec<String>,
    /// Actions, exact or `prefix.*`.
    pub actions: Vec<String>,
    /// Resource types.
    pub resource_types: Vec<String>,
    /// Resource ids.
    pub resource_ids: Vec<String>,
    /// Outcomes.
    pub outcomes: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Channels.
    pub channels: Vec<String>,
    /// Severities.
    pub severities: Vec<String>,
    /// Tenants.
    pub tenants: Vec<String>,
    /// `occurred_at >= from` (µs).
    pub from_us: Option<i64>,
    /// `occurred_at < to` (µs).
    pub to_us: Option<i64>,
    /// Free text over the decrypted, masked event.
    pub q: Option<String>,
    /// Newest first (the default).
    pub descending: bool,
    /// Page size, 1..=1000.
    pub limit: usize,
    /// Continue after this seq (from a cursor; with `by_time`, after the
    /// entry at `after_time` and this seq).
    pub after_seq: Option<u64>,
    /// Pages in event-time order, `(occurred_at, seq)`, as `GET /api/audit`
    /// serves them (not a parameter: that handler sets it). Otherwise
    /// ledger order (`seq`), which tails, exports and the engines read.
    /// Event-time pages are read through `ledger_entries_by_time`,
    /// which is in that order (`occurred_at, seq`, then the common filter
    /// columns): a page stops after its own matches, however many entries
    /// its window holds (ledger order made the database read and sort every
    /// entry of the window first). A rare value, or a filter the index does
    /// not carry (`resource_id`, `channel`, `severity`, `own`), still walks
    /// the index until it has a page.
    pub by_time: bool,
    /// With `by_time`: the `occurred_at` (µs) of the entry `after_seq`
    /// names (from a cursor; an older cursor carries the seq alone and the
    /// search looks the time up).
    pub after_time: Option<i64>,
    /// Only entries up to this seq (an export's checkpoint; not a parameter).
    pub max_seq: Option<u64>,
    /// Leave out Custos's own activity (`own=exclude`): the entries it
    /// sealed itself (application `custos`, a name clients may not use).
    pub exclude_own: bool,
    /// Only Custos's own activity (not a parameter): read through the
    /// partial index of its entries (`ledger_entries_own`, by category and
    /// seq), so that looking for its rare records (policy steps) does not
    /// walk a ledger of millions of application events.
    pub only_own: bool,
}

/// The parameters of the explorer's filter that select by clear columns
/// (what forwarding destinations and legal holds may use: no free text, no
/// time, no paging).
pub const FILTER_PARAMETERS: [&str; 10] =
    ["actor", "action", "resource_type", "resource_id", "outcome", "category", "channel", "severity", "tenant", "own"];

/// Parses a filter in the explorer's language (`actor=alice&category=admin`,
/// a leading `?` allowed), limited to [`FILTER_PARAMETERS`]; words with a
/// vocabulary are checked (a typo would select nothing). Errors name
/// `path`.
pub fn filter_of_query(q: &str, path: &str) -> Result<SearchFilter, FieldError> {
    let bad = |reason: String| FieldError { path: path.to_owned(), reason };
    let q = q.trim().trim_start_matches('?');
    let pairs: Vec<(String, String)> = if q.is_empty() {
        Vec::new()
    } else {
        reqwest::Url::parse(&format!("http://x/?{q}"))
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default()
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !FILTER_PARAMETERS.contains(&k.as_str())) {
        return Err(bad(format!("`{k}` cannot be used here; use {}", FILTER_PARAMETERS.join(", "))));
    }
    for (k, v) in &pairs {
        let words: &[&str] = match k.as_str() {
            "outcome" => &custos_model::OUTCOMES,
            "category" => &custos_model::CATEGORIES,
            "severity" => &custos_model::SEVERITIES,
            _ => continue,
        };
        if let Some(w) = v.split(',').map(str::trim).find(|w| !words.contains(w)) {
            return Err(bad(format!("{k} `{w}`: one of {}", words.join(", "))));
        }
    }
    SearchFilter::from_pairs(&pairs).map_err(|errs| {
        let e = errs.into_iter().next().unwrap_or(FieldError { path: String::new(), reason: "invalid".into() });
        bad(format!("{}: {}", e.path, e.reason))
    })
}

/// `SELECT seq` of the entries a filter selects (without `q`) within
/// `from..=to`, in seq order; `recorded` bounds the commit time too
/// (`recorded_at >= a`, `< b`).
pub fn seqs_sql(
    f: &SearchFilter,
    actors: &[String],
    resource_ids: &[String],
    from: u64,
    to: u64,
    recorded: (Option<i64>, Option<i64>),
) -> (String, Vec<Value>) {
    let (wh, mut values) = where_clause(f, actors, resource_ids, None, HeadBound::Range);
    let join = if wh.is_empty() { " WHERE" } else { " AND" };
    let mut extra = String::new();
    if let Some(a) = recorded.0 {
        extra.push_str(" AND recorded_at >= ?");
        values.push(a.into());
    }
    if let Some(b) = recorded.1 {
        extra.push_str(" AND recorded_at < ?");
        values.push(b.into());
    }
    values.push(seq_value(from));
    values.push(seq_value(to));
    (format!("SELECT seq FROM ledger_entries{wh}{join} seq >= 0{extra} AND seq >= ? AND seq <= ? ORDER BY seq"), values)
}

/// Every parameter `GET /api/audit` takes.
pub const PARAMETERS: [&str; 16] = [
    "actor",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "category",
    "channel",
    "severity",
    "tenant",
    "from",
    "to",
    "q",
    "own",
    "order",
    "limit",
    "cursor",
];

/// Where a page starts: after this entry, in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Ledger order: after this seq.
    Seq(u64),
    /// Event-time order: after the entry with this `occurred_at` (µs) and
    /// this seq.
    Time(i64, u64),
}

impl SearchFilter {
    /// Where the cursor this filter was parsed with starts, in its order
    /// (event time only once the entry's time is known).
    pub fn after(&self) -> Option<After> {
        match (self.after_seq, self.after_time) {
            (Some(s), Some(t)) if self.by_time => Some(After::Time(t, s)),
            (Some(s), _) => Some(After::Seq(s)),
            (None, _) => None,
        }
    }
}

/// An opaque cursor: the direction and the last entry returned (its seq,
/// and its `occurred_at` for a page in event-time order).
pub fn cursor(descending: bool, after: After) -> String {
    let d = if descending { "d" } else { "a" };
    let raw = match after {
        After::Time(t, seq) => format!("v2:{d}:{t}:{seq}"),
        After::Seq(seq) => format!("v1:{d}:{seq}"),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A parsed cursor: descending, the time (v2 only), the seq.
fn parse_cursor(s: &str) -> Option<(bool, Option<i64>, u64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let mut parts = raw.split(':');
    let version = parts.next()?;
    if version != "v1" && version != "v2" {
        return None;
    }
    let desc = match parts.next()? {
        "d" => true,
        "a" => false,
        _ => return None,
    };
    let time = match version {
        "v2" => Some(parts.next()?.parse().ok()?),
        _ => None,
    };
    let seq = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((desc, time, seq))
}

impl SearchFilter {
    /// Parses decoded query pairs; every problem is reported with its
    /// parameter name.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<SearchFilter, Vec<FieldError>> {
        let mut f = SearchFilter { descending: true, limit: 50, ..Default::default() };
        let mut errors = Vec::new();
        let mut err = |path: &str, reason: String| errors.push(FieldError { path: path.into(), reason });
        let mut seen_single = std::collections::HashSet::new();
        let mut cursor_value = None;
        let mut order_given = None;
        for (k, v) in pairs {
            let list = match k.as_str() {
                "actor" => Some(&mut f.actors),
                "action" => Some(&mut f.actions),
                "resource_type" => Some(&mut f.resource_types),
                "resource_id" => Some(&mut f.resource_ids),
                "outcome" => Some(&mut f.outcomes),
                "category" => Some(&mut f.categories),
                "channel" => Some(&mut f.channels),
                "severity" => Some(&mut f.severities),
                "tenant" => Some(&mut f.tenants),
                _ => None,
            };
            if let Some(list) = list {
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if part.len() > MAX_VALUE_LEN {
                        err(k, format!("values must be at most {MAX_VALUE_LEN} bytes"));
                    } else if part.chars().any(char::is_control) {
                        err(k, "values must not contain control characters".into());
                    } else if !list.iter().any(|x| x == part) {
                        list.push(part.to_owned());
                    }
                }
                if list.len() > MAX_VALUES {
                    err(k, format!("at most {MAX_VALUES} values"));
                }
                continue;
            }
            if !PARAMETERS.contains(&k.as_str()) {
                err(k, format!("unknown parameter; known: {}", PARAMETERS.join(", ")));
                continue;
            }
            if !seen_single.insert(k.clone()) {
                err(k, "given more than once".into());
                continue;
            }
            match k.as_str() {
                "from" | "to" => match crate::time::parse_rfc3339(v.trim()) {
                    Some(us) if k == "from" => f.from_us = Some(us),
                    Some(us) => f.to_us = Some(us),
                    None => err(k, "must be an RFC 3339 date-time, e.g. 2026-11-26T14:03:00Z".into()),
                },
                "q" => {
                    let q = v.trim();
                    if q.chars().count() > MAX_Q_LEN {
                        err(k, format!("must be at most {MAX_Q_LEN} characters"));
                    } else if !q.is_empty() {
                        f.q = Some(q.to_owned());
                    }
                }
                "own" => match v.as_str() {
                    "include" => f.exclude_own = false,
                    "exclude" => f.exclude_own = true,
                    _ => err(k, "must be include or exclude".into()),
                },
                "order" => match v.as_str() {
                    "asc" => order_given = Some(false),
                    "desc" => order_given = Some(true),
                    _ => err(k, "must be asc or desc".into()),
                },
                "limit" => match v.trim().parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => f.limit = n,
                    _ => err(k, "must be a whole number from 1 to 1000".into()),
                },
                "cursor" => match parse_cursor(v.trim()) {
                    Some(c) => cursor_value = Some(c),
                    None => err(k, "is not a cursor this server returned".into()),
                },
                _ => {}
            }
        }
        for a in &f.actions {
            let base = a.strip_suffix(".*").unwrap_or(a);
            if base.is_empty() || base.contains('*') {
                err("action", format!("`{a}`: use an exact action or a prefix ending in `.*`, e.g. `user.*`"));
            }
        }
        if let (Some(a), Some(b)) = (f.from_us, f.to_us)
            && b <= a
        {
            err("to", "must be after `from`".into());
        }
        if let Some(d) = order_given {
            f.descending = d;
        }
        if let Some((desc, time, seq)) = cursor_value {
            if order_given.is_some_and(|d| d != desc) {
                err("cursor", "was made for the other order".into());
            }
            f.descending = desc;
            f.after_seq = Some(seq);
            f.after_time = time;
        }
        if errors.is_empty() { Ok(f) } else { Err(errors) }
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn any_of(conds: &mut Vec<String>, values: &mut Vec<Value>, column: &str, list: &[String]) {
    if list.is_empty() {
        return;
    }
    conds.push(format!("{column} IN ({})", vec!["?"; list.len()].join(",")));
    values.extend(list.iter().map(|v| Value::from(v.clone())));
}

/// The statement for one page: `limit` rows after `after` in the filter's
/// order (`After::Time` for `by_time`, `After::Seq` otherwise). `actors`
/// and `resource_ids` are the expanded (raw + masked) lists.
///
/// In event-time order (`by_time`), SQLite is told to read the time index,
/// which is in that order (`occurred_at, seq`, then the common filter
/// columns): the read stops after `limit` matches, whatever the window
/// holds (a rare value still walks the index, not the table). PostgreSQL
/// chooses that index itself (seen in its plans on the 10M bench ledger).
///
/// In ledger order with a time bound, SQLite is told to read the time
/// index too (non-matching entries are skipped inside it): left to itself,
/// its planner prefers walking the table in `seq` order to avoid a sort,
/// which is fast for recent windows and very slow for old ones. PostgreSQL
/// gets the same effect from ordering by an expression.
pub fn build_sql(
    f: &SearchFilter,
    actors: &[String],
    resource_ids: &[String],
    after: Option<After>,
    limit: u64,
    backend: sea_orm::DbBackend,
) -> (String, Vec<Value>) {
    debug_assert!(
        after.is_none() || f.by_time == matches!(after, Some(After::Time(..))),
        "a page's start is in its own order"
    );
    let order = if f.descending { "DESC" } else { "ASC" };
    let bounded = f.from_us.is_some() || f.to_us.is_some();
    if f.by_time {
        let hint = match backend {
            sea_orm::DbBackend::Sqlite => " INDEXED BY ledger_entries_by_time",
            _ => "",
        };
        let by_time = format!("ORDER BY occurred_at {order}, seq {order}");
        let Some(After::Time(t, s)) = after else {
            let (wh, mut values) = where_clause(f, actors, resource_ids, None, HeadBound::Range);
            values.push(seq_value(limit));
            return (format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries{hint}{wh} {by_time} LIMIT ?"), values);
        };
        // After a cursor: the rest of its time's entries, then the entries
        // of later times (in the page's direction), each a seek in the
        // index, at most `limit` rows from each. One condition on
        // `(occurred_at, seq)` would let the database seek on the time
        // only, walking every entry already shown of a run sharing it.
        let (same, mut values) = where_clause(f, actors, resource_ids, Some(Start::SameTime(t, s)), HeadBound::Range);
        values.push(seq_value(limit));
        let (past, more) = where_clause(f, actors, resource_ids, Some(Start::PastTime(t)), HeadBound::Range);
        values.extend(more);
        values.push(seq_value(limit));
        values.push(seq_value(limit));
        return (
            format!(
                "SELECT * FROM (SELECT {ENTRY_COLUMNS} FROM ledger_entries{hint}{same} ORDER BY seq {order} LIMIT ?) AS same_time \
                 UNION ALL SELECT * FROM (SELECT {ENTRY_COLUMNS} FROM ledger_entries{hint}{past} {by_time} LIMIT ?) AS past_time \
                 {by_time} LIMIT ?"
            ),
            values,
        );
    }
    let (wh, mut values) = where_clause(f, actors, resource_ids, after.map(Start::of), HeadBound::Range);
    let (hint, key) = match backend {
        sea_orm::DbBackend::Sqlite if bounded => (" INDEXED BY ledger_entries_by_time", "seq"),
        sea_orm::DbBackend::Sqlite if f.only_own => (" INDEXED BY ledger_entries_own", "seq"),
        // PostgreSQL has no index hints; ordering by an expression keeps
        // it from walking the primary key backwards through the whole
        // table when the window is old (it cannot know that seq and
        // occurred_at rise together).
        sea_orm::DbBackend::Postgres if bounded => ("", "(seq + 0)"),
        _ => ("", "seq"),
    };
    values.push(seq_value(limit));
    (format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries{hint}{wh} ORDER BY {key} {order} LIMIT ?"), values)
}

/// The entry at `position` (0-based, seq order) among those matching.
pub(crate) fn nth_sql(f: &SearchFilter, position: u64) -> (String, Vec<Value>) {
    let (wh, mut values) = where_clause(f, &[], &[], None, HeadBound::Range);
    values.push(seq_value(position));
    (format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries{wh} ORDER BY seq ASC LIMIT 1 OFFSET ?"), values)
}

/// Counts per bucket: `(occurred_at - ?) / ?` as `b`, with the `from`
/// and width values to be put first.
pub fn histogram_sql(
    f: &SearchFilter,
    actors: &[String],
    resource_ids: &[String],
    backend: sea_orm::DbBackend,
) -> (String, Vec<Value>) {
    let (wh, values) = where_clause(f, actors, resource_ids, None, HeadBound::Range);
    let hint = match backend {
        sea_orm::DbBackend::Sqlite => " INDEXED BY ledger_entries_by_time",
        _ => "",
    };
    (format!("SELECT (occurred_at - ?) / ? AS b, COUNT(*) AS n FROM ledger_entries{hint}{wh} GROUP BY b"), values)
}

/// `SELECT COUNT(*)` of what a search selects (without `q`).
pub fn count_sql(
    f: &SearchFilter,
    actors: &[String],
    resource_ids: &[String],
    b: sea_orm::DbBackend,
) -> (String, Vec<Value>) {
    // The snapshot bound (`seq <= head`) keeps nearly every row: as a rowid
    // range it makes SQLite count by walking the table itself (every row's
    // ciphertext: 0.3 s for 1M events); `+seq` is the same test without the
    // rowid range, so a covering index is counted instead (0.07 s).
    let bound = if b == sea_orm::DbBackend::Sqlite { HeadBound::NotARange } else { HeadBound::Range };
    let (wh, values) = where_clause(f, actors, resource_ids, None, bound);
    (format!("SELECT COUNT(*) AS n FROM ledger_entries{wh}"), values)
}

/// Where a statement starts reading, as conditions.
#[derive(Clone, Copy)]
enum Start {
    /// Past this seq, in the page's direction.
    Seq(u64),
    /// At this `occurred_at`, past this seq.
    SameTime(i64, u64),
    /// Past this `occurred_at`.
    PastTime(i64),
}

impl Start {
    fn of(after: After) -> Start {
        match after {
            // In ledger order the seq alone is the key.
            After::Seq(s) | After::Time(_, s) => Start::Seq(s),
        }
    }
}

/// How a search's snapshot bound (`max_seq`) is written.
#[derive(Clone, Copy)]
enum HeadBound {
    /// `seq <= ?`: a range of rowids, which SQLite may walk.
    Range,
    /// `+seq <= ?` (SQLite only): the same test, not usable as a range.
    NotARange,
}

/// The WHERE clause (with a leading space, or empty) and its values.
fn where_clause(
    f: &SearchFilter,
    actors: &[String],
    resource_ids: &[String],
    start: Option<Start>,
    bound: HeadBound,
) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut values = Vec::new();
    any_of(&mut conds, &mut values, "actor_id", actors);
    if !f.actions.is_empty() {
        let mut alts = Vec::new();
        let exact: Vec<String> = f.actions.iter().filter(|a| !a.ends_with(".*")).cloned().collect();
        if !exact.is_empty() {
            alts.push(format!("action IN ({})", vec!["?"; exact.len()].join(",")));
            values.extend(exact.into_iter().map(Value::from));
        }
        for a in f.actions.iter().filter_map(|a| a.strip_suffix(".*")) {
            alts.push("action LIKE ? ESCAPE '\\'".into());
            values.push(Value::from(format!("{}.%", escape_like(a))));
        }
        conds.push(format!("({})", alts.join(" OR ")));
    }
    any_of(&mut conds, &mut values, "resource_type", &f.resource_types);
    any_of(&mut conds, &mut values, "resource_id", resource_ids);
    any_of(&mut conds, &mut values, "outcome", &f.outcomes);
    any_of(&mut conds, &mut values, "category", &f.categories);
    any_of(&mut conds, &mut values, "channel", &f.channels);
    any_of(&mut conds, &mut values, "severity", &f.severities);
    any_of(&mut conds, &mut values, "tenant", &f.tenants);
    if let Some(t) = f.from_us {
        conds.push("occurred_at >= ?".into());
        values.push(t.into());
    }
    if let Some(t) = f.to_us {
        conds.push("occurred_at < ?".into());
        values.push(t.into());
    }
    let lt = if f.descending { "<" } else { ">" };
    match start {
        Some(Start::Seq(s)) => {
            conds.push(format!("seq {lt} ?"));
            values.push(seq_value(s));
        }
        Some(Start::SameTime(t, s)) => {
            conds.push(format!("occurred_at = ? AND seq {lt} ?"));
            values.extend([t.into(), seq_value(s)]);
        }
        Some(Start::PastTime(t)) => {
            conds.push(format!("occurred_at {lt} ?"));
            values.push(t.into());
        }
        None => {}
    }
    if let Some(s) = f.max_seq {
        conds.push(
            match bound {
                HeadBound::Range => "seq <= ?",
                HeadBound::NotARange => "+seq <= ?",
            }
            .into(),
        );
        values.push(seq_value(s));
    }
    if f.exclude_own {
        conds.push("(source_app IS NULL OR source_app <> 'custos')".into());
    }
    if f.only_own {
        // A literal, not a bound value: the planners use a partial index
        // only for a WHERE that implies its own.
        conds.push(format!("source_app = '{}'", crate::events::validate::RESERVED_NAME));
    }
    let wh = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    (wh, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn repeated_and_comma_lists_are_the_same_and_single_values_work() {
        let a = SearchFilter::from_pairs(&pairs(&[("action", "a.b"), ("action", "c.*")])).unwrap();
        let b = SearchFilter::from_pairs(&pairs(&[("action", "a.b,c.*")])).unwrap();
        assert_eq!(a, b);
        let one = SearchFilter::from_pairs(&pairs(&[("outcome", "denied")])).unwrap();
        assert_eq!(one.outcomes, vec!["denied"]);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e =
            SearchFilter::from_pairs(&pairs(&[("limit", "0"), ("from", "yesterday"), ("bogus", "1"), ("order", "up")]))
                .unwrap_err();
        let paths: Vec<_> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["limit", "from", "bogus", "order"]);
        assert!(SearchFilter::from_pairs(&pairs(&[("cursor", "nope")])).is_err());
        assert!(SearchFilter::from_pairs(&pairs(&[("action", "*")])).is_err());
        let t = pairs(&[("from", "2026-01-02T00:00:00Z"), ("to", "2026-01-01T00:00:00Z")]);
        assert_eq!(SearchFilter::from_pairs(&t).unwrap_err()[0].path, "to");
    }

    #[test]
    fn cursors_round_trip_and_keep_the_order() {
        let c = cursor(false, After::Seq(42));
        let f = SearchFilter::from_pairs(&pairs(&[("cursor", &c)])).unwrap();
        assert_eq!((f.descending, f.after_seq, f.after_time), (false, Some(42), None));
        assert!(SearchFilter::from_pairs(&pairs(&[("cursor", &c), ("order", "desc")])).is_err());
        let c = cursor(true, After::Time(-7, 9));
        let f = SearchFilter::from_pairs(&pairs(&[("cursor", &c)])).unwrap();
        assert_eq!((f.descending, f.after_seq, f.after_time), (true, Some(9), Some(-7)));
        assert_eq!(f.after(), Some(After::Seq(9)), "ledger order unless by_time");
        assert_eq!(SearchFilter { by_time: true, ..f }.after(), Some(After::Time(-7, 9)));
        for bad in ["v2:d:9", "v2:d:x:9", "v3:d:1:9", "v1:d:1:9"] {
            let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bad);
            assert!(SearchFilter::from_pairs(&pairs(&[("cursor", &c)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn like_prefixes_escape_wildcards() {
        let f = SearchFilter::from_pairs(&pairs(&[("action", "a_b.*")])).unwrap();
        let (sql, values) = build_sql(&f, &[], &[], None, 10, sea_orm::DbBackend::Sqlite);
        assert!(sql.contains("action LIKE ? ESCAPE"), "{sql}");
        assert_eq!(values[0], Value::from("a\\_b.%".to_string()));
    }
}

//! Days and periods: a report covers whole UTC days, named by their date.

use crate::events::validate::FieldError;
use crate::time::{DAY_US, parse_rfc3339, rfc3339};

/// The day (since 1970-01-01, UTC) holding `us`.
pub fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY_US)
}

/// A day's date, `YYYY-MM-DD`.
pub fn date(day: i64) -> String {
    rfc3339(day * DAY_US).chars().take(10).collect()
}

/// The day of a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return None;
    }
    let us = parse_rfc3339(&format!("{s}T00:00:00Z"))?;
    // A date the parser rolled over (2026-02-30) is not a date.
    (date(day_of(us)) == s).then(|| day_of(us))
}

/// (year, month) of a day.
fn year_month(day: i64) -> (i64, i64) {
    let d = date(day);
    (d[..4].parse().unwrap_or(1970), d[5..7].parse().unwrap_or(1))
}

/// The first day of a month (months past 12 or below 1 roll over).
fn month_start(year: i64, month: i64) -> i64 {
    let (y, m) = (year + (month - 1).div_euclid(12), (month - 1).rem_euclid(12) + 1);
    parse_date(&format!("{y:04}-{m:02}-01")).unwrap_or(0)
}

/// The longest period a report covers, in days.
pub const MAX_DAYS: i64 = 732;

/// A report's period, whole days `from..=to`, from a named period or from
/// two dates; `today` is the current day (named periods end before it,
/// except month to date; dates may end with it).
pub fn resolve(
    period: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    today: i64,
) -> Result<(i64, i64), FieldError> {
    let bad = |path: &str, reason: &str| FieldError { path: path.into(), reason: reason.into() };
    let (y, m) = year_month(today);
    let (a, b) = match (period, from, to) {
        (Some(p), None, None) => match p {
            "previous_month" => (month_start(y, m - 1), month_start(y, m) - 1),
            "previous_quarter" => {
                let q = (m - 1) / 3 * 3 + 1;
                (month_start(y, q - 3), month_start(y, q) - 1)
            }
            "last_30_days" => (today - 30, today - 1),
            "last_90_days" => (today - 90, today - 1),
            "last_365_days" => (today - 365, today - 1),
            "month_to_date" => (month_start(y, m), today),
            _ => {
                return Err(bad(
                    "period",
                    "must be previous_month, previous_quarter, last_30_days, last_90_days, last_365_days or \
                     month_to_date",
                ));
            }
        },
        (Some(_), _, _) => return Err(bad("period", "give a period or from and to, not both")),
        (None, Some(f), Some(t)) => {
            let a = parse_date(f).ok_or_else(|| bad("from", "must be a date, YYYY-MM-DD"))?;
            let b = parse_date(t).ok_or_else(|| bad("to", "must be a date, YYYY-MM-DD"))?;
            if b < a {
                return Err(bad("to", "must not be before from"));
            }
            if b > today {
                return Err(bad("to", "must not be after today (UTC)"));
            }
            (a, b)
        }
        (None, None, Some(_)) => return Err(bad("from", "is required with to")),
        (None, Some(_), None) => return Err(bad("to", "is required with from")),
        (None, None, None) => return Err(bad("period", "give a period, or from and to")),
    };
    if b - a + 1 > MAX_DAYS {
        return Err(bad("to", &format!("a report covers at most {MAX_DAYS} days")));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_periods_are_whole_days_before_today() {
        let today = parse_date("2026-12-02").unwrap();
        let r = |p: &str| {
            let (a, b) = resolve(Some(p), None, None, today).unwrap();
            (date(a), date(b))
        };
        assert_eq!(r("previous_month"), ("2026-11-01".into(), "2026-11-30".into()));
        assert_eq!(r("previous_quarter"), ("2026-07-01".into(), "2026-09-30".into()));
        assert_eq!(r("last_30_days"), ("2026-11-02".into(), "2026-12-01".into()));
        assert_eq!(r("month_to_date"), ("2026-12-01".into(), "2026-12-02".into()));
        let jan = parse_date("2027-01-15").unwrap();
        let (a, b) = resolve(Some("previous_month"), None, None, jan).unwrap();
        assert_eq!((date(a), date(b)), ("2026-12-01".into(), "2026-12-31".into()));
        let (a, b) = resolve(Some("previous_quarter"), None, None, jan).unwrap();
        assert_eq!((date(a), date(b)), ("2026-10-01".into(), "2026-12-31".into()));
    }

    #[test]
    fn dates_are_checked_and_named_in_errors() {
        let today = parse_date("2026-12-02").unwrap();
        let e = |p: Option<&str>, f: Option<&str>, t: Option<&str>| resolve(p, f, t, today).unwrap_err().path;
        assert_eq!(e(None, Some("2026-02-30"), Some("2026-03-01")), "from");
        assert_eq!(e(None, Some("2026-03-01"), Some("2026-02-01")), "to");
        assert_eq!(e(None, Some("2026-03-01"), Some("2027-02-01")), "to");
        assert_eq!(e(None, Some("2020-03-01"), Some("2026-02-01")), "to");
        assert_eq!(e(Some("weekly"), None, None), "period");
        assert_eq!(e(Some("previous_month"), Some("2026-01-01"), None), "period");
        assert_eq!(e(None, None, None), "period");
        assert_eq!(parse_date("2026-11-30").map(date).as_deref(), Some("2026-11-30"));
    }
}

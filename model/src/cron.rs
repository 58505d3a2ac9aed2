//! Five-field cron expressions (minute hour day-of-month month
//! day-of-week), in UTC, for report schedules: `*`, values, ranges `a-b`,
//! steps `*/n` and `a-b/n`, comma lists, month and day names (`jan`,
//! `mon`); day of week 0 and 7 are Sunday. A day field is unrestricted
//! only when it is exactly `*`; when both are restricted, a day matching
//! either runs (POSIX; Vixie cron also treats `*/n` as unrestricted).

use crate::time::{DAY_US, MINUTE_US};

/// A parsed expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
}

const FIELDS: [(&str, u32, u32); 5] =
    [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(field: usize, s: &str) -> Result<u32, String> {
    let (name, lo, hi) = FIELDS[field];
    let lower = s.to_ascii_lowercase();
    let named = match field {
        3 => MONTHS.iter().position(|m| *m == lower).map(|i| i as u32 + 1),
        4 => WEEKDAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => s.parse::<u32>().map_err(|_| format!("{name}: `{s}` is not a number"))?,
    };
    if v < lo || v > hi {
        return Err(format!("{name}: {v} is out of {lo}-{hi}"));
    }
    Ok(v)
}

/// The bits a field selects, and whether it was `*`.
fn field(i: usize, text: &str) -> Result<(u64, bool), String> {
    let (name, lo, hi) = FIELDS[i];
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s.parse::<u32>().map_err(|_| format!("{name}: step `{s}` is not a number"))?;
                if step == 0 || step > hi {
                    return Err(format!("{name}: a step of {step} (1-{hi})"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(i, a)?, value(i, b)?);
            if b < a {
                return Err(format!("{name}: range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(i, range)?;
            (a, if step > 1 { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

/// (year, month, day, weekday 0 = Sunday) of a day since 1970-01-01.
fn civil(day: i64) -> (i64, u32, u32, u32) {
    // Howard Hinnant's days_from_civil, inverted.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (day + 4).rem_euclid(7) as u32)
}

/// A run time for people: `YYYY-MM-DD HH:MM UTC`.
pub fn format_utc(us: i64) -> String {
    let (y, m, d, _) = civil(us.div_euclid(DAY_US));
    let minute = us.rem_euclid(DAY_US) / MINUTE_US;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", minute / 60, minute % 60)
}

impl Cron {
    /// Parses an expression; the error names the field.
    pub fn parse(s: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "five fields are needed (minute hour day-of-month month day-of-week), not {}",
                parts.len()
            ));
        }
        let (minutes, _) = field(0, parts[0])?;
        let (hours, _) = field(1, parts[1])?;
        let (days, any_day) = field(2, parts[2])?;
        let (months, _) = field(3, parts[3])?;
        let (mut weekdays, any_weekday) = field(4, parts[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let cron = Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            any_day,
            any_weekday,
        };
        // 30 February and the like never come.
        if cron.next_after(0).is_none() {
            return Err("the expression never matches a date".into());
        }
        Ok(cron)
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, m, d, wd) = civil(day);
        if self.months & (1 << m) == 0 {
            return false;
        }
        let by_day = self.days & (1 << d) != 0;
        let by_weekday = self.weekdays & (1 << wd) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => by_day,
            (true, false) => by_weekday,
            (false, false) => by_day || by_weekday,
        }
    }

    /// The next `n` times after `us` (fewer when it stops matching).
    pub fn next_runs(&self, us: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = us;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The shortest time between two runs (µs) over a year's worth of
    /// them from a fixed day (every field's pattern shows within a year),
    /// or `None` when it runs at most once.
    pub fn shortest_gap(&self) -> Option<i64> {
        // 2027-01-01T00:00Z, a Friday.
        let runs = self.next_runs(1_798_761_600_000_000 - 1, 2_000);
        runs.windows(2).map(|w| w[1] - w[0]).min()
    }

    /// The first time it matches strictly after `us` (µs since the epoch,
    /// whole minutes), within eight years.
    pub fn next_after(&self, us: i64) -> Option<i64> {
        let start = us.div_euclid(MINUTE_US) + 1;
        let first_day = start.div_euclid(1440);
        for day in first_day..first_day + 366 * 8 {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { start.rem_euclid(1440) } else { 0 };
            for minute_of_day in from..1440 {
                let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                    return Some(day * DAY_US + minute_of_day * MINUTE_US);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        // YYYY-MM-DDTHH:MM, UTC.
        let (y, mo, d): (i64, i64, i64) =
            (s[..4].parse().unwrap(), s[5..7].parse().unwrap(), s[8..10].parse().unwrap());
        let (h, mi): (i64, i64) = (s[11..13].parse().unwrap(), s[14..16].parse().unwrap());
        let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
        let era = yy.div_euclid(400);
        let yoe = yy - era * 400;
        let doy = (153 * mm + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * DAY_US + h * 3_600_000_000 + mi * MINUTE_US
    }

    #[test]
    fn run_times_print_in_utc() {
        assert_eq!(format_utc(at("2027-02-01T06:05")), "2027-02-01 06:05 UTC");
        assert_eq!(format_utc(at("2028-02-29T23:59")), "2028-02-29 23:59 UTC");
    }

    #[test]
    fn next_runs_follow_the_fields() {
        let next = |e: &str, from: &str| Cron::parse(e).unwrap().next_after(at(from)).unwrap();
        assert_eq!(next("0 6 1 * *", "2027-01-31T23:00"), at("2027-02-01T06:00"));
        assert_eq!(next("0 6 1 * *", "2027-02-01T06:00"), at("2027-03-01T06:00"), "strictly after");
        assert_eq!(next("*/15 * * * *", "2027-01-01T10:07"), at("2027-01-01T10:15"));
        assert_eq!(next("30 8 * * mon-fri", "2027-01-01T09:00"), at("2027-01-04T08:30"), "1 Jan 2027 is a Friday");
        assert_eq!(next("0 0 * * 7", "2027-01-01T00:00"), at("2027-01-03T00:00"), "7 is Sunday");
        assert_eq!(next("0 0 29 feb *", "2027-01-01T00:00"), at("2028-02-29T00:00"));
        assert_eq!(next("0 12 13 * fri", "2027-01-02T00:00"), at("2027-01-08T12:00"), "either day field");
        assert_eq!(next("0 12 13 * fri", "2027-01-09T00:00"), at("2027-01-13T12:00"), "either day field");
        assert_eq!(next("0 0 1 jan,jul *", "2027-02-01T00:00"), at("2027-07-01T00:00"));
        assert_eq!(next("5 0-23/6 * * *", "2027-01-01T06:05"), at("2027-01-01T12:05"));
        // Strictly after, from a time that is not a whole minute.
        let cron = Cron::parse("0 6 * * *").unwrap();
        assert_eq!(cron.next_after(at("2027-01-01T06:00") - 1), Some(at("2027-01-01T06:00")));
        assert_eq!(cron.next_after(at("2027-01-01T06:00") + 1), Some(at("2027-01-02T06:00")));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |s: &str| Cron::parse(s).unwrap_err();
        assert!(e("0 6 1 *").contains("five fields"));
        assert!(e("60 6 1 * *").starts_with("minute: 60 is out of 0-59"), "{}", e("60 6 1 * *"));
        assert!(e("0 24 1 * *").starts_with("hour"));
        assert!(e("0 6 0 * *").starts_with("day of month"));
        assert!(e("0 6 1 13 *").starts_with("month"));
        assert!(e("0 6 1 * 8").starts_with("day of week"));
        assert!(e("0 6 1 * x").contains("not a number"));
        assert!(e("*/0 6 1 * *").contains("step of 0"));
        assert!(e("59/4294967295 * * * *").starts_with("minute: a step of 4294967295"), "no wrap-around");
        assert!(e("0 6 5-2 * *").contains("backwards"));
        assert_eq!(e("0 0 30 feb *"), "the expression never matches a date");
    }
}

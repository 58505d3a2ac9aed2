//! One table for every benchmark: each bench that measures something the
//! performance issue sets an aim for appends a row (measure, value, the
//! baseline measured in the same run, their ratio, the aim, met or not) to
//! the file named by `BENCH_RESULTS`, one JSON object per line;
//! `make bench` runs them all and prints the table
//! (`scripts/bench-table.py`). Without the variable nothing is written.

use serde::Serialize;

/// The nearest-rank `q` quantile (0 < q ≤ 1) of sorted values: the
/// smallest value with at least `q` of them at or below it.
pub fn nearest_rank<T>(sorted: &[T], q: f64) -> Option<&T> {
    let n = sorted.len();
    (n > 0).then(|| &sorted[(((q * n as f64).ceil() as usize).max(1) - 1).min(n - 1)])
}

/// An aim a measure is held to.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aim {
    /// The value at least this.
    AtLeast {
        /// The bound.
        value: f64,
    },
    /// The value at most this.
    AtMost {
        /// The bound.
        value: f64,
    },
    /// The value divided by the baseline at least this.
    RatioAtLeast {
        /// The bound.
        value: f64,
    },
}

/// One row of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    /// What was measured, e.g. "SQLite ingest (200,000 events)".
    pub measure: String,
    /// The figure.
    pub value: f64,
    /// Its unit, e.g. "events/s" or "ms".
    pub unit: &'static str,
    /// What it stands next to, measured in the same run.
    pub baseline: Option<f64>,
    /// What the baseline is, e.g. "plain inserts".
    pub baseline_is: Option<String>,
    /// value / baseline.
    pub ratio: Option<f64>,
    /// The aim, if the issue sets one.
    pub aim: Option<Aim>,
    /// Whether the aim is met (none without an aim).
    pub met: Option<bool>,
}

impl Row {
    /// A row of `value` in `unit`.
    pub fn new(measure: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            measure: measure.into(),
            value,
            unit,
            baseline: None,
            baseline_is: None,
            ratio: None,
            aim: None,
            met: None,
        }
    }

    /// Next to this baseline (what it is, its value in the same unit).
    pub fn baseline(mut self, what: impl Into<String>, value: f64) -> Row {
        self.baseline = Some(value);
        self.baseline_is = Some(what.into());
        self.ratio = (value > 0.0).then(|| self.value / value);
        self
    }

    /// Held to this aim.
    pub fn aim(mut self, aim: Aim) -> Row {
        self.met = match aim {
            Aim::AtLeast { value } => Some(self.value >= value),
            Aim::AtMost { value } => Some(self.value <= value),
            Aim::RatioAtLeast { value } => self.ratio.map(|r| r >= value),
        };
        self.aim = Some(aim);
        self
    }

    /// Appends the row to `BENCH_RESULTS`, if set. A failure to
    /// write is said on stderr (the bench's own output still stands).
    pub fn record(self) {
        let Some(path) = std::env::var_os("BENCH_RESULTS") else { return };
        let line = match serde_json::to_string(&self) {
            Ok(l) => l,
            Err(e) => return eprintln!("custos: bench results: {e}"),
        };
        let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| {
            use std::io::Write as _;
            writeln!(f, "{line}")
        });
        if let Err(e) = written {
            eprintln!("custos: bench results: {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// An event as a plain row of the ledger's table, for the baselines: its
/// header at `seq`, and stand-ins of the same sizes for the ciphertext
/// (PKCS#7: the payload rounded up to the next block), the MAC and hashes.
pub fn plain_row(seq: u64, e: &custos_engine::ledger::NewEntry) -> custos_engine::ledger::types::StoredEntry {
    let mut ciphertext = e.payload.clone();
    ciphertext.resize((e.payload.len() / 16 + 1) * 16, 0);
    custos_engine::ledger::types::StoredEntry {
        header: custos_engine::ledger::types::EntryHeader {
            seq,
            event_id: e.event_id,
            occurred_at_us: e.occurred_at_us,
            recorded_at_us: e.occurred_at_us,
            fields: e.fields.clone(),
        },
        key_id: 1,
        iv: [7; 16],
        ciphertext,
        mac: [1; 32],
        leaf_hash: [2; 32],
        chain_hash: [3; 32],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(&50));
        assert_eq!(nearest_rank(&v, 0.95), Some(&95));
        assert_eq!(nearest_rank(&v, 1.0), Some(&100));
        assert_eq!(nearest_rank(&[7], 0.99), Some(&7));
        assert_eq!(nearest_rank::<u32>(&[], 0.5), None);
    }

    #[test]
    fn ratio_and_aims() {
        let r =
            Row::new("ingest", 90.0, "events/s").baseline("plain inserts", 100.0).aim(Aim::RatioAtLeast { value: 0.9 });
        assert_eq!(r.ratio, Some(0.9));
        assert_eq!(r.met, Some(true));
        let r = Row::new("p95", 51.0, "ms").aim(Aim::AtMost { value: 50.0 });
        assert_eq!(r.met, Some(false));
        assert_eq!(r.ratio, None);
        let r = Row::new("x", 1.0, "ms").baseline("zero", 0.0).aim(Aim::RatioAtLeast { value: 0.5 });
        assert_eq!(r.met, None, "no ratio, no verdict");
        let r = Row::new("rate", 1e6, "events/s").aim(Aim::AtLeast { value: 1e6 });
        assert_eq!(r.met, Some(true));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["aim"]["kind"], "at_least");
    }
}

//! Ingest's own trail at the right grain. Every other request to the API
//! is recorded one by one (`self_audit`), but an ingest request's events
//! are themselves sealed in the ledger with their submitter, so a record
//! per request doubled the ledger for nothing (one event sent per request
//! cost two entries). Ingest requests are instead counted per caller and
//! outcome, and one `audit.ingest.summary` record per caller and outcome
//! is written every minute (and at shutdown): how many requests, events
//! stored, duplicates and conflicts, bytes, the seq range, the statuses
//! answered, the addresses they came from, and the slowest answer.
//!
//! Refused ingest requests with a caller (400, 413, 415, 422, 503…) are
//! counted the same way, under their own outcome. Not counted, recorded one
//! by one as before: anonymous requests (gated per address), 401 and 403,
//! and a panicking handler's 500.
//!
//! A summary that cannot be recorded is kept for the next try; a crash
//! loses at most the last minute's summaries, never an event (the events
//! are committed before their request is answered).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use custos_engine::events::{Events, OwnAction, OwnEvent};
use custos_model::{Actor, Channel, IngestReceipt, Outcome};

/// How often the summaries are recorded.
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(60);
/// Most addresses listed in one summary (the rest are counted).
const MAX_ADDRESSES: usize = 16;
/// Most callers summarised at once; beyond it a request is recorded on its
/// own (a flood of new keys cannot grow this map without bound).
const MAX_OPEN: usize = 10_000;

/// What one ingest request stored, set by the handler on its response.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestTally {
    /// Events stored by this request.
    pub stored: u64,
    /// Events already stored (retries).
    pub duplicates: u64,
    /// Events refused for an id used for different content.
    pub conflicts: u64,
    /// The lowest and highest seq stored.
    pub seqs: Option<(u64, u64)>,
    /// Body bytes.
    pub bytes: u64,
}

impl IngestTally {
    /// From the receipts of a request whose body had `bytes` bytes.
    pub fn of(receipts: &[IngestReceipt], bytes: usize) -> IngestTally {
        let mut t = IngestTally { bytes: bytes as u64, ..IngestTally::default() };
        for r in receipts {
            if r.conflict {
                t.conflicts += 1;
            } else if r.duplicate {
                t.duplicates += 1;
            } else {
                t.stored += 1;
                t.seqs = Some(match t.seqs {
                    None => (r.seq, r.seq),
                    Some((lo, hi)) => (lo.min(r.seq), hi.max(r.seq)),
                });
            }
        }
        t
    }
}

/// One request, as the summary counts it.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Who sent it (the first request's actor is the summary's).
    pub actor: Actor,
    /// Its outcome (by its status).
    pub outcome: Outcome,
    /// The status answered.
    pub status: u16,
    /// What it stored (none for a refused request).
    pub tally: IngestTally,
    /// How long it took (ms).
    pub duration_ms: f64,
    /// Its request id.
    pub request_id: Option<String>,
}

#[derive(Debug)]
struct Summary {
    actor: Actor,
    outcome: Outcome,
    requests: u64,
    stored: u64,
    duplicates: u64,
    conflicts: u64,
    bytes: u64,
    seqs: Option<(u64, u64)>,
    statuses: BTreeMap<u16, u64>,
    addresses: BTreeSet<String>,
    more_addresses: bool,
    slowest_ms: f64,
    first_request_id: Option<String>,
    last_request_id: Option<String>,
    first_at_us: i64,
    last_at_us: i64,
}

impl Summary {
    fn new(c: &Counted, now_us: i64) -> Summary {
        Summary {
            actor: c.actor.clone(),
            outcome: c.outcome,
            requests: 0,
            stored: 0,
            duplicates: 0,
            conflicts: 0,
            bytes: 0,
            seqs: None,
            statuses: BTreeMap::new(),
            addresses: BTreeSet::new(),
            more_addresses: false,
            slowest_ms: 0.0,
            first_request_id: c.request_id.clone(),
            last_request_id: None,
            first_at_us: now_us,
            last_at_us: now_us,
        }
    }

    fn add(&mut self, c: Counted, now_us: i64) {
        self.requests += 1;
        self.stored += c.tally.stored;
        self.duplicates += c.tally.duplicates;
        self.conflicts += c.tally.conflicts;
        self.bytes += c.tally.bytes;
        self.seqs = match (self.seqs, c.tally.seqs) {
            (None, s) | (s, None) => s,
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        };
        *self.statuses.entry(c.status).or_default() += 1;
        if let Some(ip) = c.actor.ip.clone() {
            if self.addresses.len() < MAX_ADDRESSES || self.addresses.contains(&ip) {
                self.addresses.insert(ip);
            } else {
                self.more_addresses = true;
            }
        }
        self.slowest_ms = self.slowest_ms.max(c.duration_ms);
        self.last_request_id = c.request_id;
        self.first_at_us = self.first_at_us.min(now_us);
        self.last_at_us = self.last_at_us.max(now_us);
    }

    /// Another summary of the same caller and outcome (one kept after a
    /// failed record) folded in.
    fn merge(&mut self, o: Summary) {
        self.requests += o.requests;
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.bytes += o.bytes;
        self.seqs = match (self.seqs, o.seqs) {
            (None, s) | (s, None) => s,
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        };
        for (status, n) in o.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for ip in o.addresses {
            if self.addresses.len() < MAX_ADDRESSES {
                self.addresses.insert(ip);
            } else {
                self.more_addresses = true;
            }
        }
        self.more_addresses |= o.more_addresses;
        self.slowest_ms = self.slowest_ms.max(o.slowest_ms);
        if o.first_at_us < self.first_at_us {
            self.first_at_us = o.first_at_us;
            self.first_request_id = o.first_request_id;
        }
        if o.last_at_us > self.last_at_us {
            self.last_at_us = o.last_at_us;
            self.last_request_id = o.last_request_id;
        }
    }

    fn event(&self) -> OwnEvent {
        let action = OwnAction::Request { action: "audit.ingest.summary".into(), category: "data_access" };
        let statuses: serde_json::Map<String, serde_json::Value> =
            self.statuses.iter().map(|(s, n)| (s.to_string(), (*n).into())).collect();
        OwnEvent::new(action, self.actor.clone(), Channel::Api)
            .outcome(self.outcome)
            .resource("endpoint", Some("POST /api/audit/events".into()))
            .request(self.first_request_id.clone())
            .details(serde_json::json!({
                "requests": self.requests,
                "events_stored": self.stored,
                "duplicates": self.duplicates,
                "conflicts": self.conflicts,
                "bytes": self.bytes,
                "first_seq": self.seqs.map(|s| s.0),
                "last_seq": self.seqs.map(|s| s.1),
                "statuses": statuses,
                "addresses": self.addresses,
                "more_addresses": self.more_addresses,
                "slowest_ms": self.slowest_ms,
                "first_at_us": self.first_at_us,
                "last_at_us": self.last_at_us,
                "first_request_id": self.first_request_id,
                "last_request_id": self.last_request_id,
                "note": "ingest requests are summarised per caller, outcome and minute; the events stored are in the ledger, each with its submitter",
            }))
    }
}

/// The open summaries of this process.
#[derive(Debug, Default)]
pub struct IngestSummaries {
    open: Mutex<HashMap<(String, &'static str), Summary>>,
}

impl IngestSummaries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, &'static str), Summary>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request; false when too many callers are open already (it
    /// is then to be recorded on its own).
    pub fn add(&self, c: Counted, now_us: i64) -> bool {
        let key = (format!("{}:{}", c.actor.kind, c.actor.id), c.outcome.as_str());
        let mut open = self.lock();
        if !open.contains_key(&key) && open.len() >= MAX_OPEN {
            return false;
        }
        open.entry(key).or_insert_with(|| Summary::new(&c, now_us)).add(c, now_us);
        true
    }

    /// Records every open summary; one that cannot be recorded is kept for
    /// the next time. How many were recorded.
    pub async fn record(&self, events: &Events) -> usize {
        let taken: Vec<_> = self.lock().drain().collect();
        let mut recorded = 0;
        for (key, summary) in taken {
            match events.record_own(summary.event()).await {
                Ok(_) => recorded += 1,
                Err(e) => {
                    tracing::warn!(error = %e, caller = %key.0, "an ingest summary could not be recorded; kept for the next try");
                    let mut open = self.lock();
                    match open.remove(&key) {
                        Some(newer) => {
                            let mut kept = summary;
                            kept.merge(newer);
                            open.insert(key, kept);
                        }
                        None => {
                            open.insert(key, summary);
                        }
                    }
                }
            }
        }
        recorded
    }
}

//! Ingest's own trail at the right grain. Every other request to the API
//! is recorded one by one (`self_audit`), but an accepted ingest request's
//! events are themselves sealed in the ledger, each with its submitter,
//! before the answer leaves, so a record per request doubled the ledger for
//! nothing (one event sent per request cost two entries). Accepted ingest
//! requests (2xx) are instead counted per caller in this process, and one
//! `audit.ingest.summary` record per caller is written every
//! `ingest.summary_secs` (60 s; a period of this process, not clock
//! minutes; each replica summarises its own requests) and at shutdown: how
//! many requests, events stored and duplicates, bytes, the seq range, the
//! statuses, the addresses and user agents, the slowest answer, the first
//! and last request ids.
//!
//! Everything else is recorded one by one, before its answer leaves, as
//! before: refused ingest requests (400, 409, 413, 415, 422, 503…, so a
//! forged reserved action or an id conflict has its own record, time and
//! request id), anonymous ones (gated per address), 401, 403 and panics,
//! requests while more than 10,000 callers are open, and those answered
//! once shutdown has begun.
//!
//! A summary that cannot be recorded is kept and merged into the next one;
//! a crash loses the summaries not yet recorded (normally those of the
//! last period; more while the ledger cannot record), never an event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use custos_engine::events::{Events, OwnAction, OwnEvent};
use custos_model::{Actor, Channel, IngestReceipt, Outcome};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most addresses and user agents listed in one summary (beyond, a flag
/// says there were more).
const MAX_LISTED: usize = 16;
/// Most callers summarised at once; beyond it a request is recorded on its
/// own (a flood of new keys cannot grow this map without bound; summaries
/// kept after a failed record may take it to twice this).
const MAX_OPEN: usize = 10_000;

/// What one ingest request stored, set by the handler on its response.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestTally {
    /// Events stored by this request.
    pub stored: u64,
    /// Events already stored (retries).
    pub duplicates: u64,
    /// The lowest and highest seq stored.
    pub seqs: Option<(u64, u64)>,
    /// Body bytes.
    pub bytes: u64,
}

impl IngestTally {
    /// From the receipts of a request whose body had `bytes` bytes.
    pub fn of(receipts: &[IngestReceipt], bytes: usize) -> IngestTally {
        let mut t = IngestTally { bytes: bytes as u64, ..IngestTally::default() };
        // A conflict is answered 409, recorded on its own: not counted here.
        for r in receipts.iter().filter(|r| !r.conflict) {
            if r.duplicate {
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

/// One accepted request, as the summary counts it.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Who sent it, from where.
    pub actor: Actor,
    /// The status answered (2xx).
    pub status: u16,
    /// What it stored.
    pub tally: IngestTally,
    /// How long it took (ms).
    pub duration_ms: f64,
    /// Its request id.
    pub request_id: Option<String>,
}

#[derive(Debug)]
struct Summary {
    /// The caller; its address and user agent only where every request
    /// agreed (the lists below say which there were).
    actor: Actor,
    requests: u64,
    stored: u64,
    duplicates: u64,
    bytes: u64,
    seqs: Option<(u64, u64)>,
    statuses: BTreeMap<u16, u64>,
    addresses: BTreeSet<String>,
    user_agents: BTreeSet<String>,
    more_listed: bool,
    slowest_ms: f64,
    first_request_id: Option<String>,
    last_request_id: Option<String>,
    first_at_us: i64,
    last_at_us: i64,
}

/// Adds `item` to a list of at most [`MAX_LISTED`]; false when it is full.
fn list(set: &mut BTreeSet<String>, item: &Option<String>) -> bool {
    match item {
        Some(i) if !set.contains(i) => {
            if set.len() >= MAX_LISTED {
                return false;
            }
            set.insert(i.clone());
            true
        }
        _ => true,
    }
}

fn span(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (None, s) | (s, None) => s,
        (Some((lo, hi)), Some((lo2, hi2))) => Some((lo.min(lo2), hi.max(hi2))),
    }
}

impl Summary {
    fn new(c: &Counted, now_us: i64) -> Summary {
        Summary {
            actor: c.actor.clone(),
            requests: 0,
            stored: 0,
            duplicates: 0,
            bytes: 0,
            seqs: None,
            statuses: BTreeMap::new(),
            addresses: BTreeSet::new(),
            user_agents: BTreeSet::new(),
            more_listed: false,
            slowest_ms: 0.0,
            first_request_id: c.request_id.clone(),
            last_request_id: None,
            first_at_us: now_us,
            last_at_us: now_us,
        }
    }

    fn add(&mut self, c: Counted, now_us: i64) {
        self.requests += 1;
        self.stored = self.stored.saturating_add(c.tally.stored);
        self.duplicates = self.duplicates.saturating_add(c.tally.duplicates);
        self.bytes = self.bytes.saturating_add(c.tally.bytes);
        self.seqs = span(self.seqs, c.tally.seqs);
        *self.statuses.entry(c.status).or_default() += 1;
        let listed = list(&mut self.addresses, &c.actor.ip) & list(&mut self.user_agents, &c.actor.user_agent);
        self.more_listed |= !listed;
        if self.actor.ip != c.actor.ip {
            self.actor.ip = None;
        }
        if self.actor.user_agent != c.actor.user_agent {
            self.actor.user_agent = None;
        }
        self.slowest_ms = self.slowest_ms.max(c.duration_ms);
        self.last_request_id = c.request_id;
        self.first_at_us = self.first_at_us.min(now_us);
        self.last_at_us = self.last_at_us.max(now_us);
    }

    /// A newer summary of the same caller folded into this one (kept after
    /// a failed record).
    fn merge(&mut self, newer: Summary) {
        self.requests = self.requests.saturating_add(newer.requests);
        self.stored = self.stored.saturating_add(newer.stored);
        self.duplicates = self.duplicates.saturating_add(newer.duplicates);
        self.bytes = self.bytes.saturating_add(newer.bytes);
        self.seqs = span(self.seqs, newer.seqs);
        for (status, n) in newer.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for a in newer.addresses {
            self.more_listed |= !list(&mut self.addresses, &Some(a));
        }
        for u in newer.user_agents {
            self.more_listed |= !list(&mut self.user_agents, &Some(u));
        }
        self.more_listed |= newer.more_listed;
        if self.actor.ip != newer.actor.ip {
            self.actor.ip = None;
        }
        if self.actor.user_agent != newer.actor.user_agent {
            self.actor.user_agent = None;
        }
        self.slowest_ms = self.slowest_ms.max(newer.slowest_ms);
        self.last_request_id = newer.last_request_id;
        self.first_at_us = self.first_at_us.min(newer.first_at_us);
        self.last_at_us = self.last_at_us.max(newer.last_at_us);
    }

    fn event(&self) -> OwnEvent {
        let action = OwnAction::Request { action: "audit.ingest.summary".into(), category: "data_access" };
        let statuses: serde_json::Map<String, serde_json::Value> =
            self.statuses.iter().map(|(s, n)| (s.to_string(), (*n).into())).collect();
        OwnEvent::new(action, self.actor.clone(), Channel::Api)
            .outcome(Outcome::Success)
            .resource("endpoint", Some("POST /api/audit/events".into()))
            .request(self.first_request_id.clone())
            .details(serde_json::json!({
                "requests": self.requests,
                "events_stored": self.stored,
                "duplicates": self.duplicates,
                "bytes": self.bytes,
                "first_seq": self.seqs.map(|s| s.0),
                "last_seq": self.seqs.map(|s| s.1),
                "statuses": statuses,
                "addresses": self.addresses,
                "user_agents": self.user_agents,
                "more_addresses_or_agents": self.more_listed,
                "slowest_ms": self.slowest_ms,
                "first_at_us": self.first_at_us,
                "last_at_us": self.last_at_us,
                "first_request_id": self.first_request_id,
                "last_request_id": self.last_request_id,
                "note": "accepted ingest requests are summarised per caller and period; the events stored are in the ledger, each with its submitter; refused ones are recorded one by one",
            }))
    }
}

/// The open summaries of this process.
#[derive(Debug, Default)]
pub struct IngestSummaries {
    open: Mutex<HashMap<String, Summary>>,
    /// Set once shutdown has begun: requests are then recorded one by one.
    closed: AtomicBool,
}

impl IngestSummaries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Summary>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an accepted request; false when it is to be recorded on its
    /// own (shutdown has begun, or too many callers are open).
    pub fn add(&self, c: Counted, now_us: i64) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let key = format!("{}:{}", c.actor.kind, c.actor.id);
        let mut open = self.lock();
        if !open.contains_key(&key) && open.len() >= MAX_OPEN {
            return false;
        }
        open.entry(key).or_insert_with(|| Summary::new(&c, now_us)).add(c, now_us);
        true
    }

    /// No more counting: the requests still answered are recorded one by
    /// one (shutdown; the last summaries are recorded next).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
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
                    tracing::warn!(error = %e, caller = %key, requests = summary.requests, "an ingest summary could not be recorded; kept for the next try");
                    let mut open = self.lock();
                    let kept = match open.remove(&key) {
                        Some(newer) => {
                            let mut older = summary;
                            older.merge(newer);
                            older
                        }
                        None => summary,
                    };
                    open.insert(key, kept);
                }
            }
        }
        recorded
    }

    /// Requests counted and not yet recorded.
    pub fn pending(&self) -> u64 {
        self.lock().values().map(|s| s.requests).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(ip: &str, agent: &str, status: u16, seqs: Option<(u64, u64)>, id: &str) -> Counted {
        let actor = Actor {
            id: "k1".into(),
            kind: "api_key".into(),
            name: None,
            ip: Some(ip.into()),
            user_agent: Some(agent.into()),
            session_id: None,
        };
        let tally =
            IngestTally { stored: seqs.map_or(0, |(a, b)| b - a + 1), seqs, bytes: u64::MAX / 2, ..Default::default() };
        Counted { actor, status, tally, duration_ms: 1.5, request_id: Some(id.into()) }
    }

    #[test]
    fn a_summary_counts_and_merges_without_overflow_or_false_attribution() {
        let all = IngestSummaries::default();
        assert!(all.add(counted("10.0.0.1", "a", 201, Some((5, 9)), "r1"), 100));
        assert!(all.add(counted("10.0.0.1", "a", 200, None, "r2"), 200));
        assert!(all.add(counted("10.0.0.2", "a", 201, Some((3, 3)), "r3"), 300));
        let open = all.lock();
        let s = open.get("api_key:k1").unwrap();
        assert_eq!((s.requests, s.stored, s.seqs, s.bytes), (3, 6, Some((3, 9)), u64::MAX), "saturated bytes");
        assert_eq!(s.actor.ip, None, "two addresses: none stands for all");
        assert_eq!(s.actor.user_agent.as_deref(), Some("a"), "one agent: kept");
        assert_eq!(s.addresses.len(), 2);
        assert_eq!((s.first_request_id.as_deref(), s.last_request_id.as_deref()), (Some("r1"), Some("r3")));
        assert!(!s.more_listed);
        drop(open);
        // A kept summary merges the newer one: its last request id, no
        // false "more" for an address already listed.
        let mut older = all.lock().remove("api_key:k1").unwrap();
        let mut newer = Summary::new(&counted("10.0.0.2", "a", 201, None, "r4"), 400);
        newer.add(counted("10.0.0.2", "a", 201, None, "r4"), 400);
        older.merge(newer);
        assert_eq!((older.requests, older.last_request_id.as_deref(), older.more_listed), (4, Some("r4"), false));
        assert_eq!((older.first_at_us, older.last_at_us), (100, 400));
        // Once closed, nothing more is counted.
        all.close();
        assert!(!all.add(counted("10.0.0.1", "a", 201, None, "r5"), 500));
        assert_eq!(all.pending(), 0);
    }

    #[test]
    fn addresses_beyond_the_list_are_flagged() {
        let all = IngestSummaries::default();
        for i in 0..20 {
            assert!(all.add(counted(&format!("10.0.0.{i}"), "a", 201, None, "r"), i));
        }
        let open = all.lock();
        let s = open.get("api_key:k1").unwrap();
        assert_eq!((s.addresses.len(), s.more_listed, s.requests), (MAX_LISTED, true, 20));
    }
}

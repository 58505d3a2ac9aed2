//! Requests counted into summaries instead of recorded one by one, where a
//! record per request says nothing the ledger does not already hold. Every
//! other request to the API, server functions and pages is recorded one by
//! one (`self_audit`), before its answer leaves.
//!
//! Two kinds, each summarised per caller in this process and recorded every
//! period (a period of this process, not clock minutes; each replica
//! summarises the requests it answered) and at shutdown:
//!
//! - **Ingest** (`audit.ingest.summary`, every `ingest.summary_secs`): an
//!   accepted ingest request's events are themselves sealed in the ledger,
//!   each with its submitter, before the answer leaves, so a record per
//!   request doubled the ledger for nothing (one event sent per request cost
//!   two entries). Accepted requests (2xx) are counted per caller: requests,
//!   events stored and duplicates, bytes, the seq range, statuses,
//!   addresses and user agents, the slowest answer, the first and last
//!   request ids. Refused ones (400, 409, 413, 415, 422, 503…, so a forged
//!   reserved action or an id conflict has its own record, time and request
//!   id) are recorded one by one.
//! - **Presence** (`audit.presence`, every `server.presence_secs`): the
//!   pages' automatic refreshes (the home page's status every 5 s, the
//!   forwarding page's destinations every 2 s, the analytics figures, a
//!   running job's progress) wrote a record every few seconds per open tab.
//!   A signed-in user's successful read of a polled endpoint
//!   ([`crate::access::Route::polled`]) is recorded one by one the first
//!   time (per endpoint, its path values and query), then its repeats are
//!   counted: one record per user, address and browser and period, listing
//!   each endpoint with how many times it was read. A read with other
//!   values, a refusal, an API key's read and every other endpoint are
//!   recorded one by one. A user who stops polling for a whole period is
//!   recorded one by one again on the next read.
//!
//! Also recorded one by one: anonymous requests (gated per address), 401,
//! 403 and panics, requests while more than 10,000 callers are open, and
//! those answered once shutdown has begun.
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
/// Most endpoints one presence summary counts; beyond, the others' reads
/// are recorded one by one.
const MAX_ENDPOINTS: usize = 32;

/// What a summary counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryKind {
    /// Accepted ingest requests, per caller.
    Ingest,
    /// Repeated reads of polled endpoints, per user, address and browser.
    Presence,
}

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

/// One answered request, as a summary counts it.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Who sent it, from where.
    pub actor: Actor,
    /// The status answered (2xx).
    pub status: u16,
    /// What it stored (ingest; zero otherwise).
    pub tally: IngestTally,
    /// How long it took (ms).
    pub duration_ms: f64,
    /// Its request id.
    pub request_id: Option<String>,
    /// The endpoint: method and route (ingest), or method, path and the
    /// recorded query (presence).
    pub endpoint: String,
}

#[derive(Debug, Clone)]
struct Summary {
    /// The caller; its address and user agent only where every request
    /// agreed (the lists below say which there were).
    actor: Actor,
    /// Requests counted (0: only the endpoints already recorded one by one,
    /// whose repeats are to be counted).
    requests: u64,
    stored: u64,
    duplicates: u64,
    bytes: u64,
    seqs: Option<(u64, u64)>,
    statuses: BTreeMap<u16, u64>,
    endpoints: BTreeMap<String, u64>,
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
    /// One request's summary.
    fn of(c: Counted, now_us: i64) -> Summary {
        Summary {
            addresses: c.actor.ip.iter().cloned().collect(),
            user_agents: c.actor.user_agent.iter().cloned().collect(),
            actor: c.actor,
            requests: 1,
            stored: c.tally.stored,
            duplicates: c.tally.duplicates,
            bytes: c.tally.bytes,
            seqs: c.tally.seqs,
            statuses: BTreeMap::from([(c.status, 1)]),
            endpoints: BTreeMap::from([(c.endpoint, 1)]),
            more_listed: false,
            slowest_ms: c.duration_ms,
            first_request_id: c.request_id.clone(),
            last_request_id: c.request_id,
            first_at_us: now_us,
            last_at_us: now_us,
        }
    }

    /// Nothing counted yet, `endpoints` already recorded one by one.
    /// (Its times are those of the first request merged into it.)
    fn seen(actor: Actor, endpoints: impl IntoIterator<Item = String>) -> Summary {
        Summary {
            actor,
            requests: 0,
            stored: 0,
            duplicates: 0,
            bytes: 0,
            seqs: None,
            statuses: BTreeMap::new(),
            endpoints: endpoints.into_iter().map(|e| (e, 0)).collect(),
            addresses: BTreeSet::new(),
            user_agents: BTreeSet::new(),
            more_listed: false,
            slowest_ms: 0.0,
            first_request_id: None,
            last_request_id: None,
            first_at_us: 0,
            last_at_us: 0,
        }
    }

    /// A newer summary of the same caller folded into this one: the next
    /// request, or what was counted while this one failed to be recorded.
    fn merge(&mut self, newer: Summary) {
        if newer.requests == 0 {
            for e in newer.endpoints.into_keys() {
                self.endpoints.entry(e).or_insert(0);
            }
            return;
        }
        if self.requests == 0 {
            let seen = std::mem::replace(self, newer);
            for e in seen.endpoints.into_keys() {
                self.endpoints.entry(e).or_insert(0);
            }
            return;
        }
        self.requests = self.requests.saturating_add(newer.requests);
        self.stored = self.stored.saturating_add(newer.stored);
        self.duplicates = self.duplicates.saturating_add(newer.duplicates);
        self.bytes = self.bytes.saturating_add(newer.bytes);
        self.seqs = span(self.seqs, newer.seqs);
        for (status, n) in newer.statuses {
            let c = self.statuses.entry(status).or_default();
            *c = c.saturating_add(n);
        }
        for (endpoint, n) in newer.endpoints {
            let c = self.endpoints.entry(endpoint).or_default();
            *c = c.saturating_add(n);
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

    fn event(&self, kind: SummaryKind) -> OwnEvent {
        let statuses: serde_json::Map<String, serde_json::Value> =
            self.statuses.iter().map(|(s, n)| (s.to_string(), (*n).into())).collect();
        // Only the endpoints read in this period.
        let endpoints: serde_json::Map<String, serde_json::Value> =
            self.endpoints.iter().filter(|(_, n)| **n > 0).map(|(e, n)| (e.clone(), (*n).into())).collect();
        let resource = match endpoints.len() {
            1 => endpoints.keys().next().cloned(),
            n => Some(format!("{n} endpoints")),
        };
        let mut details = serde_json::json!({
            "requests": self.requests,
            "endpoints": endpoints,
            "statuses": statuses,
            "addresses": self.addresses,
            "user_agents": self.user_agents,
            "more_addresses_or_agents": self.more_listed,
            "slowest_ms": self.slowest_ms,
            "first_at_us": self.first_at_us,
            "last_at_us": self.last_at_us,
            "first_request_id": self.first_request_id,
            "last_request_id": self.last_request_id,
        });
        let (action, channel, note) = match kind {
            SummaryKind::Ingest => {
                let extra = serde_json::json!({
                    "events_stored": self.stored,
                    "duplicates": self.duplicates,
                    "bytes": self.bytes,
                    "first_seq": self.seqs.map(|s| s.0),
                    "last_seq": self.seqs.map(|s| s.1),
                });
                if let (Some(d), serde_json::Value::Object(e)) = (details.as_object_mut(), extra) {
                    d.extend(e);
                }
                (
                    "audit.ingest.summary",
                    Channel::Api,
                    "accepted ingest requests are summarised per caller and period; the events stored are in the ledger, each with its submitter; refused ones are recorded one by one",
                )
            }
            SummaryKind::Presence => (
                "audit.presence",
                Channel::Ui,
                "repeated reads of polled endpoints (a page refreshing itself) are counted per user, address and browser and period; the first read of each endpoint was recorded on its own",
            ),
        };
        if let Some(d) = details.as_object_mut() {
            d.insert("note".into(), note.into());
        }
        OwnEvent::new(
            OwnAction::Request { action: action.into(), category: "data_access" },
            self.actor.clone(),
            channel,
        )
        .outcome(Outcome::Success)
        .resource("endpoint", resource)
        .request(self.first_request_id.clone())
        .details(details)
    }
}

/// The open summaries of one kind in this process.
#[derive(Debug)]
pub struct Summaries {
    kind: SummaryKind,
    open: Mutex<HashMap<String, Summary>>,
    /// Set once shutdown has begun: requests are then recorded one by one.
    closed: AtomicBool,
}

impl Summaries {
    /// No summary open yet.
    pub fn new(kind: SummaryKind) -> Summaries {
        Summaries { kind, open: Mutex::default(), closed: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Summary>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, actor: &Actor) -> String {
        match self.kind {
            SummaryKind::Ingest => format!("{}:{}", actor.kind, actor.id),
            SummaryKind::Presence => format!(
                "{}:{}:{}:{}",
                actor.kind,
                actor.id,
                actor.ip.as_deref().unwrap_or(""),
                actor.user_agent.as_deref().unwrap_or("")
            ),
        }
    }

    /// Counts an answered request; false when it is to be recorded on its
    /// own: shutdown has begun, too many callers are open, or (presence)
    /// its endpoint has not been recorded one by one yet ([`Self::seen`]).
    pub fn add(&self, c: Counted, now_us: i64) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let key = self.key(&c.actor);
        let mut open = self.lock();
        let full = open.len() >= MAX_OPEN;
        match open.get_mut(&key) {
            Some(s) if self.kind == SummaryKind::Ingest || s.endpoints.contains_key(&c.endpoint) => {
                s.merge(Summary::of(c, now_us));
                true
            }
            Some(_) => false,
            None if self.kind == SummaryKind::Presence || full => false,
            None => {
                open.insert(key, Summary::of(c, now_us));
                true
            }
        }
    }

    /// (Presence) `endpoint` was just recorded one by one for `actor`: its
    /// repeats are counted from now on.
    pub fn seen(&self, actor: &Actor, endpoint: String) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let key = self.key(actor);
        let mut open = self.lock();
        let full = open.len() >= MAX_OPEN;
        match open.get_mut(&key) {
            Some(s) if s.endpoints.len() < MAX_ENDPOINTS => {
                s.endpoints.entry(endpoint).or_insert(0);
            }
            Some(_) => {}
            None if !full => {
                open.insert(key, Summary::seen(actor.clone(), [endpoint]));
            }
            None => {}
        }
    }

    /// No more counting: the requests still answered are recorded one by
    /// one (shutdown; the last summaries are recorded next).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Records every summary that counted something; one that cannot be
    /// recorded is kept for the next time. A presence summary goes on
    /// counting its endpoints' repeats; one that counted nothing this
    /// period is dropped. How many were recorded.
    pub async fn record(&self, events: &Events) -> usize {
        let taken: Vec<(String, Summary)> = {
            let mut open = self.lock();
            open.retain(|_, s| s.requests > 0);
            match self.kind {
                SummaryKind::Ingest => open.drain().collect(),
                SummaryKind::Presence => open
                    .iter_mut()
                    .map(|(k, s)| {
                        let seen = Summary::seen(s.actor.clone(), s.endpoints.keys().cloned());
                        (k.clone(), std::mem::replace(s, seen))
                    })
                    .collect(),
            }
        };
        let mut recorded = 0;
        for (key, summary) in taken {
            match events.record_own(summary.event(self.kind)).await {
                Ok(_) => recorded += 1,
                Err(e) => {
                    tracing::warn!(error = %e, kind = ?self.kind, requests = summary.requests, "a request summary could not be recorded; kept for the next try");
                    let mut open = self.lock();
                    let mut kept = summary;
                    if let Some(newer) = open.remove(&key) {
                        kept.merge(newer);
                    }
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
        Counted {
            actor,
            status,
            tally,
            duration_ms: 1.5,
            request_id: Some(id.into()),
            endpoint: "POST /api/audit".into(),
        }
    }

    #[test]
    fn a_summary_counts_and_merges_without_overflow_or_false_attribution() {
        let all = Summaries::new(SummaryKind::Ingest);
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
        older.merge(Summary::of(counted("10.0.0.2", "a", 201, None, "r4"), 400));
        assert_eq!((older.requests, older.last_request_id.as_deref(), older.more_listed), (4, Some("r4"), false));
        assert_eq!((older.first_at_us, older.last_at_us), (100, 400));
        // Once closed, nothing more is counted.
        all.close();
        assert!(!all.add(counted("10.0.0.1", "a", 201, None, "r5"), 500));
        assert_eq!(all.pending(), 0);
    }

    #[test]
    fn addresses_beyond_the_list_are_flagged() {
        let all = Summaries::new(SummaryKind::Ingest);
        for i in 0..20 {
            assert!(all.add(counted(&format!("10.0.0.{i}"), "a", 201, None, "r"), i));
        }
        let open = all.lock();
        let s = open.get("api_key:k1").unwrap();
        assert_eq!((s.addresses.len(), s.more_listed, s.requests), (MAX_LISTED, true, 20));
    }

    fn poll(user: &str, agent: &str, endpoint: &str, id: &str) -> Counted {
        let actor = Actor {
            id: user.into(),
            kind: "user".into(),
            name: Some("ann".into()),
            ip: Some("10.0.0.9".into()),
            user_agent: Some(agent.into()),
            session_id: None,
        };
        Counted {
            actor,
            status: 200,
            tally: IngestTally::default(),
            duration_ms: 2.0,
            request_id: Some(id.into()),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn presence_counts_only_repeats_of_an_endpoint_already_recorded() {
        let all = Summaries::new(SummaryKind::Presence);
        let status = "POST /rpc/status";
        // The first read is recorded on its own, then marked seen.
        assert!(!all.add(poll("1", "firefox", status, "r1"), 100));
        all.seen(&poll("1", "firefox", status, "r1").actor, status.into());
        assert!(all.add(poll("1", "firefox", status, "r2"), 200));
        assert!(all.add(poll("1", "firefox", status, "r3"), 300));
        // Another endpoint, or the same one with other values, is not counted
        // until recorded once; nor another browser of the same user.
        assert!(!all.add(poll("1", "firefox", "GET /api/audit/analytics [[\"range\",\"7d\"]]", "r4"), 400));
        assert!(!all.add(poll("1", "chrome", status, "r5"), 500));
        assert_eq!(all.pending(), 2);
        let open = all.lock();
        let s = open.values().find(|s| s.requests > 0).unwrap();
        assert_eq!(s.endpoints.get(status), Some(&2));
        assert_eq!((s.first_at_us, s.last_at_us), (200, 300), "times of the counted requests, not of the mark");
        assert_eq!((s.first_request_id.as_deref(), s.last_request_id.as_deref()), (Some("r2"), Some("r3")));
        drop(open);
        // Endpoints beyond the bound are recorded one by one.
        for i in 0..(MAX_ENDPOINTS + 5) {
            all.seen(&poll("2", "x", "", "").actor, format!("GET /api/audit/exports/{i}"));
        }
        assert!(all.add(poll("2", "x", "GET /api/audit/exports/3", "a"), 1));
        assert!(!all.add(poll("2", "x", &format!("GET /api/audit/exports/{}", MAX_ENDPOINTS + 1), "b"), 1));
    }

    #[test]
    fn a_presence_summary_that_counted_nothing_for_a_period_is_dropped() {
        let all = Summaries::new(SummaryKind::Presence);
        let status = "POST /rpc/status";
        all.seen(&poll("1", "f", status, "r1").actor, status.into());
        assert!(all.add(poll("1", "f", status, "r2"), 200));
        // What `record` does under its lock: the counted summary is taken, its
        // endpoints stay seen; next period, nothing counted: dropped.
        let take = |all: &Summaries| {
            let mut open = all.lock();
            open.retain(|_, s| s.requests > 0);
            let n = open.len();
            for s in open.values_mut() {
                *s = Summary::seen(s.actor.clone(), s.endpoints.keys().cloned());
            }
            n
        };
        assert_eq!(take(&all), 1);
        assert!(all.add(poll("1", "f", status, "r3"), 300), "still polling: counted");
        assert_eq!(take(&all), 1);
        assert_eq!(take(&all), 0, "a period without a read");
        assert!(!all.add(poll("1", "f", status, "r4"), 400), "recorded one by one again");
        // A summary kept after a failed record takes the next period's counts.
        let mut kept = Summary::of(poll("1", "f", status, "r5"), 500);
        kept.merge(Summary::seen(kept.actor.clone(), ["GET /api/forwarding/destinations".to_owned()]));
        kept.merge(Summary::of(poll("1", "f", status, "r6"), 600));
        assert_eq!((kept.requests, kept.endpoints.len(), kept.last_at_us), (2, 2, 600));
    }
}

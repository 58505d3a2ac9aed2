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
//!   time (per endpoint, its path values and query: a read with other
//!   values is first recorded on its own too), then its repeats are
//!   counted: one record per user, address and browser and period, listing
//!   each endpoint with how many times it was read. An endpoint not read
//!   for a whole period, or recorded on its own more than an hour ago, is
//!   recorded on its own again at its next read. Only paths and queries
//!   short enough to be kept whole (no secret-looking parameter) are
//!   counted, as repeats of the same path and decoded query. Once the ledger failed to
//!   record, nothing is counted until a record succeeds (fail closed: the
//!   repeats are recorded one by one, so refused while it cannot record).
//!   Refused reads, an API key's reads and every other endpoint are
//!   recorded one by one.
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
    /// The route: method and path template (`GET /api/audit/exports/{id}`).
    pub route: String,
    /// The endpoint as counted: the route (ingest), or the method, path and
    /// recorded query (presence: a read with other values is another one).
    pub endpoint: String,
}

#[derive(Debug, Clone)]
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
    /// Requests by endpoint (method, path and query for presence).
    endpoints: BTreeMap<String, u64>,
    /// The routes (method and path template) of those endpoints.
    routes: BTreeSet<String>,
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
            routes: BTreeSet::from([c.route]),
            more_listed: false,
            slowest_ms: c.duration_ms,
            first_request_id: c.request_id.clone(),
            last_request_id: c.request_id,
            first_at_us: now_us,
            last_at_us: now_us,
        }
    }

    /// A newer summary of the same caller folded into this one: the next
    /// request, or what was counted while this one failed to be recorded.
    fn merge(&mut self, newer: Summary) {
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
        self.routes.extend(newer.routes);
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
        let endpoints: serde_json::Map<String, serde_json::Value> =
            self.endpoints.iter().map(|(e, n)| (e.clone(), (*n).into())).collect();
        let resource = match self.routes.len() {
            1 => self.routes.iter().next().cloned(),
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

/// Per presence key, the endpoints recorded one by one whose repeats are
/// counted: whether each was read (or recorded) since the last period
/// ended, and when it was recorded on its own.
type Recorded = HashMap<String, BTreeMap<String, Seen>>;

#[derive(Debug, Clone, Copy)]
struct Seen {
    read: bool,
    recorded_at_us: i64,
}

/// How long a read recorded on its own stands for its repeats: after this,
/// the next read is recorded on its own again (at least one record per
/// hour of a page left open says what it showed then).
const RECORDED_FOR_US: i64 = 3_600_000_000;
/// Most address and browser pairs summarised per user; beyond, their reads
/// are recorded one by one.
const MAX_PER_USER: usize = 8;
/// Longest path and query counted (bytes, as sent); a longer request is
/// recorded on its own. Two reads are repeats only when their paths and
/// decoded queries are equal (the query as the self-audit records it).
pub const MAX_COUNTED_PATH: usize = 200;
/// See [`MAX_COUNTED_PATH`].
pub const MAX_COUNTED_QUERY: usize = 128;

/// The open summaries of one kind in this process.
#[derive(Debug)]
pub struct Summaries {
    kind: SummaryKind,
    /// What was counted and not yet recorded, by caller; `None` once
    /// shutdown has begun (requests are then recorded one by one).
    open: Mutex<Option<HashMap<String, Summary>>>,
    /// What was counted before shutdown began, still to be recorded.
    closing: Mutex<HashMap<String, Summary>>,
    /// (Presence) the endpoints whose repeats are counted, by caller.
    recorded: Mutex<Recorded>,
    /// (Presence) whether the ledger's latest record failed, and how many
    /// failed so far: nothing is counted until a record begun after the
    /// last failure succeeds (reads are then recorded one by one, and
    /// refused with 503 while the ledger cannot record).
    failing: Mutex<(bool, u64)>,
}

impl Summaries {
    /// No summary open yet.
    pub fn new(kind: SummaryKind) -> Summaries {
        Summaries {
            kind,
            open: Mutex::new(Some(HashMap::new())),
            closing: Mutex::default(),
            recorded: Mutex::default(),
            failing: Mutex::new((false, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Summary>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn user(actor: &Actor) -> String {
        format!("{}:{}", actor.kind, actor.id)
    }

    fn key(&self, actor: &Actor) -> String {
        match self.kind {
            SummaryKind::Ingest => Self::user(actor),
            // A line break can be in neither an address nor a header value.
            SummaryKind::Presence => format!(
                "{}:\n{}\n{}",
                Self::user(actor),
                actor.ip.as_deref().unwrap_or(""),
                actor.user_agent.as_deref().unwrap_or("")
            ),
        }
    }

    fn lock_failing(&self) -> std::sync::MutexGuard<'_, (bool, u64)> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Taken before asking the ledger to record: passed back to
    /// [`Self::ledger_recorded`].
    pub fn failures(&self) -> u64 {
        self.lock_failing().1
    }

    /// Whether the ledger recorded a record asked of it when
    /// [`Self::failures`] said `before` (the self-audit says so after each
    /// one it makes). A success only clears a failure that came before it
    /// was asked: one sent before an outage and answered after does not.
    pub fn ledger_recorded(&self, before: u64, ok: bool) {
        let mut f = self.lock_failing();
        if !ok {
            *f = (true, f.1 + 1);
        } else if f.1 == before {
            f.0 = false;
        }
    }

    /// Counts an answered request; false when it is to be recorded on its
    /// own: shutdown has begun, too many callers are open, or (presence)
    /// its endpoint was not recorded one by one within the last hour or not
    /// read in this period or the last ([`Self::recorded_alone`]), or the
    /// ledger's last record failed.
    pub fn add(&self, c: Counted, now_us: i64) -> bool {
        let key = self.key(&c.actor);
        if self.kind == SummaryKind::Presence {
            if self.lock_failing().0 {
                return false;
            }
            let mut recorded = self.lock_recorded();
            match recorded.get_mut(&key).and_then(|r| r.get_mut(&c.endpoint)) {
                Some(seen) if now_us - seen.recorded_at_us < RECORDED_FOR_US => seen.read = true,
                _ => return false,
            }
        }
        let mut guard = self.lock();
        let Some(open) = guard.as_mut() else { return false };
        let full = open.len() >= MAX_OPEN;
        match open.get_mut(&key) {
            Some(s) => s.merge(Summary::of(c, now_us)),
            None if full => return false,
            None => {
                open.insert(key, Summary::of(c, now_us));
            }
        }
        true
    }

    /// (Presence) `endpoint` was just recorded one by one for `actor`: its
    /// repeats are counted from now on, while it is read at least once a
    /// period, for an hour.
    pub fn recorded_alone(&self, actor: &Actor, endpoint: String, now_us: i64) {
        if endpoint.len() > MAX_COUNTED_PATH + MAX_COUNTED_QUERY + 16 || self.lock().is_none() {
            return;
        }
        let key = self.key(actor);
        let user = format!("{}:", Self::user(actor));
        let seen = Seen { read: true, recorded_at_us: now_us };
        let mut recorded = self.lock_recorded();
        let full = recorded.len() >= MAX_OPEN;
        let room =
            recorded.contains_key(&key) || recorded.keys().filter(|k| k.starts_with(&user)).count() < MAX_PER_USER;
        match recorded.get_mut(&key) {
            Some(r) if r.len() < MAX_ENDPOINTS || r.contains_key(&endpoint) => {
                r.insert(endpoint, seen);
            }
            Some(_) => {}
            None if !full && room => {
                recorded.insert(key, BTreeMap::from([(endpoint, seen)]));
            }
            None => {}
        }
    }

    /// No more counting: the requests still answered are recorded one by
    /// one (shutdown). What was counted is kept for [`Self::record`].
    pub fn close(&self) {
        let mut guard = self.lock();
        if let Some(open) = guard.take() {
            self.closing.lock().unwrap_or_else(|p| p.into_inner()).extend(open);
        }
    }

    /// Ends the period: takes every summary, and (presence) forgets the
    /// endpoints not read during it, so that the next read of one is
    /// recorded on its own again.
    fn take(&self) -> Vec<(String, Summary)> {
        let mut recorded = self.lock_recorded();
        for endpoints in recorded.values_mut() {
            endpoints.retain(|_, seen| std::mem::replace(&mut seen.read, false));
        }
        recorded.retain(|_, endpoints| !endpoints.is_empty());
        drop(recorded);
        let mut taken: Vec<(String, Summary)> =
            self.closing.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        if let Some(open) = self.lock().as_mut() {
            taken.extend(open.drain());
        }
        taken
    }

    /// Puts back a summary that could not be recorded, merged with what
    /// was counted since.
    fn restore(&self, key: String, mut kept: Summary) {
        let mut guard = self.lock();
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        let open = match guard.as_mut() {
            Some(open) => open,
            None => &mut *closing,
        };
        if let Some(newer) = open.remove(&key) {
            kept.merge(newer);
        }
        open.insert(key, kept);
    }

    /// Records every summary of the period ending; one that cannot be
    /// recorded is kept for the next time (also when this is cut off before
    /// trying it). How many were recorded.
    pub async fn record(&self, events: &Events) -> usize {
        struct Left<'a>(&'a Summaries, Vec<(String, Summary)>);
        impl Drop for Left<'_> {
            fn drop(&mut self) {
                for (key, summary) in self.1.drain(..) {
                    self.0.restore(key, summary);
                }
            }
        }
        let mut left = Left(self, self.take());
        let mut recorded = 0;
        while let Some((key, summary)) = left.1.pop() {
            // (Cut off here, this summary is lost, not put back: it may be
            // committing.)
            let before = self.failures();
            match events.record_own(summary.event(self.kind)).await {
                Ok(_) => {
                    recorded += 1;
                    self.ledger_recorded(before, true);
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = ?self.kind, caller = %key, requests = summary.requests, "a request summary could not be recorded; kept for the next try");
                    self.ledger_recorded(before, false);
                    self.restore(key, summary);
                }
            }
        }
        recorded
    }

    /// Requests counted and not yet recorded.
    pub fn pending(&self) -> u64 {
        let closing: u64 = self.closing.lock().unwrap_or_else(|p| p.into_inner()).values().map(|s| s.requests).sum();
        closing + self.lock().as_ref().map_or(0, |open| open.values().map(|s| s.requests).sum())
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
            route: "POST /api/audit/events".into(),
            endpoint: "POST /api/audit/events".into(),
        }
    }

    #[test]
    fn a_summary_counts_and_merges_without_overflow_or_false_attribution() {
        let all = Summaries::new(SummaryKind::Ingest);
        assert!(all.add(counted("10.0.0.1", "a", 201, Some((5, 9)), "r1"), 100));
        assert!(all.add(counted("10.0.0.1", "a", 200, None, "r2"), 200));
        assert!(all.add(counted("10.0.0.2", "a", 201, Some((3, 3)), "r3"), 300));
        let guard = all.lock();
        let open = guard.as_ref().unwrap();
        let s = open.get("api_key:k1").unwrap();
        assert_eq!((s.requests, s.stored, s.seqs, s.bytes), (3, 6, Some((3, 9)), u64::MAX), "saturated bytes");
        assert_eq!(s.actor.ip, None, "two addresses: none stands for all");
        assert_eq!(s.actor.user_agent.as_deref(), Some("a"), "one agent: kept");
        assert_eq!(s.addresses.len(), 2);
        assert_eq!((s.first_request_id.as_deref(), s.last_request_id.as_deref()), (Some("r1"), Some("r3")));
        assert!(!s.more_listed);
        drop(guard);
        // A kept summary merges the newer one: its last request id, no
        // false "more" for an address already listed.
        let mut older = all.lock().as_mut().unwrap().remove("api_key:k1").unwrap();
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
        let guard = all.lock();
        let open = guard.as_ref().unwrap();
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
            route: endpoint.split(' ').take(2).collect::<Vec<_>>().join(" "),
            endpoint: endpoint.into(),
        }
    }

    const STATUS: &str = "POST /rpc/status";

    #[test]
    fn presence_counts_only_repeats_of_an_endpoint_already_recorded() {
        let all = Summaries::new(SummaryKind::Presence);
        // The first read is recorded on its own, then its repeats counted.
        assert!(!all.add(poll("1", "firefox", STATUS, "r1"), 100));
        all.recorded_alone(&poll("1", "firefox", STATUS, "r1").actor, STATUS.into(), 0);
        assert!(all.add(poll("1", "firefox", STATUS, "r2"), 200));
        assert!(all.add(poll("1", "firefox", STATUS, "r3"), 300));
        // Another endpoint, or the same one with other values, is not counted
        // until recorded once; nor another browser or address of the same user.
        assert!(!all.add(poll("1", "firefox", "GET /api/audit/analytics [[\"range\",\"7d\"]]", "r4"), 400));
        assert!(!all.add(poll("1", "chrome", STATUS, "r5"), 500));
        let mut elsewhere = poll("1", "firefox", STATUS, "r6");
        elsewhere.actor.ip = Some("10.9.9.9".into());
        assert!(!all.add(elsewhere, 600));
        assert_eq!(all.pending(), 2);
        let taken = all.take();
        assert_eq!(taken.len(), 1);
        let s = &taken[0].1;
        assert_eq!((s.requests, s.endpoints.get(STATUS)), (2, Some(&2)));
        assert_eq!((s.first_at_us, s.last_at_us), (200, 300));
        assert_eq!((s.first_request_id.as_deref(), s.last_request_id.as_deref()), (Some("r2"), Some("r3")));
        assert_eq!(s.routes, BTreeSet::from([STATUS.to_owned()]));
        // Endpoints beyond the bound are recorded one by one.
        for i in 0..(MAX_ENDPOINTS + 5) {
            all.recorded_alone(&poll("2", "x", "", "").actor, format!("GET /api/audit/exports/{i}"), 0);
        }
        assert!(all.add(poll("2", "x", "GET /api/audit/exports/3", "a"), 1));
        assert!(!all.add(poll("2", "x", &format!("GET /api/audit/exports/{}", MAX_ENDPOINTS + 1), "b"), 1));
        // Once the ledger failed to record, nothing is counted (reads are
        // recorded one by one, or refused) until a record succeeds.
        let before = all.failures();
        all.ledger_recorded(before, false);
        assert!(!all.add(poll("1", "firefox", STATUS, "r8"), 800));
        // A record asked before the failure and answered after it does not
        // clear it; one asked after does.
        all.ledger_recorded(before, true);
        assert!(!all.add(poll("1", "firefox", STATUS, "r8"), 800));
        all.ledger_recorded(all.failures(), true);
        assert!(all.add(poll("1", "firefox", STATUS, "r9"), 900));
        // A read recorded on its own stands for its repeats for an hour.
        assert!(!all.add(poll("1", "firefox", STATUS, "r10"), RECORDED_FOR_US + 1));
        // At most MAX_PER_USER address and browser pairs per user.
        for i in 0..(MAX_PER_USER + 3) {
            all.recorded_alone(&poll("3", &format!("agent{i}"), "", "").actor, STATUS.into(), 0);
        }
        assert_eq!(all.lock_recorded().keys().filter(|k| k.starts_with("user:3:")).count(), MAX_PER_USER);
        // Once closed, nothing more is counted or marked.
        all.close();
        all.recorded_alone(&poll("4", "z", "", "").actor, STATUS.into(), 0);
        assert!(!all.lock_recorded().keys().any(|k| k.starts_with("user:4:")));
        assert!(!all.add(poll("1", "firefox", STATUS, "r7"), 700));
    }

    #[test]
    fn an_endpoint_not_read_for_a_whole_period_is_recorded_on_its_own_again() {
        let all = Summaries::new(SummaryKind::Presence);
        let export = "GET /api/audit/exports/abc";
        all.recorded_alone(&poll("1", "f", STATUS, "").actor, STATUS.into(), 0);
        all.recorded_alone(&poll("1", "f", export, "").actor, export.into(), 0);
        assert!(all.add(poll("1", "f", STATUS, "r1"), 100));
        // Period 1 ends: both were read or recorded in it, both kept.
        assert_eq!(all.take().len(), 1);
        assert!(all.add(poll("1", "f", STATUS, "r2"), 200), "still polling: counted");
        // Period 2 ends: the export's progress was not read in it.
        assert_eq!(all.take().len(), 1);
        assert!(all.add(poll("1", "f", STATUS, "r3"), 300));
        assert!(!all.add(poll("1", "f", export, "r4"), 300), "read again later: recorded on its own");
        // Two periods without a read: nothing is left for this user.
        assert_eq!(all.take().len(), 1);
        assert!(all.take().is_empty());
        assert!(all.lock_recorded().is_empty(), "the list of recorded endpoints does not grow for ever");
        assert!(!all.add(poll("1", "f", STATUS, "r5"), 400));
    }

    #[test]
    fn a_summary_that_could_not_be_recorded_takes_the_next_periods_counts() {
        let all = Summaries::new(SummaryKind::Presence);
        all.recorded_alone(&poll("1", "f", STATUS, "").actor, STATUS.into(), 0);
        assert!(all.add(poll("1", "f", STATUS, "r1"), 100));
        let (key, failed) = all.take().pop().unwrap();
        // Counted while the record was being tried.
        assert!(all.add(poll("1", "f", STATUS, "r2"), 200));
        all.restore(key, failed);
        assert!(all.add(poll("1", "f", STATUS, "r3"), 300));
        let (_, s) = all.take().pop().unwrap();
        assert_eq!(
            (s.requests, s.first_request_id.as_deref(), s.last_request_id.as_deref()),
            (3, Some("r1"), Some("r3"))
        );
        assert_eq!((s.first_at_us, s.last_at_us, s.endpoints.get(STATUS)), (100, 300, Some(&3)));
    }
}

//! SIEM forwarding (issue 17): every event the ledger commits, pushed to
//! each destination of the forwarding policy in its format, in order, at
//! least once, and every signed checkpoint with them.
//!
//! The ledger is the buffer. Each destination has a cursor (the last
//! ledger position delivered), kept in its lease row (`forward:<id>`): the
//! one replica holding the lease reads the entries after the cursor (the
//! destination's filter applied, values masked as the explorer shows them
//! without `audit:unmask`), formats a batch, sends it and only then moves
//! the cursor. A destination that is down is retried with exponential
//! backoff (1 s doubling to 5 minutes; 5 minutes straight for a failure no
//! retry mends, such as a refused token) and loses nothing however long it
//! is down; ingest never waits for it. After a crash between a send and
//! the cursor's save the batch is sent again: receivers drop repeats by
//! the event id and seq every record carries.
//!
//! Positions, and where each lives:
//! - the *cursor* (delivered): the lease row, written only by the holder
//!   (`Lease::save`); `Runner::cursor` is this replica's copy, `None` when
//!   it does not hold the lease;
//! - *sent* (syslog only): batches written on the stream after the cursor
//!   and not yet confirmed (`Runner::unconfirmed`); syslog has no
//!   acknowledgement, so a batch counts as delivered once the stream is
//!   seen standing a while after it (read through TLS), and when the
//!   stream falls first they are all sent again;
//! - the last checkpoint sent (`forward_state.checkpoint_size`), moved with
//!   the cursor.
//!
//! Each destination runs in its own task, so one that hangs does not hold
//! the others back. People can pause, resume and replay a destination
//! (recorded); a destination starting to fail, and recovering, is
//! recorded by Custos (`custos.forward.failed` / `…recovered`), once per
//! transition and at most every five minutes; an event a receiver refuses
//! alone while taking the next is passed over and recorded
//! (`custos.forward.skipped`).

pub mod dest;
pub mod format;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use custos_model::{DestinationHealth, EventView, ForwardPreview, ForwardTest, ForwardingStatus, Severity};
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult};
use serde_json::json;

use self::dest::{DestinationDef, ForwardingDoc};
use self::format::{CheckpointMsg, Record};
use self::transport::{Item, SendError, Stream};
use crate::alerts::store::AlertsError;
use crate::events::model::{Channel, Outcome as EventOutcome};
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::events::{Events, SearchFilter};
use crate::lease::Lease;
use crate::policies::PolicyStore;
use crate::storage::stmt_for;
use crate::time::{SECOND_US, parse_rfc3339, rfc3339};

/// The policy kind's name.
pub const KIND: &str = "forwarding";
const RENEW_US: i64 = 3 * SECOND_US;
/// The longest wait between tries of a failing destination.
const BACKOFF_MAX_US: i64 = 300 * SECOND_US;
/// Checkpoints sent in one batch at most (a long outage's backlog of them
/// goes over several).
const CHECKPOINTS_MAX: u64 = 100;

/// The lease name of a destination.
pub fn lease_name(id: &str) -> String {
    format!("forward:{id}")
}

/// How forwarding behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first retry's delay; each next one doubles, up to 5 minutes.
    pub retry_base_us: i64,
    /// Destinations on private, loopback or link-local addresses are
    /// allowed (on by default: SIEMs usually live inside the network).
    pub allow_private: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { retry_base_us: SECOND_US, allow_private: true }
    }
}

/// A syslog batch written on the stream and not yet confirmed.
#[derive(Debug, Clone, Copy)]
struct Unconfirmed {
    upto: u64,
    checkpoint: u64,
    events: u64,
    at: std::time::Instant,
}

/// One destination on this replica.
struct Runner {
    def: DestinationDef,
    lease: Lease,
    stream: Option<Stream>,
    /// The cursor, while this replica holds the lease.
    cursor: Option<u64>,
    renewed_at: i64,
    /// When this replica last tried to take the lease (it did not hold it).
    tried_at: i64,
    last_send_at: i64,
    /// Syslog: batches written after the cursor, oldest first.
    unconfirmed: std::collections::VecDeque<Unconfirmed>,
    /// Events per batch now: halved while a receiver refuses a batch's
    /// content, to find the event at fault; grows back after.
    limit: usize,
    /// A refused batch is being split: checkpoints wait.
    splitting: bool,
}

impl Runner {
    fn new(def: DestinationDef, lease: Lease) -> Runner {
        let limit = def.batch_size.clamp(1, 1000) as usize;
        Runner {
            def,
            lease,
            stream: None,
            cursor: None,
            renewed_at: 0,
            tried_at: i64::MIN / 2,
            last_send_at: 0,
            unconfirmed: Default::default(),
            limit,
            splitting: false,
        }
    }

    /// Another replica holds the lease: forget what this one had.
    fn lose(&mut self) -> Result<Pass, AlertsError> {
        self.cursor = None;
        self.stream = None;
        self.unconfirmed.clear();
        Ok(Pass::default())
    }
}

/// A syslog batch counts as delivered once the stream is seen alive this
/// long after it was written.
const CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_millis(200);
/// The most bytes of records in one batch.
const BATCH_BYTES: usize = 4 << 20;
/// A destination's failing (and recovery) is recorded at most this often.
const RECORD_FAILING_EVERY_US: i64 = 300 * SECOND_US;
/// A send given up because another replica took the lease.
const LEASE_LOST: &str = "another replica took this destination over";

/// The forwarder of one replica.
pub struct Forwarder {
    events: Arc<Events>,
    policies: Arc<PolicyStore>,
    holder: String,
    http: reqwest::Client,
    settings: Settings,
    hostname: String,
    runners: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Runner>>>>,
    tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The policy in force, by version (read again only when it changes).
    cached: Mutex<Option<(u64, ForwardingDoc)>>,
    /// Destinations a test is being sent to now (one at a time each).
    testing: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("holder", &self.holder).finish_non_exhaustive()
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> AlertsError {
    AlertsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// What a destination's pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// This replica holds its lease.
    pub held: bool,
    /// Events delivered.
    pub events: u64,
    /// Checkpoints delivered.
    pub checkpoints: u64,
    /// The send failed.
    pub failed: bool,
    /// A full batch went and more are waiting.
    pub more: bool,
}

/// The longest one destination's passes go on back to back.
const PASS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The wait after `n` failures in a row.
pub fn backoff_us(base_us: i64, failures: u32) -> i64 {
    crate::time::backoff_us(base_us, failures, BACKOFF_MAX_US)
}

/// Where a destination sends, for people (no secret).
pub fn address(d: &DestinationDef) -> String {
    match d.kind.as_str() {
        "syslog" => format!("{}://{}:{}", d.transport(), d.host.as_deref().unwrap_or(""), d.syslog_port()),
        _ => d.url.clone().unwrap_or_default(),
    }
}

fn item_of(format: &str, e: &EventView) -> Item {
    Item {
        checkpoint: false,
        record: format::event(format, e),
        seq: e.seq,
        id: e.id.to_string(),
        time: e.occurred_at.clone(),
        action: e.action.clone(),
        severity: e.severity.clone(),
    }
}

fn checkpoint_item(format: &str, c: &CheckpointMsg) -> Item {
    Item {
        checkpoint: true,
        record: format::checkpoint(format, c),
        seq: c.tree_size,
        id: format!("checkpoint-{}", c.tree_size),
        time: c.created_at.clone(),
        action: "custos.checkpoint".into(),
        severity: "info".into(),
    }
}

impl Forwarder {
    /// The forwarder of the replica `holder` (unique per process).
    pub fn new(events: Arc<Events>, policies: Arc<PolicyStore>, holder: &str, settings: Settings) -> Forwarder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(transport::TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Custos/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Forwarder {
            events,
            policies,
            holder: holder.to_owned(),
            http,
            settings,
            hostname: transport::local_hostname(),
            runners: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            cached: Mutex::new(None),
            testing: Mutex::new(Default::default()),
        }
    }

    fn ledger(&self) -> &crate::ledger::Ledger {
        self.events.ledger()
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.ledger().db().conn()
    }

    fn b(&self) -> sea_orm::DbBackend {
        self.ledger().db().backend()
    }

    /// The forwarding policy in force (version, document).
    pub async fn doc(&self) -> Result<(u64, ForwardingDoc), AlertsError> {
        let conflict = |e: crate::policies::PolicyError| AlertsError::Conflict(e.to_string());
        let version = self.policies.active_version(KIND).await.map_err(conflict)?;
        if let Some((v, d)) = self.cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && *v == version
        {
            return Ok((version, d.clone()));
        }
        let v = self.policies.active(KIND).await.map_err(conflict)?;
        let doc = ForwardingDoc::parse(&v.content).map_err(AlertsError::Invalid)?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((v.version, doc.clone()));
        Ok((v.version, doc))
    }

    /// Starts a pass for every enabled destination whose previous pass has
    /// ended; stops the runners of destinations no longer in force.
    pub async fn step(self: &Arc<Self>) -> Result<(), AlertsError> {
        let (_, doc) = self.doc().await?;
        let mut gone: Vec<(String, Arc<tokio::sync::Mutex<Runner>>)> = Vec::new();
        let mut start = Vec::new();
        {
            let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
            let live: Vec<&str> = doc.destinations.iter().filter(|d| d.enabled).map(|d| d.id.as_str()).collect();
            let ids: Vec<String> = runners.keys().cloned().collect();
            for id in ids {
                if !live.contains(&id.as_str())
                    && let Some(r) = runners.remove(&id)
                {
                    gone.push((id, r));
                }
            }
            for d in doc.destinations.iter().filter(|d| d.enabled) {
                let r = runners.entry(d.id.clone()).or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(Runner::new(
                        d.clone(),
                        Lease::new(
                            self.ledger().clone(),
                            &lease_name(&d.id),
                            &self.holder,
                            self.ledger().lease_ttl_us(),
                        ),
                    )))
                });
                start.push((d.clone(), r.clone()));
            }
        }
        for (id, r) in gone {
            // Given up once its pass ends (a pass that hangs does not hold
            // the other destinations back), unless the destination is back
            // meanwhile (its new runner holds the same lease).
            let me = self.clone();
            tokio::spawn(async move {
                let mut r = r.lock().await;
                if me.runners.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id) {
                    return;
                }
                if let Some(c) = r.cursor {
                    let _ = r.lease.save(c).await;
                }
                r.stream = None;
                r.cursor = None;
                r.unconfirmed.clear();
                let _ = r.lease.release().await;
            });
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|_, t| !t.is_finished());
        for (d, r) in start {
            if tasks.contains_key(&d.id) {
                continue;
            }
            let me = self.clone();
            let id = d.id.clone();
            tasks.insert(
                id.clone(),
                tokio::spawn(async move {
                    let mut r = r.lock().await;
                    if r.def != d {
                        // Its policy changed: a new connection with the new
                        // settings (what was written and not confirmed is
                        // sent again).
                        r.limit = d.batch_size.clamp(1, 1000) as usize;
                        r.splitting = false;
                        r.def = d;
                        r.stream = None;
                        r.unconfirmed.clear();
                        // Tried again at once with the new settings.
                        let _ = me
                            .conn()
                            .execute_raw(stmt_for(
                                me.b(),
                                "UPDATE forward_state SET next_at = 0 WHERE destination_id = ?",
                                vec![id.clone().into()],
                            ))
                            .await;
                    }
                    // Batch after batch while more are waiting (a backlog),
                    // for at most two seconds; then the next tick.
                    let started = std::time::Instant::now();
                    loop {
                        match me.pass(&mut r).await {
                            Ok(p) if p.more && started.elapsed() < PASS_BUDGET => {}
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(destination = %id, error = %e, "a forwarding pass failed; it tries again");
                                break;
                            }
                        }
                    }
                }),
            );
        }
        Ok(())
    }

    /// One pass of every destination, awaited (tests, benchmarks).
    pub async fn run_once(self: &Arc<Self>) -> Result<(), AlertsError> {
        self.step().await?;
        let tasks: Vec<_> = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }

    /// Stops every pass at once, saving nothing and releasing nothing:
    /// what a crash (kill -9) does. The leases lapse; another replica
    /// resumes at the saved cursors.
    pub fn abort(&self) {
        for (_, t) in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            t.abort();
        }
        self.runners.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Waits for the passes in progress (at most `timeout`) and gives every
    /// lease up, saving the cursors.
    pub async fn release(&self, timeout: std::time::Duration) {
        let tasks: Vec<_> = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let _ = tokio::time::timeout(timeout, futures_util::future::join_all(tasks)).await;
        // A pass still running then is cut off (it sends nothing more).
        for a in aborts {
            a.abort();
        }
        let runners: Vec<_> = self.runners.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, r)| r).collect();
        for r in runners {
            if let Ok(mut r) = r.try_lock() {
                if let Some(c) = r.cursor.take() {
                    let _ = r.lease.save(c).await;
                }
                r.stream = None;
                let _ = r.lease.release().await;
            }
        }
    }

    async fn state_row(&self, id: &str) -> Result<Option<QueryResult>, DbErr> {
        state_row(self.conn(), self.b(), id).await
    }

    async fn ensure_state(&self, id: &str) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "INSERT INTO forward_state (destination_id, updated_at) VALUES (?, ?) \
                 ON CONFLICT (destination_id) DO NOTHING",
                vec![id.into(), self.ledger().now_us().into()],
            ))
            .await?;
        Ok(())
    }

    /// One pass of one destination (the runner locked).
    async fn pass(&self, r: &mut Runner) -> Result<Pass, AlertsError> {
        let ledger = self.ledger().clone();
        let now = ledger.now_us();
        let id = r.def.id.clone();
        // The lease: renewed every few seconds; taken over at the saved
        // cursor (a replica that does not hold it tries every few seconds).
        match r.cursor {
            None => {
                if now - r.tried_at < RENEW_US {
                    return Ok(Pass::default());
                }
                r.tried_at = now;
                r.stream = None;
                r.unconfirmed.clear();
                let Some(h) = r.lease.acquire().await? else { return Ok(Pass::default()) };
                self.ensure_state(&id).await?;
                let cursor = match h.cursor {
                    Some(c) => c,
                    None if r.def.start == "beginning" => 0,
                    None => ledger.head().await.map_err(crate::events::EventsError::from)?.seq,
                };
                if h.cursor.is_none() {
                    // Checkpoints from here on, too.
                    self.conn()
                        .execute_raw(stmt_for(
                            self.b(),
                            "UPDATE forward_state SET checkpoint_size = ? WHERE destination_id = ?",
                            vec![(cursor as i64).into(), id.clone().into()],
                        ))
                        .await?;
                }
                if !r.lease.save(cursor).await? {
                    return r.lose();
                }
                r.cursor = Some(cursor);
                r.renewed_at = now;
                r.limit = r.def.batch_size.clamp(1, 1000) as usize;
            }
            Some(c) if now - r.renewed_at >= RENEW_US => {
                if !r.lease.save(c).await? {
                    return r.lose();
                }
                r.renewed_at = now;
            }
            Some(_) => {}
        }
        let Some(mut cursor) = r.cursor else { return Ok(Pass::default()) };
        let mut pass = Pass { held: true, ..Default::default() };
        let Some(state) = self.state_row(&id).await? else { return Ok(pass) };
        let paused: i64 = state.try_get("", "paused")?;
        let replay: Option<i64> = state.try_get("", "replay_seq")?;
        let mut failures = state.try_get::<i64>("", "failures")?.max(0) as u32;
        let next_at: i64 = state.try_get("", "next_at")?;
        let mut checkpoint_size = state.try_get::<i64>("", "checkpoint_size")?.max(0) as u64;
        if let Some(from) = replay {
            // A replay only goes back (never past what was not sent). The
            // cursor is saved first; the request is cleared after, only if
            // it is still the one read.
            cursor = (from.max(0) as u64).min(cursor);
            if !r.lease.save(cursor).await? {
                return r.lose();
            }
            checkpoint_size = checkpoint_size.min(cursor);
            failures = 0;
            self.conn()
                .execute_raw(stmt_for(
                    self.b(),
                    "UPDATE forward_state SET replay_seq = NULL, checkpoint_size = ?, failures = 0, next_at = 0 \
                     WHERE destination_id = ? AND replay_seq = ?",
                    vec![(checkpoint_size as i64).into(), id.clone().into(), from.into()],
                ))
                .await?;
            r.cursor = Some(cursor);
            r.stream = None;
            r.unconfirmed.clear();
        }
        if paused != 0 {
            r.stream = None;
            r.unconfirmed.clear();
            self.set_state(&id, "paused").await?;
            return Ok(pass);
        }
        if replay.is_none() && now < next_at {
            return Ok(pass);
        }
        let streamed = r.def.kind == "syslog" && r.def.transport() != "udp";
        // Syslog: what was written a while ago is delivered if the stream
        // still stands; if it fell, it is all sent again.
        if streamed && !r.unconfirmed.is_empty() {
            let alive = match r.stream.as_mut() {
                Some(s) => s.alive().await,
                None => false,
            };
            if alive {
                let mut done: Option<Unconfirmed> = None;
                let mut events = 0;
                while r.unconfirmed.front().is_some_and(|u| u.at.elapsed() >= CONFIRM_AFTER) {
                    if let Some(u) = r.unconfirmed.pop_front() {
                        events += u.events;
                        done = Some(u);
                    }
                }
                if let Some(u) = done {
                    if !self.confirm(r, &id, u.upto, u.checkpoint, events, 0).await? {
                        return r.lose();
                    }
                    cursor = u.upto;
                    checkpoint_size = u.checkpoint;
                    self.recovered(r, &id, failures, cursor).await?;
                    failures = 0;
                }
            } else {
                // The server went away after taking the batches (or refused
                // the connection after the handshake): they are sent again,
                // after the backoff, and the destination is failing.
                r.stream = None;
                r.unconfirmed.clear();
                let head = ledger.head().await.map_err(crate::events::EventsError::from)?.seq;
                let e = transport_error(
                    "the syslog server closed the connection before the batches written were confirmed; they are sent again",
                );
                self.failed(r, &id, failures, cursor, head, &e).await?;
                pass.failed = true;
                return Ok(pass);
            }
        }
        let (from, cp_from) = match r.unconfirmed.back() {
            Some(u) => (u.upto, u.checkpoint),
            None => (cursor, checkpoint_size),
        };
        let head = ledger.head().await.map_err(crate::events::EventsError::from)?.seq;
        self.lag_metrics(&id, cursor, head).await;
        // A partial batch waits a little for more (batch_interval_ms):
        // looked at before anything is read.
        let interval_us = i64::from(r.def.batch_interval_ms) * 1000;
        if failures == 0 && head.saturating_sub(from) < r.limit as u64 && now - r.last_send_at < interval_us {
            return Ok(pass);
        }
        // The events: a page after what was sent, up to the head.
        let mut f: SearchFilter = r.def.search_filter().map_err(AlertsError::Invalid)?;
        f.descending = false;
        f.limit = r.limit;
        f.after_seq = Some(from);
        f.max_seq = Some(head);
        let page = if from < head {
            self.events.search(&f).await?
        } else {
            custos_model::SearchPage { items: vec![], next_cursor: None, scanned: None }
        };
        let mut upto = match (&page.next_cursor, page.items.last()) {
            (Some(_), Some(last)) => last.seq,
            _ => head,
        };
        let mut items: Vec<Item> = Vec::with_capacity(page.items.len());
        let mut bytes = 0;
        for e in &page.items {
            let item = item_of(&r.def.format, e);
            bytes += item.record.line().len();
            items.push(item);
            if bytes >= BATCH_BYTES {
                // The rest goes in the next batch.
                upto = e.seq;
                break;
            }
        }
        drop(page);
        let n_events = items.len() as u64;
        let mut new_cp = cp_from;
        // (Not while a refused batch is being split: the event at fault is
        // looked for alone.)
        if r.def.checkpoints && !r.splitting {
            for c in self.checkpoints_after(cp_from, upto).await? {
                new_cp = c.tree_size;
                items.push(checkpoint_item(&r.def.format, &c));
            }
        }
        if items.is_empty() {
            if upto > from {
                if streamed && !r.unconfirmed.is_empty() {
                    // Moves on with the batches before it.
                    r.unconfirmed.push_back(Unconfirmed {
                        upto,
                        checkpoint: new_cp,
                        events: 0,
                        at: std::time::Instant::now(),
                    });
                } else {
                    if !r.lease.save(upto).await? {
                        return r.lose();
                    }
                    r.cursor = Some(upto);
                    r.renewed_at = now;
                }
            }
            if failures == 0 {
                self.set_state(&id, "ok").await?;
            }
            return Ok(pass);
        }
        let sent = self.send_renewing(r, &items, now, cursor).await;
        r.last_send_at = ledger.now_us();
        match sent {
            Ok(truncated) => {
                r.limit = (r.limit * 2).min(r.def.batch_size.clamp(1, 1000) as usize);
                if r.limit == r.def.batch_size.clamp(1, 1000) as usize {
                    r.splitting = false;
                }
                if streamed {
                    // Confirmed (and a failing destination recovered) on a
                    // later pass, once the stream is seen to stand.
                    r.unconfirmed.push_back(Unconfirmed {
                        upto,
                        checkpoint: new_cp,
                        events: n_events,
                        at: std::time::Instant::now(),
                    });
                } else {
                    if !self.confirm(r, &id, upto, new_cp, n_events, truncated).await? {
                        return r.lose();
                    }
                    self.recovered(r, &id, failures, upto).await?;
                }
                self.lag_metrics(&id, r.cursor.unwrap_or(cursor), head).await;
                pass.events = n_events;
                pass.checkpoints = items.len() as u64 - n_events;
                pass.more = upto < head;
            }
            Err(e) if e.message == LEASE_LOST => return r.lose(),
            Err(e) => {
                r.stream = None;
                r.unconfirmed.clear();
                pass.failed = true;
                let refused = matches!(e.code, Some(400 | 413 | 422));
                let note_refusal = |at: i64| {
                    stmt_for(
                        self.b(),
                        "UPDATE forward_state SET last_error = ?, last_error_at = ?, updated_at = ? \
                         WHERE destination_id = ?",
                        vec![e.message.clone().into(), at.into(), at.into(), id.clone().into()],
                    )
                };
                if refused && (n_events > 1 || (n_events == 1 && items.len() > 1)) {
                    // The receiver refuses this batch's content: smaller
                    // batches, without checkpoints, tried at once, find the
                    // record at fault.
                    r.splitting = true;
                    r.limit = (n_events as usize / 2).max(1);
                    self.conn().execute_raw(note_refusal(ledger.now_us())).await?;
                    return Ok(pass);
                } else if refused && n_events == 0 {
                    // Only checkpoints, and refused: this receiver does not
                    // take them. Passed over (the events go on), recorded.
                    self.skipped(r, &id, &e, json!({"checkpoints_to": new_cp})).await?;
                    if !self.confirm(r, &id, upto, new_cp, 0, 0).await? {
                        return r.lose();
                    }
                    return Ok(pass);
                } else if refused && n_events == 1 {
                    // One event refused alone. Passed over only if the
                    // receiver takes a record it took before (the last one
                    // delivered, sent again: a repeat it drops), so a
                    // receiver refusing everything is failing, not fed
                    // around, and events someone crafted cannot make it skip
                    // others. Recorded; a replay can send it again.
                    let seq = items[0].seq;
                    let mut f: SearchFilter = r.def.search_filter().map_err(AlertsError::Invalid)?;
                    f.descending = true;
                    f.limit = 1;
                    f.after_seq = None;
                    f.max_seq = Some(cursor);
                    let known = if cursor > 0 { self.events.search(&f).await?.items } else { Vec::new() };
                    if let Some(k) = known.first() {
                        let probe = vec![item_of(&r.def.format, k)];
                        match self.send_renewing(r, &probe, now, cursor).await {
                            Ok(_) => {
                                self.skipped(r, &id, &e, json!({"seq": seq, "probe": k.seq})).await?;
                                if !self.confirm(r, &id, seq, checkpoint_size, 0, 0).await? {
                                    return r.lose();
                                }
                                return Ok(pass);
                            }
                            Err(p) if p.message == LEASE_LOST => return r.lose(),
                            Err(_) => {}
                        }
                    }
                }
                self.failed(r, &id, failures, cursor, head, &e).await?;
            }
        }
        Ok(pass)
    }

    /// Moves the cursor to `upto` (the lease saved first) and writes the
    /// destination's success; false when another replica took the lease.
    async fn confirm(
        &self,
        r: &mut Runner,
        id: &str,
        upto: u64,
        checkpoint: u64,
        events: u64,
        truncated: u64,
    ) -> Result<bool, AlertsError> {
        if !r.lease.save(upto).await? {
            return Ok(false);
        }
        let at = self.ledger().now_us();
        r.cursor = Some(upto);
        r.renewed_at = at;
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET state = 'ok', failures = 0, next_at = 0, failing_since = NULL, \
                 last_success_at = ?, delivered = delivered + ?, truncated = truncated + ?, checkpoint_size = ?, \
                 updated_at = ? WHERE destination_id = ?",
                vec![
                    at.into(),
                    (events as i64).into(),
                    (truncated as i64).into(),
                    (checkpoint as i64).into(),
                    at.into(),
                    id.into(),
                ],
            ))
            .await?;
        metrics::counter!("custos_forward_events_total", "destination" => id.to_owned()).increment(events);
        Ok(true)
    }

    /// A record the receiver refused, passed over: recorded.
    async fn skipped(&self, r: &Runner, id: &str, e: &SendError, what: serde_json::Value) -> Result<(), AlertsError> {
        let mut details = json!({"destination": id, "type": r.def.kind, "response_code": e.code});
        if let (Some(d), Some(w)) = (details.as_object_mut(), what.as_object()) {
            d.extend(w.clone());
        }
        let event = OwnEvent::by_custos(OwnAction::ForwardStep("custos.forward.skipped"), "forwarder", Channel::System)
            .outcome(EventOutcome::Failure)
            .severity(Severity::Warning)
            .reason(Some(e.message.clone()))
            .resource("forward_destination", Some(id.to_owned()))
            .details(details);
        self.events.record_own(event).await?;
        Ok(())
    }

    /// After a success: a recorded failing is followed by its recovery.
    async fn recovered(&self, r: &Runner, id: &str, failures: u32, cursor: u64) -> Result<(), AlertsError> {
        let done = self
            .conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET failed_recorded = 0, state = 'ok', failures = 0, next_at = 0 \
                 WHERE destination_id = ? AND failed_recorded = 1",
                vec![id.into()],
            ))
            .await?;
        if done.rows_affected() == 1 {
            let event =
                OwnEvent::by_custos(OwnAction::ForwardStep("custos.forward.recovered"), "forwarder", Channel::System)
                    .resource("forward_destination", Some(id.to_owned()))
                    .details(json!({"destination": id, "type": r.def.kind, "failures": failures, "cursor": cursor}));
            self.events.record_own(event).await?;
        }
        Ok(())
    }

    /// After a failed send: backoff, and the failing recorded (once per
    /// transition, at most every five minutes).
    async fn failed(
        &self,
        r: &Runner,
        id: &str,
        failures: u32,
        cursor: u64,
        head: u64,
        e: &SendError,
    ) -> Result<(), AlertsError> {
        let failures = failures + 1;
        let wait = if e.permanent { BACKOFF_MAX_US } else { backoff_us(self.settings.retry_base_us, failures) };
        let at = self.ledger().now_us();
        let record = self
            .conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET failed_recorded = 1, failed_recorded_at = ? WHERE destination_id = ? \
                 AND failed_recorded = 0 AND (failed_recorded_at IS NULL OR failed_recorded_at < ?)",
                vec![at.into(), id.into(), (at - RECORD_FAILING_EVERY_US).into()],
            ))
            .await?
            .rows_affected()
            == 1;
        if record {
            let event = OwnEvent::by_custos(
                OwnAction::ForwardStep("custos.forward.failed"),
                "forwarder",
                Channel::System,
            )
            .outcome(EventOutcome::Failure)
            .severity(Severity::Warning)
            .reason(Some(e.message.clone()))
            .resource("forward_destination", Some(id.to_owned()))
            .details(json!({
                "destination": id, "type": r.def.kind, "cursor": cursor, "lag_events": head.saturating_sub(cursor),
                "response_code": e.code, "permanent": e.permanent,
            }));
            self.events.record_own(event).await?;
        }
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET state = 'failing', failures = ?, next_at = ?, last_error = ?, \
                 last_error_at = ?, failing_since = COALESCE(failing_since, ?), updated_at = ? WHERE destination_id = ?",
                vec![
                    i64::from(failures).into(),
                    (at + wait).into(),
                    e.message.clone().into(),
                    at.into(),
                    at.into(),
                    at.into(),
                    id.into(),
                ],
            ))
            .await?;
        metrics::counter!("custos_forward_failures_total", "destination" => id.to_owned()).increment(1);
        Ok(())
    }

    async fn set_state(&self, id: &str, state: &str) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET state = ?, updated_at = ? WHERE destination_id = ? AND state <> ?",
                vec![state.into(), self.ledger().now_us().into(), id.into(), state.into()],
            ))
            .await?;
        Ok(())
    }

    async fn lag_metrics(&self, id: &str, cursor: u64, head: u64) {
        let secs = self.lag_seconds(cursor, head).await.unwrap_or(0.0);
        metrics::gauge!("custos_forward_lag_events", "destination" => id.to_owned())
            .set(head.saturating_sub(cursor) as f64);
        metrics::gauge!("custos_forward_lag_seconds", "destination" => id.to_owned()).set(secs);
        metrics::gauge!("custos_forward_cursor", "destination" => id.to_owned()).set(cursor as f64);
    }

    async fn lag_seconds(&self, cursor: u64, head: u64) -> Result<f64, DbErr> {
        lag_seconds(self.ledger(), cursor, head).await
    }

    /// Signed checkpoints with `after < tree_size <= upto`, oldest first.
    async fn checkpoints_after(&self, after: u64, upto: u64) -> Result<Vec<CheckpointMsg>, DbErr> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.b(),
                &format!(
                    "SELECT tree_size, root_hash, note, created_at FROM checkpoints WHERE tree_size > ? AND tree_size <= ? \
                     ORDER BY tree_size LIMIT {CHECKPOINTS_MAX}"
                ),
                vec![(after as i64).into(), (upto as i64).into()],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let root: Vec<u8> = r.try_get("", "root_hash")?;
            out.push(CheckpointMsg {
                tree_size: r.try_get::<i64>("", "tree_size")?.max(0) as u64,
                root_hash: hex::encode(root),
                note: r.try_get("", "note")?,
                created_at: rfc3339(r.try_get("", "created_at")?),
            });
        }
        Ok(out)
    }

    /// Sends a batch, renewing the lease while the send takes long (a HEC
    /// waiting for its indexers); gives up at once if another replica
    /// took the lease meanwhile.
    async fn send_renewing(&self, r: &mut Runner, items: &[Item], now: i64, cursor: u64) -> Result<u64, SendError> {
        let lease = r.lease.clone();
        let send = self.send(r, items, now);
        tokio::pin!(send);
        let mut tick = tokio::time::interval(std::time::Duration::from_micros(RENEW_US as u64));
        tick.tick().await;
        loop {
            tokio::select! {
                sent = &mut send => return sent,
                _ = tick.tick() => {
                    if !lease.save(cursor).await.unwrap_or(false) {
                        return Err(transport_error(LEASE_LOST));
                    }
                }
            }
        }
    }

    /// Sends a batch; answers how many UDP messages were cut.
    async fn send(&self, r: &mut Runner, items: &[Item], now: i64) -> Result<u64, SendError> {
        let d = r.def.clone();
        let allow = self.settings.allow_private;
        match d.kind.as_str() {
            "syslog" => {
                let messages = transport::syslog_messages(&d, &self.hostname, items);
                if d.transport() == "udp" {
                    return transport::syslog_udp(&d, &messages, allow).await;
                }
                if let Some(s) = r.stream.as_mut()
                    && !s.alive().await
                {
                    r.stream = None;
                    if !r.unconfirmed.is_empty() {
                        return Err(transport_error(
                            "the syslog connection fell; what it had not confirmed is sent again",
                        ));
                    }
                }
                if r.stream.is_none() {
                    // A new connection: what the old one had not confirmed
                    // is sent again (the caller starts from the cursor).
                    r.stream = Some(transport::connect(self.ledger(), &d, allow).await?);
                }
                let Some(stream) = r.stream.as_mut() else { return Err(transport_error("no connection")) };
                transport::syslog_stream(stream, &messages).await?;
                Ok(0)
            }
            "splunk_hec" => {
                transport::hec(&self.http, self.ledger(), &d, &self.hostname, items, allow).await.map(|_| 0)
            }
            _ => transport::webhook(&self.http, self.ledger(), &d, items, now / SECOND_US, allow).await.map(|_| 0),
        }
    }

    // --- what people see and do ---------------------------------------------

    /// Every destination of the policy in force, with its health.
    pub async fn status(&self) -> Result<ForwardingStatus, AlertsError> {
        let (version, doc) = self.doc().await?;
        Ok(status_of(self.ledger(), version, &doc).await?)
    }

    async fn find(&self, id: &str) -> Result<DestinationDef, AlertsError> {
        let (_, doc) = self.doc().await?;
        doc.destinations
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| AlertsError::NotFound(format!("no destination `{id}` in the forwarding policy in force")))
    }

    async fn record(
        &self,
        by: &Requester,
        action: &'static str,
        id: &str,
        reason: Option<String>,
        details: serde_json::Value,
    ) -> Result<u64, AlertsError> {
        let event = OwnEvent::new(OwnAction::ForwardStep(action), by.actor.clone(), by.channel)
            .request(by.request_id.clone())
            .reason(reason)
            .resource("forward_destination", Some(id.to_owned()))
            .details(details);
        Ok(self.events.record_own(event).await?.seq)
    }

    /// Pauses or resumes a destination (recorded first).
    pub async fn set_paused(
        &self,
        by: &Requester,
        id: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), AlertsError> {
        let d = self.find(id).await?;
        self.ensure_state(&d.id).await?;
        let action = if paused { "custos.forward.paused" } else { "custos.forward.resumed" };
        self.record(by, action, id, reason, json!({"destination": id, "type": d.kind})).await?;
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET paused = ?, state = ?, updated_at = ? WHERE destination_id = ?",
                vec![
                    i64::from(paused).into(),
                    (if paused { "paused" } else { "starting" }).into(),
                    self.ledger().now_us().into(),
                    id.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Asks the destination's forwarder to send again from a ledger
    /// position or time (recorded first); answers the first seq resent.
    pub async fn replay(
        &self,
        by: &Requester,
        id: &str,
        from_seq: Option<u64>,
        from_time: Option<&str>,
        reason: &str,
    ) -> Result<u64, AlertsError> {
        let d = self.find(id).await?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(invalid("reason", "1 to 1,000 characters: why the events are sent again"));
        }
        let head = self.ledger().head().await.map_err(crate::events::EventsError::from)?.seq;
        let first = match (from_seq, from_time) {
            (Some(s), None) => {
                if s == 0 || s > head.max(1) {
                    return Err(invalid("from_seq", format!("a ledger position from 1 to {head}")));
                }
                s
            }
            (None, Some(t)) => {
                let at = parse_rfc3339(t).ok_or_else(|| invalid("from_time", "an RFC 3339 time"))?;
                let row = self
                    .conn()
                    .query_one_raw(stmt_for(
                        self.b(),
                        "SELECT MIN(seq) AS seq FROM ledger_entries WHERE recorded_at >= ?",
                        vec![at.into()],
                    ))
                    .await?;
                match row.and_then(|r| r.try_get::<Option<i64>>("", "seq").ok().flatten()) {
                    Some(s) => s.max(1) as u64,
                    None => return Err(invalid("from_time", "no entry was committed at or after this time")),
                }
            }
            _ => return Err(invalid("from_seq", "give either from_seq or from_time")),
        };
        // A replay goes back, never forward past what was not sent.
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.b(),
                "SELECT cursor_seq FROM leases WHERE name = ?",
                vec![lease_name(id).into()],
            ))
            .await?;
        let cursor = row.and_then(|r| r.try_get::<i64>("", "cursor_seq").ok()).and_then(|c| u64::try_from(c).ok());
        match cursor {
            None => return Err(AlertsError::Conflict(format!("the destination `{id}` has not started yet"))),
            Some(c) if first > c + 1 => {
                return Err(invalid(
                    "from_seq",
                    format!("a replay goes back: `{id}` has sent up to #{c}, so start at #{} or before", c + 1),
                ));
            }
            Some(_) => {}
        }
        self.ensure_state(&d.id).await?;
        self.record(
            by,
            "custos.forward.replayed",
            id,
            Some(reason.to_owned()),
            json!({"destination": id, "type": d.kind, "from_seq": first, "head": head}),
        )
        .await?;
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "UPDATE forward_state SET replay_seq = ?, updated_at = ? WHERE destination_id = ?",
                vec![(first as i64 - 1).into(), self.ledger().now_us().into(), id.into()],
            ))
            .await?;
        Ok(first)
    }

    /// Records a test event and sends it to the destination at once (it
    /// also goes in order later, like every event).
    pub async fn test(&self, by: &Requester, id: &str) -> Result<ForwardTest, AlertsError> {
        let d = self.find(id).await?;
        if !d.enabled {
            return Err(AlertsError::Conflict(format!("the destination `{id}` is turned off in the policy")));
        }
        let paused = match self.state_row(id).await? {
            Some(r) => r.try_get::<i64>("", "paused")? != 0,
            None => false,
        };
        if paused {
            return Err(AlertsError::Conflict(format!("the destination `{id}` is paused: resume it to test it")));
        }
        // One test at a time per destination.
        if !self.testing.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned()) {
            return Err(AlertsError::Conflict(format!("a test of `{id}` is being sent; wait for it")));
        }
        let r = self.test_now(by, d).await;
        self.testing.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        r
    }

    async fn test_now(&self, by: &Requester, d: DestinationDef) -> Result<ForwardTest, AlertsError> {
        let id = d.id.as_str();
        let seq = self
            .record(
                by,
                "custos.forward.tested",
                id,
                None,
                json!({"destination": id, "type": d.kind, "format": d.format, "test": true}),
            )
            .await?;
        let f = SearchFilter {
            descending: false,
            limit: 1,
            after_seq: Some(seq - 1),
            max_seq: Some(seq),
            ..Default::default()
        };
        let page = self.events.search(&f).await?;
        let e = page.items.first().ok_or_else(|| AlertsError::NotFound("the test event".into()))?;
        let items = vec![item_of(&d.format, e)];
        let mut r = Runner::new(
            d.clone(),
            Lease::new(
                self.ledger().clone(),
                &format!("forward-test:{id}"),
                &self.holder,
                self.ledger().lease_ttl_us(),
            ),
        );
        let started = std::time::Instant::now();
        let now = self.ledger().now_us();
        let mut sent = self.send(&mut r, &items, now).await;
        // Syslog: delivered once the stream stands a while after the write.
        if sent.is_ok()
            && let Some(stream) = r.stream.as_mut()
        {
            tokio::time::sleep(CONFIRM_AFTER).await;
            if !stream.alive().await {
                sent = Err(transport_error("the syslog server closed the connection after the write"));
            }
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        Ok(match sent {
            Ok(_) => ForwardTest { delivered: true, seq, response_code: None, latency_ms, error: None },
            Err(e) => ForwardTest { delivered: false, seq, response_code: e.code, latency_ms, error: Some(e.message) },
        })
    }

    /// A destination's format on the newest event its filter takes.
    pub async fn preview(&self, d: &DestinationDef) -> Result<ForwardPreview, AlertsError> {
        let mut f = d.search_filter().map_err(AlertsError::Invalid)?;
        f.descending = true;
        f.limit = 1;
        let page = self.events.search(&f).await?;
        let Some(e) = page.items.first() else {
            return Ok(ForwardPreview { seq: None, record: String::new(), wire: String::new() });
        };
        let item = item_of(&d.format, e);
        let record = match &item.record {
            Record::Json(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            Record::Text(s) => s.clone(),
        };
        let wire = match d.kind.as_str() {
            "syslog" => {
                let m = transport::syslog_messages(d, &self.hostname, std::slice::from_ref(&item));
                let m = m.first().cloned().unwrap_or_default();
                if d.transport() == "udp" { m } else { String::from_utf8_lossy(&format::octet_frame(&m)).into_owned() }
            }
            "splunk_hec" => {
                String::from_utf8_lossy(&transport::hec_body(d, &self.hostname, std::slice::from_ref(&item)))
                    .into_owned()
            }
            _ => {
                if d.body.as_deref() == Some("ndjson") {
                    item.record.value().to_string()
                } else {
                    json!([item.record.value()]).to_string()
                }
            }
        };
        Ok(ForwardPreview { seq: Some(e.seq), record, wire })
    }
}

/// Every destination of `doc` (the forwarding policy's version `version`)
/// with its health, as any replica sees it from the database.
pub async fn status_of(
    ledger: &crate::ledger::Ledger,
    version: u64,
    doc: &ForwardingDoc,
) -> Result<ForwardingStatus, crate::events::EventsError> {
    let conn = ledger.db().conn();
    let b = ledger.db().backend();
    let head = ledger.head().await?.seq;
    let mut out = Vec::with_capacity(doc.destinations.len());
    for d in &doc.destinations {
        let state = state_row(conn, b, &d.id).await?;
        let lease = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT holder, until_us, cursor_seq FROM leases WHERE name = ?",
                vec![lease_name(&d.id).into()],
            ))
            .await?;
        let cursor = match &lease {
            Some(l) => u64::try_from(l.try_get::<i64>("", "cursor_seq")?).ok(),
            None => None,
        };
        let holder = match &lease {
            Some(l) if l.try_get::<i64>("", "until_us")? >= ledger.now_us() => Some(l.try_get::<String>("", "holder")?),
            _ => None,
        };
        let get_i = |c: &str| -> Result<Option<i64>, DbErr> {
            match &state {
                Some(s) => s.try_get::<Option<i64>>("", c),
                None => Ok(None),
            }
        };
        let paused = get_i("paused")?.unwrap_or(0) != 0;
        let stored = match &state {
            Some(s) => s.try_get::<String>("", "state")?,
            None => "starting".into(),
        };
        let stored_failing = stored == "failing";
        let state_word = if !d.enabled {
            "off".to_owned()
        } else if paused {
            "paused".to_owned()
        } else {
            stored
        };
        let failures = get_i("failures")?.unwrap_or(0).max(0) as u32;
        let next_at = get_i("next_at")?.unwrap_or(0);
        let (lag_events, lag_seconds) = match cursor {
            Some(c) => (head.saturating_sub(c), lag_seconds(ledger, c, head).await?),
            None => (0, 0.0),
        };
        out.push(DestinationHealth {
            id: d.id.clone(),
            name: d.name.clone(),
            kind: d.kind.clone(),
            format: d.format.clone(),
            address: address(d),
            enabled: d.enabled,
            paused,
            state: state_word,
            cursor,
            head,
            lag_events,
            lag_seconds,
            delivered: get_i("delivered")?.unwrap_or(0).max(0) as u64,
            truncated: get_i("truncated")?.unwrap_or(0).max(0) as u64,
            checkpoint_size: get_i("checkpoint_size")?.unwrap_or(0).max(0) as u64,
            failures,
            failing_since: if failures > 0 || stored_failing { get_i("failing_since")?.map(rfc3339) } else { None },
            checkpoints: d.checkpoints,
            last_success_at: get_i("last_success_at")?.map(rfc3339),
            last_error: match &state {
                Some(s) => s.try_get("", "last_error")?,
                None => None,
            },
            last_error_at: get_i("last_error_at")?.map(rfc3339),
            next_try_at: (failures > 0 && next_at > 0).then(|| rfc3339(next_at)),
            replay_pending: get_i("replay_seq")?.map(|s| s.max(0) as u64),
            holder,
        });
    }
    Ok(ForwardingStatus { version, destinations: out })
}

async fn state_row(
    conn: &sea_orm::DatabaseConnection,
    b: sea_orm::DbBackend,
    id: &str,
) -> Result<Option<QueryResult>, DbErr> {
    conn.query_one_raw(stmt_for(b, "SELECT * FROM forward_state WHERE destination_id = ?", vec![id.into()])).await
}

/// How long the oldest entry after `cursor` has waited (seconds).
async fn lag_seconds(ledger: &crate::ledger::Ledger, cursor: u64, head: u64) -> Result<f64, DbErr> {
    if cursor >= head {
        return Ok(0.0);
    }
    let row = ledger
        .db()
        .conn()
        .query_one_raw(stmt_for(
            ledger.db().backend(),
            "SELECT recorded_at FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT 1",
            vec![(cursor as i64).into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(0.0) };
    let at: i64 = row.try_get("", "recorded_at")?;
    Ok(((ledger.now_us() - at).max(0)) as f64 / 1e6)
}

fn transport_error(message: &str) -> SendError {
    SendError { message: message.into(), code: None, permanent: false }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let s = 1_000_000;
        assert_eq!(super::backoff_us(s, 1), s);
        assert_eq!(super::backoff_us(s, 4), 8 * s);
        assert_eq!(super::backoff_us(s, 30), 300 * s);
    }
}

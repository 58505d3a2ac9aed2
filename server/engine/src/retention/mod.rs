//! Retention: expired events are archived, then replaced by tombstones
//! (`ledger::tombstone`), except under a legal hold; the runs, their
//! history, and the catalogue of archives.
//!
//! A run (daily at `retention.run_at` UTC on the replica holding the
//! `retention` lease, or on demand) reads the ledger in seq order, finds
//! each event's period (`doc`: the longest of the matching rules) and, for
//! the expired ones, the legal holds that keep them (each hold's filter
//! run as SQL over the same range, so it selects exactly what the explorer
//! would). If the holds cannot be read or evaluated, nothing is removed.
//! The removable seqs go to `Ledger::tombstone` in sets within one block of
//! [`REMOVAL_BLOCK`] positions (so at most that many entries): each set an
//! archive bundle, an anchor
//! and a signed record. A dry-run ([`Retention::plan`]) is the same scan
//! without the removal.

pub mod doc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custos_model::{ArchiveInfo, RemovalCount, RetentionPlan, RetentionRun, RetentionStatus};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde_json::json;
use uuid::Uuid;

use self::doc::{Clear, ERASURES_KIND, ErasuresDoc, HOLDS_KIND, HoldsDoc, RETENTION_KIND, RetentionDoc, expires_at};
use crate::alerts::store::AlertsError;
use crate::events::Events;
use crate::events::SearchFilter;
use crate::events::model::{Channel, Outcome};
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::lease::Lease;
use crate::ledger::store::seq_value;
use crate::ledger::tombstone::{ANCHOR_ACTION, MAX_PER_RECORD};
use crate::objstore::{Kind, LocalCopy, Remote, Source};
use crate::policies::PolicyStore;
use crate::storage::stmt_for;
use crate::time::{DAY_US, MINUTE_US, rfc3339};
use custos_model::Severity;

/// The lease a run holds (one run at a time across replicas).
pub const LEASE: &str = "retention";
const LEASE_TTL_US: i64 = 60_000_000;
/// Entries read per query.
const PAGE: u64 = 5_000;
/// A set removed under one record lies within one block of this many
/// positions (a multiple of the Merkle tile, 256), so every block's end is
/// a place where a compaction cuts no removal in two (compaction looks for
/// the furthest such place, see `Ledger::compactable_through`).
pub const REMOVAL_BLOCK: u64 = 16_384;

/// Settings (`[retention]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where archive bundles are written.
    pub archive_dir: PathBuf,
    /// The daily run's time, minutes after midnight UTC; `None`: no
    /// schedule (runs on demand only).
    pub run_at_minute: Option<u32>,
    /// The object store each archive is uploaded to before anything it
    /// holds is removed, if any.
    pub remote: Option<Arc<Remote>>,
    /// Cold copies: entries sealed by a signed checkpoint copied into
    /// archives every day or month, long before they expire.
    pub cold_copies: Option<ColdCopies>,
}

/// How often cold copies are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdCopies {
    /// After each UTC day.
    Daily,
    /// After each calendar month (UTC).
    Monthly,
}

impl ColdCopies {
    /// `daily`, `monthly`, or `off` (none).
    pub fn parse(s: &str) -> Result<Option<ColdCopies>, &'static str> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "" => Ok(None),
            "daily" => Ok(Some(ColdCopies::Daily)),
            "monthly" => Ok(Some(ColdCopies::Monthly)),
            _ => Err("must be off, daily or monthly"),
        }
    }

    /// `daily` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdCopies::Daily => "daily",
            ColdCopies::Monthly => "monthly",
        }
    }

    /// The period `us` falls in (days or months since 1970).
    fn period(self, us: i64) -> i64 {
        match self {
            ColdCopies::Daily => us.div_euclid(DAY_US),
            ColdCopies::Monthly => {
                use chrono::Datelike as _;
                let d = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
                i64::from(d.year()) * 12 + i64::from(d.month0())
            }
        }
    }
}

/// A compaction takes at most this many positions at a time.
pub const COMPACT_SPAN: u64 = 200_000;
/// Compactions per run at most (the rest at the next run).
const COMPACT_MAX: u64 = 10;
/// A cold copy spans at most this many positions (bigger ranges are cut).
pub const COPY_SPAN: u64 = 50_000;
/// After a failed cold copy, the next try waits this long.
const COPY_RETRY_US: i64 = 3_600_000_000;

/// An archive's way to the object store (see [`Retention::upload`]).
struct Upload<'a> {
    remote: Option<&'a Remote>,
    now: i64,
    /// Where it was uploaded.
    uri: Option<String>,
}

impl Upload<'_> {
    async fn keep(&mut self, path: &Path, name: &str) -> Result<(), String> {
        if let Some(r) = self.remote {
            self.uri = Some(r.upload(Kind::Archives, name, path, self.now).await?);
        }
        Ok(())
    }
}

/// Retention.
pub struct Retention {
    events: Arc<Events>,
    policies: Arc<PolicyStore>,
    holder: String,
    settings: Settings,
    /// One run at a time in this process (held from its start to its end).
    running: Arc<tokio::sync::Mutex<()>>,
    /// One dry-run at a time.
    planning: tokio::sync::Mutex<()>,
    /// One archive verification at a time.
    verifying: tokio::sync::Mutex<()>,
    /// After a cold copy failed: when it is tried again (µs); 0: none failed.
    copy_retry_at: std::sync::atomic::AtomicI64,
}

/// A database error as the services' error (fail closed).
pub(crate) fn db_err(e: DbErr) -> AlertsError {
    AlertsError::Events(e.into())
}

/// Any refusal as a conflict (409), with its reason.
pub(crate) fn conflict(e: impl std::fmt::Display) -> AlertsError {
    AlertsError::Conflict(e.to_string())
}

/// One candidate: an entry's clear columns.
struct Row {
    seq: u64,
    recorded_at: i64,
    category: String,
    action: String,
    tenant: Option<String>,
    source_app: Option<String>,
}

fn row_of(r: &QueryResult) -> Result<Row, DbErr> {
    Ok(Row {
        seq: r.try_get::<i64>("", "seq")?.max(0) as u64,
        recorded_at: r.try_get("", "recorded_at")?,
        category: r.try_get("", "category")?,
        action: r.try_get("", "action")?,
        tenant: r.try_get("", "tenant")?,
        source_app: r.try_get("", "source_app")?,
    })
}

/// What a run removes.
pub enum Target {
    /// Expired events under these rules, at this time (µs).
    Expired(RetentionDoc, i64),
    /// Every event of one data subject (an erasure request, by id).
    Subject(Box<SearchFilter>, String),
}

/// What the scan found in one page.
struct PageVerdict {
    last_seq: u64,
    /// (seq, recorded_at, category, rule id or `default`, or the request).
    removable: Vec<(u64, i64, String, String)>,
    held: Vec<(u64, String)>,
    /// Whether nothing after this page can be removed.
    done: bool,
}

fn month_of(us: i64) -> String {
    rfc3339(us).get(..7).unwrap_or("").to_owned()
}

fn run_of(r: &QueryResult) -> Result<RetentionRun, DbErr> {
    let n = |c: &str| -> Result<u64, DbErr> { Ok(r.try_get::<i64>("", c)?.max(0) as u64) };
    Ok(RetentionRun {
        id: r.try_get("", "id")?,
        kind: r.try_get("", "kind")?,
        request: r.try_get("", "detail")?,
        trigger: r.try_get("", "trigger")?,
        requested_by: r.try_get("", "requested_by")?,
        started_at: rfc3339(r.try_get("", "started_at")?),
        finished_at: r.try_get::<Option<i64>>("", "finished_at")?.map(rfc3339),
        state: r.try_get("", "state")?,
        scanned: n("scanned")?,
        total: n("total")?,
        removed: n("removed")?,
        held: n("held")?,
        archives: n("archives")?,
        error: r.try_get("", "error")?,
    })
}

fn archive_of(r: &QueryResult) -> Result<ArchiveInfo, DbErr> {
    let n = |c: &str| -> Result<u64, DbErr> { Ok(r.try_get::<i64>("", c)?.max(0) as u64) };
    Ok(ArchiveInfo {
        name: r.try_get("", "name")?,
        location: r.try_get("", "location")?,
        uri: r.try_get("", "uri")?,
        anchor_seq: r.try_get::<Option<i64>>("", "anchor_seq")?.map(|v| v.max(0) as u64),
        from_seq: n("from_seq")?,
        through_seq: n("through_seq")?,
        entries: n("entries")?,
        bytes: n("bytes")?,
        sha256: r.try_get("", "sha256")?,
        reason: r.try_get("", "reason")?,
        created_at: rfc3339(r.try_get("", "created_at")?),
        verified_at: r.try_get::<Option<i64>>("", "verified_at")?.map(rfc3339),
        verified_ok: r.try_get::<Option<i64>>("", "verified_ok")?.map(|v| v != 0),
        verified_detail: r.try_get("", "verified_detail")?,
    })
}

const RUN_COLUMNS: &str = "id, kind, detail, trigger, requested_by, started_at, finished_at, state, scanned, total, \
     removed, held, archives, error";
const ARCHIVE_COLUMNS: &str = "name, location, uri, anchor_seq, from_seq, through_seq, entries, bytes, sha256, reason, \
     created_at, verified_at, verified_ok, verified_detail";

/// Seqs within `first..=last` that legal holds in force keep, with the
/// hold keeping each. A hold's period covers an event that occurred in it
/// or was recorded in it (an application sets `occurred_at`; Custos sets
/// `recorded_at`). Fails (and nothing is removed) when a hold cannot be
/// evaluated.
async fn held_in(
    events: &Events,
    holds: &HoldsDoc,
    first: u64,
    last: u64,
) -> Result<BTreeMap<u64, String>, AlertsError> {
    let conn = events.ledger().db().conn();
    let backend = events.ledger().db().backend();
    let filters = holds.active_filters().map_err(|e: FieldError| {
        conflict(format!("legal hold {} cannot be evaluated, so nothing is removed: {}", e.path, e.reason))
    })?;
    let mut held: BTreeMap<u64, String> = BTreeMap::new();
    for (hold, f) in filters {
        let (actors, resources) = events.masked_forms(&f);
        let mut queries = vec![crate::events::search::seqs_sql(&f, &actors, &resources, first, last, (None, None))];
        if f.from_us.is_some() || f.to_us.is_some() {
            let untimed = SearchFilter { from_us: None, to_us: None, ..f.clone() };
            queries.push(crate::events::search::seqs_sql(
                &untimed,
                &actors,
                &resources,
                first,
                last,
                (f.from_us, f.to_us),
            ));
        }
        for (sql, values) in queries {
            let kept = conn.query_all_raw(stmt_for(backend, &sql, values)).await.map_err(|e| {
                conflict(format!("legal hold {} cannot be evaluated, so nothing is removed: {e}", hold.id))
            })?;
            for k in kept {
                let seq = k.try_get::<i64>("", "seq").map_err(db_err)?.max(0) as u64;
                held.entry(seq).or_insert_with(|| hold.id.clone());
            }
        }
    }
    Ok(held)
}

/// What a run would remove now under `doc` and `holds` (the dry-run).
pub async fn plan(events: &Events, doc: &RetentionDoc, holds: &HoldsDoc) -> Result<RetentionPlan, AlertsError> {
    let now = events.ledger().now_us();
    let target = Target::Expired(doc.clone(), now);
    let mut by_cm: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_hold: BTreeMap<String, u64> = BTreeMap::new();
    let (mut removable, mut held, mut scanned) = (0u64, 0u64, 0u64);
    let mut oldest = None;
    let mut after = 0u64;
    loop {
        let Some(v) = judge_page(events, &target, holds, after).await? else { break };
        scanned += v.last_seq - after;
        for (seq, at, category, rule) in &v.removable {
            removable += 1;
            *by_cm.entry((category.clone(), month_of(*at))).or_default() += 1;
            *by_rule.entry(rule.clone()).or_default() += 1;
            if oldest.is_none() {
                oldest = Some((*seq, rfc3339(*at)));
            }
        }
        for (_, hold) in &v.held {
            held += 1;
            *by_hold.entry(hold.clone()).or_default() += 1;
        }
        after = v.last_seq;
        if v.done {
            break;
        }
    }
    Ok(RetentionPlan {
        at: rfc3339(now),
        removable,
        held,
        scanned,
        by_category_month: by_cm
            .into_iter()
            .map(|((category, month), events)| RemovalCount { category, month, events })
            .collect(),
        by_rule: by_rule.into_iter().collect(),
        by_hold: by_hold.into_iter().collect(),
        oldest,
    })
}

/// Judges the entries after `after` (one page): which `target` takes and
/// which of those a legal hold keeps. `None` when there are none left. The
/// entries that anchor purges and removals are never taken.
async fn judge_page(
    events: &Events,
    target: &Target,
    holds: &HoldsDoc,
    after: u64,
) -> Result<Option<PageVerdict>, AlertsError> {
    if let Target::Expired(doc, _) = target
        && doc.shortest_days().is_none()
    {
        return Ok(None);
    }
    let conn = events.ledger().db().conn();
    let backend = events.ledger().db().backend();
    let rows = conn
        .query_all_raw(stmt_for(
            backend,
            "SELECT seq, recorded_at, category, action, tenant, source_app FROM ledger_entries \
             WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![seq_value(after), seq_value(PAGE)],
        ))
        .await
        .map_err(db_err)?;
    let rows: Vec<Row> = rows.iter().map(row_of).collect::<Result<_, _>>().map_err(db_err)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(None) };
    let (first_seq, last_seq) = (first.seq, last.seq);
    let anchor = |r: &Row| {
        matches!(r.action.as_str(), ANCHOR_ACTION | "ledger.purge") && r.source_app.as_deref() == Some("custos")
    };
    let mut taken: Vec<(u64, i64, String, String)> = Vec::new();
    let mut done = rows.len() < PAGE as usize;
    match target {
        Target::Expired(doc, now) => {
            let latest_expiring = now - i64::from(doc.shortest_days().unwrap_or(0)) * DAY_US;
            done = done || rows.iter().all(|r| r.recorded_at > latest_expiring);
            for r in rows.iter().filter(|r| !anchor(r)) {
                let clear = Clear {
                    category: &r.category,
                    action: &r.action,
                    tenant: r.tenant.as_deref(),
                    source_app: r.source_app.as_deref(),
                };
                let (days, rule) = doc.period(&clear);
                if let Some(days) = days
                    && expires_at(r.recorded_at, days) <= *now
                {
                    taken.push((r.seq, r.recorded_at, r.category.clone(), rule.unwrap_or("default").to_owned()));
                }
            }
        }
        Target::Subject(f, request) => {
            let (actors, resources) = events.masked_forms(f);
            let (sql, values) =
                crate::events::search::seqs_sql(f, &actors, &resources, first_seq, last_seq, (None, None));
            let found = conn.query_all_raw(stmt_for(backend, &sql, values)).await.map_err(db_err)?;
            let subject: std::collections::HashSet<u64> =
                found.iter().filter_map(|r| r.try_get::<i64>("", "seq").ok()).map(|v| v.max(0) as u64).collect();
            for r in rows.iter().filter(|r| subject.contains(&r.seq) && !anchor(r)) {
                taken.push((r.seq, r.recorded_at, r.category.clone(), request.clone()));
            }
        }
    }
    let held_seqs =
        if taken.is_empty() { BTreeMap::new() } else { held_in(events, holds, first_seq, last_seq).await? };
    let mut removable = Vec::with_capacity(taken.len());
    let mut held = Vec::new();
    for e in taken {
        match held_seqs.get(&e.0) {
            Some(hold) => held.push((e.0, hold.clone())),
            None => removable.push(e),
        }
    }
    Ok(Some(PageVerdict { last_seq, removable, held, done }))
}

impl Retention {
    /// Retention for `holder` (this replica's name).
    pub fn new(events: Arc<Events>, policies: Arc<PolicyStore>, holder: &str, settings: Settings) -> Retention {
        Retention {
            events,
            policies,
            holder: holder.to_owned(),
            settings,
            running: Arc::new(tokio::sync::Mutex::new(())),
            planning: tokio::sync::Mutex::new(()),
            verifying: tokio::sync::Mutex::new(()),
            copy_retry_at: std::sync::atomic::AtomicI64::new(0),
        }
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn backend(&self) -> sea_orm::DbBackend {
        self.events.ledger().db().backend()
    }

    fn lease(&self) -> Lease {
        Lease::new(self.events.ledger().clone(), LEASE, &self.holder, LEASE_TTL_US)
    }

    /// The retention and hold policies in force. Fails (and nothing is
    /// removed) when either cannot be read.
    async fn in_force(&self) -> Result<(RetentionDoc, HoldsDoc), AlertsError> {
        let r = self.policies.active(RETENTION_KIND).await.map_err(conflict)?;
        let doc = RetentionDoc::parse(&r.content).map_err(AlertsError::Invalid)?;
        Ok((doc, self.holds_in_force().await?))
    }

    async fn holds_in_force(&self) -> Result<HoldsDoc, AlertsError> {
        let h = self.policies.active(HOLDS_KIND).await.map_err(conflict)?;
        HoldsDoc::parse(&h.content)
            .map_err(|e| conflict(format!("the legal holds cannot be read, so nothing is removed: {}", e.reason)))
    }

    /// What a run would remove now under the policies in force. One at a
    /// time (409 while another is computed): it reads the ledger.
    pub async fn plan(&self) -> Result<RetentionPlan, AlertsError> {
        let Ok(_one) = self.planning.try_lock() else {
            return Err(AlertsError::Conflict("a dry-run is being computed; try again in a moment".into()));
        };
        let (doc, holds) = self.in_force().await?;
        plan(&self.events, &doc, &holds).await
    }

    /// Runs retention now and waits for it: `trigger` is `manual` or
    /// `schedule`. Refused (409) while another run is going on, here or on
    /// another replica.
    pub async fn run_now(&self, by: &Requester, trigger: &str) -> Result<RetentionRun, AlertsError> {
        let (doc, _) = self.in_force().await?;
        let now = self.events.ledger().now_us();
        let (id, guard) = self.begin(by, trigger, "retention", None).await?;
        self.execute(&id, Target::Expired(doc, now), guard).await
    }

    /// Starts a run in the background; returns it as started.
    pub async fn start(self: &Arc<Self>, by: &Requester) -> Result<RetentionRun, AlertsError> {
        let (doc, _) = self.in_force().await?;
        let now = self.events.ledger().now_us();
        let (id, guard) = self.begin(by, "manual", "retention", None).await?;
        let me = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = me.execute(&run_id, Target::Expired(doc, now), guard).await {
                tracing::warn!(run = %run_id, error = %e, "retention run failed");
            }
        });
        self.get_run(&id).await
    }

    /// Takes this process's run lock and the lease, records the run's
    /// start and stores it as running.
    async fn begin(
        &self,
        by: &Requester,
        trigger: &str,
        kind: &str,
        request: Option<&str>,
    ) -> Result<(String, tokio::sync::OwnedMutexGuard<()>), AlertsError> {
        let busy = |who: Option<(String, i64)>| {
            AlertsError::Conflict(format!(
                "a retention run is going on{}; wait for it to finish",
                who.map(|(h, _)| format!(" (on {h})")).unwrap_or_default()
            ))
        };
        let Ok(guard) = self.running.clone().try_lock_owned() else { return Err(busy(None)) };
        if self.lease().acquire().await.map_err(db_err)?.is_none() {
            return Err(busy(Lease::current(self.events.ledger(), LEASE).await.map_err(db_err)?));
        }
        let id = Uuid::now_v7().to_string();
        let now = self.events.ledger().now_us();
        let total = crate::ledger::store::read_head(self.conn()).await.map_err(conflict)?.seq;
        self.events
            .record_own(
                OwnEvent::new(OwnAction::RetentionStep("custos.retention.run_started"), by.actor.clone(), by.channel)
                    .request(by.request_id.clone())
                    .resource("retention_run", Some(id.clone()))
                    .details(json!({"run": id, "kind": kind, "trigger": trigger, "request": request, "head": total})),
            )
            .await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO retention_runs (id, kind, trigger, requested_by, started_at, state, total, detail) \
                 VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
                vec![
                    id.clone().into(),
                    kind.into(),
                    trigger.into(),
                    by.owner.clone().into(),
                    now.into(),
                    seq_value(total),
                    request.map(str::to_owned).into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        Ok((id, guard))
    }

    /// Runs a begun run to its end, recording how it ended.
    async fn execute(
        &self,
        id: &str,
        target: Target,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<RetentionRun, AlertsError> {
        let reason = match &target {
            Target::Expired(..) => "retention",
            Target::Subject(..) => "erasure",
        };
        let outcome = self.remove_all(id, &target, reason).await;
        let now = self.events.ledger().now_us();
        let (state, error) = match &outcome {
            Ok(()) => ("done", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE retention_runs SET state = ?, finished_at = ?, error = ?, \
                 total = CASE WHEN scanned > total THEN scanned ELSE total END WHERE id = ?",
                vec![state.into(), now.into(), error.clone().into(), id.into()],
            ))
            .await
            .map_err(db_err)?;
        let run = self.get_run(id).await?;
        let mut event = OwnEvent::by_custos(
            OwnAction::RetentionStep(if error.is_none() {
                "custos.retention.run_completed"
            } else {
                "custos.retention.run_failed"
            }),
            "retention",
            Channel::System,
        )
        .resource("retention_run", Some(id.to_owned()))
        .details(json!({
            "run": id, "kind": reason, "removed": run.removed, "held": run.held, "archives": run.archives,
            "scanned": run.scanned, "error": error,
        }));
        if error.is_some() {
            event = event.outcome(Outcome::Failure).severity(Severity::Warning).reason(error.clone());
        }
        self.events.record_own(event).await?;
        let _ = self.lease().release().await;
        outcome.map(|()| run)
    }

    async fn save_progress(
        &self,
        id: &str,
        scanned: u64,
        removed: u64,
        held: u64,
        archives: u64,
    ) -> Result<(), AlertsError> {
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE retention_runs SET scanned = ?, removed = ?, held = ?, archives = ? WHERE id = ?",
                vec![seq_value(scanned), seq_value(removed), seq_value(held), seq_value(archives), id.into()],
            ))
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Scans the ledger and removes what `target` takes, in sets; before
    /// each set the lease is renewed and the legal holds read again (a hold
    /// placed during the run keeps what it covers).
    async fn remove_all(&self, id: &str, target: &Target, reason: &str) -> Result<(), AlertsError> {
        let mut holds = self.holds_in_force().await?;
        let lease = self.lease();
        let mut after = 0u64;
        let mut pending: Vec<u64> = Vec::new();
        let (mut removed, mut held, mut archives) = (0u64, 0u64, 0u64);
        loop {
            if !lease.save(after).await.map_err(db_err)? {
                return Err(AlertsError::Conflict("another replica took the retention run over".into()));
            }
            let verdict = judge_page(&self.events, target, &holds, after).await?;
            let (last, done) = verdict.as_ref().map_or((after, true), |v| (v.last_seq, v.done));
            let mut sets: Vec<Vec<u64>> = Vec::new();
            if let Some(v) = &verdict {
                held += v.held.len() as u64;
                for (seq, ..) in &v.removable {
                    if pending.first().is_some_and(|f| (f - 1) / REMOVAL_BLOCK != (seq - 1) / REMOVAL_BLOCK)
                        || pending.len() >= MAX_PER_RECORD
                    {
                        sets.push(std::mem::take(&mut pending));
                    }
                    pending.push(*seq);
                }
            }
            if done && !pending.is_empty() {
                sets.push(std::mem::take(&mut pending));
            }
            for mut set in sets {
                if !lease.save(after).await.map_err(db_err)? {
                    return Err(AlertsError::Conflict("another replica took the retention run over".into()));
                }
                let now_holds = self.holds_in_force().await?;
                if now_holds != holds {
                    holds = now_holds;
                    let (Some(&a), Some(&b)) = (set.first(), set.last()) else { continue };
                    let kept = held_in(&self.events, &holds, a, b).await?;
                    let before = set.len();
                    set.retain(|s| !kept.contains_key(s));
                    held += (before - set.len()) as u64;
                }
                if set.is_empty() {
                    continue;
                }
                removed += self.remove(id, &set, reason).await?;
                archives += 1;
                self.save_progress(id, after, removed, held, archives).await?;
            }
            after = last;
            self.save_progress(id, after, removed, held, archives).await?;
            if done {
                archives += self.compact(&lease, after).await?;
                self.save_progress(id, after, removed, held, archives).await?;
                return Ok(());
            }
        }
    }

    /// Compaction: while the ledger starts with a stretch of at least 256
    /// positions holding only tombstones and the anchors of removals, a
    /// purge takes it (archived and uploaded first, catalogued, recorded
    /// as `custos.retention.compacted`), at most [`COMPACT_SPAN`] positions
    /// at a time and [`COMPACT_MAX`] times per run. Returns how many.
    async fn compact(&self, lease: &Lease, cursor: u64) -> Result<u64, AlertsError> {
        let ledger = self.events.ledger();
        let mut done = 0;
        while done < COMPACT_MAX {
            let Some(through) = ledger.compactable_through(COMPACT_SPAN).await.map_err(conflict)? else { break };
            if !lease.save(cursor).await.map_err(db_err)? {
                return Err(AlertsError::Conflict("another replica took the retention run over".into()));
            }
            let mut up = self.upload();
            let out = ledger
                .purge_through_with(through, &self.settings.archive_dir, async |p: &Path, n: &str| up.keep(p, n).await)
                .await
                .map_err(|e| AlertsError::Events(e.into()))?;
            let uploaded = up.uri.clone();
            let at = (&out.archive_path, out.archive_name.as_str());
            let range = (out.from_seq, out.through_seq);
            self.catalogue_kept(
                &up,
                at,
                Some(out.anchor_seq),
                range,
                out.entries,
                out.archive_bytes,
                &out.archive_sha256,
                "compaction",
            )
            .await?;
            self.events
                .record_own(
                    OwnEvent::by_custos(
                        OwnAction::RetentionStep("custos.retention.compacted"),
                        "retention",
                        Channel::System,
                    )
                    .resource("archive", Some(out.archive_name.clone()))
                    .details(json!({
                        "archive": out.archive_name, "from_seq": out.from_seq, "through_seq": out.through_seq,
                        "tombstones": out.tombstones, "anchors": out.entries, "purge_anchor_seq": out.anchor_seq,
                        "sha256": out.archive_sha256, "uri": uploaded,
                    })),
                )
                .await?;
            done += 1;
        }
        Ok(done)
    }

    /// Removes one set (archive, anchor, signed record, tombstones) and
    /// catalogues the archive.
    async fn remove(&self, run_id: &str, seqs: &[u64], reason: &str) -> Result<u64, AlertsError> {
        let ledger = self.events.ledger();
        // Uploaded (and read back) before anything is removed.
        let mut up = self.upload();
        let out = ledger
            .tombstone_with(seqs, &self.settings.archive_dir, reason, run_id, async |p: &Path, n: &str| {
                up.keep(p, n).await
            })
            .await
            .map_err(|e| AlertsError::Events(e.into()))?;
        let at = (&out.archive_path, out.archive_name.as_str());
        let range = (out.from_seq, out.through_seq);
        self.catalogue_kept(
            &up,
            at,
            Some(out.anchor_seq),
            range,
            out.removed,
            out.archive_bytes,
            &out.archive_sha256,
            reason,
        )
        .await?;
        Ok(out.removed)
    }

    /// The hook that uploads an archive (when there is an object store)
    /// once it is written, before anything it holds is removed.
    fn upload(&self) -> Upload<'_> {
        Upload { remote: self.settings.remote.as_deref(), now: self.events.ledger().now_us(), uri: None }
    }

    /// Catalogues an archive written through `up`; the local file is then
    /// deleted if it was uploaded (unless `object_store.keep_local`).
    #[allow(clippy::too_many_arguments)]
    async fn catalogue_kept(
        &self,
        up: &Upload<'_>,
        (path, name): (&PathBuf, &str),
        anchor: Option<u64>,
        range: (u64, u64),
        entries: u64,
        bytes: u64,
        sha256: &str,
        reason: &str,
    ) -> Result<(), AlertsError> {
        self.catalogue(name, up.uri.as_deref(), anchor, range, entries, bytes, sha256, reason).await?;
        if up.uri.is_some() && up.remote.is_some_and(|r| !r.keep_local()) {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn catalogue(
        &self,
        name: &str,
        uploaded: Option<&str>,
        anchor: Option<u64>,
        (from, through): (u64, u64),
        entries: u64,
        bytes: u64,
        sha256: &str,
        reason: &str,
    ) -> Result<(), AlertsError> {
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO archives (name, location, uri, anchor_seq, from_seq, through_seq, entries, bytes, sha256, \
                 reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                vec![
                    name.into(),
                    if uploaded.is_some() { "object_store" } else { "local" }.into(),
                    uploaded
                        .map_or_else(|| self.settings.archive_dir.join(name).display().to_string(), str::to_owned)
                        .into(),
                    anchor.map(seq_value).unwrap_or(sea_orm::Value::BigInt(None)),
                    seq_value(from),
                    seq_value(through),
                    seq_value(entries),
                    seq_value(bytes),
                    sha256.into(),
                    reason.into(),
                    self.events.ledger().now_us().into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// One run.
    pub async fn get_run(&self, id: &str) -> Result<RetentionRun, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {RUN_COLUMNS} FROM retention_runs WHERE id = ?"),
                vec![id.into()],
            ))
            .await
            .map_err(db_err)?
            .ok_or_else(|| AlertsError::NotFound(format!("no retention run {id}")))?;
        run_of(&row).map_err(db_err)
    }

    /// The latest runs, newest first.
    pub async fn runs(&self, limit: u64) -> Result<Vec<RetentionRun>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                &format!("SELECT {RUN_COLUMNS} FROM retention_runs ORDER BY started_at DESC, id DESC LIMIT ?"),
                vec![seq_value(limit.clamp(1, 500))],
            ))
            .await
            .map_err(db_err)?;
        rows.iter().map(run_of).collect::<Result<_, _>>().map_err(db_err)
    }

    /// The archive catalogue, newest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveInfo>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                &format!("SELECT {ARCHIVE_COLUMNS} FROM archives ORDER BY created_at DESC, name DESC LIMIT 1000"),
                vec![],
            ))
            .await
            .map_err(db_err)?;
        rows.iter().map(archive_of).collect::<Result<_, _>>().map_err(db_err)
    }

    /// One archive.
    pub async fn archive(&self, name: &str) -> Result<ArchiveInfo, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {ARCHIVE_COLUMNS} FROM archives WHERE name = ?"),
                vec![name.into()],
            ))
            .await
            .map_err(db_err)?
            .ok_or_else(|| AlertsError::NotFound(format!("no archive {name}")))?;
        archive_of(&row).map_err(db_err)
    }

    /// Where a catalogued archive is downloaded from: the archive
    /// directory (by its checked name, never a path read from the
    /// database), or streamed from the object store.
    pub async fn archive_source(&self, name: &str) -> Result<Source, AlertsError> {
        let a = self.archive(crate::storage::plain_file_name(name, ".ndjson")?).await?;
        let remote = self.settings.remote.as_deref();
        Remote::source(remote, &self.settings.archive_dir, &a.name, (&a.location, &a.uri))
            .await
            .map_err(AlertsError::NotFound)
    }

    /// The file of a catalogued archive: in the archive directory by its
    /// checked name (never a path read from the database), or fetched from
    /// the object store.
    pub async fn archive_file(&self, name: &str) -> Result<LocalCopy, AlertsError> {
        let a = self.archive(crate::storage::plain_file_name(name, ".ndjson")?).await?;
        let remote = self.settings.remote.as_deref();
        Remote::local_copy(remote, &self.settings.archive_dir, &a.name, (&a.location, &a.uri))
            .await
            .map_err(AlertsError::NotFound)
    }

    /// Verifies a catalogued archive with the public key only (its entries
    /// proven against its signed checkpoint), and that it holds exactly the
    /// entries its signed retention record removed; recorded, and stored
    /// in the catalogue.
    pub async fn verify_archive(&self, name: &str, by: &Requester) -> Result<ArchiveInfo, AlertsError> {
        let a = self.archive(crate::storage::plain_file_name(name, ".ndjson")?).await?;
        let Ok(_one) = self.verifying.try_lock() else {
            return Err(AlertsError::Conflict("an archive is being verified; try again when it is done".into()));
        };
        let copy = self.archive_file(name).await?;
        let path = copy.path.clone();
        let verifier = self.events.ledger().verifier();
        let checked =
            tokio::task::spawn_blocking(move || crate::ledger::purge::verify_archive_summary(&path, &verifier))
                .await
                .map_err(conflict)?;
        let records = crate::ledger::tombstone::all_records(self.conn()).await.map_err(conflict)?;
        let (ok, detail) = match checked {
            Ok(s) => {
                let record = records.iter().find(|r| Some(r.anchor_seq) == a.anchor_seq);
                let purge = match a.reason.as_str() {
                    "compaction" => crate::ledger::store::all_purges(self.conn())
                        .await
                        .map_err(conflict)?
                        .into_iter()
                        .find(|p| Some(p.anchor_seq) == a.anchor_seq),
                    _ => None,
                };
                match record {
                    None if a.reason == "compaction" => match purge {
                        Some(p)
                            if (p.from_seq, p.through_seq) == (s.from_seq, s.through_seq)
                                && hex::encode(p.archive_sha256) == a.sha256 =>
                        {
                            (
                                true,
                                format!(
                                    "intact: the compaction of seq {}..={} ({} anchors as sealed, {} removed \
                                     positions as hashes), proven against the signed checkpoint of {} entries; the \
                                     digest its signed purge record names",
                                    s.from_seq, s.through_seq, s.entries, s.kept, s.checkpoint_size
                                ),
                            )
                        }
                        _ => (false, "no signed purge record names this archive and its range".into()),
                    },
                    None if a.reason == "cold_copy" => {
                        if (s.from_seq, s.through_seq, s.entries) == (a.from_seq, a.through_seq, a.entries) {
                            (
                                true,
                                format!(
                                    "intact: a cold copy of the {} entries in seq {}..={}, proven against the signed \
                                     checkpoint of {} entries",
                                    s.entries, s.from_seq, s.through_seq, s.checkpoint_size
                                ),
                            )
                        } else {
                            (false, "the cold copy verifies but does not hold the range it was catalogued with".into())
                        }
                    }
                    Some(r) if hex::encode(r.tombstones_sha256) == s.entries_sha256 && r.removed == s.entries => (
                        true,
                        format!(
                            "intact: {} entries proven against the signed checkpoint of {} entries; exactly the \
                             entries removed under the record anchored at seq {}",
                            s.entries, s.checkpoint_size, r.anchor_seq
                        ),
                    ),
                    Some(r) => (
                        false,
                        format!(
                            "the archive verifies but does not hold the {} entries removed under the record anchored \
                             at seq {}",
                            r.removed, r.anchor_seq
                        ),
                    ),
                    None => (false, "no retention record names this archive".into()),
                }
            }
            Err(e) => (false, e.to_string()),
        };
        let now = self.events.ledger().now_us();
        self.events
            .record_own(
                OwnEvent::new(
                    OwnAction::RetentionStep("custos.retention.archive_verified"),
                    by.actor.clone(),
                    by.channel,
                )
                .request(by.request_id.clone())
                .outcome(if ok { Outcome::Success } else { Outcome::Failure })
                .resource("archive", Some(name.to_owned()))
                .details(json!({"archive": name, "sha256": a.sha256, "intact": ok, "detail": detail})),
            )
            .await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE archives SET verified_at = ?, verified_ok = ?, verified_detail = ? WHERE name = ?",
                vec![now.into(), i64::from(ok).into(), detail.into(), name.into()],
            ))
            .await
            .map_err(db_err)?;
        self.archive(name).await
    }

    /// When the daily run is next due after `now` (µs), if scheduled.
    pub fn next_run_after(&self, now: i64) -> Option<i64> {
        let minute = i64::from(self.settings.run_at_minute?);
        let day_start = now - now.rem_euclid(DAY_US);
        let today = day_start + minute * MINUTE_US;
        Some(if today > now { today } else { today + DAY_US })
    }

    /// The scheduler's tick: on the replica holding the lease, runs when a
    /// day's run is due and has not run yet.
    pub async fn step(&self) -> Result<Option<RetentionRun>, AlertsError> {
        self.erase_pending().await?;
        if let Err(e) = self.copy_sealed(false).await {
            tracing::warn!(error = %e, "a cold copy failed; tried again in an hour");
        }
        let Some(minute) = self.settings.run_at_minute else { return Ok(None) };
        let now = self.events.ledger().now_us();
        let due = now - now.rem_euclid(DAY_US) + i64::from(minute) * MINUTE_US;
        if now < due {
            return Ok(None);
        }
        let last = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT MAX(started_at) AS t FROM retention_runs WHERE trigger = 'schedule'",
                vec![],
            ))
            .await
            .map_err(db_err)?
            .and_then(|r| r.try_get::<Option<i64>>("", "t").ok().flatten());
        if last.is_some_and(|t| t >= due) {
            return Ok(None);
        }
        match self.run_now(&Requester::custos("retention"), "schedule").await {
            Ok(run) => Ok(Some(run)),
            // Going on here or on another replica: the next tick looks again.
            Err(AlertsError::Conflict(m)) if m.starts_with("a retention run is going on") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Cold copies (`retention.cold_copies`): once a new day or month has
    /// begun since the last copy, on the replica holding the lease, copies
    /// every entry sealed since then (covered by a signed checkpoint,
    /// verified first) into archives of at most [`COPY_SPAN`] positions,
    /// uploaded to the object store if there is one, catalogued and
    /// recorded (`custos.retention.cold_copy`). `force`: now, whatever the
    /// period. A failure is recorded and tried again after an hour.
    pub async fn copy_sealed(&self, force: bool) -> Result<Vec<ArchiveInfo>, AlertsError> {
        use std::sync::atomic::Ordering;
        if self.settings.cold_copies.is_none() {
            return Ok(Vec::new());
        }
        let now = self.events.ledger().now_us();
        if !force && now < self.copy_retry_at.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        // After a failure, the rest is copied at the retry whatever the
        // period (a chunk copied before the failure does not count as the
        // period's copy).
        let retrying = self.copy_retry_at.load(Ordering::Relaxed) > 0;
        match self.copy_sealed_now(force || retrying).await {
            Err(e) => {
                self.copy_retry_at.store(now + COPY_RETRY_US, Ordering::Relaxed);
                Err(e)
            }
            Ok(Some(made)) => {
                self.copy_retry_at.store(0, Ordering::Relaxed);
                Ok(made)
            }
            // A run or another replica had the lease: tried at a later tick.
            Ok(None) => Ok(Vec::new()),
        }
    }

    /// `None` when a run here or another replica holds the lease.
    async fn copy_sealed_now(&self, force: bool) -> Result<Option<Vec<ArchiveInfo>>, AlertsError> {
        let Some(every) = self.settings.cold_copies else { return Ok(Some(Vec::new())) };
        let ledger = self.events.ledger();
        let now = ledger.now_us();
        let last = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT MAX(through_seq) AS t, MAX(created_at) AS at FROM archives WHERE reason = 'cold_copy'",
                vec![],
            ))
            .await
            .map_err(db_err)?;
        let get = |c: &str| last.as_ref().and_then(|r| r.try_get::<Option<i64>>("", c).ok().flatten());
        let (copied_through, copied_at) = (get("t").map_or(0, |t| t as u64), get("at"));
        if !force && copied_at.is_some_and(|at| every.period(at) == every.period(now)) {
            return Ok(Some(Vec::new()));
        }
        let sealed = ledger.latest_checkpoint().await.map_err(conflict)?.map_or(0, |c| c.tree_size);
        let retained_from =
            crate::ledger::store::latest_purge(self.conn()).await.map_err(conflict)?.map_or(1, |p| p.through_seq + 1);
        let mut from = (copied_through + 1).max(retained_from);
        if from > sealed {
            return Ok(Some(Vec::new()));
        }
        // Not beside a run (here or on another replica).
        let Ok(_guard) = self.running.clone().try_lock_owned() else { return Ok(None) };
        let lease = self.lease();
        if lease.acquire().await.map_err(db_err)?.is_none() {
            return Ok(None);
        }
        let mut made = Vec::new();
        let outcome: Result<(), AlertsError> = async {
            while from <= sealed {
                let through = (from + COPY_SPAN - 1).min(sealed);
                let c = self.copy_one(from, through).await?;
                made.push(c);
                from = through + 1;
                if !lease.save(through).await.map_err(db_err)? {
                    return Err(AlertsError::Conflict("another replica took the retention lease over".into()));
                }
            }
            Ok(())
        }
        .await;
        let _ = lease.release().await;
        if let Err(e) = outcome {
            self.events
                .record_own(
                    OwnEvent::by_custos(
                        OwnAction::RetentionStep("custos.retention.cold_copy_failed"),
                        "retention",
                        Channel::System,
                    )
                    .outcome(Outcome::Failure)
                    .severity(Severity::Warning)
                    .reason(Some(e.to_string()))
                    .details(
                        json!({"from_seq": from, "through_seq": sealed, "error": e.to_string(), "copied": made.len()}),
                    ),
                )
                .await?;
            return Err(e);
        }
        Ok(Some(made))
    }

    /// One cold copy: written, uploaded, catalogued, recorded.
    async fn copy_one(&self, from: u64, through: u64) -> Result<ArchiveInfo, AlertsError> {
        let ledger = self.events.ledger();
        let mut up = self.upload();
        let c = ledger
            .cold_copy((from, through), &self.settings.archive_dir, async |p: &Path, n: &str| up.keep(p, n).await)
            .await
            .map_err(|e| AlertsError::Events(e.into()))?;
        let uploaded = up.uri.clone();
        self.catalogue_kept(&up, (&c.path, &c.name), None, (from, through), c.entries, c.bytes, &c.sha256, "cold_copy")
            .await?;
        self.events
            .record_own(
                OwnEvent::by_custos(
                    OwnAction::RetentionStep("custos.retention.cold_copy"),
                    "retention",
                    Channel::System,
                )
                .resource("archive", Some(c.name.clone()))
                .details(json!({
                    "archive": c.name, "from_seq": from, "through_seq": through, "entries": c.entries,
                    "bytes": c.bytes, "sha256": c.sha256, "uri": uploaded,
                })),
            )
            .await?;
        self.archive(&c.name).await
    }

    /// Carries out the approved erasure requests not done yet (each once;
    /// one that failed is tried again after an hour), one at a time, on
    /// the replica holding the lease.
    pub async fn erase_pending(&self) -> Result<Vec<RetentionRun>, AlertsError> {
        let v = self.policies.active(ERASURES_KIND).await.map_err(conflict)?;
        let register = ErasuresDoc::parse(&v.content).map_err(AlertsError::Invalid)?;
        let mut done = Vec::new();
        if register.requests.is_empty() {
            return Ok(done);
        }
        // Each request's latest run (state, start), in one query.
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                "SELECT detail, state, started_at FROM retention_runs WHERE kind = 'erasure' ORDER BY started_at",
                vec![],
            ))
            .await
            .map_err(db_err)?;
        let mut latest: std::collections::HashMap<String, (String, i64)> = std::collections::HashMap::new();
        for r in &rows {
            let request: Option<String> = r.try_get("", "detail").map_err(db_err)?;
            if let Some(request) = request {
                latest.insert(
                    request,
                    (r.try_get("", "state").map_err(db_err)?, r.try_get("", "started_at").map_err(db_err)?),
                );
            }
        }
        for (i, request) in register.requests.iter().enumerate() {
            let now = self.events.ledger().now_us();
            if let Some((state, at)) = latest.get(&request.id)
                && (state != "failed" || *at > now - crate::time::HOUR_US)
            {
                continue;
            }
            let filter = request.filter(&format!("content.requests[{i}]")).map_err(AlertsError::Invalid)?;
            let by = Requester::new(crate::events::own::custos_actor("erasure"), Channel::System, None);
            let (id, guard) = match self.begin(&by, "policy", "erasure", Some(&request.id)).await {
                Ok(x) => x,
                Err(AlertsError::Conflict(m)) if m.starts_with("a retention run is going on") => return Ok(done),
                Err(e) => return Err(e),
            };
            match self.execute(&id, Target::Subject(Box::new(filter), request.id.clone()), guard).await {
                Ok(run) => done.push(run),
                Err(e) => {
                    tracing::warn!(request = %request.id, error = %e, "an erasure failed; tried again in an hour")
                }
            }
        }
        Ok(done)
    }

    /// Retention as it stands.
    pub async fn status(&self) -> Result<RetentionStatus, AlertsError> {
        let r = self.policies.active(RETENTION_KIND).await.map_err(conflict)?;
        let h = self.policies.active(HOLDS_KIND).await.map_err(conflict)?;
        let doc = RetentionDoc::parse(&r.content).unwrap_or_default();
        let holds = HoldsDoc::parse(&h.content).unwrap_or_default();
        let last_run = self.runs(1).await?.into_iter().next();
        let oldest = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT seq, recorded_at FROM ledger_entries ORDER BY seq LIMIT 1",
                vec![],
            ))
            .await
            .map_err(db_err)?
            .map(|row| -> Result<(u64, String), DbErr> {
                Ok((row.try_get::<i64>("", "seq")?.max(0) as u64, rfc3339(row.try_get("", "recorded_at")?)))
            })
            .transpose()
            .map_err(db_err)?;
        let removed_total = self
            .conn()
            .query_one_raw(stmt_for(self.backend(), "SELECT COUNT(*) AS n FROM ledger_tombstones", vec![]))
            .await
            .map_err(db_err)?
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0)
            .max(0) as u64;
        let copied_through = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT MAX(through_seq) AS t FROM archives WHERE reason = 'cold_copy'",
                vec![],
            ))
            .await
            .map_err(db_err)?
            .and_then(|r| r.try_get::<Option<i64>>("", "t").ok().flatten())
            .map(|t| t.max(0) as u64);
        let now = self.events.ledger().now_us();
        Ok(RetentionStatus {
            policy_version: r.version,
            summary: doc.summary(),
            min_days: doc::floor_days(),
            holds_active: holds.holds.iter().filter(|h| h.active()).count() as u64,
            schedule: self.settings.run_at_minute.map(|m| format!("{:02}:{:02}", m / 60, m % 60)),
            next_run: self.next_run_after(now).map(rfc3339),
            last_run,
            oldest,
            removed_total,
            archive_dir: self.settings.archive_dir.display().to_string(),
            object_store: self.settings.remote.as_ref().map(|r| r.describe()),
            cold_copies: self.settings.cold_copies.map(|c| c.as_str().to_owned()),
            cold_copied_through: copied_through,
        })
    }

    /// Runs that were going on when a process stopped are marked failed
    /// (at start-up; their removed sets are complete: each is one
    /// transaction).
    pub async fn close_interrupted(&self) -> Result<(), AlertsError> {
        // Verifications in progress when the process stopped.
        if let Ok(entries) = std::fs::read_dir(self.settings.archive_dir.join(".work")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // A removal committed just before a stop may miss its catalogue row
        // (rows there already are kept as they are). Its archive is local
        // when the file is there; otherwise, with an object store, it was
        // uploaded (the local file is deleted only after that).
        let remote = self.settings.remote.as_deref();
        for r in crate::ledger::tombstone::all_records(self.conn()).await.map_err(conflict)? {
            let local = std::fs::metadata(self.settings.archive_dir.join(&r.archive_name)).ok();
            let bytes = local.as_ref().map_or(0, std::fs::Metadata::len);
            let uploaded = remote.filter(|_| local.is_none()).map(|o| o.uri(Kind::Archives, &r.archive_name));
            self.catalogue(
                &r.archive_name,
                uploaded.as_deref(),
                Some(r.anchor_seq),
                (r.from_seq, r.through_seq),
                r.removed,
                bytes,
                &hex::encode(r.archive_sha256),
                &r.reason,
            )
            .await?;
        }
        let now = self.events.ledger().now_us();
        let lease = Lease::current(self.events.ledger(), LEASE).await.map_err(db_err)?;
        if lease.is_some_and(|(_, until)| until > now) {
            return Ok(());
        }
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE retention_runs SET state = 'failed', finished_at = ?, \
                 error = 'interrupted: the server stopped during the run (every set removed before is complete)' \
                 WHERE state = 'running'",
                vec![now.into()],
            ))
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

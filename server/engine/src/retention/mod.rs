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
//! The removable seqs go to `Ledger::tombstone` in sets of at most 20,000
//! entries within 200,000 positions: each set an archive bundle, an anchor
//! and a signed record. A dry-run ([`Retention::plan`]) is the same scan
//! without the removal.

pub mod doc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use custos_model::{ArchiveInfo, RemovalCount, RetentionPlan, RetentionRun, RetentionStatus};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use serde_json::json;
use uuid::Uuid;

use self::doc::{Clear, HOLDS_KIND, HoldsDoc, RETENTION_KIND, RetentionDoc, expires_at};
use crate::alerts::store::AlertsError;
use crate::events::Events;
use crate::events::model::{Channel, Outcome};
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::lease::Lease;
use crate::ledger::store::seq_value;
use crate::ledger::tombstone::{ANCHOR_ACTION, MAX_PER_RECORD};
use crate::policies::PolicyStore;
use crate::storage::stmt_for;
use crate::time::{DAY_US, MINUTE_US, rfc3339};
use custos_model::Severity;

/// The lease a run holds (one run at a time across replicas).
pub const LEASE: &str = "retention";
const LEASE_TTL_US: i64 = 60_000_000;
/// Entries read per query.
const PAGE: u64 = 5_000;
/// A set removed under one record spans at most this many positions.
const MAX_SPAN: u64 = 200_000;

/// Settings (`[retention]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where archive bundles are written.
    pub archive_dir: PathBuf,
    /// The daily run's time, minutes after midnight UTC; `None`: no
    /// schedule (runs on demand only).
    pub run_at_minute: Option<u32>,
}

/// Retention.
pub struct Retention {
    events: Arc<Events>,
    policies: Arc<PolicyStore>,
    holder: String,
    settings: Settings,
    /// One run at a time in this process.
    running: tokio::sync::Mutex<()>,
}

fn db_err(e: DbErr) -> AlertsError {
    AlertsError::Events(e.into())
}

fn conflict(e: impl std::fmt::Display) -> AlertsError {
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

/// What the scan found in one page.
struct PageVerdict {
    last_seq: u64,
    /// (seq, recorded_at, category, rule id or `default`).
    removable: Vec<(u64, i64, String, String)>,
    held: Vec<(u64, String)>,
    /// Whether nothing after this page can have expired yet.
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

const RUN_COLUMNS: &str =
    "id, kind, trigger, requested_by, started_at, finished_at, state, scanned, total, removed, held, archives, error";
const ARCHIVE_COLUMNS: &str = "name, location, uri, anchor_seq, from_seq, through_seq, entries, bytes, sha256, reason, \
     created_at, verified_at, verified_ok, verified_detail";

impl Retention {
    /// Retention for `holder` (this replica's name).
    pub fn new(events: Arc<Events>, policies: Arc<PolicyStore>, holder: &str, settings: Settings) -> Retention {
        Retention { events, policies, holder: holder.to_owned(), settings, running: tokio::sync::Mutex::new(()) }
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn backend(&self) -> sea_orm::DbBackend {
        self.events.ledger().db().backend()
    }

    /// The retention and hold policies in force. Fails (and nothing is
    /// removed) when either cannot be read.
    async fn in_force(&self) -> Result<(RetentionDoc, HoldsDoc), AlertsError> {
        let r = self.policies.active(RETENTION_KIND).await.map_err(conflict)?;
        let h = self.policies.active(HOLDS_KIND).await.map_err(conflict)?;
        let doc = RetentionDoc::parse(&r.content).map_err(AlertsError::Invalid)?;
        let holds = HoldsDoc::parse(&h.content)
            .map_err(|e| conflict(format!("the legal holds cannot be read, so nothing is removed: {}", e.reason)))?;
        Ok((doc, holds))
    }

    /// What a run would remove now under the policies in force.
    pub async fn plan(&self) -> Result<RetentionPlan, AlertsError> {
        let (doc, holds) = self.in_force().await?;
        plan(&self.events, &doc, &holds).await
    }
}

/// What a run would remove now under `doc` and `holds` (the dry-run).
pub async fn plan(events: &Events, doc: &RetentionDoc, holds: &HoldsDoc) -> Result<RetentionPlan, AlertsError> {
    let now = events.ledger().now_us();
    let mut by_cm: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_hold: BTreeMap<String, u64> = BTreeMap::new();
    let (mut removable, mut held, mut scanned) = (0u64, 0u64, 0u64);
    let mut oldest = None;
    let mut after = 0u64;
    loop {
        let Some(v) = judge_page(events, doc, holds, now, after).await? else { break };
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

/// Judges the entries after `after` (one page): which have expired and
/// are not held. `None` when there are none left.
async fn judge_page(
    events: &Events,
    doc: &RetentionDoc,
    holds: &HoldsDoc,
    now: i64,
    after: u64,
) -> Result<Option<PageVerdict>, AlertsError> {
    let Some(shortest) = doc.shortest_days() else { return Ok(None) };
    let latest_expiring = now - i64::from(shortest) * DAY_US;
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
    let mut expired: Vec<(u64, i64, String, String)> = Vec::new();
    for r in &rows {
        if matches!(r.action.as_str(), ANCHOR_ACTION | "ledger.purge") && r.source_app.as_deref() == Some("custos") {
            continue;
        }
        let clear = Clear {
            category: &r.category,
            action: &r.action,
            tenant: r.tenant.as_deref(),
            source_app: r.source_app.as_deref(),
        };
        let (days, rule) = doc.period(&clear);
        if let Some(days) = days
            && expires_at(r.recorded_at, days) <= now
        {
            expired.push((r.seq, r.recorded_at, r.category.clone(), rule.unwrap_or("default").to_owned()));
        }
    }
    let done = rows.len() < PAGE as usize || rows.iter().all(|r| r.recorded_at > latest_expiring);
    let mut held_seqs: BTreeMap<u64, String> = BTreeMap::new();
    if !expired.is_empty() {
        // Fail closed: a hold that cannot be evaluated stops the run.
        let filters = holds.active_filters().map_err(|e: FieldError| {
            conflict(format!("legal hold {} cannot be evaluated, so nothing is removed: {}", e.path, e.reason))
        })?;
        for (hold, f) in filters {
            let (actors, resources) = events.masked_forms(&f);
            let (sql, values) = crate::events::search::seqs_sql(&f, &actors, &resources, first_seq, last_seq);
            let kept = conn.query_all_raw(stmt_for(backend, &sql, values)).await.map_err(|e| {
                conflict(format!("legal hold {} cannot be evaluated, so nothing is removed: {e}", hold.id))
            })?;
            for k in kept {
                let seq = k.try_get::<i64>("", "seq").map_err(db_err)?.max(0) as u64;
                held_seqs.entry(seq).or_insert_with(|| hold.id.clone());
            }
        }
    }
    let mut removable = Vec::with_capacity(expired.len());
    let mut held = Vec::new();
    for e in expired {
        match held_seqs.get(&e.0) {
            Some(hold) => held.push((e.0, hold.clone())),
            None => removable.push(e),
        }
    }
    Ok(Some(PageVerdict { last_seq, removable, held, done }))
}

impl Retention {
    /// Runs retention now and waits for it: `trigger` is `manual` or
    /// `schedule`. Refused (409) while another run is going on, here or on
    /// another replica.
    pub async fn run_now(&self, by: &Requester, trigger: &str) -> Result<RetentionRun, AlertsError> {
        let id = self.begin(by, trigger).await?;
        self.execute(&id).await
    }

    /// Starts a run in the background; returns it as started.
    pub async fn start(self: &Arc<Self>, by: &Requester) -> Result<RetentionRun, AlertsError> {
        let id = self.begin(by, "manual").await?;
        let me = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = me.execute(&run_id).await {
                tracing::warn!(run = %run_id, error = %e, "retention run failed");
            }
        });
        self.run(&id).await
    }

    /// Records the run's start and stores it as running.
    async fn begin(&self, by: &Requester, trigger: &str) -> Result<String, AlertsError> {
        // Fail early (and record nothing) when the policies cannot be read.
        self.in_force().await?;
        let lease = Lease::new(self.events.ledger().clone(), LEASE, &self.holder, LEASE_TTL_US);
        if self.running.try_lock().is_err() || lease.acquire().await.map_err(db_err)?.is_none() {
            let who = Lease::current(self.events.ledger(), LEASE).await.map_err(db_err)?;
            return Err(AlertsError::Conflict(format!(
                "a retention run is going on{}; wait for it to finish",
                who.map(|(h, _)| format!(" (on {h})")).unwrap_or_default()
            )));
        }
        let id = Uuid::now_v7().to_string();
        let now = self.events.ledger().now_us();
        let total = crate::ledger::store::read_head(self.conn()).await.map_err(conflict)?.seq;
        self.events
            .record_own(
                OwnEvent::new(OwnAction::RetentionStep("custos.retention.run_started"), by.actor.clone(), by.channel)
                    .request(by.request_id.clone())
                    .resource("retention_run", Some(id.clone()))
                    .details(json!({"run": id, "trigger": trigger, "head": total})),
            )
            .await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO retention_runs (id, kind, trigger, requested_by, started_at, state, total) \
                 VALUES (?, 'retention', ?, ?, ?, 'running', ?)",
                vec![id.clone().into(), trigger.into(), by.owner.clone().into(), now.into(), seq_value(total)],
            ))
            .await
            .map_err(db_err)?;
        Ok(id)
    }

    /// Runs a begun run to its end, recording how it ended.
    async fn execute(&self, id: &str) -> Result<RetentionRun, AlertsError> {
        let Ok(_one) = self.running.try_lock() else {
            return Err(AlertsError::Conflict("a retention run is going on here".into()));
        };
        let outcome = self.remove_expired(id).await;
        let now = self.events.ledger().now_us();
        let (state, error) = match &outcome {
            Ok(()) => ("done", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE retention_runs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                vec![state.into(), now.into(), error.clone().into(), id.into()],
            ))
            .await
            .map_err(db_err)?;
        let run = self.run(id).await?;
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
            "run": id, "removed": run.removed, "held": run.held, "archives": run.archives,
            "scanned": run.scanned, "error": error,
        }));
        if error.is_some() {
            event = event.outcome(Outcome::Failure).severity(Severity::Warning).reason(error.clone());
        }
        self.events.record_own(event).await?;
        let lease = Lease::new(self.events.ledger().clone(), LEASE, &self.holder, LEASE_TTL_US);
        let _ = lease.release().await;
        outcome.map(|()| run)
    }

    async fn remove_expired(&self, id: &str) -> Result<(), AlertsError> {
        let (doc, holds) = self.in_force().await?;
        let lease = Lease::new(self.events.ledger().clone(), LEASE, &self.holder, LEASE_TTL_US);
        let now = self.events.ledger().now_us();
        let mut after = 0u64;
        let mut pending: Vec<u64> = Vec::new();
        let (mut removed, mut held, mut archives) = (0u64, 0u64, 0u64);
        loop {
            if !lease.save(after).await.map_err(db_err)? {
                return Err(AlertsError::Conflict("another replica took the retention run over".into()));
            }
            let verdict = judge_page(&self.events, &doc, &holds, now, after).await?;
            let (last, done) = verdict.as_ref().map_or((after, true), |v| (v.last_seq, v.done));
            if let Some(v) = &verdict {
                held += v.held.len() as u64;
                for (seq, ..) in &v.removable {
                    if pending.first().is_some_and(|f| seq - f >= MAX_SPAN) || pending.len() >= MAX_PER_RECORD {
                        removed += self.remove(id, &std::mem::take(&mut pending)).await?;
                        archives += 1;
                    }
                    pending.push(*seq);
                }
            }
            if done && !pending.is_empty() {
                removed += self.remove(id, &std::mem::take(&mut pending)).await?;
                archives += 1;
            }
            after = last;
            self.conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "UPDATE retention_runs SET scanned = ?, removed = ?, held = ?, archives = ? WHERE id = ?",
                    vec![seq_value(after), seq_value(removed), seq_value(held), seq_value(archives), id.into()],
                ))
                .await
                .map_err(db_err)?;
            if done {
                return Ok(());
            }
        }
    }

    /// Removes one set (archive, anchor, signed record, tombstones) and
    /// catalogues the archive.
    async fn remove(&self, run_id: &str, seqs: &[u64]) -> Result<u64, AlertsError> {
        let out = self
            .events
            .ledger()
            .tombstone(seqs, &self.settings.archive_dir, "retention", run_id)
            .await
            .map_err(|e| AlertsError::Events(e.into()))?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO archives (name, location, uri, anchor_seq, from_seq, through_seq, entries, bytes, sha256, \
                 reason, created_at) VALUES (?, 'local', ?, ?, ?, ?, ?, ?, ?, 'retention', ?)",
                vec![
                    out.archive_name.clone().into(),
                    out.archive_path.display().to_string().into(),
                    seq_value(out.anchor_seq),
                    seq_value(out.from_seq),
                    seq_value(out.through_seq),
                    seq_value(out.removed),
                    seq_value(out.archive_bytes),
                    out.archive_sha256.clone().into(),
                    self.events.ledger().now_us().into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        Ok(out.removed)
    }

    /// One run.
    pub async fn run(&self, id: &str) -> Result<RetentionRun, AlertsError> {
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

    /// The file of a catalogued archive (for download).
    pub async fn archive_path(&self, name: &str) -> Result<PathBuf, AlertsError> {
        let a = self.archive(name).await?;
        Ok(PathBuf::from(a.uri))
    }

    /// Verifies a catalogued archive with the public key only (its entries
    /// proven against its signed checkpoint), and that it holds exactly the
    /// entries its signed retention record removed; recorded, and stored
    /// in the catalogue.
    pub async fn verify_archive(&self, name: &str, by: &Requester) -> Result<ArchiveInfo, AlertsError> {
        let a = self.archive(name).await?;
        let path = PathBuf::from(&a.uri);
        let verifier = self.events.ledger().verifier();
        let checked =
            tokio::task::spawn_blocking(move || crate::ledger::purge::verify_archive_summary(&path, &verifier))
                .await
                .map_err(conflict)?;
        let records = crate::ledger::tombstone::all_records(self.conn()).await.map_err(conflict)?;
        let (ok, detail) = match checked {
            Ok(s) => {
                let record = records.iter().find(|r| Some(r.anchor_seq) == a.anchor_seq);
                match record {
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
        })
    }

    /// Runs that were going on when a process stopped are marked failed
    /// (at start-up; their removed sets are complete: each is one
    /// transaction).
    pub async fn close_interrupted(&self) -> Result<(), AlertsError> {
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

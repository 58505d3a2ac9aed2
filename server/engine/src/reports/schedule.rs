//! Scheduled reports: the `report_schedules` policy names, for each
//! schedule, a cron expression (UTC), a framework, a named period taken
//! relative to the day the run is due, its recipients (channels of the
//! notifications policy) and how many of its reports to keep.
//!
//! Each pass (every minute, on the replica holding the `report-schedules`
//! lease):
//! - **plans** the next run of each schedule in force (`report_runs`, one
//!   row per schedule and due time: planned once however many replicas
//!   plan it); cancels the planned runs of schedules changed, turned off or
//!   removed;
//! - marks a run **missed** when the server was not running at its time
//!   and a later occurrence has passed too (recorded,
//!   `custos.report.schedule_missed`); the latest occurrence runs instead;
//! - **claims** each due run (`planned` → `running`, one replica wins),
//!   generates its report (waiting for a free slot), records
//!   `custos.report.scheduled` (where each message goes), then queues one
//!   message per recipient in the notifications outbox (an e-mail carries
//!   the PDF; no bytes are copied into the outbox), and deletes the
//!   schedule's reports beyond its `keep` (not those with a message still
//!   to send). A failed run is recorded (`custos.report.schedule_failed`)
//!   and tried again 10 minutes later: three tries in all (a field error
//!   is not tried again). A run left `running` for 6 hours (its replica
//!   stopped) is tried again, as one of its tries.
//!
//! Only a schedule's cron expression decides its runs: a change of it (or
//! turning the schedule off, or removing it) cancels the planned run; any
//! other change applies to the runs to come, the planned one included.

use custos_model::cron::Cron;
pub use custos_model::cron::format_utc as when;
use custos_model::{
    REPORT_PERIODS, ReportInfo, ReportRequest, ReportRun, ReportSchedule, RunDelivery, ScheduleDoc, ScheduleStatus,
    SchedulesView, Severity,
};
use sea_orm::{ConnectionTrait as _, QueryResult, Value as DbValue};
use serde_json::{Value, json};
use uuid::Uuid;

use super::period::day_of;
use super::{ReportFile, Reports, file_name};
use crate::alerts::store::AlertsError;
use crate::events::model::{Channel, Outcome};
use crate::events::validate::FieldError;
use crate::events::{OwnAction, OwnEvent, Requester};
use crate::lease::Lease;
use crate::notify::channels::{NotificationsDoc, is_mail};
use crate::storage::stmt_for;
use crate::time::{MINUTE_US, rfc3339};

/// The policy kind's name.
pub const KIND: &str = "report_schedules";
/// The scheduler's lease.
pub const LEASE: &str = "report-schedules";
const LEASE_TTL_US: i64 = 5 * MINUTE_US;
/// Schedules at most.
const MAX_SCHEDULES: usize = 50;
/// Recipients of one schedule at most.
const MAX_RECIPIENTS: usize = 20;
/// Tries of one run.
pub const TRIES: u32 = 3;
/// Between tries.
const RETRY_US: i64 = 10 * MINUTE_US;
/// A run `running` for longer was on a replica that stopped (it counts as
/// a try).
const STALE_US: i64 = 6 * 60 * MINUTE_US;
/// The shortest time between two runs of a schedule.
const MIN_INTERVAL_US: i64 = 60 * MINUTE_US;
/// A PDF larger than this is not attached: the message carries its link
/// and digest.
pub const ATTACH_MAX: usize = 10 * 1024 * 1024;
/// Occurrences looked through to find the latest one that passed.
const CATCH_UP_MAX: u32 = 10_000;

fn bad(path: String, reason: impl Into<String>) -> FieldError {
    FieldError { path, reason: reason.into() }
}

/// Parses the document; the first schedule at fault is named.
pub fn parse(doc: &Value) -> Result<ScheduleDoc, FieldError> {
    serde_json::from_value(doc.clone()).map_err(|e| {
        let at_fault = doc.get("schedules").and_then(Value::as_array).and_then(|list| {
            list.iter().enumerate().find_map(|(i, s)| {
                serde_json::from_value::<ReportSchedule>(s.clone())
                    .err()
                    .map(|e| bad(format!("content.schedules[{i}]"), e.to_string()))
            })
        });
        at_fault.unwrap_or_else(|| {
            bad("content".into(), format!("not a report schedules policy ({{\"schedules\": [...]}}): {e}"))
        })
    })
}

/// Checks every field; the first at fault is named.
pub fn check(d: &ScheduleDoc) -> Result<(), FieldError> {
    if d.schedules.len() > MAX_SCHEDULES {
        return Err(bad("content.schedules".into(), format!("at most {MAX_SCHEDULES} schedules")));
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, s) in d.schedules.iter().enumerate() {
        let at = |f: &str| format!("content.schedules[{i}].{f}");
        if s.id.is_empty()
            || s.id.len() > 64
            || !s.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(bad(at("id"), "1 to 64 characters: a-z, 0-9, _ and -"));
        }
        if !ids.insert(s.id.as_str()) {
            return Err(bad(at("id"), format!("`{}` is used by another schedule", s.id)));
        }
        if s.name.trim().is_empty()
            || s.name.chars().count() > 200
            || s.name.chars().any(|c| c.is_control() || crate::events::validate::is_invisible(c))
        {
            return Err(bad(at("name"), "1 to 200 characters on one line, without control or direction characters"));
        }
        let cron = Cron::parse(&s.cron).map_err(|e| bad(at("cron"), e))?;
        if let Some(gap) = cron.shortest_gap()
            && gap < MIN_INTERVAL_US
        {
            return Err(bad(
                at("cron"),
                format!("runs {} minute(s) apart at times; a schedule runs at most once an hour", gap / MINUTE_US),
            ));
        }
        if !crate::events::compliance::FRAMEWORKS.iter().any(|f| f.0 == s.framework) {
            let known: Vec<&str> = crate::events::compliance::FRAMEWORKS.iter().map(|f| f.0).collect();
            return Err(bad(at("framework"), format!("unknown framework; known: {}", known.join(", "))));
        }
        if !REPORT_PERIODS.iter().any(|p| p.0 == s.period) {
            let known: Vec<&str> = REPORT_PERIODS.iter().map(|p| p.0).collect();
            return Err(bad(at("period"), format!("one of {}", known.join(", "))));
        }
        if s.recipients.is_empty() || s.recipients.len() > MAX_RECIPIENTS {
            return Err(bad(at("recipients"), format!("1 to {MAX_RECIPIENTS} recipients (channels)")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, r) in s.recipients.iter().enumerate() {
            let rat = |f: &str| format!("content.schedules[{i}].recipients[{j}].{f}");
            if r.channel.is_empty() || r.channel.len() > 64 {
                return Err(bad(rat("channel"), "a channel's id in the notifications policy"));
            }
            if !seen.insert(r.channel.as_str()) {
                return Err(bad(rat("channel"), format!("`{}` is named twice", r.channel)));
            }
            if r.to.len() > MAX_RECIPIENTS {
                return Err(bad(rat("to"), format!("at most {MAX_RECIPIENTS} addresses")));
            }
            if let Some((k, a)) =
                r.to.iter().enumerate().find(|(_, a)| !is_mail(a) || a.parse::<lettre::Address>().is_err())
            {
                return Err(bad(
                    format!("content.schedules[{i}].recipients[{j}].to[{k}]"),
                    format!("`{a}` is not an e-mail address"),
                ));
            }
        }
        if !(1..=1000).contains(&s.keep) {
            return Err(bad(at("keep"), "1 to 1000 reports"));
        }
    }
    Ok(())
}

/// Checks the recipients against the notifications policy: each names a
/// channel of it, and only an e-mail channel takes addresses.
pub fn check_recipients(d: &ScheduleDoc, channels: &NotificationsDoc) -> Result<(), FieldError> {
    for (i, s) in d.schedules.iter().enumerate() {
        for (j, r) in s.recipients.iter().enumerate() {
            let at = |f: &str| format!("content.schedules[{i}].recipients[{j}].{f}");
            match channels.channels.iter().find(|c| c.id == r.channel) {
                None => {
                    let known: Vec<&str> = channels.channels.iter().map(|c| c.id.as_str()).collect();
                    return Err(bad(
                        at("channel"),
                        if known.is_empty() {
                            format!("no channel `{}`: the notifications policy has none yet", r.channel)
                        } else {
                            format!(
                                "no channel `{}` in the notifications policy (it has {})",
                                r.channel,
                                known.join(", ")
                            )
                        },
                    ));
                }
                Some(c) if !r.to.is_empty() && c.kind != "email" => {
                    return Err(bad(at("to"), format!("`{}` is a {} channel: addresses are for e-mail", c.id, c.kind)));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// What decides a schedule's runs (its cron expression): a planned run
/// made under another is cancelled.
pub fn fingerprint(s: &ReportSchedule) -> String {
    crate::policies::patch::sha256_hex(&json!({"cron": s.cron.trim()}))
}

/// The schedules policy in force: (version, document).
pub async fn in_force(conn: &impl sea_orm::ConnectionTrait) -> Result<(u64, ScheduleDoc), AlertsError> {
    match crate::policies::in_force(conn, KIND).await? {
        Some((v, content)) => Ok((v, parse(&content).map_err(AlertsError::Invalid)?)),
        None => Ok((0, ScheduleDoc::default())),
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulePass {
    /// This replica holds the lease.
    pub held: bool,
    /// Runs planned.
    pub planned: u64,
    /// Runs cancelled (schedule changed, off or removed).
    pub cancelled: u64,
    /// Runs missed.
    pub missed: u64,
    /// Runs done.
    pub done: u64,
    /// Runs failed (to be tried again, or for good).
    pub failed: u64,
}

/// A message a run sends.
struct Outgoing {
    channel: String,
    kind: String,
    /// The addresses (e-mail).
    to: Vec<String>,
    attached: bool,
    key: String,
    channels_version: u64,
    payload: Value,
}

const RUN_COLUMNS: &str = "id, schedule_id, due_at, state, attempts, started_at, finished_at, report_id, error";

/// A message safe to show: field errors and conflicts as they are, other
/// failures (the database, the ledger) without their internals.
fn shown(e: &AlertsError) -> String {
    match e {
        AlertsError::Invalid(f) => format!("{}: {}", f.path, f.reason),
        AlertsError::Conflict(m) | AlertsError::NotFound(m) => m.clone(),
        other => {
            tracing::warn!(error = %other, "a scheduled report failed");
            "an internal error (the server's log has the details)".into()
        }
    }
}

impl Reports {
    /// Plans, cancels and runs what is due, on the replica holding the
    /// lease.
    pub async fn schedule_step(&self) -> Result<SchedulePass, AlertsError> {
        let ledger = self.events.ledger();
        let lease = Lease::new(ledger.clone(), LEASE, &self.holder, LEASE_TTL_US);
        if lease.acquire().await?.is_none() {
            return Ok(SchedulePass::default());
        }
        let mut pass = SchedulePass { held: true, ..Default::default() };
        let out = self.schedule_pass(&lease, &mut pass).await;
        let _ = lease.release().await;
        out.map(|()| pass)
    }

    async fn schedule_pass(&self, lease: &Lease, pass: &mut SchedulePass) -> Result<(), AlertsError> {
        let now = self.events.ledger().now_us();
        let (version, doc) = in_force(self.conn()).await?;
        self.plan(version, &doc, now, pass).await?;
        let due = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                "SELECT id, schedule_id, due_at FROM report_runs WHERE state = 'planned' AND next_at <= ? \
                 ORDER BY due_at LIMIT 20",
                vec![now.into()],
            ))
            .await?;
        for r in due {
            let id: String = r.try_get("", "id")?;
            let schedule_id: String = r.try_get("", "schedule_id")?;
            let due_at: i64 = r.try_get("", "due_at")?;
            let Some(s) = doc.schedules.iter().find(|s| s.id == schedule_id && s.enabled) else { continue };
            // Each run renews the lease: a pass may take a while.
            if lease.acquire().await?.is_none() {
                break;
            }
            match self.run_one(&id, s, version, due_at).await? {
                Some(true) => pass.done += 1,
                Some(false) => pass.failed += 1,
                None => {}
            }
        }
        if pass.done > 0 {
            // Their next runs, so the schedules show them at once.
            let now = self.events.ledger().now_us();
            self.plan(version, &doc, now, pass).await?;
        }
        Ok(())
    }

    async fn set_state(&self, id: &str, state: &str, error: &str, now: i64) -> Result<u64, AlertsError> {
        let done = self
            .conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE report_runs SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = 'planned'",
                vec![state.into(), error.into(), now.into(), id.into()],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Plans (or re-plans) a run of `s` due at `due_at`.
    async fn plan_at(&self, s: &ReportSchedule, version: u64, due_at: i64, now: i64) -> Result<u64, AlertsError> {
        let fp = fingerprint(s);
        let done = self
            .conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO report_runs (id, schedule_id, schedule_sha256, policy_version, due_at, state, next_at, \
                 attempts) VALUES (?, ?, ?, ?, ?, 'planned', ?, 0) \
                 ON CONFLICT (schedule_id, due_at) DO UPDATE SET state = 'planned', schedule_sha256 = excluded.schedule_sha256, \
                 policy_version = excluded.policy_version, next_at = excluded.next_at, attempts = 0, error = NULL, \
                 finished_at = NULL WHERE report_runs.state = 'cancelled'",
                vec![
                    Uuid::now_v7().to_string().into(),
                    s.id.clone().into(),
                    fp.into(),
                    (version as i64).into(),
                    due_at.into(),
                    due_at.max(now).into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    async fn plan(
        &self,
        version: u64,
        doc: &ScheduleDoc,
        now: i64,
        pass: &mut SchedulePass,
    ) -> Result<(), AlertsError> {
        // Runs left `running` by a replica that stopped: tried again, or
        // failed once they have had their tries.
        let stopped = "the replica running it stopped before it ended";
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE report_runs SET state = 'failed', finished_at = ?, error = ? WHERE state = 'running' \
                 AND started_at < ? AND attempts >= ?",
                vec![now.into(), stopped.into(), (now - STALE_US).into(), i64::from(TRIES).into()],
            ))
            .await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE report_runs SET state = 'planned', next_at = ?, error = ? WHERE state = 'running' AND started_at < ?",
                vec![now.into(), format!("{stopped}; tried again").into(), (now - STALE_US).into()],
            ))
            .await?;
        // Planned runs of schedules removed, turned off or whose times
        // changed: cancelled.
        let planned = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                "SELECT id, schedule_id, schedule_sha256, due_at, attempts FROM report_runs WHERE state = 'planned' \
                 ORDER BY due_at",
                vec![],
            ))
            .await?;
        let mut kept: Vec<(String, String, i64, i64)> = Vec::new();
        for r in planned {
            let id: String = r.try_get("", "id")?;
            let sid: String = r.try_get("", "schedule_id")?;
            let sha: String = r.try_get("", "schedule_sha256")?;
            let due_at: i64 = r.try_get("", "due_at")?;
            let attempts: i64 = r.try_get("", "attempts")?;
            let why = match doc.schedules.iter().find(|s| s.id == sid) {
                None => Some("the schedule was removed"),
                Some(s) if !s.enabled => Some("the schedule was turned off"),
                Some(s) if fingerprint(s) != sha => Some("the schedule was changed"),
                Some(_) => None,
            };
            match why {
                Some(why) => pass.cancelled += self.set_state(&id, "cancelled", why, now).await?,
                None => kept.push((id, sid, due_at, attempts)),
            }
        }
        for s in doc.schedules.iter().filter(|s| s.enabled) {
            let Ok(cron) = Cron::parse(&s.cron) else { continue };
            if let Some((id, _, due_at, attempts)) = kept.iter().find(|k| k.1 == s.id) {
                // Never tried, overdue, with a later occurrence passed too:
                // missed; the latest occurrence runs instead. (A run being
                // tried again keeps its time.)
                if *attempts > 0 {
                    continue;
                }
                let Some(next) = cron.next_after(*due_at).filter(|n| *n <= now) else { continue };
                let (mut latest, mut passed) = (next, 1u32);
                while let Some(n) = cron.next_after(latest).filter(|n| *n <= now) {
                    if passed >= CATCH_UP_MAX {
                        break;
                    }
                    latest = n;
                    passed += 1;
                }
                let why = format!(
                    "missed: the server was not running at {}; {passed} later occurrence(s) passed until {}, \
                     which runs instead",
                    rfc3339(*due_at),
                    rfc3339(latest)
                );
                if self.set_state(id, "missed", &why, now).await? == 1 {
                    pass.missed += 1;
                    let event = OwnEvent::by_custos(
                        OwnAction::ReportStep("custos.report.schedule_missed"),
                        "report scheduler",
                        Channel::System,
                    )
                    .outcome(Outcome::Failure)
                    .severity(Severity::Warning)
                    .reason(Some(why.clone()))
                    .resource("report_schedule", Some(s.id.clone()))
                    .details(json!({
                        "schedule": s.id, "run": id, "due_at": rfc3339(*due_at),
                        "later_occurrences": passed, "runs_instead": rfc3339(latest),
                    }));
                    self.events.record_own(event).await?;
                    pass.planned += self.plan_at(s, version, latest, now).await?;
                }
                continue;
            }
            // Nothing planned: the first occurrence after now and after
            // the schedule's last run.
            let last = self
                .conn()
                .query_one_raw(stmt_for(
                    self.backend(),
                    "SELECT MAX(due_at) AS d FROM report_runs WHERE schedule_id = ? AND state <> 'cancelled'",
                    vec![s.id.clone().into()],
                ))
                .await?
                .and_then(|r| r.try_get::<Option<i64>>("", "d").ok().flatten());
            if let Some(due_at) = cron.next_after(last.unwrap_or(now).max(now)) {
                pass.planned += self.plan_at(s, version, due_at, now).await?;
            }
        }
        Ok(())
    }

    /// Claims and runs one due run: `Some(true)` done, `Some(false)`
    /// failed, `None` when another replica claimed it.
    async fn run_one(
        &self,
        id: &str,
        s: &ReportSchedule,
        version: u64,
        due_at: i64,
    ) -> Result<Option<bool>, AlertsError> {
        let now = self.events.ledger().now_us();
        let claimed = self
            .conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE report_runs SET state = 'running', started_at = ?, attempts = attempts + 1 \
                 WHERE id = ? AND state = 'planned' AND next_at <= ?",
                vec![now.into(), id.into(), now.into()],
            ))
            .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        let attempts = self
            .conn()
            .query_one_raw(stmt_for(self.backend(), "SELECT attempts FROM report_runs WHERE id = ?", vec![id.into()]))
            .await?
            .map_or(Ok(1), |r| r.try_get::<i64>("", "attempts"))?
            .max(1) as u32;
        let by = Requester::custos(&format!("report schedule {}", s.id));
        let req = ReportRequest {
            framework: s.framework.clone(),
            period: Some(s.period.clone()),
            from: None,
            to: None,
            seed: None,
        };
        match self.make(&by, &req, "schedule", Some(&s.id), day_of(due_at), true).await {
            Ok(info) => {
                // Recorded before anything is sent: no record, no mail.
                let (messages, not_queued) = self.messages(id, s, &info).await?;
                let note = (!not_queued.is_empty())
                    .then(|| not_queued.iter().map(|(c, why)| format!("{c}: {why}")).collect::<Vec<_>>().join("; "));
                let author = self.policies.version(KIND, version).await.map(|v| v.author).unwrap_or_default();
                let event = OwnEvent::by_custos(
                    OwnAction::ReportStep("custos.report.scheduled"),
                    "report scheduler",
                    Channel::System,
                )
                .outcome(if not_queued.is_empty() { Outcome::Success } else { Outcome::Failure })
                .reason(note.clone())
                .resource("report_schedule", Some(s.id.clone()))
                .details(json!({
                    "schedule": s.id, "run": id, "due_at": rfc3339(due_at), "report": info.id,
                    "policy_version": version, "policy_author": author,
                    "framework": info.framework, "from": info.period_from, "to": info.period_to,
                    "pdf_sha256": info.pdf_sha256, "json_sha256": info.json_sha256,
                    "recipients": messages.iter().map(|m| json!({
                        "channel": m.channel, "type": m.kind, "to": m.to, "attached": m.attached,
                    })).collect::<Vec<_>>(),
                    "not_queued": not_queued.iter().map(|(c, why)| json!({"channel": c, "reason": why})).collect::<Vec<_>>(),
                }));
                if let Err(e) = self.events.record_own(event).await {
                    let end = self.events.ledger().now_us();
                    self.conn()
                        .execute_raw(stmt_for(
                            self.backend(),
                            "UPDATE report_runs SET state = 'failed', finished_at = ?, report_id = ?, error = ? \
                             WHERE id = ? AND state = 'running'",
                            vec![
                                end.into(),
                                info.id.to_string().into(),
                                "its sending could not be recorded in the ledger; nothing was sent".into(),
                                id.into(),
                            ],
                        ))
                        .await?;
                    return Err(e.into());
                }
                self.queue(&info, &messages).await?;
                let end = self.events.ledger().now_us();
                self.conn()
                    .execute_raw(stmt_for(
                        self.backend(),
                        "UPDATE report_runs SET state = 'done', finished_at = ?, report_id = ?, error = ? \
                         WHERE id = ? AND state = 'running'",
                        vec![end.into(), info.id.to_string().into(), note.into(), id.into()],
                    ))
                    .await?;
                self.prune_schedule(&s.id, s.keep).await?;
                Ok(Some(true))
            }
            Err(e) => {
                let why = shown(&e);
                let again = attempts < TRIES && !matches!(e, AlertsError::Invalid(_));
                let end = self.events.ledger().now_us();
                let (sql, vals): (&str, Vec<DbValue>) = if again {
                    (
                        "UPDATE report_runs SET state = 'planned', next_at = ?, error = ? WHERE id = ? AND state = 'running'",
                        vec![(end + RETRY_US).into(), why.clone().into(), id.into()],
                    )
                } else {
                    (
                        "UPDATE report_runs SET state = 'failed', finished_at = ?, error = ? WHERE id = ? \
                         AND state = 'running'",
                        vec![end.into(), why.clone().into(), id.into()],
                    )
                };
                self.conn().execute_raw(stmt_for(self.backend(), sql, vals)).await?;
                let event = OwnEvent::by_custos(
                    OwnAction::ReportStep("custos.report.schedule_failed"),
                    "report scheduler",
                    Channel::System,
                )
                .outcome(Outcome::Failure)
                .severity(if again { Severity::Warning } else { Severity::Error })
                .reason(Some(why))
                .resource("report_schedule", Some(s.id.clone()))
                .details(json!({
                    "schedule": s.id, "run": id, "due_at": rfc3339(due_at), "attempt": attempts,
                    "retry_at": again.then(|| rfc3339(end + RETRY_US)),
                }));
                self.events.record_own(event).await?;
                Ok(Some(false))
            }
        }
    }

    /// The message for each recipient, and the recipients no message can
    /// go to (with why).
    async fn messages(
        &self,
        run: &str,
        s: &ReportSchedule,
        info: &ReportInfo,
    ) -> Result<(Vec<Outgoing>, Vec<(String, String)>), AlertsError> {
        let (version, channels) = match crate::policies::in_force(self.conn(), crate::notify::KIND).await? {
            Some((v, c)) => (v, NotificationsDoc::parse(&c).map_err(AlertsError::Invalid)?),
            None => (0, NotificationsDoc::default()),
        };
        let pdf_len = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT CAST(LENGTH(pdf) AS BIGINT) AS n FROM reports WHERE id = ?",
                vec![info.id.to_string().into()],
            ))
            .await?
            .map(|r| r.try_get::<Option<i64>>("", "n"))
            .transpose()?
            .flatten()
            .unwrap_or(0)
            .max(0) as usize;
        let framework =
            super::frameworks().into_iter().find(|f| f.id == info.framework).map_or(info.framework.clone(), |f| f.name);
        let base = self.settings.public_url.as_deref().unwrap_or("").trim_end_matches('/');
        let link = format!("{base}/api/reports/{}/pdf", info.id);
        let status = info.status.map_or("unknown".to_owned(), |s| s.as_str().replace('_', " "));
        let pdf_sha = info.pdf_sha256.clone().unwrap_or_default();
        let name = file_name(&info.framework, &info.period_from, &info.period_to, ReportFile::Pdf);
        let mut out = Vec::new();
        let mut not_queued = Vec::new();
        for r in &s.recipients {
            let Some(c) = channels.channels.iter().find(|c| c.id == r.channel) else {
                not_queued.push((r.channel.clone(), "no such channel in the notifications policy in force".into()));
                continue;
            };
            if !r.to.is_empty() && c.kind != "email" {
                not_queued.push((r.channel.clone(), format!("now a {} channel: the addresses are for e-mail", c.kind)));
                continue;
            }
            let attach = c.kind == "email" && pdf_len <= ATTACH_MAX;
            let key = format!("report:{run}:{}", c.id);
            let subject =
                format!("[Custos] {framework} evidence report, {} to {}: {status}", info.period_from, info.period_to);
            let how = if attach {
                format!("The PDF is attached ({name}).")
            } else if c.kind == "email" {
                format!(
                    "The PDF ({pdf_len} bytes) is larger than the {} MiB attachments may be: download it at {link}",
                    ATTACH_MAX >> 20
                )
            } else {
                format!("Download it at {link}")
            };
            let text = format!(
                "The schedule \"{}\" made the {framework} evidence report for {} to {} (status: {status}).\n\n{how}\n\n\
                 SHA-256 of the PDF:\n{pdf_sha}\n\nIts signed manifest: {link}/manifest\nCheck both offline with \
                 custos verify-export.\n\nReport {}",
                s.name, info.period_from, info.period_to, info.id
            );
            let mut payload = json!({
                "subject": subject, "text": text,
                "json": {
                    "type": "custos.report", "idempotency_key": key, "text": text, "report": info,
                    "schedule": s.id, "link": link,
                },
            });
            if !r.to.is_empty() {
                payload["to"] = json!(r.to);
            }
            if attach {
                payload["attach"] = json!({"report": info.id, "file": "pdf", "name": name, "sha256": pdf_sha});
            }
            out.push(Outgoing {
                channel: c.id.clone(),
                kind: c.kind.clone(),
                to: if c.kind != "email" {
                    Vec::new()
                } else if r.to.is_empty() {
                    c.to.clone()
                } else {
                    r.to.clone()
                },
                attached: attach,
                key,
                channels_version: version,
                payload,
            });
        }
        Ok((out, not_queued))
    }

    /// Queues the messages in the notifications outbox (once each).
    async fn queue(&self, info: &ReportInfo, messages: &[Outgoing]) -> Result<(), AlertsError> {
        let now = self.events.ledger().now_us();
        for m in messages {
            self.conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "INSERT INTO notification_outbox (id, idempotency_key, channel_id, channel_type, channels_version, \
                     payload, status, attempts, next_at, created_at, report_id) \
                     VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                    vec![
                        Uuid::now_v7().to_string().into(),
                        m.key.clone().into(),
                        m.channel.clone().into(),
                        m.kind.clone().into(),
                        (m.channels_version as i64).into(),
                        m.payload.to_string().into(),
                        now.into(),
                        now.into(),
                        info.id.to_string().into(),
                    ],
                ))
                .await?;
        }
        Ok(())
    }

    /// Deletes the schedule's reports beyond its newest `keep`, except those
    /// with a message still to send.
    async fn prune_schedule(&self, schedule: &str, keep: u32) -> Result<(), AlertsError> {
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "DELETE FROM reports WHERE schedule = ? AND id NOT IN (SELECT id FROM reports WHERE schedule = ? \
                 ORDER BY generated_at DESC, id DESC LIMIT ?) AND id NOT IN (SELECT report_id FROM notification_outbox \
                 WHERE status = 'pending' AND report_id IS NOT NULL)",
                vec![schedule.into(), schedule.into(), DbValue::BigInt(Some(i64::from(keep.max(1))))],
            ))
            .await?;
        Ok(())
    }

    async fn run_of(&self, r: &QueryResult) -> Result<ReportRun, AlertsError> {
        let report_id: Option<String> = r.try_get("", "report_id")?;
        let mut deliveries = Vec::new();
        if let Some(rid) = &report_id {
            let rows = self
                .conn()
                .query_all_raw(stmt_for(
                    self.backend(),
                    "SELECT channel_id, status, attempts, last_error FROM notification_outbox WHERE report_id = ? \
                     ORDER BY channel_id",
                    vec![rid.clone().into()],
                ))
                .await?;
            for d in rows {
                deliveries.push(RunDelivery {
                    channel: d.try_get("", "channel_id")?,
                    status: d.try_get("", "status")?,
                    attempts: d.try_get::<i64>("", "attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
                    error: d.try_get("", "last_error")?,
                });
            }
        }
        Ok(ReportRun {
            id: r.try_get("", "id")?,
            schedule_id: r.try_get("", "schedule_id")?,
            due_at: rfc3339(r.try_get("", "due_at")?),
            state: r.try_get("", "state")?,
            attempts: r.try_get::<i64>("", "attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
            started_at: r.try_get::<Option<i64>>("", "started_at")?.map(rfc3339),
            finished_at: r.try_get::<Option<i64>>("", "finished_at")?.map(rfc3339),
            report_id,
            error: r.try_get("", "error")?,
            deliveries,
        })
    }

    /// The runs, newest due first (of one schedule, or all).
    pub async fn runs(&self, schedule: Option<&str>, limit: u64) -> Result<Vec<ReportRun>, AlertsError> {
        let limit = DbValue::BigInt(Some(limit.clamp(1, 500) as i64));
        let (sql, vals) = match schedule {
            Some(s) => (
                format!(
                    "SELECT {RUN_COLUMNS} FROM report_runs WHERE schedule_id = ? ORDER BY due_at DESC, id DESC LIMIT ?"
                ),
                vec![s.into(), limit],
            ),
            None => {
                (format!("SELECT {RUN_COLUMNS} FROM report_runs ORDER BY due_at DESC, id DESC LIMIT ?"), vec![limit])
            }
        };
        let rows = self.conn().query_all_raw(stmt_for(self.backend(), &sql, vals)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.run_of(r).await?);
        }
        Ok(out)
    }

    /// The schedules in force, each with its next and last run.
    pub async fn schedules(&self) -> Result<SchedulesView, AlertsError> {
        let now = self.events.ledger().now_us();
        let (version, doc) = in_force(self.conn()).await?;
        let mut out = Vec::with_capacity(doc.schedules.len());
        for s in doc.schedules {
            let planned = self
                .conn()
                .query_one_raw(stmt_for(
                    self.backend(),
                    "SELECT due_at, schedule_sha256 FROM report_runs WHERE schedule_id = ? AND state = 'planned' \
                     ORDER BY due_at LIMIT 1",
                    vec![s.id.clone().into()],
                ))
                .await?;
            let next_run = if !s.enabled {
                None
            } else {
                match planned {
                    Some(r) if r.try_get::<String>("", "schedule_sha256")? == fingerprint(&s) => {
                        Some(rfc3339(r.try_get("", "due_at")?))
                    }
                    // Not planned yet (the next pass plans it).
                    _ => Cron::parse(&s.cron).ok().and_then(|c| c.next_after(now)).map(rfc3339),
                }
            };
            let last = self
                .conn()
                .query_one_raw(stmt_for(
                    self.backend(),
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM report_runs WHERE schedule_id = ? \
                         AND state IN ('done', 'failed', 'missed') ORDER BY due_at DESC LIMIT 1"
                    ),
                    vec![s.id.clone().into()],
                ))
                .await?;
            let last_run = match last {
                Some(r) => Some(self.run_of(&r).await?),
                None => None,
            };
            out.push(ScheduleStatus { schedule: s, next_run, last_run });
        }
        Ok(SchedulesView { version, schedules: out })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn doc(s: serde_json::Value) -> serde_json::Value {
        json!({"schedules": [s]})
    }

    fn good() -> serde_json::Value {
        json!({"id": "pci-monthly", "name": "PCI monthly", "cron": "0 6 1 * *", "framework": "pcidss4",
               "period": "previous_month", "recipients": [{"channel": "auditors", "to": ["qsa@example.org"]}]})
    }

    fn fault(v: serde_json::Value) -> (String, String) {
        let e = super::parse(&v).and_then(|d| super::check(&d)).unwrap_err();
        (e.path, e.reason)
    }

    #[test]
    fn a_good_schedule_is_taken_with_its_defaults() {
        let d = super::parse(&doc(good())).unwrap();
        super::check(&d).unwrap();
        assert!(d.schedules[0].enabled);
        assert_eq!(d.schedules[0].keep, 12);
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |k: &str, v: serde_json::Value| {
            let mut s = good();
            s[k] = v;
            doc(s)
        };
        assert_eq!(fault(with("id", json!("PCI!"))).0, "content.schedules[0].id");
        assert_eq!(fault(with("name", json!(" "))).0, "content.schedules[0].name");
        let (p, r) = fault(with("cron", json!("0 25 * * *")));
        assert_eq!(p, "content.schedules[0].cron");
        assert!(r.contains("hour"), "{r}");
        assert_eq!(fault(with("framework", json!("pci"))).0, "content.schedules[0].framework");
        assert_eq!(fault(with("period", json!("yesterday"))).0, "content.schedules[0].period");
        assert_eq!(fault(with("recipients", json!([]))).0, "content.schedules[0].recipients");
        assert_eq!(
            fault(with("recipients", json!([{"channel": "a", "to": ["nope"]}]))).0,
            "content.schedules[0].recipients[0].to[0]"
        );
        assert_eq!(
            fault(with("recipients", json!([{"channel": "a"}, {"channel": "a"}]))).0,
            "content.schedules[0].recipients[1].channel"
        );
        assert_eq!(fault(with("keep", json!(0))).0, "content.schedules[0].keep");
        let (p, r) = fault(with("cron", json!("0,30 9 * * *")));
        assert_eq!(p, "content.schedules[0].cron");
        assert!(r.contains("30 minute(s) apart"), "{r}");
        super::check(&super::parse(&with("cron", json!("0 * * * *"))).unwrap()).expect("hourly is allowed");
        assert_eq!(fault(with("name", json!("PCI \u{202E}fdp.exe"))).0, "content.schedules[0].name");
        assert_eq!(
            fault(with("recipients", json!([{"channel": "a", "to": ["Boss <boss@example.org>"]}]))).0,
            "content.schedules[0].recipients[0].to[0]",
            "bare addresses only"
        );
        assert_eq!(fault(with("surprise", json!(1))).0, "content.schedules[0]");
        assert_eq!(fault(json!({"schedules": [good(), good()]})).0, "content.schedules[1].id");
        assert_eq!(fault(json!([])).0, "content");
    }

    #[test]
    fn recipients_must_be_channels_of_the_notifications_policy() {
        let d = super::parse(&doc(good())).unwrap();
        let none = crate::notify::channels::NotificationsDoc::default();
        let e = super::check_recipients(&d, &none).unwrap_err();
        assert_eq!(e.path, "content.schedules[0].recipients[0].channel");
        let hook = crate::notify::channels::NotificationsDoc::parse(&json!({"channels": [
            {"id": "auditors", "name": "Hook", "type": "webhook", "url": "https://h.example.org/x", "secret": {"sealed": "x"}}
        ], "routes": []}))
        .unwrap();
        let e = super::check_recipients(&d, &hook).unwrap_err();
        assert_eq!(e.path, "content.schedules[0].recipients[0].to", "addresses are for e-mail only");
    }
}

//! The alerts the rules open, and what people do with them.
//!
//! A firing opens an alert unless its rule and group already have one that
//! is not resolved: then it is counted into that one (an open alert with a
//! count, not a flood). Opening is idempotent: `trigger_key` (rule, group,
//! the ledger position that made it fire) is unique, so evaluating the same
//! events again after a restart or a takeover opens nothing twice, and a
//! repeat is counted only if it is newer than the last counted. Every
//! transition is a ledger event the server writes: `custos.alert.opened`
//! (by Custos, at the rule's severity), `…acknowledged`, `…resolved` and
//! `…commented` (by the person, with their comment masked).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use custos_model::{Alert, AlertPage, AlertStatus, AlertStep, Severity};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value as DbValue};
use serde_json::json;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::rules::{Firing, Rule};
use crate::events::model::Channel;
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::events::{Events, EventsError};
use crate::storage::stmt_for;
use crate::time::{SECOND_US, parse_rfc3339, rfc3339};

/// Ledger positions kept on an alert.
const MAX_SEQS: usize = 50;
/// Longest comment.
const MAX_COMMENT: usize = 2000;
/// Most steps (acknowledgements, comments, resolution) on one alert.
const MAX_HISTORY: usize = 200;

/// Why an alert operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// No such alert.
    #[error("{0}")]
    NotFound(String),
    /// It changed meanwhile, or the step does not apply to where it is.
    #[error("{0}")]
    Conflict(String),
    /// A parameter is wrong (named).
    #[error("{}: {}", .0.path, .0.reason)]
    Invalid(FieldError),
    /// The ledger or database failed (fail closed).
    #[error(transparent)]
    Events(#[from] EventsError),
}

impl From<DbErr> for AlertsError {
    fn from(e: DbErr) -> Self {
        AlertsError::Events(e.into())
    }
}

fn invalid(path: &str, reason: &str) -> AlertsError {
    AlertsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// What a person does to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Someone is on it (from open).
    Acknowledge,
    /// Done with (from open or acknowledged).
    Resolve,
    /// A note, at any time.
    Comment,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Acknowledge => "acknowledged",
            Step::Resolve => "resolved",
            Step::Comment => "commented",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Step::Acknowledge => "custos.alert.acknowledged",
            Step::Resolve => "custos.alert.resolved",
            Step::Comment => "custos.alert.commented",
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Only these statuses (none: all).
    pub status: Vec<AlertStatus>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only these severities.
    pub severities: Vec<String>,
    /// Opened at or after (µs).
    pub from_us: Option<i64>,
    /// Opened before (µs).
    pub to_us: Option<i64>,
    /// Page size (1..=200).
    pub limit: usize,
    /// The cursor of the previous page.
    pub cursor: Option<String>,
}

fn encode_cursor(opened_at: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("a1:{opened_at}:{id}"))
}

fn decode_cursor(s: &str) -> Option<(i64, String)> {
    use base64::Engine;
    let raw = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let mut parts = raw.splitn(3, ':');
    (parts.next()? == "a1").then_some(())?;
    let at = parts.next()?.parse().ok()?;
    let id = parts.next()?;
    Uuid::parse_str(id).ok()?;
    Some((at, id.to_owned()))
}

/// The explorer's parameters for a rule's matcher and a group's values.
fn explorer_filter(rule: &Rule, group: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let m = &rule.matcher;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, vs: &[String]| out.extend(vs.iter().map(|v| (k.to_owned(), v.clone())));
    add("category", &m.categories);
    add("action", &m.actions);
    add("outcome", &m.outcomes);
    add("severity", &m.severities);
    add("actor", &m.actors);
    add("resource_type", &m.resource_types);
    add("resource_id", &m.resource_ids);
    add("tenant", &m.tenants);
    add("channel", &m.channels);
    for (field, value) in group {
        let param = match field.as_str() {
            "actor" => "actor",
            "resource" => "resource_id",
            "resource.type" => "resource_type",
            "tenant" => "tenant",
            "channel" => "channel",
            "action" => "action",
            "outcome" => "outcome",
            _ => continue,
        };
        if !out.iter().any(|(k, v)| k == param && v == value) {
            out.retain(|(k, _)| k != param);
            out.push((param.to_owned(), value.clone()));
        }
    }
    out
}

/// What the alerts table holds, in five figures that only grow (alerts are
/// never deleted: a trigger forbids it): an alert opening, its opening
/// recorded in the ledger, a repeat counted into one, a step
/// (acknowledged, resolved, commented: each appends to its history) and a
/// silence applied each raise at least one, on whichever replica made the
/// change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertsDigest {
    /// Alerts.
    pub alerts: u64,
    /// Alerts whose opening is recorded.
    pub recorded: u64,
    /// Their matches, summed.
    pub matches: u64,
    /// The length of their histories (as stored), summed.
    pub history: u64,
    /// Alerts silenced.
    pub silenced: u64,
}

impl AlertsDigest {
    /// An opaque version: different whenever the alerts changed.
    pub fn version(&self) -> String {
        format!("{}.{}.{}.{}.{}", self.alerts, self.recorded, self.matches, self.history, self.silenced)
    }

    /// Whether `self` is at least `other` in every figure (read no earlier).
    fn covers(&self, other: &AlertsDigest) -> bool {
        self.alerts >= other.alerts
            && self.recorded >= other.recorded
            && self.matches >= other.matches
            && self.history >= other.history
            && self.silenced >= other.silenced
    }
}

/// How often the alerts are read for changes while someone watches
/// (changes made by this replica are heard at once).
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// The least time between two such reads, however many changes.
const WATCH_GAP: Duration = Duration::from_millis(250);

/// The alerts service.
#[derive(Debug)]
pub struct Alerts {
    events: Arc<Events>,
    /// The digest as last read, for [`Alerts::subscribe_changes`].
    changes: watch::Sender<AlertsDigest>,
    /// Wakes the watcher after this replica changed an alert.
    poke: Arc<Notify>,
    /// The watcher, started by the first subscriber.
    watcher: OnceLock<()>,
}

impl Alerts {
    /// Alerts over this events service's database.
    pub fn new(events: Arc<Events>) -> Alerts {
        Alerts {
            events,
            changes: watch::Sender::new(AlertsDigest::default()),
            poke: Arc::default(),
            watcher: OnceLock::new(),
        }
    }

    /// The alerts' digest now (one read of the table).
    pub async fn digest(&self) -> Result<AlertsDigest, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT COUNT(*) AS n, COUNT(opened_seq) AS r, CAST(COALESCE(SUM(matches), 0) AS BIGINT) AS m, \
                 CAST(COALESCE(SUM(LENGTH(history)), 0) AS BIGINT) AS h, COUNT(silenced_by) AS s FROM alerts",
                vec![],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the alerts' digest read no row".into()))?;
        let n = |c: &str| -> Result<u64, DbErr> { Ok(row.try_get::<i64>("", c)?.max(0) as u64) };
        Ok(AlertsDigest { alerts: n("n")?, recorded: n("r")?, matches: n("m")?, history: n("h")?, silenced: n("s")? })
    }

    /// Watches the alerts for changes: the digest now, then each new one.
    /// Changes this replica makes are heard at once; others' (another
    /// replica's evaluator, a step taken through another replica) within
    /// [`WATCH_EVERY`]. One watcher per service reads the table for every
    /// subscriber, and only while there is one; the first subscriber
    /// (nobody watching) reads it before this returns, the others take
    /// the watcher's last reading.
    pub async fn subscribe_changes(self: &Arc<Self>) -> Result<watch::Receiver<AlertsDigest>, AlertsError> {
        if self.changes.receiver_count() == 0 {
            let now = self.digest().await?;
            self.publish(now);
        }
        let rx = self.changes.subscribe();
        self.watcher.get_or_init(|| {
            tokio::spawn(watch_changes(Arc::downgrade(self), self.poke.clone()));
        });
        Ok(rx)
    }

    /// Makes `now` the digest, unless one read later is there already
    /// (two reads can finish out of order).
    fn publish(&self, now: AlertsDigest) {
        self.changes.send_if_modified(|d| {
            let newer = now != *d && now.covers(d);
            if newer {
                *d = now;
            }
            newer
        });
    }

    /// Tells the watcher this replica changed an alert.
    pub(crate) fn changed(&self) {
        self.poke.notify_one();
    }

    /// The events service.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn backend(&self) -> sea_orm::DbBackend {
        self.events.ledger().db().backend()
    }

    fn now(&self) -> i64 {
        self.events.ledger().now_us()
    }

    /// One alert.
    pub async fn get(&self, id: &str) -> Result<Alert, AlertsError> {
        if Uuid::parse_str(id).is_err() {
            return Err(AlertsError::NotFound(format!("no alert {id}")));
        }
        let row = self
            .conn()
            .query_one_raw(stmt_for(self.backend(), "SELECT * FROM alerts WHERE id = ?", vec![id.into()]))
            .await?;
        row.map(|r| alert_of(&r)).transpose()?.ok_or_else(|| AlertsError::NotFound(format!("no alert {id}")))
    }

    /// Alerts, newest first.
    pub async fn list(&self, q: &AlertQuery) -> Result<AlertPage, AlertsError> {
        list(&self.events, q).await
    }

    /// A firing of `rule` (version `rules_version` of the rules): opens an
    /// alert (answered) or counts the firing into its group's alert that is
    /// not resolved yet (`None`).
    pub async fn on_firing(
        &self,
        firing: &Firing,
        rule: &Rule,
        rules_version: u64,
    ) -> Result<Option<Alert>, AlertsError> {
        let b = self.backend();
        let group = serde_json::to_string(&firing.group).unwrap_or_default();
        let trigger = firing.seqs.iter().copied().max().unwrap_or(0);
        let now = self.now();
        let unresolved = self
            .conn()
            .query_one_raw(stmt_for(
                b,
                "SELECT * FROM alerts WHERE rule_id = ? AND group_key = ? AND status <> 'resolved' \
                 ORDER BY opened_at DESC, id DESC LIMIT 1",
                vec![rule.id.clone().into(), group.clone().into()],
            ))
            .await?;
        if let Some(row) = unresolved {
            // Opened by a pass cut off before it recorded the opening: the
            // record is written now (the alert is notified once it is).
            if row.try_get::<Option<i64>>("", "opened_seq")?.is_none() {
                let alert = alert_of(&row)?;
                return Ok(Some(self.record_opening(alert, rule, rules_version).await?));
            }
            let id: String = row.try_get("", "id")?;
            let mut seqs: Vec<u64> = serde_json::from_str(&row.try_get::<String>("", "seqs")?).unwrap_or_default();
            if seqs.len() < MAX_SEQS && !seqs.contains(&trigger) {
                seqs.push(trigger);
            }
            // Counted once: a repeat older than the last counted was
            // counted before (a re-evaluation after a restart).
            self.conn()
                .execute_raw(stmt_for(
                    b,
                    "UPDATE alerts SET matches = matches + 1, last_seq = ?, last_at = ?, seqs = ?, updated_at = ? \
                     WHERE id = ? AND last_seq < ?",
                    vec![
                        (trigger as i64).into(),
                        firing.at_us.into(),
                        serde_json::to_string(&seqs).unwrap_or_default().into(),
                        now.into(),
                        id.into(),
                        (trigger as i64).into(),
                    ],
                ))
                .await?;
            self.changed();
            return Ok(None);
        }
        if !firing.new {
            // A repeat within the cooldown of an alert already resolved:
            // nothing to count it into.
            return Ok(None);
        }
        let key = format!("{}|{group}|{trigger}", rule.id);
        let id = Uuid::now_v7().to_string();
        let window_us = match &rule.condition {
            super::rules::Condition::Immediate | super::rules::Condition::Absence { .. } => 0,
            super::rules::Condition::Threshold { window_secs, .. }
            | super::rules::Condition::Distinct { window_secs, .. }
            | super::rules::Condition::Sequence { window_secs, .. } => *window_secs as i64 * SECOND_US,
        };
        let mut seqs = firing.seqs.clone();
        seqs.sort_unstable();
        seqs.truncate(MAX_SEQS);
        let filter = explorer_filter(rule, &firing.group);
        self.conn()
            .execute_raw(stmt_for(
                b,
                "INSERT INTO alerts (id, rule_id, rule_name, severity, group_key, trigger_key, status, matches, seqs, \
                 filter, since_us, opened_at, last_at, last_seq, updated_at, created_at, rules_version) \
                 VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trigger_key) DO NOTHING",
                vec![
                    id.clone().into(),
                    rule.id.clone().into(),
                    rule.name.clone().into(),
                    rule.severity.clone().into(),
                    group.into(),
                    key.clone().into(),
                    (firing.count.max(1) as i64).into(),
                    serde_json::to_string(&seqs).unwrap_or_default().into(),
                    serde_json::to_string(&filter).unwrap_or_default().into(),
                    (firing.at_us - window_us).into(),
                    firing.at_us.into(),
                    firing.at_us.into(),
                    (trigger as i64).into(),
                    now.into(),
                    now.into(),
                    (rules_version as i64).into(),
                ],
            ))
            .await?;
        self.changed();
        // Opened now, or by an evaluation cut off before its record: the
        // ledger entry is written once either way.
        let row = self
            .conn()
            .query_one_raw(stmt_for(b, "SELECT * FROM alerts WHERE trigger_key = ?", vec![key.into()]))
            .await?
            .ok_or_else(|| AlertsError::NotFound("the alert just opened is gone".into()))?;
        let alert = alert_of(&row)?;
        if alert.opened_seq.is_some() {
            return Ok(None);
        }
        Ok(Some(self.record_opening(alert, rule, rules_version).await?))
    }

    /// Records an alert's opening in the ledger and notes its position.
    async fn record_opening(&self, alert: Alert, rule: &Rule, rules_version: u64) -> Result<Alert, AlertsError> {
        let severity = rule.severity.parse::<Severity>().unwrap_or(Severity::Notice);
        let event =
            OwnEvent::by_custos(OwnAction::AlertStep("custos.alert.opened"), "alert evaluator", Channel::System)
                .severity(severity)
                .resource("alert", Some(alert.id.clone()))
                .details(json!({
                    "rule": rule.id, "rule_name": rule.name, "rule_severity": rule.severity,
                    "rules_version": rules_version, "group": alert.group, "matches": alert.matches,
                    "seqs": alert.seqs,
                }));
        let receipt = self.events.record_own(event).await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE alerts SET opened_seq = ? WHERE id = ? AND opened_seq IS NULL",
                vec![(receipt.seq as i64).into(), alert.id.clone().into()],
            ))
            .await?;
        self.changed();
        Ok(Alert { opened_seq: Some(receipt.seq), ..alert })
    }

    /// Acknowledges, resolves or comments on an alert, recorded in the
    /// ledger first; the comment is masked by the policy in force.
    pub async fn step(&self, id: &str, step: Step, by: &Requester, comment: &str) -> Result<Alert, AlertsError> {
        let comment = comment.trim();
        if comment.chars().count() > MAX_COMMENT {
            return Err(invalid("comment", &format!("at most {MAX_COMMENT} characters")));
        }
        if step == Step::Comment && comment.is_empty() {
            return Err(invalid("comment", "required: what do you want to say?"));
        }
        let comment = self.events.mask_free_text(comment);
        let applies = |alert: &Alert| match (step, alert.status) {
            (Step::Acknowledge, AlertStatus::Open) => Ok(AlertStatus::Acknowledged),
            (Step::Resolve, AlertStatus::Open | AlertStatus::Acknowledged) => Ok(AlertStatus::Resolved),
            (Step::Comment, s) => Ok(s),
            (_, s) => Err(AlertsError::Conflict(format!("the alert is {}: it cannot be {}", s.as_str(), step.name()))),
        };
        let mut alert = self.get(id).await?;
        let mut to = applies(&alert)?;
        if alert.history.len() >= MAX_HISTORY {
            return Err(AlertsError::Conflict(format!("the alert has {MAX_HISTORY} steps already: no more are kept")));
        }
        // Recorded first, then applied.
        let event = OwnEvent::new(OwnAction::AlertStep(step.action()), by.actor.clone(), by.channel)
            .request(by.request_id.clone())
            .resource("alert", Some(alert.id.clone()))
            .details(json!({
                "rule": alert.rule_id, "group": alert.group, "from": alert.status.as_str(), "to": to.as_str(),
                "comment": comment,
            }));
        let receipt = self.events.record_own(event).await?;
        let entry = AlertStep {
            step: step.name().into(),
            principal: by.owner.clone(),
            name: by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone()),
            at: rfc3339(receipt.recorded_at_us),
            comment,
            seq: receipt.seq,
        };
        // Someone else may act on it between the read and the write: the
        // step recorded is applied to the alert as it is then, while it
        // still applies; if it no longer does (resolved meanwhile), that
        // is recorded too.
        for _ in 0..5 {
            let mut history = alert.history.clone();
            history.push(entry.clone());
            let done = self
                .conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "UPDATE alerts SET status = ?, history = ?, updated_at = ? WHERE id = ? AND status = ? AND history = ?",
                    vec![
                        to.as_str().into(),
                        serde_json::to_string(&history).unwrap_or_default().into(),
                        self.now().into(),
                        alert.id.clone().into(),
                        alert.status.as_str().into(),
                        serde_json::to_string(&alert.history).unwrap_or_default().into(),
                    ],
                ))
                .await?;
            if done.rows_affected() == 1 {
                self.changed();
                return self.get(id).await;
            }
            alert = self.get(id).await?;
            to = match applies(&alert) {
                Ok(t) => t,
                Err(e) => {
                    let undone = OwnEvent::new(OwnAction::AlertStep(step.action()), by.actor.clone(), by.channel)
                        .outcome(crate::events::model::Outcome::Failure)
                        .reason(Some(format!("not applied: {e} (someone else acted on it first)")))
                        .request(by.request_id.clone())
                        .resource("alert", Some(alert.id.clone()))
                        .details(json!({ "rule": alert.rule_id, "recorded": receipt.seq }));
                    self.events.record_own(undone).await?;
                    return Err(e);
                }
            };
        }
        let e = AlertsError::Conflict("the alert keeps changing: reload and try again".into());
        let undone = OwnEvent::new(OwnAction::AlertStep(step.action()), by.actor.clone(), by.channel)
            .outcome(crate::events::model::Outcome::Failure)
            .reason(Some(format!("not applied: {e}")))
            .request(by.request_id.clone())
            .resource("alert", Some(alert.id.clone()))
            .details(json!({ "rule": alert.rule_id, "recorded": receipt.seq }));
        self.events.record_own(undone).await?;
        Err(e)
    }
}

/// Reads the alerts' digest after each change this replica makes and every
/// [`WATCH_EVERY`], while anyone subscribes; ends soon after the service.
async fn watch_changes(alerts: Weak<Alerts>, poke: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = poke.notified() => {}
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let Some(a) = alerts.upgrade() else { return };
        if a.changes.receiver_count() > 0 {
            match a.digest().await {
                Ok(now) => a.publish(now),
                Err(e) => tracing::warn!(error = %e, "alerts watcher: the alerts could not be read; trying again"),
            }
        }
        drop(a);
        tokio::time::sleep(WATCH_GAP).await;
    }
}

/// Alerts, newest first, in `events`' database.
pub async fn list(events: &Events, q: &AlertQuery) -> Result<AlertPage, AlertsError> {
    let limit = q.limit.clamp(1, 200);
    let mut sql = String::from("SELECT * FROM alerts WHERE 1 = 1");
    let mut vals: Vec<DbValue> = Vec::new();
    let list = |sql: &mut String, vals: &mut Vec<DbValue>, col: &str, items: Vec<String>| {
        if !items.is_empty() {
            sql.push_str(&format!(" AND {col} IN ({})", vec!["?"; items.len()].join(", ")));
            vals.extend(items.into_iter().map(DbValue::from));
        }
    };
    list(&mut sql, &mut vals, "status", q.status.iter().map(|s| s.as_str().to_owned()).collect());
    list(&mut sql, &mut vals, "severity", q.severities.clone());
    if let Some(rule) = &q.rule {
        sql.push_str(" AND rule_id = ?");
        vals.push(rule.clone().into());
    }
    if let Some(from) = q.from_us {
        sql.push_str(" AND opened_at >= ?");
        vals.push(from.into());
    }
    if let Some(to) = q.to_us {
        sql.push_str(" AND opened_at < ?");
        vals.push(to.into());
    }
    if let Some(c) = &q.cursor {
        let (at, id) = decode_cursor(c).ok_or_else(|| invalid("cursor", "not a cursor this API returned"))?;
        sql.push_str(" AND (opened_at < ? OR (opened_at = ? AND id < ?))");
        vals.extend([at.into(), at.into(), id.into()]);
    }
    sql.push_str(&format!(" ORDER BY opened_at DESC, id DESC LIMIT {}", limit + 1));
    let rows = events.ledger().db().conn().query_all_raw(stmt_for(events.ledger().db().backend(), &sql, vals)).await?;
    let mut items = rows.iter().map(alert_of).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().and_then(|a| parse_rfc3339(&a.opened_at).map(|at| encode_cursor(at, &a.id)))
    } else {
        None
    };
    let counts = events
        .ledger()
        .db()
        .conn()
        .query_all_raw(stmt_for(
            events.ledger().db().backend(),
            "SELECT status, COUNT(*) AS n FROM alerts GROUP BY status",
            vec![],
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String>("", "status")?, r.try_get::<i64>("", "n")?.max(0) as u64)))
        .collect::<Result<BTreeMap<_, _>, DbErr>>()?;
    Ok(AlertPage { items, next_cursor, counts })
}

fn alert_of(r: &QueryResult) -> Result<Alert, DbErr> {
    let json = |col: &str| -> Result<String, DbErr> { r.try_get("", col) };
    let status: String = r.try_get("", "status")?;
    let since: i64 = r.try_get("", "since_us")?;
    let last_at: i64 = r.try_get("", "last_at")?;
    let filter: Vec<(String, String)> = serde_json::from_str(&json("filter")?).unwrap_or_default();
    // Events may be stamped a little before their commit: a minute's margin.
    let mut explore = filter;
    explore.push(("from".into(), rfc3339(since - 60 * SECOND_US)));
    explore.push(("to".into(), rfc3339(last_at + 60 * SECOND_US)));
    Ok(Alert {
        id: r.try_get("", "id")?,
        rule_id: r.try_get("", "rule_id")?,
        rule_name: r.try_get("", "rule_name")?,
        severity: r.try_get("", "severity")?,
        group: serde_json::from_str(&json("group_key")?).unwrap_or_default(),
        status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Open),
        matches: r.try_get::<i64>("", "matches")?.max(0) as u64,
        seqs: serde_json::from_str(&json("seqs")?).unwrap_or_default(),
        opened_at: rfc3339(r.try_get("", "opened_at")?),
        last_at: rfc3339(last_at),
        opened_seq: r.try_get::<Option<i64>>("", "opened_seq")?.map(|s| s.max(0) as u64),
        rules_version: r.try_get::<i64>("", "rules_version")?.max(0) as u64,
        explore: explore
            .iter()
            .map(|(k, v)| format!("{k}={}", custos_model::url::encode(v)))
            .collect::<Vec<_>>()
            .join("&"),
        history: serde_json::from_str(&json("history")?).unwrap_or_default(),
        silenced_by: r.try_get("", "silenced_by")?,
    })
}

//! Notifications (issue 16): alerts go out by e-mail, webhooks and chat,
//! through a durable outbox, on the one replica holding the `notifier`
//! lease.
//!
//! - Queueing: an alert whose opening is recorded and whose messages are
//!   not queued yet (`alerts.notified_at`) gets one outbox entry per channel
//!   its routes name (the notifications policy in force), its message
//!   rendered then; the entry's idempotency key (alert and channel) is
//!   unique, so nothing is queued twice. Alerts opened more than an hour
//!   before they are seen here (notifications turned on later, a long
//!   outage) are marked, not sent.
//! - Delivery: due entries are tried (at most 20 at a time, each within 10
//!   seconds); every try is logged (`notification_attempts`: time,
//!   channel, status, response code, latency, error). A failed try is
//!   retried with exponential backoff (10 s, 20 s, 40 s, … at most 6 hours
//!   apart) and is recorded in the ledger (`custos.notification.failed`);
//!   after a day of failures the entry is dead, with the reason
//!   (`custos.notification.dead`). Delivery is at least once: a receiver
//!   drops repeats by the idempotency key.
//! - It never blocks ingest or the evaluator: they only write rows.

pub mod channels;
pub mod send;

use std::sync::Arc;

use base64::Engine as _;
use custos_model::{Alert, NotificationAttempt, NotificationLog, Severity};
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult, Value as DbValue};
use serde_json::{Value, json};
use uuid::Uuid;

use self::channels::{ChannelDef, DEFAULT_BODY, DEFAULT_SUBJECT, NotificationsDoc, render};
use self::send::{Message, Outcome};
use crate::alerts::store::{Alerts, AlertsError};
use crate::events::model::{Channel, Outcome as EventOutcome};
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::lease::Lease;
use crate::policies::PolicyStore;
use crate::storage::stmt_for;
use crate::time::{HOUR_US, SECOND_US, rfc3339};

/// The lease's name.
pub const LEASE: &str = "notifier";
/// The policy kind's name.
pub const KIND: &str = "notifications";
const RENEW_US: i64 = 3 * SECOND_US;
/// Alerts older than this when first seen are not sent.
const TOO_OLD_US: i64 = HOUR_US;
/// Entries tried in one pass.
const BATCH: u64 = 20;
/// A claimed entry is tried again after this if its try never ended.
const CLAIM_US: i64 = 60 * SECOND_US;

/// How delivery retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The first retry's delay; each next one doubles, up to 6 hours.
    pub retry_base_us: i64,
    /// A message still failing this long after it was queued is dead.
    pub give_up_us: i64,
    /// The server's address as people reach it (`https://custos.example.org`),
    /// for links in messages; without it links are paths.
    pub public_url: Option<String>,
    /// Destinations on private, loopback or link-local addresses are
    /// allowed (an internal relay; tests). Off by default: a channel must
    /// not be a way into the internal network (SSRF).
    pub allow_private: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { retry_base_us: 10 * SECOND_US, give_up_us: 24 * HOUR_US, public_url: None, allow_private: false }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendPass {
    /// This replica holds the lease.
    pub held: bool,
    /// Messages queued.
    pub queued: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed, to be retried.
    pub failed: u64,
    /// Given up.
    pub dead: u64,
}

/// Which attempts to list.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only these channels.
    pub channels: Vec<String>,
    /// Only these statuses (`delivered`, `failed`, `dead`).
    pub statuses: Vec<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this alert.
    pub alert: Option<String>,
    /// From (µs).
    pub from_us: Option<i64>,
    /// Before (µs).
    pub to_us: Option<i64>,
    /// Page size (1..=500).
    pub limit: u64,
    /// The previous page's cursor.
    pub cursor: Option<String>,
}

/// The notifier of one replica.
pub struct Notifier {
    alerts: Arc<Alerts>,
    policies: Arc<PolicyStore>,
    lease: Lease,
    http: reqwest::Client,
    settings: Settings,
    renewed_at: Option<i64>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("holder", &self.lease.holder()).finish_non_exhaustive()
    }
}

fn cursor_of(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("n1:{id}"))
}

fn parse_cursor(s: &str) -> Option<i64> {
    let raw = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    raw.strip_prefix("n1:")?.parse().ok()
}

fn invalid(path: &str, reason: &str) -> AlertsError {
    AlertsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// The wait before try `n + 1` after `n` failed tries.
pub fn backoff_us(base_us: i64, failed: u32) -> i64 {
    crate::time::backoff_us(base_us, failed, 6 * HOUR_US)
}

impl Notifier {
    /// The notifier of the replica `holder`.
    pub fn new(alerts: Arc<Alerts>, policies: Arc<PolicyStore>, holder: &str, settings: Settings) -> Notifier {
        // One process-wide crypto provider for rustls (ring, as the rest).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let lease =
            Lease::new(alerts.events().ledger().clone(), LEASE, holder, alerts.events().ledger().lease_ttl_us());
        let http = reqwest::Client::builder()
            .timeout(send::TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Custos/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Notifier { alerts, policies, lease, http, settings, renewed_at: None }
    }

    fn ledger(&self) -> &crate::ledger::Ledger {
        self.alerts.events().ledger()
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.ledger().db().conn()
    }

    fn b(&self) -> sea_orm::DbBackend {
        self.ledger().db().backend()
    }

    /// The notifications policy in force (version, document).
    pub async fn doc(&self) -> Result<(u64, NotificationsDoc), AlertsError> {
        let v = self.policies.active(KIND).await.map_err(|e| AlertsError::Conflict(e.to_string()))?;
        let doc = NotificationsDoc::parse(&v.content).map_err(AlertsError::Invalid)?;
        Ok((v.version, doc))
    }

    /// Gives the lease up (a clean stop).
    pub async fn release(&mut self) -> Result<(), AlertsError> {
        self.renewed_at = None;
        Ok(self.lease.release().await?)
    }

    /// Queues what new alerts need and tries what is due, if this replica
    /// holds the lease.
    pub async fn step(&mut self) -> Result<SendPass, AlertsError> {
        let now = self.ledger().now_us();
        if self.renewed_at.is_none_or(|t| now - t >= RENEW_US) {
            if self.lease.acquire().await?.is_none() {
                self.renewed_at = None;
                return Ok(SendPass::default());
            }
            self.renewed_at = Some(now);
        }
        let (version, doc) = self.doc().await?;
        let mut pass = SendPass { held: true, ..Default::default() };
        pass.queued = self.enqueue(version, &doc).await?;
        self.deliver_due(&doc, &mut pass).await?;
        Ok(pass)
    }

    fn link(&self, alert: &Alert) -> String {
        let base = self.settings.public_url.as_deref().unwrap_or("").trim_end_matches('/');
        format!("{base}/events?{}", alert.explore)
    }

    fn message(&self, c: &ChannelDef, alert: &Alert, key: &str) -> Message {
        let link = self.link(alert);
        let subject = render(c.subject.as_deref().unwrap_or(DEFAULT_SUBJECT), alert, &link);
        let text = render(c.body.as_deref().unwrap_or(DEFAULT_BODY), alert, &link);
        Message {
            json: json!({
                "type": "custos.alert", "idempotency_key": key, "text": text,
                "alert": alert, "link": link,
            }),
            subject,
            text,
            idempotency_key: key.to_owned(),
            to: Vec::new(),
            attachment: None,
        }
    }

    async fn enqueue(&self, version: u64, doc: &NotificationsDoc) -> Result<u64, AlertsError> {
        let now = self.ledger().now_us();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.b(),
                "SELECT id, created_at FROM alerts WHERE notified_at IS NULL AND opened_seq IS NOT NULL \
                 ORDER BY created_at LIMIT 100",
                vec![],
            ))
            .await?;
        let silences = self.alerts.active_silences().await?;
        let mut queued = 0;
        let mut skipped = Vec::new();
        for r in rows {
            let id: String = r.try_get("", "id")?;
            let created_at: i64 = r.try_get("", "created_at")?;
            if now - created_at > TOO_OLD_US {
                skipped.push(id.clone());
            } else if let Some(silence) = {
                let alert = self.alerts.get(&id).await?;
                silences.iter().find(|s| crate::alerts::silences::covers(s, &alert)).map(|s| s.id.clone())
            } {
                // Shown in the inbox, not sent: the alert names the silence.
                self.conn()
                    .execute_raw(stmt_for(
                        self.b(),
                        "UPDATE alerts SET silenced_by = ? WHERE id = ? AND silenced_by IS NULL",
                        vec![silence.into(), id.clone().into()],
                    ))
                    .await?;
                self.alerts.changed();
            } else {
                let alert = self.alerts.get(&id).await?;
                for c in doc.route(&alert.rule_id, &alert.severity) {
                    let key = format!("{}:{}", alert.id, c.id);
                    let m = self.message(c, &alert, &key);
                    let payload = json!({"subject": m.subject, "text": m.text, "json": m.json});
                    let done = self
                        .conn()
                        .execute_raw(stmt_for(
                            self.b(),
                            "INSERT INTO notification_outbox (id, idempotency_key, alert_id, rule_id, channel_id, \
                             channel_type, channels_version, payload, status, attempts, next_at, created_at) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
                             ON CONFLICT (idempotency_key) DO NOTHING",
                            vec![
                                Uuid::now_v7().to_string().into(),
                                key.into(),
                                alert.id.clone().into(),
                                alert.rule_id.clone().into(),
                                c.id.clone().into(),
                                c.kind.clone().into(),
                                (version as i64).into(),
                                payload.to_string().into(),
                                now.into(),
                                now.into(),
                            ],
                        ))
                        .await?;
                    queued += done.rows_affected();
                }
            }
            self.conn()
                .execute_raw(stmt_for(
                    self.b(),
                    "UPDATE alerts SET notified_at = ? WHERE id = ? AND notified_at IS NULL",
                    vec![now.into(), id.into()],
                ))
                .await?;
        }
        if !skipped.is_empty() {
            // Not sent, and said so.
            let event = OwnEvent::by_custos(
                OwnAction::NotificationStep("custos.notification.skipped"),
                "notifier",
                Channel::System,
            )
            .outcome(EventOutcome::Failure)
            .severity(Severity::Warning)
            .reason(Some(format!(
                "{} alert(s) were stored more than an hour before the notifier could queue them; not sent",
                skipped.len()
            )))
            .details(json!({ "alerts": skipped.iter().take(50).collect::<Vec<_>>(), "count": skipped.len() }));
            self.alerts.events().record_own(event).await?;
        }
        Ok(queued)
    }

    async fn deliver_due(&self, doc: &NotificationsDoc, pass: &mut SendPass) -> Result<(), AlertsError> {
        let now = self.ledger().now_us();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.b(),
                &format!(
                    "SELECT * FROM notification_outbox WHERE status = 'pending' AND next_at <= ? \
                     ORDER BY next_at LIMIT {BATCH}"
                ),
                vec![now.into()],
            ))
            .await?;
        // Claimed before they are tried: another notifier (a takeover
        // while this one paused) does not send them too.
        let mut claimed = Vec::new();
        for r in rows {
            let id: String = r.try_get("", "id")?;
            let next_at: i64 = r.try_get("", "next_at")?;
            let done = self
                .conn()
                .execute_raw(stmt_for(
                    self.b(),
                    "UPDATE notification_outbox SET next_at = ? WHERE id = ? AND status = 'pending' AND next_at = ?",
                    vec![(now + CLAIM_US).into(), id.into(), next_at.into()],
                ))
                .await?;
            if done.rows_affected() == 1 {
                claimed.push(r);
            }
        }
        let tries = claimed.iter().map(|r| self.deliver_one(doc, r, now));
        for r in futures_util::future::join_all(tries).await {
            match r? {
                Status::Delivered => pass.delivered += 1,
                Status::Failed => pass.failed += 1,
                Status::Dead => pass.dead += 1,
            }
        }
        Ok(())
    }

    async fn deliver_one(&self, doc: &NotificationsDoc, r: &QueryResult, now: i64) -> Result<Status, AlertsError> {
        let id: String = r.try_get("", "id")?;
        let channel_id: String = r.try_get("", "channel_id")?;
        let channel_type: String = r.try_get("", "channel_type")?;
        let alert_id: Option<String> = r.try_get("", "alert_id")?;
        let rule_id: Option<String> = r.try_get("", "rule_id")?;
        let created_at: i64 = r.try_get("", "created_at")?;
        let attempt = r.try_get::<i64>("", "attempts")?.max(0) as u32 + 1;
        let payload: Value = serde_json::from_str(&r.try_get::<String>("", "payload")?).unwrap_or_default();
        let (attachment, unattachable) = match self.attachment(&payload["attach"]).await? {
            Ok(a) => (a, None),
            Err(why) => (None, Some(why)),
        };
        let message = Message {
            subject: payload["subject"].as_str().unwrap_or_default().to_owned(),
            text: payload["text"].as_str().unwrap_or_default().to_owned(),
            json: payload["json"].clone(),
            idempotency_key: r.try_get("", "idempotency_key")?,
            to: payload["to"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            attachment,
        };
        let outcome = match doc.channels.iter().find(|c| c.id == channel_id) {
            _ if unattachable.is_some() => {
                Outcome { delivered: false, code: None, latency_ms: 0, error: unattachable, permanent: true }
            }
            Some(c) if c.enabled => {
                send::send(&self.http, self.ledger(), c, &message, now / SECOND_US, self.settings.allow_private).await
            }
            // Turned off for a while: kept, and tried again later.
            Some(_) => Outcome {
                delivered: false,
                code: None,
                latency_ms: 0,
                error: Some("the channel is turned off".into()),
                permanent: false,
            },
            None => Outcome {
                delivered: false,
                code: None,
                latency_ms: 0,
                error: Some("the channel was removed from the notifications policy".into()),
                permanent: true,
            },
        };
        let give_up = !outcome.delivered && (now - created_at >= self.settings.give_up_us || outcome.permanent);
        let status = if outcome.delivered {
            Status::Delivered
        } else if give_up {
            Status::Dead
        } else {
            Status::Failed
        };
        // A failure is recorded in the ledger before it is logged and the
        // entry moves on.
        if status != Status::Delivered {
            let (action, severity) = match status {
                Status::Dead => ("custos.notification.dead", Severity::Error),
                _ => ("custos.notification.failed", Severity::Warning),
            };
            let event = OwnEvent::by_custos(OwnAction::NotificationStep(action), "notifier", Channel::System)
                .outcome(EventOutcome::Failure)
                .severity(severity)
                .reason(outcome.error.clone())
                .resource("notification_channel", Some(channel_id.clone()))
                .details(json!({
                    "message": id, "alert": alert_id, "rule": rule_id, "channel_type": channel_type,
                    "attempt": attempt, "response_code": outcome.code, "latency_ms": outcome.latency_ms,
                }));
            self.alerts.events().record_own(event).await?;
        }
        let at = self.ledger().now_us();
        self.log_attempt(
            &id,
            alert_id.as_deref(),
            rule_id.as_deref(),
            &channel_id,
            &channel_type,
            attempt,
            at,
            status,
            &outcome,
        )
        .await?;
        let (sql, vals): (&str, Vec<DbValue>) = match status {
            Status::Delivered => (
                "UPDATE notification_outbox SET status = 'delivered', attempts = ?, delivered_at = ?, last_error = NULL \
                 WHERE id = ? AND status = 'pending'",
                vec![i64::from(attempt).into(), at.into(), id.clone().into()],
            ),
            Status::Failed => (
                "UPDATE notification_outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ? AND status = 'pending'",
                vec![
                    i64::from(attempt).into(),
                    // The last try falls on the give-up time itself.
                    (at + backoff_us(self.settings.retry_base_us, attempt))
                        .min(created_at + self.settings.give_up_us)
                        .into(),
                    outcome.error.clone().into(),
                    id.clone().into(),
                ],
            ),
            Status::Dead => (
                "UPDATE notification_outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ? AND status = 'pending'",
                vec![i64::from(attempt).into(), outcome.error.clone().into(), id.clone().into()],
            ),
        };
        self.conn().execute_raw(stmt_for(self.b(), sql, vals)).await?;
        Ok(status)
    }

    /// The file a message carries (`{"report", "file", "name",
    /// "sha256"}`: a report's PDF, read when sent, never copied into the
    /// outbox), or why it cannot be sent: the report was deleted, or no
    /// longer matches the digest the message announces.
    async fn attachment(&self, spec: &Value) -> Result<Result<Option<send::Attachment>, String>, AlertsError> {
        let (Some(report), Some(name), Some(sha)) =
            (spec["report"].as_str(), spec["name"].as_str(), spec["sha256"].as_str())
        else {
            return Ok(Ok(None));
        };
        let row = self
            .conn()
            .query_one_raw(stmt_for(self.b(), "SELECT pdf FROM reports WHERE id = ?", vec![report.into()]))
            .await?;
        let Some(bytes) = row.map(|r| r.try_get::<Option<Vec<u8>>>("", "pdf")).transpose()?.flatten() else {
            return Ok(Err(format!("report {report} was deleted (its schedule's keep) before it could be sent")));
        };
        use sha2::Digest as _;
        if hex::encode(sha2::Sha256::digest(&bytes)) != sha {
            return Ok(Err(format!("report {report}'s PDF no longer matches its digest; not sent")));
        }
        Ok(Ok(Some(send::Attachment { name: name.to_owned(), content_type: "application/pdf".into(), bytes })))
    }

    #[allow(clippy::too_many_arguments)]
    async fn log_attempt(
        &self,
        outbox: &str,
        alert: Option<&str>,
        rule: Option<&str>,
        channel: &str,
        channel_type: &str,
        attempt: u32,
        at: i64,
        status: Status,
        o: &Outcome,
    ) -> Result<(), DbErr> {
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "INSERT INTO notification_attempts (outbox_id, alert_id, rule_id, channel_id, channel_type, attempt, at, \
                 status, response_code, latency_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    outbox.into(),
                    alert.map(str::to_owned).into(),
                    rule.map(str::to_owned).into(),
                    channel.into(),
                    channel_type.into(),
                    i64::from(attempt).into(),
                    at.into(),
                    status.word().into(),
                    o.code.map(i64::from).into(),
                    (o.latency_ms as i64).into(),
                    o.error.clone().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Sends a test message over a channel of the policy in force, now, and
    /// answers how it went; logged like any attempt and recorded in the
    /// ledger (`custos.notification.tested`).
    pub async fn test_channel(&self, by: &Requester, channel_id: &str) -> Result<NotificationAttempt, AlertsError> {
        let (version, doc) = self.doc().await?;
        let c = doc.channels.iter().find(|c| c.id == channel_id).ok_or_else(|| {
            AlertsError::NotFound(format!("no channel `{channel_id}` in the notifications policy in force"))
        })?;
        let now = self.ledger().now_us();
        let id = Uuid::now_v7().to_string();
        let key = format!("test:{id}");
        let text = format!(
            "A test of the channel {} ({}) sent from Custos by {}. No alert is open.",
            c.name,
            c.kind,
            by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone())
        );
        let m = Message {
            subject: format!("[Custos] Test of {}", c.name),
            text: text.clone(),
            json: json!({"type": "custos.test", "idempotency_key": key, "text": text}),
            idempotency_key: key.clone(),
            to: Vec::new(),
            attachment: None,
        };
        let o = send::send(&self.http, self.ledger(), c, &m, now / SECOND_US, self.settings.allow_private).await;
        let status = if o.delivered { Status::Delivered } else { Status::Dead };
        let payload = json!({"subject": m.subject, "text": m.text, "json": m.json});
        self.conn()
            .execute_raw(stmt_for(
                self.b(),
                "INSERT INTO notification_outbox (id, idempotency_key, channel_id, channel_type, channels_version, payload, \
                 status, attempts, next_at, created_at, delivered_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                vec![
                    id.clone().into(),
                    key.into(),
                    c.id.clone().into(),
                    c.kind.clone().into(),
                    (version as i64).into(),
                    payload.to_string().into(),
                    status.outbox_word().into(),
                    now.into(),
                    now.into(),
                    o.delivered.then_some(now).into(),
                    o.error.clone().into(),
                ],
            ))
            .await?;
        let at = self.ledger().now_us();
        self.log_attempt(&id, None, None, &c.id, &c.kind, 1, at, status, &o).await?;
        let event =
            OwnEvent::new(OwnAction::NotificationStep("custos.notification.tested"), by.actor.clone(), by.channel)
                .request(by.request_id.clone())
                .outcome(if o.delivered { EventOutcome::Success } else { EventOutcome::Failure })
                .reason(o.error.clone())
                .resource("notification_channel", Some(c.id.clone()))
                .details(json!({
                    "message": id, "channel_type": c.kind, "response_code": o.code, "latency_ms": o.latency_ms,
                }));
        self.alerts.events().record_own(event).await?;
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.b(),
                "SELECT * FROM notification_attempts WHERE outbox_id = ?",
                vec![id.into()],
            ))
            .await?
            .ok_or_else(|| AlertsError::NotFound("the test's log entry".into()))?;
        Ok(attempt_of(&row)?)
    }

    /// The log of delivery attempts, newest first.
    pub async fn log(&self, q: &LogQuery) -> Result<NotificationLog, AlertsError> {
        let limit = q.limit.clamp(1, 500);
        let mut sql = String::from("SELECT * FROM notification_attempts WHERE 1 = 1");
        let mut vals: Vec<DbValue> = Vec::new();
        let mut list = |col: &str, items: &[String]| {
            if !items.is_empty() {
                sql.push_str(&format!(" AND {col} IN ({})", vec!["?"; items.len()].join(", ")));
                vals.extend(items.iter().cloned().map(DbValue::from));
            }
        };
        list("channel_id", &q.channels);
        list("status", &q.statuses);
        if let Some(r) = &q.rule {
            list("rule_id", std::slice::from_ref(r));
        }
        if let Some(a) = &q.alert {
            list("alert_id", std::slice::from_ref(a));
        }
        if let Some(f) = q.from_us {
            sql.push_str(" AND at >= ?");
            vals.push(f.into());
        }
        if let Some(t) = q.to_us {
            sql.push_str(" AND at < ?");
            vals.push(t.into());
        }
        if let Some(c) = &q.cursor {
            let before = parse_cursor(c).ok_or_else(|| invalid("cursor", "not a cursor this API returned"))?;
            sql.push_str(" AND id < ?");
            vals.push(before.into());
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let rows = self.conn().query_all_raw(stmt_for(self.b(), &sql, vals)).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            items.push(attempt_of(r)?);
        }
        let next_cursor = if items.len() as u64 > limit {
            items.truncate(limit as usize);
            items.last().map(|a| cursor_of(a.id as i64))
        } else {
            None
        };
        let counts = self
            .conn()
            .query_all_raw(stmt_for(
                self.b(),
                "SELECT status, COUNT(*) AS n FROM notification_outbox WHERE status IN ('pending', 'dead') \
                 AND alert_id IS NOT NULL GROUP BY status",
                vec![],
            ))
            .await?;
        let mut pending = 0;
        let mut dead = 0;
        for r in counts {
            let n = r.try_get::<i64>("", "n")?.max(0) as u64;
            match r.try_get::<String>("", "status")?.as_str() {
                "pending" => pending = n,
                _ => dead = n,
            }
        }
        Ok(NotificationLog { items, next_cursor, pending, dead })
    }
}

fn attempt_of(r: &QueryResult) -> Result<NotificationAttempt, DbErr> {
    Ok(NotificationAttempt {
        id: r.try_get::<i64>("", "id")?.max(0) as u64,
        at: rfc3339(r.try_get("", "at")?),
        message_id: r.try_get("", "outbox_id")?,
        alert_id: r.try_get("", "alert_id")?,
        rule_id: r.try_get("", "rule_id")?,
        channel_id: r.try_get("", "channel_id")?,
        channel_type: r.try_get("", "channel_type")?,
        attempt: r.try_get::<i64>("", "attempt")?.clamp(0, i64::from(u32::MAX)) as u32,
        status: r.try_get("", "status")?,
        response_code: r.try_get::<Option<i64>>("", "response_code")?.and_then(|c| u16::try_from(c).ok()),
        latency_ms: r.try_get::<i64>("", "latency_ms")?.max(0) as u64,
        error: r.try_get("", "error")?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Delivered,
    Failed,
    Dead,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Dead => "dead",
        }
    }

    fn outbox_word(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            _ => "dead",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_six_hours() {
        let s = 1_000_000;
        assert_eq!(super::backoff_us(10 * s, 1), 10 * s);
        assert_eq!(super::backoff_us(10 * s, 2), 20 * s);
        assert_eq!(super::backoff_us(10 * s, 5), 160 * s);
        assert_eq!(super::backoff_us(10 * s, 40), 6 * 3600 * s);
    }
}

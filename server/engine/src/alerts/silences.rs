//! Silences: for a while, alerts of a rule (and of some group values) are
//! still opened and shown, but not sent. A silence has a reason, an author
//! and an end; making one and ending it early are ledger events
//! (`custos.alert.silenced`, `custos.alert.unsilenced`), and an alert it
//! kept from being sent names it (`silenced_by`).

use std::collections::BTreeMap;

use custos_model::{Alert, AlertSilence};
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult};
use serde_json::json;
use uuid::Uuid;

use super::store::{Alerts, AlertsError};
use crate::events::own::{OwnAction, OwnEvent, Requester};
use crate::events::validate::FieldError;
use crate::storage::stmt_for;
use crate::time::{HOUR_US, rfc3339};

/// The longest silence (30 days).
pub const MAX_HOURS: u32 = 720;
/// Most silences in force at once.
const MAX_ACTIVE: u64 = 200;

fn invalid(path: &str, reason: &str) -> AlertsError {
    AlertsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// A silence to make.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// The rule it silences (none: every rule).
    pub rule: Option<String>,
    /// Group values an alert must have (all of them), e.g. `{"actor": "ada"}`.
    pub group: BTreeMap<String, String>,
    /// How long, from now.
    pub hours: u32,
    /// Why (required).
    pub reason: String,
}

/// Whether `s` silences `alert` (its start and end aside).
pub fn covers(s: &AlertSilence, alert: &Alert) -> bool {
    s.rule.as_deref().is_none_or(|r| r == alert.rule_id) && s.group.iter().all(|(k, v)| alert.group.get(k) == Some(v))
}

fn silence_of(r: &QueryResult) -> Result<AlertSilence, DbErr> {
    let ended: Option<i64> = r.try_get("", "ended_at")?;
    Ok(AlertSilence {
        id: r.try_get("", "id")?,
        rule: r.try_get("", "rule_id")?,
        group: serde_json::from_str(&r.try_get::<String>("", "group_key")?).unwrap_or_default(),
        starts_at: rfc3339(r.try_get("", "starts_at")?),
        ends_at: rfc3339(ended.unwrap_or(r.try_get("", "ends_at")?)),
        ended_early: ended.is_some(),
        reason: r.try_get("", "reason")?,
        author: r.try_get("", "author")?,
        author_name: r.try_get("", "author_name")?,
        seq: r.try_get::<i64>("", "created_seq")?.max(0) as u64,
    })
}

impl Alerts {
    fn db(&self) -> (&sea_orm::DatabaseConnection, sea_orm::DbBackend) {
        let db = self.events().ledger().db();
        (db.conn(), db.backend())
    }

    /// Silences in force now, newest first.
    pub async fn active_silences(&self) -> Result<Vec<AlertSilence>, AlertsError> {
        let now = self.events().ledger().now_us();
        let (conn, b) = self.db();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT * FROM alert_silences WHERE starts_at <= ? AND ends_at > ? AND ended_at IS NULL \
                 ORDER BY starts_at DESC LIMIT 500",
                vec![now.into(), now.into()],
            ))
            .await?;
        Ok(rows.iter().map(silence_of).collect::<Result<_, _>>()?)
    }

    /// The silences in force, then the last 50 that ended.
    pub async fn silences(&self) -> Result<Vec<AlertSilence>, AlertsError> {
        let now = self.events().ledger().now_us();
        let (conn, b) = self.db();
        let mut out = self.active_silences().await?;
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT * FROM alert_silences WHERE ends_at <= ? OR ended_at IS NOT NULL \
                 ORDER BY COALESCE(ended_at, ends_at) DESC LIMIT 50",
                vec![now.into()],
            ))
            .await?;
        for r in &rows {
            out.push(silence_of(r)?);
        }
        Ok(out)
    }

    /// Makes a silence, recorded first.
    pub async fn silence(&self, by: &Requester, s: NewSilence) -> Result<AlertSilence, AlertsError> {
        let reason = s.reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(invalid("reason", "required, at most 1,000 characters: why may these alerts go unsent?"));
        }
        if !(1..=MAX_HOURS).contains(&s.hours) {
            return Err(invalid("hours", "1 to 720 (30 days)"));
        }
        if s.rule.is_none() && s.group.is_empty() {
            return Err(invalid("rule", "name a rule or group values: a silence of everything is not allowed"));
        }
        if let Some(r) = &s.rule
            && (r.is_empty() || r.len() > 64)
        {
            return Err(invalid("rule", "a rule id"));
        }
        if s.group.len() > 5 || s.group.iter().any(|(k, v)| k.len() > 100 || v.chars().count() > 200) {
            return Err(invalid("group", "at most 5 fields, values of at most 200 characters"));
        }
        let (conn, b) = self.db();
        let now = self.events().ledger().now_us();
        let active = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT COUNT(*) AS n FROM alert_silences WHERE ends_at > ? AND ended_at IS NULL",
                vec![now.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if active as u64 >= MAX_ACTIVE {
            return Err(AlertsError::Conflict(format!("{MAX_ACTIVE} silences are in force: end some first")));
        }
        let reason = self.events().mask_free_text(reason);
        let id = Uuid::now_v7().to_string();
        let ends = now + i64::from(s.hours) * HOUR_US;
        let event = OwnEvent::new(OwnAction::AlertStep("custos.alert.silenced"), by.actor.clone(), by.channel)
            .request(by.request_id.clone())
            .resource("alert_silence", Some(id.clone()))
            .details(json!({
                "rule": s.rule, "group": s.group, "from": rfc3339(now), "until": rfc3339(ends), "reason": reason,
            }));
        let receipt = self.events().record_own(event).await?;
        conn.execute_raw(stmt_for(
            b,
            "INSERT INTO alert_silences (id, rule_id, group_key, starts_at, ends_at, reason, author, author_name, \
             created_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.clone().into(),
                s.rule.clone().into(),
                serde_json::to_string(&s.group).unwrap_or_default().into(),
                now.into(),
                ends.into(),
                reason.into(),
                by.owner.clone().into(),
                by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone()).into(),
                (receipt.seq as i64).into(),
            ],
        ))
        .await?;
        self.silence_by_id(&id).await
    }

    async fn silence_by_id(&self, id: &str) -> Result<AlertSilence, AlertsError> {
        let (conn, b) = self.db();
        let row = conn.query_one_raw(stmt_for(b, "SELECT * FROM alert_silences WHERE id = ?", vec![id.into()])).await?;
        row.map(|r| silence_of(&r)).transpose()?.ok_or_else(|| AlertsError::NotFound(format!("no silence {id}")))
    }

    /// Ends a silence now, recorded first.
    pub async fn end_silence(&self, by: &Requester, id: &str) -> Result<AlertSilence, AlertsError> {
        if Uuid::parse_str(id).is_err() {
            return Err(AlertsError::NotFound(format!("no silence {id}")));
        }
        let s = self.silence_by_id(id).await?;
        let now = self.events().ledger().now_us();
        if s.ended_early || crate::time::parse_rfc3339(&s.ends_at).is_some_and(|t| t <= now) {
            return Err(AlertsError::Conflict("the silence has ended already".into()));
        }
        let event = OwnEvent::new(OwnAction::AlertStep("custos.alert.unsilenced"), by.actor.clone(), by.channel)
            .request(by.request_id.clone())
            .resource("alert_silence", Some(id.to_owned()))
            .details(json!({ "rule": s.rule, "group": s.group, "silenced": s.seq }));
        self.events().record_own(event).await?;
        let (conn, b) = self.db();
        conn.execute_raw(stmt_for(
            b,
            "UPDATE alert_silences SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
            vec![now.into(), id.into()],
        ))
        .await?;
        self.silence_by_id(id).await
    }
}

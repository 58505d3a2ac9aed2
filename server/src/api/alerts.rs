//! `/api/alerts`: the alerts the rules opened, and acknowledging,
//! commenting on and resolving them (each step a ledger event).
//!
//! Reading needs `audit:read` (an alert names who and what its events
//! name); acting on one needs `alert:manage`.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use custos_engine::alerts::store::{AlertQuery, AlertsError, Step};
use custos_model::{Alert, AlertPage, AlertSilence, AlertStatus, Channel, ErrorBody, ErrorCode};
use serde::Deserialize;

use super::{ApiError, Ctx};
use crate::http::AppState;

impl From<AlertsError> for ApiError {
    fn from(e: AlertsError) -> ApiError {
        match e {
            AlertsError::NotFound(m) => ApiError::not_found(m),
            AlertsError::Conflict(m) => ApiError::new(ErrorCode::Conflict, format!("{m}; nothing was changed")),
            AlertsError::Invalid(fe) => ApiError::fields(vec![fe]),
            AlertsError::Events(e) => e.into(),
        }
    }
}

fn list_query(pairs: Vec<(String, String)>) -> Result<AlertQuery, ApiError> {
    let mut q = AlertQuery { limit: 50, ..Default::default() };
    let time = |k: &str, v: &str| {
        custos_engine::time::parse_rfc3339(v)
            .ok_or_else(|| ApiError::field(k, format!("`{v}` is not a time in RFC 3339 (2027-01-15T08:00:00Z)")))
    };
    for (k, v) in pairs {
        let values = || v.split(',').map(str::trim).filter(|s| !s.is_empty());
        match k.as_str() {
            "status" => {
                for s in values() {
                    q.status.push(
                        AlertStatus::parse(s).ok_or_else(|| {
                            ApiError::field("status", format!("`{s}`: open, acknowledged or resolved"))
                        })?,
                    );
                }
            }
            "severity" => {
                for s in values() {
                    if !custos_model::SEVERITIES.contains(&s) {
                        return Err(ApiError::field(
                            "severity",
                            format!("`{s}`: one of {}", custos_model::SEVERITIES.join(", ")),
                        ));
                    }
                    q.severities.push(s.to_owned());
                }
            }
            "rule" => q.rule = Some(v),
            "from" => q.from_us = Some(time("from", &v)?),
            "to" => q.to_us = Some(time("to", &v)?),
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| ApiError::field("limit", "a number from 1 to 200"))?
            }
            "cursor" => q.cursor = Some(v),
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown parameter (status, severity, rule, from, to, limit, cursor)",
                ));
            }
        }
    }
    Ok(q)
}

/// Alerts, newest first.
///
/// Filters: `status` (open, acknowledged, resolved; repeated or
/// comma-separated), `severity`, `rule` (a rule id), `from`/`to` (when it
/// opened, RFC 3339), `limit` (1 to 200, default 50), `cursor` (from the
/// previous page). `counts` gives how many alerts are in each status.
#[utoipa::path(
    get, path = "/api/alerts", tag = "alerts",
    params(
        ("status" = Option<Vec<String>>, Query, description = "open, acknowledged, resolved"),
        ("severity" = Option<Vec<String>>, Query, description = "The rule's severity"),
        ("rule" = Option<String>, Query, description = "A rule id"),
        ("from" = Option<String>, Query, description = "Opened at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Opened before (RFC 3339)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 200"),
        ("cursor" = Option<String>, Query, description = "From the previous page"),
    ),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "A filter is wrong, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<axum::Json<AlertPage>, ApiError> {
    let q = list_query(super::audit::query_pairs(q.as_deref())?)?;
    Ok(axum::Json(s.alerts.list(&q).await?))
}

/// Live changes to the alerts, as server-sent events.
///
/// The stream starts with an event `ready`; then an event `changed` each
/// time alerts open, count a repeat, take a step or are silenced. Both
/// carry `{"version": "…"}`, which differs whenever what `GET /api/alerts`
/// shows may differ: they say that something changed, not what, so read
/// `GET /api/alerts` again (and after each `ready`: a reconnected stream
/// does not repeat what it missed). Changes made by this replica are sent
/// at once, other replicas' within about two seconds; at most one
/// `changed` a second. A comment line every 15 seconds keeps proxies from
/// closing it; the caller is checked again every few seconds, and a stream
/// whose session ended or whose key was revoked ends with an event `end`.
#[utoipa::path(
    get, path = "/api/alerts/live", tag = "alerts",
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 400, description = "It takes no parameter", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn live(
    State(s): State<AppState>,
    ctx: Ctx,
    credential: Option<axum::Extension<crate::auth::Credential>>,
    RawQuery(q): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    use super::sse::{Upkeep, channel, event};
    if let Some((k, _)) = super::audit::query_pairs(q.as_deref())?.first() {
        return Err(ApiError::field(k, "unknown parameter: the alerts' live stream takes none"));
    }
    let slot = s.busy.start(crate::limits::Work::AlertStream, &ctx.principal())?;
    let credential = credential.map(|c| c.0).unwrap_or_default();
    let mut changes = s.alerts.subscribe_changes().await?;
    let version = |changes: &mut tokio::sync::watch::Receiver<_>| {
        let d: custos_engine::alerts::store::AlertsDigest = *changes.borrow_and_update();
        format!("{{\"version\":\"{}\"}}", d.version())
    };
    let (tx, response) = channel(4);
    tokio::spawn(async move {
        let _slot = slot;
        let mut upkeep = Upkeep::new(s.clone(), credential, custos_engine::identity::permission::Permission::AuditRead);
        if tx.send(Ok(event("ready", &version(&mut changes)))).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return; // the service is gone
                    }
                    if tx.send(Ok(event("changed", &version(&mut changes)))).await.is_err() {
                        return;
                    }
                    upkeep.sent();
                    // At most one a second: what changes meanwhile is
                    // sent as one.
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                chore = upkeep.due() => {
                    if !upkeep.run(chore, &tx).await {
                        return;
                    }
                }
            }
        }
    });
    Ok(response)
}

/// One alert, with its history.
#[utoipa::path(
    get, path = "/api/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn read(State(s): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<Alert>, ApiError> {
    Ok(axum::Json(s.alerts.get(&id).await?))
}

/// What someone says with a step.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// At most 2,000 characters; required to comment.
    #[serde(default)]
    pub comment: String,
}

async fn step(
    s: &AppState,
    ctx: &Ctx,
    id: &str,
    step: Step,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Alert>, ApiError> {
    let b: StepBody = super::read_json(body, headers, 16 * 1024, Some(StepBody::default())).await?;
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.alerts.step(id, step, &by, &b.comment).await?))
}

/// Acknowledges an open alert: someone is on it.
#[utoipa::path(
    post, path = "/api/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    request_body(content = Option<StepBody>, description = "Optional (an empty body takes the defaults)", content_type = "application/json"),
    responses(
        (status = 200, description = "The alert after the step", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "It is not open any more", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn acknowledge(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Alert>, ApiError> {
    step(&s, &ctx, &id, Step::Acknowledge, &headers, body).await
}

/// Resolves an open or acknowledged alert. A later firing of its rule and
/// group opens a new one.
#[utoipa::path(
    post, path = "/api/alerts/{id}/resolve", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    request_body(content = Option<StepBody>, description = "Optional (an empty body takes the defaults)", content_type = "application/json"),
    responses(
        (status = 200, description = "The alert after the step", body = Alert),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "It is resolved already", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn resolve(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Alert>, ApiError> {
    step(&s, &ctx, &id, Step::Resolve, &headers, body).await
}

/// Comments on an alert (any status).
#[utoipa::path(
    post, path = "/api/alerts/{id}/comment", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    request_body(content = StepBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The alert after the comment", body = Alert),
        (status = 400, description = "No comment, or too long", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn comment(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Alert>, ApiError> {
    step(&s, &ctx, &id, Step::Comment, &headers, body).await
}

/// The silences in force, then the last 50 that ended.
#[utoipa::path(
    get, path = "/api/alerts/silences", tag = "alerts",
    responses((status = 200, description = "Silences", body = Vec<AlertSilence>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn silences(State(s): State<AppState>) -> Result<axum::Json<Vec<AlertSilence>>, ApiError> {
    Ok(axum::Json(s.alerts.silences().await?))
}

/// A silence to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// The rule it silences (leave out: any rule, then `group` is needed).
    #[serde(default)]
    pub rule: Option<String>,
    /// Group values an alert must have, all of them (e.g. `{"actor": "ada"}`).
    #[serde(default)]
    pub group: std::collections::BTreeMap<String, String>,
    /// How long, from now: 1 to 720 hours.
    pub hours: u32,
    /// Why (required; recorded).
    pub reason: String,
}

/// Silences alerts for a while: the ones it covers are still opened and
/// shown, not sent. Recorded as `custos.alert.silenced`.
#[utoipa::path(
    post, path = "/api/alerts/silences", tag = "alerts",
    request_body(content = SilenceBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The silence, in force", body = AlertSilence),
        (status = 400, description = "A field is wrong, named", body = ErrorBody),
        (status = 409, description = "Too many silences in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn silence(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(axum::http::StatusCode, axum::Json<AlertSilence>), ApiError> {
    let b: SilenceBody = super::read_json(body, &headers, 16 * 1024, None).await?;
    let by = ctx.requester(Channel::Api);
    let made = s
        .alerts
        .silence(
            &by,
            custos_engine::alerts::silences::NewSilence {
                rule: b.rule,
                group: b.group,
                hours: b.hours,
                reason: b.reason,
            },
        )
        .await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(made)))
}

/// Ends a silence now. Recorded as `custos.alert.unsilenced`.
#[utoipa::path(
    post, path = "/api/alerts/silences/{id}/end", tag = "alerts",
    params(("id" = String, Path, description = "The silence's id")),
    responses(
        (status = 200, description = "The silence, ended", body = AlertSilence),
        (status = 404, description = "No such silence", body = ErrorBody),
        (status = 409, description = "It has ended already", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn end_silence(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<axum::Json<AlertSilence>, ApiError> {
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.alerts.end_silence(&by, &id).await?))
}

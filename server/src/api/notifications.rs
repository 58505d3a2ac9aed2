//! `/api/notifications`: the log of every delivery attempt, and a
//! channel's test. The channels, routes and templates themselves are the
//! `notifications` policy (`/api/policies/notifications/…`): versioned,
//! tried and reviewed like any policy. Both need `notification:manage`.

use axum::extract::{Path, RawQuery, State};
use custos_engine::notify::LogQuery;
use custos_model::{Channel, ErrorBody, NotificationAttempt, NotificationLog};

use super::{ApiError, Ctx};
use crate::http::AppState;

fn log_query(pairs: Vec<(String, String)>) -> Result<LogQuery, ApiError> {
    let mut q = LogQuery { limit: 100, ..Default::default() };
    let time = |k: &str, v: &str| {
        custos_engine::time::parse_rfc3339(v)
            .ok_or_else(|| ApiError::field(k, format!("`{v}` is not a time in RFC 3339 (2027-01-15T08:00:00Z)")))
    };
    for (k, v) in pairs {
        let values = || v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        match k.as_str() {
            "channel" => {
                q.channels.extend(values());
                if q.channels.len() > 50 {
                    return Err(ApiError::field("channel", "at most 50 channels"));
                }
            }
            "status" => {
                for s in values() {
                    if !["delivered", "failed", "dead"].contains(&s.as_str()) {
                        return Err(ApiError::field("status", format!("`{s}`: delivered, failed or dead")));
                    }
                    q.statuses.push(s);
                }
            }
            "rule" => q.rule = Some(v),
            "alert" => q.alert = Some(v),
            "from" => q.from_us = Some(time("from", &v)?),
            "to" => q.to_us = Some(time("to", &v)?),
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| ApiError::field("limit", "a number from 1 to 500"))?
            }
            "cursor" => q.cursor = Some(v),
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown parameter (channel, status, rule, alert, from, to, limit, cursor)",
                ));
            }
        }
    }
    Ok(q)
}

/// Every delivery attempt, newest first.
///
/// Each try to deliver a message over a channel: when, the channel, the
/// status (`delivered`, `failed`: to be retried, `dead`: given up), the
/// response code, the latency and the error. Filters: `channel`, `status`
/// (repeated or comma-separated), `rule`, `alert`, `from`/`to` (RFC 3339),
/// `limit` (1 to 500, default 100), `cursor`. `pending` counts the messages
/// waiting for a (re)try, `dead` those given up.
#[utoipa::path(
    get, path = "/api/notifications/logs", tag = "notifications",
    params(
        ("channel" = Option<Vec<String>>, Query, description = "Channel ids"),
        ("status" = Option<Vec<String>>, Query, description = "delivered, failed, dead"),
        ("rule" = Option<String>, Query, description = "A rule id"),
        ("alert" = Option<String>, Query, description = "An alert id"),
        ("from" = Option<String>, Query, description = "From (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Until (RFC 3339)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 500"),
        ("cursor" = Option<String>, Query, description = "From the previous page"),
    ),
    responses(
        (status = 200, description = "A page of attempts", body = NotificationLog),
        (status = 400, description = "A filter is wrong, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn logs(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<axum::Json<NotificationLog>, ApiError> {
    let q = log_query(super::audit::query_pairs(q.as_deref())?)?;
    Ok(axum::Json(s.notifier.log(&q).await?))
}

/// Sends a test message over a channel of the notifications policy in
/// force, now; answers the attempt (delivered or not, the response code,
/// the latency, the error). Logged and recorded in the ledger
/// (`custos.notification.tested`).
#[utoipa::path(
    post, path = "/api/notifications/channels/{id}/test", tag = "notifications",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "How the test went (see `status`)", body = NotificationAttempt),
        (status = 404, description = "No such channel in the policy in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn test(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<axum::Json<NotificationAttempt>, ApiError> {
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.notifier.test_channel(&by, &id).await?))
}

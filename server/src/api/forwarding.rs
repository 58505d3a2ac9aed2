//! `/api/forwarding`: the SIEM destinations' health, and what people do to
//! one (pause, resume, replay, test), and a format preview. The
//! destinations themselves are the `forwarding` policy
//! (`/api/policies/forwarding/…`): versioned, tried and reviewed like any
//! policy. Everything here needs `siem:manage`; the preview shows a real
//! (masked) event, so it needs `audit:read` too.

use axum::extract::{Path, State};
use custos_engine::forward::dest::DestinationDef;
use custos_engine::identity::permission::Permission;
use custos_model::{Channel, ErrorBody, ForwardPreview, ForwardTest, ForwardingStatus, ReplayRequest};
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx};
use crate::http::AppState;

/// Every destination of the forwarding policy in force, with its health:
/// state (`ok`, `failing`, `paused`, `off`, `starting`), cursor, lag in
/// ledger entries and seconds, events delivered, the last success and
/// error, the next try, and the replica forwarding it.
#[utoipa::path(
    get, path = "/api/forwarding/destinations", tag = "forwarding",
    responses((status = 200, description = "The destinations and their health", body = ForwardingStatus)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(State(s): State<AppState>) -> Result<axum::Json<ForwardingStatus>, ApiError> {
    Ok(axum::Json(s.forwarder.status().await?))
}

/// Why a destination is paused or resumed (recorded).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why (recorded), at most 1,000 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

fn reason(r: Option<String>) -> Result<Option<String>, ApiError> {
    match r.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > 1000 => Err(ApiError::field("reason", "at most 1,000 characters")),
        r => Ok(r),
    }
}

/// Pauses a destination: nothing is sent until it is resumed, and nothing
/// is lost (it resumes at its cursor). Recorded (`custos.forward.paused`).
#[utoipa::path(
    post, path = "/api/forwarding/destinations/{id}/pause", tag = "forwarding",
    params(("id" = String, Path, description = "The destination's id")),
    request_body(content = Option<PauseRequest>, description = "Why (optional)", content_type = "application/json"),
    responses(
        (status = 204, description = "Paused"),
        (status = 404, description = "No such destination in the policy in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn pause(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::http::StatusCode, ApiError> {
    let body: PauseRequest = super::read_json(body, &headers, 8 * 1024, Some(PauseRequest::default())).await?;
    let why = reason(body.reason)?;
    s.forwarder.set_paused(&ctx.requester(Channel::Api), &id, true, why).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Resumes a paused destination at its cursor. Recorded
/// (`custos.forward.resumed`).
#[utoipa::path(
    post, path = "/api/forwarding/destinations/{id}/resume", tag = "forwarding",
    params(("id" = String, Path, description = "The destination's id")),
    request_body(content = Option<PauseRequest>, description = "Why (optional)", content_type = "application/json"),
    responses(
        (status = 204, description = "Resumed"),
        (status = 404, description = "No such destination in the policy in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn resume(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::http::StatusCode, ApiError> {
    let body: PauseRequest = super::read_json(body, &headers, 8 * 1024, Some(PauseRequest::default())).await?;
    let why = reason(body.reason)?;
    s.forwarder.set_paused(&ctx.requester(Channel::Api), &id, false, why).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Where a replay begins.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayStarted {
    /// The first ledger position sent again.
    pub from_seq: u64,
}

/// Sends a destination everything again from a ledger position or a time
/// (e.g. after the SIEM was restored from a backup), checkpoints included.
/// Recorded with its reason (`custos.forward.replayed`); the destination's
/// forwarder begins within a second. Receivers drop what they already hold
/// by the event id and seq.
#[utoipa::path(
    post, path = "/api/forwarding/destinations/{id}/replay", tag = "forwarding",
    params(("id" = String, Path, description = "The destination's id")),
    request_body = ReplayRequest,
    responses(
        (status = 202, description = "The replay is asked for", body = ReplayStarted),
        (status = 400, description = "No position or time, or one out of range, named", body = ErrorBody),
        (status = 404, description = "No such destination in the policy in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn replay(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(axum::http::StatusCode, axum::Json<ReplayStarted>), ApiError> {
    let r: ReplayRequest = super::read_json(body, &headers, 8 * 1024, None).await?;
    let from_seq =
        s.forwarder.replay(&ctx.requester(Channel::Api), &id, r.from_seq, r.from_time.as_deref(), &r.reason).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(ReplayStarted { from_seq })))
}

/// Records a test event (`custos.forward.tested`) and sends it to the
/// destination at once, in its format; answers how it went. The event is
/// also forwarded in order later, like every event.
#[utoipa::path(
    post, path = "/api/forwarding/destinations/{id}/test", tag = "forwarding",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "How the test went (see `delivered`)", body = ForwardTest),
        (status = 404, description = "No such destination in the policy in force", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn test(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<axum::Json<ForwardTest>, ApiError> {
    Ok(axum::Json(s.forwarder.test(&ctx.requester(Channel::Api), &id).await?))
}

/// A destination's format on the newest event its filter takes, as it
/// would be sent (the record, and the bytes on the wire). The destination
/// is given as in the forwarding policy (it need not be saved; secrets are
/// not needed). Needs `audit:read` too: it shows a real event, masked.
#[utoipa::path(
    post, path = "/api/forwarding/preview", tag = "forwarding",
    request_body(content = Object, description = "A destination, as in the forwarding policy"),
    responses(
        (status = 200, description = "The record and the wire form", body = ForwardPreview),
        (status = 400, description = "The destination is not valid, the field named", body = ErrorBody),
        (status = 403, description = "Needs audit:read", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn preview(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<ForwardPreview>, ApiError> {
    let d: serde_json::Value = super::read_json(body, &headers, 64 * 1024, None).await?;
    if !ctx.caller.allows(Permission::AuditRead) {
        return Err(ApiError::forbidden("the preview shows a real event: it needs audit:read"));
    }
    let doc = custos_engine::forward::dest::ForwardingDoc { destinations: vec![parse_destination(d)?] };
    doc.check(false).map_err(|e| {
        ApiError::field(
            &e.path.replacen("content.destinations[0].", "", 1).replacen("content.destinations[0]", "destination", 1),
            e.reason,
        )
    })?;
    let d = doc.destinations.into_iter().next().ok_or_else(|| ApiError::field("destination", "required"))?;
    Ok(axum::Json(s.forwarder.preview(&d).await?))
}

fn parse_destination(mut v: serde_json::Value) -> Result<DestinationDef, ApiError> {
    // Secrets are not needed to preview: dropped, so a form half filled in
    // still shows its format.
    if let Some(o) = v.as_object_mut() {
        for f in ["token", "secret", "client_key"] {
            if o.contains_key(f) {
                o.insert(f.into(), serde_json::json!({"sealed": "-"}));
            }
        }
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::field("destination", custos_engine::forward::dest::scrub(&e.to_string())))
}

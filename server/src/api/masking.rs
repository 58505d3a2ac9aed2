//! `/api/policies/masking`: the PII masking rules, their version history,
//! and a preview (text in, masked text out).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_model::{ApiError, MaskRule, MaskingPolicy};
use serde::{Deserialize, Serialize};

use super::{Ctx, events_error};
use crate::http::AppState;

/// The masking policy in force.
///
/// Version 0 is the built-in default set. Rules: one per detector (email,
/// phone, payment_card, iban, us_ssn, ip_address, secret_key), each with an
/// action (`redact`, `partial` keeping `keep_last` characters, or
/// `pseudonymize` with a keyed HMAC) and `keep_original` (keep the value in
/// the encrypted payload for holders of `audit:unmask`).
#[utoipa::path(
    get, path = "/api/policies/masking", tag = "masking",
    responses((status = 200, description = "The policy in force", body = MaskingPolicy)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn get_policy(State(s): State<AppState>) -> Response {
    match s.events.refresh_policy().await {
        Ok(()) => axum::Json(s.events.policy()).into_response(),
        Err(e) => events_error(e),
    }
}

/// A new version of the rules.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The complete rule list.
    pub rules: Vec<MaskRule>,
    /// The version this change is based on (the one you read): a change
    /// made meanwhile by someone else is not silently overwritten.
    pub based_on: u64,
    /// Why (kept in the history and the ledger).
    #[serde(default)]
    pub comment: String,
}

/// Replace the masking rules (a new version).
///
/// Applies to events ingested from now on; stored events keep the masking
/// they were sealed with. The change is recorded in the ledger
/// (`policy.masking.update`) before it takes effect.
#[utoipa::path(
    put, path = "/api/policies/masking", tag = "masking",
    request_body(content = PolicyUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "The new version", body = MaskingPolicy),
        (status = 400, description = "Invalid rules, or based_on is not the current version", body = ApiError),
        (status = 503, description = "The ledger cannot record the change; nothing changed", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn put_policy(State(s): State<AppState>, ctx: Ctx, headers: HeaderMap, body: axum::body::Body) -> Response {
    let update: PolicyUpdate = match super::read_json(body, &headers, 64 * 1024, None).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match s
        .events
        .set_policy(update.rules, update.based_on, &update.comment, &ctx.actor(), ctx.request_id.clone())
        .await
    {
        Ok(p) => axum::Json(p).into_response(),
        Err(e) => events_error(e),
    }
}

/// Every version, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyHistory {
    /// Versions, newest first; the last is version 0, the defaults.
    pub versions: Vec<MaskingPolicy>,
}

/// The history of the masking rules.
#[utoipa::path(
    get, path = "/api/policies/masking/history", tag = "masking",
    responses((status = 200, description = "All versions", body = PolicyHistory)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn history(State(s): State<AppState>) -> Response {
    match s.events.policy_history().await {
        Ok(versions) => axum::Json(PolicyHistory { versions }).into_response(),
        Err(e) => events_error(e),
    }
}

/// Text to mask.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The text (at most 64 KiB).
    pub text: String,
    /// Rules to try instead of the policy in force.
    #[serde(default)]
    pub rules: Option<Vec<MaskRule>>,
}

/// The masked text.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewResponse {
    /// What would be stored.
    pub masked: String,
}

/// Preview masking: text in, masked text out (nothing is stored).
#[utoipa::path(
    post, path = "/api/policies/masking/preview", tag = "masking",
    request_body(content = PreviewRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The masked text", body = PreviewResponse),
        (status = 400, description = "Bad body or rules", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn preview(State(s): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let req: PreviewRequest = match super::read_json(body, &headers, 80 * 1024, None).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if req.text.len() > 64 * 1024 {
        return super::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text_too_large",
            "text: at most 64 KiB",
            vec![custos_model::FieldProblem { path: "text".into(), reason: "at most 64 KiB".into() }],
        );
    }
    match s.events.preview(&req.text, req.rules) {
        Ok(masked) => axum::Json(PreviewResponse { masked }).into_response(),
        Err(e) => events_error(e),
    }
}

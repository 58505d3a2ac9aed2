//! `/api/policies/masking`: the PII masking rules, their version history,
//! and a preview (text in, masked text out).

use axum::extract::State;
use axum::http::HeaderMap;
use custos_model::{ErrorBody, ErrorCode, MaskRule, MaskingPolicy};
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx};
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
pub async fn get_policy(State(s): State<AppState>) -> Result<axum::Json<MaskingPolicy>, ApiError> {
    s.events.refresh_policy().await?;
    Ok(axum::Json(s.events.policy()))
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
        (status = 400, description = "Invalid rules, or based_on is not the current version", body = ErrorBody),
        (status = 503, description = "The ledger cannot record the change; nothing changed", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn put_policy(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<MaskingPolicy>, ApiError> {
    let update: PolicyUpdate = super::read_json(body, &headers, 64 * 1024, None).await?;
    let policy = s
        .events
        .set_policy(update.rules, update.based_on, &update.comment, &ctx.actor(), ctx.request_id.clone())
        .await?;
    Ok(axum::Json(policy))
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
pub async fn history(State(s): State<AppState>) -> Result<axum::Json<PolicyHistory>, ApiError> {
    Ok(axum::Json(PolicyHistory { versions: s.events.policy_history().await? }))
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
        (status = 400, description = "Bad body or rules", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn preview(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<PreviewResponse>, ApiError> {
    let req: PreviewRequest = super::read_json(body, &headers, 80 * 1024, None).await?;
    if req.text.len() > 64 * 1024 {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "text: at most 64 KiB")
            .with_fields(vec![custos_model::FieldProblem { path: "text".into(), reason: "at most 64 KiB".into() }]));
    }
    Ok(axum::Json(PreviewResponse { masked: s.events.preview(&req.text, req.rules)? }))
}

//! `/api/policies/masking/history` and `/preview`: the masking rules'
//! versions in their first shape, and a preview (text in, masked text
//! out). Reading the kind and changing it go through the policy store
//! (`GET /api/policies/masking`, `POST /api/policies/masking/proposals`).

use axum::extract::State;
use axum::http::HeaderMap;
use custos_model::{ErrorBody, ErrorCode, MaskRule, MaskingPolicy};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::http::AppState;

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

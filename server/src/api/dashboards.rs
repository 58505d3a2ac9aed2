//! The dashboards' data: analytics (from the rollups), compliance (checks
//! computed now), and the integrity page's verification history, keys, key
//! rotation and public key.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::events::saved::parse_range;
use custos_engine::time::DAY_US;
use custos_engine::time::parse_rfc3339;
use custos_model::Channel;
use custos_model::{Analytics, ComplianceReport, ErrorBody, EventView, KeyStatus};

use super::audit::query_pairs;
use super::{ApiError, Ctx};
use crate::http::AppState;

/// Analytics over a period.
///
/// Events over time by category and by outcome, top actions and actors,
/// failure and denial rates, sign-in figures, tools (invocations, outcomes,
/// latency p50/p95/p99 from a histogram with buckets 19% wide), MCP,
/// plugins and notifications; read from the rollups (never a scan). The
/// period is `range` (`15m`, `24h`, `7d`…, ending now) or `from`/`to` (RFC
/// 3339), default the last 24 hours, widened to whole hours; series are per
/// hour up to 7 days, per day beyond (at most 366 days).
#[utoipa::path(
    get, path = "/api/audit/analytics", tag = "dashboards",
    params(
        ("range" = Option<String>, Query, description = "e.g. 24h, 7d, 30d (ending now)"),
        ("from" = Option<String>, Query, description = "RFC 3339"),
        ("to" = Option<String>, Query, description = "RFC 3339, default now"),
    ),
    responses(
        (status = 200, description = "The figures", body = Analytics),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn analytics(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Result<axum::Json<Analytics>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let now = s.ledger.now_us();
    let (mut from, mut to, mut range) = (None, None, None);
    for (k, v) in &pairs {
        match k.as_str() {
            "from" | "to" => match parse_rfc3339(v.trim()) {
                Some(t) if k == "from" => from = Some(t),
                Some(t) => to = Some(t),
                None => return Err(ApiError::field(k, "must be an RFC 3339 date-time, e.g. 2026-11-26T14:03:00Z")),
            },
            "range" => match parse_range(v.trim()) {
                Some(r) => range = Some(r),
                None => return Err(ApiError::field("range", "must be a number and a unit m, h or d, e.g. 24h or 30d")),
            },
            other => return Err(ApiError::field(other, "unknown parameter; known: range, from, to")),
        }
    }
    if range.is_some() && (from.is_some() || to.is_some()) {
        return Err(ApiError::field("range", "give either range or from/to, not both"));
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - range.unwrap_or(DAY_US));
    Ok(axum::Json(s.events.analytics(from, to).await?))
}

/// Compliance status.
///
/// Checks computed now (the ledger verified within `verify_within_hours`,
/// signed checkpoints current, the database's append-only triggers, keys,
/// masking rules, what is being recorded; features not built yet say
/// `not_configured`), mapped to the logging controls of SOC 2, ISO/IEC
/// 27001/27017/27018/27701, NIST SP 800-53 AU, PCI DSS 4.0 requirement 10,
/// HIPAA, GDPR and SOX; each check links to its evidence.
#[utoipa::path(
    get, path = "/api/compliance", tag = "dashboards",
    params(("verify_within_hours" = Option<u64>, Query, description = "1..8760, default 24")),
    responses(
        (status = 200, description = "Checks and controls", body = ComplianceReport),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn compliance(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<ComplianceReport>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut hours = 24;
    for (k, v) in &pairs {
        match k.as_str() {
            "verify_within_hours" => match v.trim().parse::<u64>() {
                Ok(h) if (1..=8760).contains(&h) => hours = h,
                _ => return Err(ApiError::field(k, "must be a whole number of hours from 1 to 8760")),
            },
            other => return Err(ApiError::field(other, "unknown parameter; known: verify_within_hours")),
        }
    }
    Ok(axum::Json(s.events.compliance(hours).await?))
}

/// Past verifications, newest first.
///
/// Each verification (online, from this API or the integrity page) is a
/// ledger event `audit.verify`; its details hold the report (range, entries
/// checked, and the first failure with its seq and reason).
#[utoipa::path(
    get, path = "/api/audit/verifications", tag = "verification",
    params(("limit" = Option<u32>, Query, description = "1..100, default 20")),
    responses(
        (status = 200, description = "Verification events", body = Vec<EventView>),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn verifications(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Vec<EventView>>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut limit = 20;
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => match v.trim().parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => return Err(ApiError::field("limit", "must be a whole number from 1 to 100")),
            },
            other => return Err(ApiError::field(other, "unknown parameter; known: limit")),
        }
    }
    Ok(axum::Json(s.events.recent_by_action("audit.verify", limit).await?))
}

async fn key_status(s: &AppState) -> Result<KeyStatus, ApiError> {
    let keys = s.ledger.key_infos().await.map_err(|e| ApiError::internal("cannot read the keys", &e))?;
    let now = s.ledger.now_us();
    let current = keys.iter().find(|k| k.current);
    Ok(KeyStatus {
        public_key: s.ledger.verifier_key(),
        current_key_id: current.map_or(0, |k| k.key_id),
        current_key_age_days: current
            .and_then(|k| parse_rfc3339(&k.created_at))
            .map_or(0.0, |t| ((now - t) as f64 / DAY_US as f64 * 10.0).round() / 10.0),
        keys,
    })
}

/// Keys: the data key in use, its age, all keys (never a secret) and the
/// checkpoint signer's public key.
#[utoipa::path(
    get, path = "/api/keys", tag = "verification",
    responses((status = 200, description = "Key status", body = KeyStatus)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn keys(State(s): State<AppState>) -> Result<axum::Json<KeyStatus>, ApiError> {
    Ok(axum::Json(key_status(&s).await?))
}

/// Rotate the data key.
///
/// A new data key (wrapped by the KEK) seals new events from now on; old
/// keys stay to read older ones. Recorded in the ledger (`ledger.key.rotate`)
/// before the key is made: if it cannot be recorded, nothing changes.
#[utoipa::path(
    post, path = "/api/keys/rotate", tag = "verification",
    responses(
        (status = 200, description = "Rotated; the new key status", body = KeyStatus),
        (status = 403, description = "Needs the admin permission", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn rotate(State(s): State<AppState>, ctx: Ctx) -> Result<axum::Json<KeyStatus>, ApiError> {
    // Recorded first: no record, no new key.
    s.events.rotate_key(&ctx.actor(), Channel::Api, ctx.request_id.clone()).await?;
    Ok(axum::Json(key_status(&s).await?))
}

/// The checkpoint signer's public key (C2SP vkey), as a file:
/// `custos verify --public-key` and `custos verify-export --public-key` take it.
#[utoipa::path(
    get, path = "/api/audit/public-key", tag = "verification",
    responses((status = 200, description = "The verifier key", content_type = "text/plain")),
    security(("api_key" = []), ("session" = []))
)]
pub async fn public_key(State(s): State<AppState>) -> Response {
    let name = s.ledger.origin().replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-', "_");
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.vkey\"")),
        ],
        format!("{}\n", s.ledger.verifier_key()),
    )
        .into_response()
}

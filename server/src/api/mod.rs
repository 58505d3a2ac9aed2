//! The REST API under `/api`: ingest, search, read, verify, checkpoints,
//! statistics and the masking policy; the self-audit of every request; and
//! the OpenAPI document with its offline docs UI.
//!
//! Every error is JSON (`ApiError`): a stable code, a sentence, and for bad
//! input the field path and the reason of each problem.

// Helpers return a finished error response as their `Err`: it is built once,
// on the error path only, and returned straight to axum.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod dashboards;
pub mod docs;
pub mod explorer;
pub mod exports;
pub mod masking;
pub mod self_audit;
pub mod session;
pub mod verify_jobs;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use custos_engine::events::EventsError;
use custos_engine::events::validate::{BodyError, FieldError};
use custos_engine::identity::service::Caller;
use custos_model::{ApiError, FieldProblem};

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>, fields: Vec<FieldProblem>) -> Response {
    (status, axum::Json(ApiError { code: code.into(), message: message.into(), fields })).into_response()
}

/// 400 naming one field.
pub fn bad_field(path: &str, reason: impl Into<String>) -> Response {
    let reason = reason.into();
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("{path}: {reason}"),
        vec![FieldProblem { path: path.into(), reason }],
    )
}

fn problems(errors: Vec<FieldError>) -> Vec<FieldProblem> {
    errors.into_iter().map(|e| FieldProblem { path: e.path, reason: e.reason }).collect()
}

/// 400 with several field problems.
pub fn bad_fields(errors: Vec<FieldError>) -> Response {
    let n = errors.len();
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("{n} problem(s) with the request; nothing was changed"),
        problems(errors),
    )
}

/// Reads a JSON body of at most `limit` bytes into `T` (413 beyond it, 400
/// naming what is wrong otherwise). An empty body is `T::default()` when
/// `empty` is given.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
    empty: Option<T>,
) -> Result<T, Response> {
    let bytes = audit::read_body(body, headers, limit).await?;
    if let Some(default) = empty
        && bytes.iter().all(u8::is_ascii_whitespace)
    {
        return Ok(default);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad_field("body", e.to_string()))
}

/// The one mapping of an engine error to a response.
pub fn events_error(e: EventsError) -> Response {
    match e {
        EventsError::Body(BodyError::Malformed(fe)) => error(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("the body is not valid JSON: {}; nothing was stored", fe.reason),
            problems(vec![fe]),
        ),
        EventsError::Body(BodyError::Empty) => bad_field("body", "contains no event; nothing was stored"),
        EventsError::Body(BodyError::TooMany { max, got }) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!("{got} events in one request; at most {max}; nothing was stored"),
            vec![FieldProblem { path: "body".into(), reason: format!("at most {max} events per request") }],
        ),
        EventsError::Body(BodyError::Invalid(errors)) => {
            let n = errors.len();
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_events",
                format!("{n} problem(s) in the events; nothing was stored"),
                problems(errors),
            )
        }
        EventsError::Invalid(fe) => bad_fields(vec![fe]),
        // A change refused for a state another caller changed first (a key
        // rotation raced by another): nothing was made, try again.
        EventsError::Ledger(custos_engine::ledger::LedgerError::Invalid(reason)) => {
            error(StatusCode::CONFLICT, "conflict", format!("{reason}; nothing was changed"), vec![])
        }
        EventsError::Ledger(e) => ledger_unavailable(&e),
        EventsError::Export(e) => ledger_unavailable(&e),
    }
}

/// 503: the ledger could not do it; nothing was committed.
pub fn ledger_unavailable(cause: &dyn std::fmt::Display) -> Response {
    let operation_id = uuid::Uuid::now_v7().simple().to_string();
    tracing::error!(operation_id, error = %cause, "the ledger refused or failed an operation");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "5")],
        axum::Json(serde_json::json!({
            "code": "ledger_unavailable",
            "message": "the audit ledger cannot record right now; nothing was changed. Try again later.",
            "operation_id": operation_id,
        })),
    )
        .into_response()
}

/// The caller as an event actor.
pub fn actor_of(caller: &Caller, ip: Option<String>, user_agent: Option<String>) -> custos_model::Actor {
    let a = caller.actor("api");
    custos_model::Actor {
        id: a.id.unwrap_or_else(|| "anonymous".into()),
        kind: a.kind.into(),
        name: a.name,
        ip,
        user_agent,
        session_id: None,
    }
}

/// Who is calling and from where: the caller (set by `auth::load_caller`),
/// the client's address and user agent, and the request id.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller.
    pub caller: Caller,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent (at most 256 characters).
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

impl Ctx {
    /// From a request's parts.
    pub fn of(parts: &axum::http::request::Parts) -> Ctx {
        use custos_engine::identity::throttle::ClientIp;
        Ctx {
            caller: parts.extensions.get::<Caller>().cloned().unwrap_or_default(),
            ip: parts.extensions.get::<ClientIp>().map(|c| c.0.to_string()),
            user_agent: parts
                .headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect()),
            request_id: parts
                .extensions
                .get::<tower_http::request_id::RequestId>()
                .and_then(|r| r.header_value().to_str().ok())
                .map(str::to_owned),
        }
    }

    /// The caller as an event actor.
    pub fn actor(&self) -> custos_model::Actor {
        actor_of(&self.caller, self.ip.clone(), self.user_agent.clone())
    }

    /// Who the caller is, for per-principal bounds (`user:<id>`, `api_key:<prefix>`).
    pub fn principal(&self) -> String {
        let a = self.actor();
        format!("{}:{}", a.kind, a.id)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx::of(parts))
    }
}

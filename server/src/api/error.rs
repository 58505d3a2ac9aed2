//! The one error type of the web layer. Every refusal and failure, from a
//! handler, the access layer, a limit or a panic, is an [`ApiError`]: a
//! stable [`ErrorCode`] (which fixes the HTTP status), a sentence, the
//! fields at fault, and for a 5xx an operation id under which the cause is
//! logged (the cause itself never goes out). The body is
//! [`custos_model::ErrorBody`] for every status. The UI's server functions
//! answer the same body (`custos_app::error::AppError`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::events::EventsError;
use custos_engine::events::validate::{BodyError, FieldError};
use custos_engine::identity::service::IdentityError;
use custos_engine::ledger::LedgerError;
use custos_model::{ErrorBody, ErrorCode, FieldProblem};

/// A refusal or failure, answered as JSON with its code's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong, and so the status.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// The fields at fault.
    pub fields: Vec<FieldProblem>,
    /// Seconds to wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
    /// For a 5xx: the id the cause was logged under.
    pub operation_id: Option<String>,
}

impl ApiError {
    /// An error with a code and a sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), fields: Vec::new(), retry_after: None, operation_id: None }
    }

    /// 400 naming one field.
    pub fn field(path: &str, reason: impl Into<String>) -> ApiError {
        let reason = reason.into();
        ApiError::new(ErrorCode::InvalidRequest, format!("{path}: {reason}"))
            .with_fields(vec![FieldProblem { path: path.into(), reason }])
    }

    /// 400 with several field problems.
    pub fn fields(errors: Vec<FieldError>) -> ApiError {
        let n = errors.len();
        ApiError::new(ErrorCode::InvalidRequest, format!("{n} problem(s) with the request; nothing was changed"))
            .with_fields(problems(errors))
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// 401: neither signed in nor an API key.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(ErrorCode::Unauthenticated, "sign in, or send an API key, to use this")
    }

    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError { retry_after: Some(retry_after.max(1)), ..ApiError::new(ErrorCode::TooManyRequests, message) }
    }

    /// A 5xx (`code`) whose cause is logged under a new operation id and
    /// never sent.
    pub fn failed(code: ErrorCode, message: impl Into<String>, cause: &dyn std::fmt::Display) -> ApiError {
        let operation_id = uuid::Uuid::now_v7().simple().to_string();
        let message = message.into();
        tracing::error!(code = code.as_str(), operation_id, error = %cause, "{message}");
        ApiError { operation_id: Some(operation_id), ..ApiError::new(code, message) }
    }

    /// 500: the server failed.
    pub fn internal(message: impl Into<String>, cause: &dyn std::fmt::Display) -> ApiError {
        ApiError::failed(ErrorCode::InternalError, message, cause)
    }

    /// 503 `ledger_unavailable` saying `message`, with `Retry-After`
    /// (seconds); the cause is logged under the operation id.
    pub fn retry_later(message: impl Into<String>, retry_after: u64, cause: &dyn std::fmt::Display) -> ApiError {
        let e = ApiError::failed(ErrorCode::LedgerUnavailable, message, cause);
        ApiError { retry_after: Some(retry_after.max(1)), ..e }
    }

    /// 503 with `Retry-After`: the database cannot be reached right now
    /// (down, restarting, every connection in use). The same request will
    /// work once it is back.
    pub fn unreachable(cause: &dyn std::fmt::Display) -> ApiError {
        ApiError::retry_later("the database cannot be reached right now; try again shortly.", 5, cause)
    }

    /// 503 when the database could not be reached, else 500 with `message`.
    pub fn database(message: impl Into<String>, cause: &sea_orm::DbErr) -> ApiError {
        if custos_engine::storage::is_unreachable(cause) {
            ApiError::unreachable(cause)
        } else {
            ApiError::internal(message, cause)
        }
    }

    /// 503 when the identity service could not reach the database, else
    /// 500 with `message`.
    pub fn identity_failed(message: impl Into<String>, cause: &IdentityError) -> ApiError {
        if cause.is_unreachable() { ApiError::unreachable(cause) } else { ApiError::internal(message, cause) }
    }

    /// 503: the ledger could not do it; nothing was committed.
    pub fn ledger(cause: &dyn std::fmt::Display) -> ApiError {
        ApiError::retry_later(
            "the audit ledger cannot record right now; nothing was changed. Try again later.",
            5,
            cause,
        )
    }

    /// With these field problems.
    pub fn with_fields(mut self, fields: Vec<FieldProblem>) -> ApiError {
        self.fields = fields;
        self
    }

    /// The body sent.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            fields: self.fields.clone(),
            operation_id: self.operation_id.clone(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.body())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut res = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

fn problems(errors: Vec<FieldError>) -> Vec<FieldProblem> {
    errors.into_iter().map(|e| FieldProblem { path: e.path, reason: e.reason }).collect()
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            // A change refused for a state another caller changed first (a
            // key rotation raced by another): nothing was made, try again.
            LedgerError::Invalid(reason) => {
                ApiError::new(ErrorCode::Conflict, format!("{reason}; nothing was changed"))
            }
            // Their own words: a timed-out commit may still land; a clock
            // ahead leaves other replicas recording.
            e @ (LedgerError::TimedOut { .. } | LedgerError::ClockAhead { .. }) => {
                ApiError::retry_later(e.to_string(), 5, &e)
            }
            e => ApiError::ledger(&e),
        }
    }
}

/// The one mapping of an engine error to an answer.
impl From<EventsError> for ApiError {
    fn from(e: EventsError) -> ApiError {
        match e {
            EventsError::Body(BodyError::Malformed(fe)) => ApiError::new(
                ErrorCode::MalformedBody,
                format!("the body is not valid JSON: {}; nothing was stored", fe.reason),
            )
            .with_fields(problems(vec![fe])),
            EventsError::Body(BodyError::Empty) => ApiError::field("body", "contains no event; nothing was stored"),
            EventsError::Body(BodyError::TooMany { max, got }) => ApiError::new(
                ErrorCode::TooManyEvents,
                format!("{got} events in one request; at most {max}; nothing was stored"),
            )
            .with_fields(vec![FieldProblem {
                path: "body".into(),
                reason: format!("at most {max} events per request"),
            }]),
            EventsError::Body(BodyError::Invalid(errors)) => {
                let n = errors.len();
                ApiError::new(ErrorCode::InvalidEvents, format!("{n} problem(s) in the events; nothing was stored"))
                    .with_fields(problems(errors))
            }
            EventsError::Invalid(fe) => ApiError::fields(vec![fe]),
            EventsError::Ledger(e) => e.into(),
            // The ledger is fine: the file could not be written.
            EventsError::Export(cause) => {
                ApiError::failed(ErrorCode::ExportFailed, "the export could not be written", &cause)
            }
        }
    }
}

/// Identity errors: input errors say what is wrong (they never contain
/// secrets); anything else gets an operation id, the cause in the log.
impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        match e {
            IdentityError::Invalid { field, reason } => ApiError::field(field, reason),
            e @ IdentityError::NotFound(_) => ApiError::not_found(e.to_string()),
            IdentityError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            IdentityError::Refused(m) => ApiError::forbidden(m),
            e @ IdentityError::Busy => {
                ApiError { retry_after: Some(2), ..ApiError::new(ErrorCode::Busy, e.to_string()) }
            }
            IdentityError::NotRecorded(cause) => ApiError::ledger(&cause),
            e => ApiError::identity_failed("the change could not be made", &e),
        }
    }
}

impl From<custos_engine::policies::PolicyError> for ApiError {
    fn from(e: custos_engine::policies::PolicyError) -> ApiError {
        use custos_engine::policies::PolicyError as P;
        match e {
            P::NotFound(m) => ApiError::not_found(m),
            P::Forbidden(m) => ApiError::forbidden(m),
            P::Invalid(fe) => ApiError::fields(vec![fe]),
            P::Conflict(m) => ApiError::new(ErrorCode::Conflict, format!("{m}; nothing was changed")),
            P::Gone(m) => ApiError::new(ErrorCode::Gone, m),
            P::Events(e) => e.into(),
            P::Identity(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_the_same_body_and_5xx_carry_an_operation_id() {
        let cases = [
            ApiError::field("limit", "must be a whole number"),
            ApiError::not_found("no event `x`"),
            ApiError::too_many("slow down", 3),
            ApiError::internal("cannot read", &"disk on fire"),
            ApiError::ledger(&"database locked"),
            EventsError::Export("No space left on device".into()).into(),
        ];
        for e in cases {
            let status = e.status().as_u16();
            let res = e.clone().into_response();
            assert_eq!(res.status().as_u16(), e.code.status());
            let body = serde_json::to_value(e.body()).unwrap();
            assert_eq!(body["code"], e.code.as_str());
            assert!(body["message"].is_string());
            assert_eq!(body["operation_id"].is_string(), status >= 500, "{body}");
            // The cause stays in the log.
            let text = body.to_string();
            assert!(!text.contains("on fire") && !text.contains("locked") && !text.contains("No space"), "{text}");
            assert_eq!(res.headers().contains_key(header::RETRY_AFTER), e.retry_after.is_some());
        }
        let export: ApiError = EventsError::Export("x".into()).into();
        assert_eq!(export.code, ErrorCode::ExportFailed, "an export failure is not the ledger's");
    }
}

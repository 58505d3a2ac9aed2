//! The error of the UI's server functions: the same body as every REST
//! error (`custos_model::ErrorBody`: a stable code, a sentence, the fields
//! at fault, an operation id for a 5xx), so a page shows a server
//! function's refusal exactly as it shows the API's.

use custos_model::{ErrorBody, ErrorCode, FieldProblem};
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// A server function's refusal or failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppError(pub ErrorBody);

impl AppError {
    /// An error with a code and a sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError(ErrorBody { code, message: message.into(), fields: Vec::new(), operation_id: None })
    }

    /// 400 naming one field.
    pub fn field(path: &str, reason: impl Into<String>) -> AppError {
        let reason = reason.into();
        let mut e = AppError::new(ErrorCode::InvalidRequest, format!("{path}: {reason}"));
        e.0.fields.push(FieldProblem { path: path.into(), reason });
        e
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AppError {}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    /// A failure of the call itself (the network, encoding), as the
    /// browser met it.
    fn from_server_fn_error(value: ServerFnErrorErr) -> AppError {
        let code = match value {
            ServerFnErrorErr::Args(_) => ErrorCode::InvalidRequest,
            _ => ErrorCode::InternalError,
        };
        AppError::new(code, value.to_string())
    }
}

/// The server side: the status goes with the code, causes go to the log.
#[cfg(feature = "ssr")]
mod ssr {
    use super::*;

    impl AppError {
        /// Sets the response's status from the code (server functions answer
        /// through Leptos, which takes the status from the response options).
        pub fn answered(self) -> AppError {
            if let Some(resp) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
                && let Ok(status) = http::StatusCode::from_u16(self.0.code.status())
            {
                resp.set_status(status);
            }
            self
        }

        /// A refusal: the code's status, a sentence.
        pub fn refuse(code: ErrorCode, message: impl Into<String>) -> AppError {
            AppError::new(code, message).answered()
        }

        /// A 5xx (`code`) whose cause is logged under a new operation id
        /// and never sent.
        pub fn failed(code: ErrorCode, message: &str, cause: &dyn std::fmt::Display) -> AppError {
            let operation_id = uuid::Uuid::now_v7().simple().to_string();
            tracing::error!(code = code.as_str(), operation_id, error = %cause, "{message}");
            let mut e = AppError::new(code, message);
            e.0.operation_id = Some(operation_id);
            e.answered()
        }

        /// 500: the server failed.
        pub fn internal(message: &str, cause: &dyn std::fmt::Display) -> AppError {
            AppError::failed(ErrorCode::InternalError, message, cause)
        }
    }

    /// Identity errors: input errors say what is wrong (they never contain
    /// secrets); anything else gets an operation id, the cause in the log.
    impl From<custos_engine::identity::service::IdentityError> for AppError {
        fn from(e: custos_engine::identity::service::IdentityError) -> AppError {
            use custos_engine::identity::service::IdentityError as E;
            match e {
                E::Invalid { field, reason } => AppError::field(field, reason).answered(),
                e @ E::NotFound(_) => AppError::refuse(ErrorCode::NotFound, e.to_string()),
                E::Conflict(m) => AppError::refuse(ErrorCode::Conflict, m),
                E::Refused(m) => AppError::refuse(ErrorCode::Forbidden, m),
                e @ E::Busy => AppError::refuse(ErrorCode::Busy, e.to_string()),
                E::NotRecorded(cause) => AppError::failed(
                    ErrorCode::LedgerUnavailable,
                    "the audit ledger could not record this change, so it was not made",
                    &cause,
                ),
                e => AppError::internal("the change could not be made", &e),
            }
        }
    }
}

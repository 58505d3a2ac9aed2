//! Server-side context of the UI (compiled with `ssr` only).

use std::time::Instant;

use std::sync::Arc;

use custos_engine::identity::permission::Permission;
use custos_engine::identity::service::{Caller, Identity, Principal};
use custos_engine::ledger::Ledger;
use leptos::prelude::{ServerFnError, use_context};

use crate::models::SystemStatus;

/// What server functions may use; provided per request by the server.
#[derive(Clone, Debug)]
pub struct ServerContext {
    /// The ledger (and through it, the database).
    pub ledger: Ledger,
    /// Users, roles and keys.
    pub identity: Arc<Identity>,
    /// When the server started.
    pub started: Instant,
}

/// The one mapping from an internal failure to what a browser sees: a stable
/// code, a sentence and an operation id. The cause is logged under that id
/// and never sent.
pub fn internal_error(code: &'static str, message: &str, cause: &dyn std::fmt::Display) -> ServerFnError {
    let operation_id = uuid::Uuid::now_v7().simple().to_string();
    tracing::error!(code, operation_id, error = %cause, "{message}");
    ServerFnError::new(format!("{code}: {message} (operation {operation_id})"))
}

/// The content security policy of an HTML page whose inline script carries `nonce`.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The caller of the current request, as the server's access layer found it.
pub fn caller() -> Caller {
    use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<Caller>().cloned()).unwrap_or_default()
}

fn refuse(status: http::StatusCode, message: String) -> ServerFnError {
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(status);
    }
    ServerFnError::new(message)
}

/// A server function's own authorisation check (the access table has
/// already applied; this keeps each function safe on its own).
pub fn require(permission: Permission) -> Result<Caller, ServerFnError> {
    let c = require_signed_in()?;
    if !c.allows(permission) {
        return Err(refuse(http::StatusCode::FORBIDDEN, format!("CU-AUTH-003: this needs permission `{permission}`")));
    }
    Ok(c)
}

/// Any authenticated caller (a user or an API key), or 401.
pub fn require_signed_in() -> Result<Caller, ServerFnError> {
    let c = caller();
    if !c.is_authenticated() {
        return Err(refuse(http::StatusCode::UNAUTHORIZED, "CU-AUTH-001: sign in to use this".into()));
    }
    Ok(c)
}

/// The signed-in user (not an API key), or 401.
pub fn require_user() -> Result<Principal, ServerFnError> {
    caller()
        .user()
        .cloned()
        .ok_or_else(|| refuse(http::StatusCode::UNAUTHORIZED, "CU-AUTH-001: sign in as a user to use this".into()))
}

/// The request's client details for the audit record.
pub fn actor(c: &Caller) -> custos_engine::identity::service::Actor {
    let parts = use_context::<http::request::Parts>();
    let ip = parts
        .as_ref()
        .and_then(|p| p.extensions.get::<custos_engine::identity::throttle::ClientIp>().map(|c| c.0.to_string()));
    let ua = parts
        .as_ref()
        .and_then(|p| p.headers.get(http::header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    let request_id =
        parts.as_ref().and_then(|p| p.headers.get("x-request-id")).and_then(|v| v.to_str().ok()).map(str::to_owned);
    c.actor("ui").from_client(ip, ua, request_id)
}

impl ServerContext {
    /// Reads the status shown on the home page.
    pub async fn status(&self) -> Result<SystemStatus, ServerFnError> {
        let head = self.ledger.head().await.map_err(|e| internal_error("CU1001", "cannot read the ledger head", &e))?;
        let checkpoint = self
            .ledger
            .latest_checkpoint()
            .await
            .map_err(|e| internal_error("CU1002", "cannot read checkpoints", &e))?;
        let (_, current_key_id) = self.ledger.keys().data_key_ids();
        Ok(SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: self.ledger.db().kind().as_str().to_owned(),
            origin: self.ledger.origin().to_owned(),
            ledger_entries: head.seq,
            checkpoint_tree_size: checkpoint.as_ref().map(|c| c.tree_size),
            checkpoint_signed_at: checkpoint.as_ref().and_then(|c| {
                chrono::DateTime::from_timestamp_micros(c.created_at_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
            current_key_id,
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }
}

/// The one mapping from an identity error to what a browser sees: input
/// errors say what is wrong (they never contain secrets); anything else
/// gets a code and an operation id, with the cause in the server log.
pub fn identity_error(e: custos_engine::identity::service::IdentityError) -> ServerFnError {
    use custos_engine::identity::service::IdentityError as E;
    use http::StatusCode as S;
    match &e {
        E::Invalid { .. } => refuse(S::BAD_REQUEST, format!("CU-ID-400: {e}")),
        E::NotFound(_) => refuse(S::NOT_FOUND, format!("CU-ID-404: {e}")),
        E::Conflict(_) => refuse(S::CONFLICT, format!("CU-ID-409: {e}")),
        E::Refused(_) => refuse(S::FORBIDDEN, format!("CU-ID-403: {e}")),
        E::Busy => refuse(S::SERVICE_UNAVAILABLE, format!("CU-ID-429: {e}")),
        E::NotRecorded(_) => {
            internal_error("CU-ID-503", "the audit ledger could not record this change, so it was not made", &e)
        }
        _ => internal_error("CU-ID-500", "the change could not be made", &e),
    }
}

/// Formats µs since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

//! Server-side context of the UI (compiled with `ssr` only).

use custos_model::Channel;
use std::time::Instant;

use std::sync::Arc;

use custos_engine::identity::permission::Permission;
use custos_engine::identity::service::{Caller, Identity, Principal};
use custos_engine::ledger::Ledger;
use custos_model::ErrorCode;
use leptos::prelude::use_context;

use crate::error::AppError;

use crate::models::SystemStatus;

/// What server functions may use; provided per request by the server.
#[derive(Clone, Debug)]
pub struct ServerContext {
    /// The ledger (and through it, the database).
    pub ledger: Ledger,
    /// Users, roles and keys.
    pub identity: Arc<Identity>,
    /// The policy store.
    pub policies: Arc<custos_engine::policies::PolicyStore>,
    /// The events service.
    pub events: Arc<custos_engine::events::Events>,
    /// When the server started.
    pub started: Instant,
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

/// A server function's own authorisation check (the access table has
/// already applied; this keeps each function safe on its own).
pub fn require(permission: Permission) -> Result<Caller, AppError> {
    let c = require_signed_in()?;
    if !c.allows(permission) {
        return Err(AppError::refuse(ErrorCode::Forbidden, format!("this needs the permission `{permission}`")));
    }
    Ok(c)
}

/// Any authenticated caller (a user or an API key), or 401.
pub fn require_signed_in() -> Result<Caller, AppError> {
    let c = caller();
    if !c.is_authenticated() {
        return Err(AppError::refuse(ErrorCode::Unauthenticated, "sign in to use this"));
    }
    Ok(c)
}

/// The signed-in user (not an API key), or 401.
pub fn require_user() -> Result<Principal, AppError> {
    caller()
        .user()
        .cloned()
        .ok_or_else(|| AppError::refuse(ErrorCode::Unauthenticated, "sign in as a user to use this"))
}

/// The request's client details for the audit record.
pub fn actor(c: &Caller) -> custos_engine::identity::service::Acting {
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
    c.actor(Channel::Ui).from_client(ip, ua, request_id)
}

impl ServerContext {
    /// Reads the status shown on the home page.
    pub async fn status(&self) -> Result<SystemStatus, AppError> {
        let head = self.ledger.head().await.map_err(|e| AppError::internal("cannot read the ledger head", &e))?;
        let checkpoint =
            self.ledger.latest_checkpoint().await.map_err(|e| AppError::internal("cannot read checkpoints", &e))?;
        let (_, current_key_id) = self.ledger.keys().data_key_ids();
        Ok(SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: self.ledger.db().kind().as_str().to_owned(),
            origin: self.ledger.origin().to_owned(),
            ledger_entries: head.seq,
            checkpoint_tree_size: checkpoint.as_ref().map(|c| c.tree_size),
            checkpoint_signed_at: checkpoint.as_ref().map(|c| rfc3339_seconds(c.created_at_us)),
            current_key_id,
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }
}

/// Formats µs since the epoch as RFC 3339 (UTC, to the second), for people.
pub fn rfc3339_seconds(us: i64) -> String {
    custos_engine::time::Timestamp::from_micros(us).rfc3339_seconds()
}

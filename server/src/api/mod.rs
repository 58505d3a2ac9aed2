//! The REST API under `/api`: ingest, search, read, verify, checkpoints,
//! statistics and the masking policy; the self-audit of every request; and
//! the OpenAPI document with its offline docs UI.
//!
//! Every error is JSON (`ApiError`): a stable code, a sentence, and for bad
//! input the field path and the reason of each problem.

pub mod alerts;
pub mod audit;
pub mod backups;
pub mod dashboards;
pub mod docs;
pub mod error;
pub mod explorer;
pub mod exports;
pub mod forwarding;
pub mod masking;
pub mod notifications;
pub mod policies;
pub mod reports;
pub mod retention;
pub mod self_audit;
pub mod session;
mod sse;
pub mod summaries;
pub mod verify_jobs;

use custos_engine::identity::service::Caller;
use custos_model::Channel;

pub use self::error::ApiError;

/// Reads a JSON object of at most `limit` bytes into `T` (413 beyond it,
/// 400 naming what is wrong otherwise). An empty body is `T::default()`
/// when `empty` is given. Anything but an object is refused: serde would
/// otherwise read a struct from an array of its fields (`[null, null]`).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    limit: usize,
    empty: Option<T>,
) -> Result<T, ApiError> {
    let bytes = audit::read_body(body, headers, limit).await?;
    if let Some(default) = empty
        && bytes.iter().all(u8::is_ascii_whitespace)
    {
        return Ok(default);
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::field("body", e.to_string()))
}

/// A query string read into `T`. A value that does not parse answers 400
/// in JSON naming the parameter, like every other error (axum's own
/// `Query` answers in plain text).
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(ApiQuery(q)),
            Err(e) => Err(query_error(&e.body_text())),
        }
    }
}

/// A query string's problem as a 400: `limit: invalid digit found in
/// string` names `limit`; a message without a name names `query`. At most
/// 200 characters of it (it may quote the caller's value).
pub fn query_error(message: &str) -> ApiError {
    let message = message.strip_prefix("Failed to deserialize query string: ").unwrap_or(message);
    let message: String = message.chars().take(200).collect();
    let message = message.as_str();
    match message.split_once(": ") {
        Some((name, reason)) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            ApiError::field(name, reason)
        }
        _ => ApiError::field("query", message),
    }
}

/// The caller as an event actor.
pub fn actor_of(caller: &Caller, ip: Option<String>, user_agent: Option<String>) -> custos_model::Actor {
    caller.actor(Channel::Api).from_client(ip, user_agent, None).recorded()
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

    /// The caller as the requester of a job or an operation: owned by the
    /// principal, recorded as the actor, correlated by the request id.
    pub fn requester(&self, channel: Channel) -> custos_engine::events::Requester {
        custos_engine::events::Requester::new(self.actor(), channel, self.request_id.clone())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx::of(parts))
    }
}

//! `GET /api/whoami`: who the server thinks the caller is.

use axum::extract::Request;
use custos_engine::identity::service::Caller;
use serde::Serialize;
use utoipa::ToSchema;

/// The caller, as the server sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Whoami {
    /// A signed-in user.
    User {
        /// User name.
        username: String,
        /// Role names.
        roles: Vec<String>,
        /// Effective permissions (stable names).
        permissions: Vec<String>,
    },
    /// A client with an API key.
    ApiKey {
        /// The key's public prefix.
        prefix: String,
        /// The key's name.
        name: String,
        /// Its scopes (`ingest`, `read`).
        scopes: Vec<String>,
    },
}

/// `GET /api/whoami`.
#[utoipa::path(
    get, path = "/api/whoami", tag = "session",
    responses(
        (status = 200, description = "The caller", body = Whoami),
        (status = 401, description = "Neither signed in nor an API key", body = custos_model::ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn whoami(req: Request) -> Result<axum::Json<Whoami>, super::ApiError> {
    let me = match req.extensions().get::<Caller>() {
        Some(Caller::User(p)) => Whoami::User {
            username: p.username.clone(),
            roles: p.roles.clone(),
            permissions: p.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
        },
        Some(Caller::ApiKey(k)) => Whoami::ApiKey {
            prefix: k.prefix.clone(),
            name: k.name.clone(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        },
        _ => return Err(super::ApiError::unauthenticated()),
    };
    Ok(axum::Json(me))
}

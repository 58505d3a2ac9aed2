//! Server functions: thin. Each authorises itself (on top of the access
//! table), calls the engine, and answers its errors as `AppError` (one
//! mapping: `From<IdentityError>`).

use leptos::prelude::*;

use crate::error::AppError;

use crate::models::{ApiKeyView, Me, MfaSetup, NewApiKey, PermissionView, RoleView, SystemStatus, UserView};

/// The running server's status.
#[server(prefix = "/rpc", endpoint = "status")]
pub async fn get_status() -> Result<SystemStatus, AppError> {
    crate::server::require_signed_in()?;
    let ctx = expect_context::<crate::server::ServerContext>();
    ctx.status().await
}

/// The signed-in user (None when nobody is).
#[server(prefix = "/rpc", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<Me>, AppError> {
    Ok(crate::server::caller().user().map(|p| Me {
        principal: format!("user:{}", p.user_id),
        username: p.username.clone(),
        display_name: p.display_name.clone(),
        email: p.email.clone(),
        roles: p.roles.clone(),
        permissions: p.permissions.iter().map(|x| x.as_str().to_owned()).collect(),
        mfa_enabled: p.mfa_enabled,
        mfa_required: p.mfa_required,
        must_change_password: p.must_change_password,
    }))
}

/// Changes the signed-in user's password.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(current_password: String, new_password: String) -> Result<(), AppError> {
    use secrecy::SecretString;
    let me = crate::server::require_user()?;
    let ctx = expect_context::<crate::server::ServerContext>();
    let actor = crate::server::actor(&crate::server::caller());
    let epoch = ctx
        .identity
        .change_password(&actor, me.user_id, &SecretString::from(current_password), &SecretString::from(new_password))
        .await?;
    // Every other session of this user has ended; this one goes on.
    let kept = async {
        let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|e| e.to_string())?;
        session.insert(custos_engine::identity::service::SESSION_EPOCH_KEY, epoch).await.map_err(|e| e.to_string())
    };
    kept.await.map_err(|e| AppError::internal("password changed; please sign in again with the new one", &e))
}

/// Starts TOTP enrolment for the signed-in user.
#[server(prefix = "/rpc", endpoint = "mfa_begin")]
pub async fn mfa_begin() -> Result<MfaSetup, AppError> {
    let me = crate::server::require_user()?;
    let ctx = expect_context::<crate::server::ServerContext>();
    let e = ctx.identity.mfa_begin(me.user_id).await?;
    let qr_svg = qrcode::QrCode::new(e.otpauth_uri.as_bytes())
        .map(|c| c.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
        .map_err(|err| AppError::internal("cannot draw the QR code", &err))?;
    Ok(MfaSetup { secret: e.secret_base32, otpauth_uri: e.otpauth_uri, qr_svg })
}

/// Confirms TOTP enrolment; returns the recovery codes (shown once).
#[server(prefix = "/rpc", endpoint = "mfa_confirm")]
pub async fn mfa_confirm(code: String) -> Result<Vec<String>, AppError> {
    let me = crate::server::require_user()?;
    let ctx = expect_context::<crate::server::ServerContext>();
    let actor = crate::server::actor(&crate::server::caller());
    Ok(ctx.identity.mfa_confirm(&actor, me.user_id, &code).await?)
}

#[cfg(feature = "ssr")]
fn admin() -> Result<(crate::server::ServerContext, custos_engine::identity::service::Acting), AppError> {
    use custos_engine::identity::permission::Permission;
    let caller = crate::server::require(Permission::UserManage)?;
    Ok((expect_context::<crate::server::ServerContext>(), crate::server::actor(&caller)))
}

/// Splits a comma- or space-separated list.
pub fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

/// All users.
#[server(prefix = "/rpc", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    let (ctx, _) = admin()?;
    let users = ctx.identity.list_users().await?;
    Ok(users
        .into_iter()
        .map(|u| UserView {
            username: u.username,
            email: u.email,
            display_name: u.display_name,
            roles: u.roles,
            disabled: u.disabled,
            mfa_enabled: u.mfa_enabled,
            locked_until: u.locked_until_us.map(crate::server::rfc3339_seconds),
            last_login: u.last_login_us.map(crate::server::rfc3339_seconds),
        })
        .collect())
}

/// Creates a user.
#[server(prefix = "/rpc", endpoint = "create_user")]
pub async fn create_user(
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    password: String,
    roles: String,
) -> Result<(), AppError> {
    use custos_engine::identity::service::NewUser;
    let (ctx, actor) = admin()?;
    let new = NewUser {
        username,
        email: email.filter(|e| !e.trim().is_empty()),
        display_name: display_name.filter(|d| !d.trim().is_empty()),
        password: secrecy::SecretString::from(password),
        roles: split_list(&roles),
        must_change_password: true,
    };
    ctx.identity.create_user(&actor, new).await?;
    Ok(())
}

/// Disables or enables a user.
#[server(prefix = "/rpc", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(username: String, disabled: bool) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.set_disabled(&actor, &username, disabled).await?)
}

/// Sets a user's password (they must change it at next sign-in).
#[server(prefix = "/rpc", endpoint = "reset_user_password")]
pub async fn reset_user_password(username: String, password: String) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.reset_password(&actor, &username, &secrecy::SecretString::from(password), true).await?)
}

/// Replaces a user's roles.
#[server(prefix = "/rpc", endpoint = "set_user_roles")]
pub async fn set_user_roles(username: String, roles: String) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.set_roles(&actor, &username, &split_list(&roles)).await?)
}

/// Removes a user's MFA (lost device).
#[server(prefix = "/rpc", endpoint = "reset_user_mfa")]
pub async fn reset_user_mfa(username: String) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.mfa_reset(&actor, &username).await?)
}

/// All roles and the permissions a role can grant.
#[server(prefix = "/rpc", endpoint = "list_roles")]
pub async fn list_roles() -> Result<(Vec<RoleView>, Vec<PermissionView>), AppError> {
    use custos_engine::identity::permission::Permission;
    let (ctx, _) = admin()?;
    let roles = ctx.identity.list_roles().await?;
    let roles = roles
        .into_iter()
        .map(|r| RoleView {
            name: r.name,
            description: r.description,
            builtin: r.builtin,
            require_mfa: r.require_mfa,
            permissions: r.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            members: r.members,
        })
        .collect();
    let perms = Permission::ALL
        .iter()
        .map(|p| PermissionView { name: p.as_str().to_owned(), description: p.describe().to_owned() })
        .collect();
    Ok((roles, perms))
}

#[cfg(feature = "ssr")]
fn parse_permissions(s: &str) -> Result<custos_engine::identity::permission::PermissionSet, AppError> {
    custos_engine::identity::permission::PermissionSet::parse(&split_list(s).join(" "))
        .map_err(|e| AppError::field("permissions", e.to_string()).answered())
}

/// Creates a custom role.
#[server(prefix = "/rpc", endpoint = "create_role")]
pub async fn create_role(
    name: String,
    description: String,
    permissions: String,
    require_mfa: Option<String>,
) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    let perms = parse_permissions(&permissions)?;
    Ok(ctx.identity.create_role(&actor, &name, &description, &perms, require_mfa.is_some()).await?)
}

/// Changes a role (permissions only for custom roles).
#[server(prefix = "/rpc", endpoint = "update_role")]
pub async fn update_role(name: String, permissions: Option<String>, require_mfa: bool) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    let perms = permissions.as_deref().map(parse_permissions).transpose()?;
    Ok(ctx.identity.update_role(&actor, &name, perms.as_ref(), require_mfa).await?)
}

/// Deletes a custom role nobody holds.
#[server(prefix = "/rpc", endpoint = "delete_role")]
pub async fn delete_role(name: String) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.delete_role(&actor, &name).await?)
}

#[cfg(feature = "ssr")]
fn key_view(k: custos_engine::identity::service::ApiKeySummary, now: i64) -> ApiKeyView {
    let status = if k.revoked_us.is_some() {
        "revoked"
    } else if k.expires_us.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    ApiKeyView {
        prefix: k.prefix,
        name: k.name,
        scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created: crate::server::rfc3339_seconds(k.created_us),
        expires: k.expires_us.map(crate::server::rfc3339_seconds),
        last_used: k.last_used_us.map(crate::server::rfc3339_seconds),
        status: status.to_owned(),
    }
}

/// All API keys.
#[server(prefix = "/rpc", endpoint = "list_api_keys")]
pub async fn list_api_keys() -> Result<Vec<ApiKeyView>, AppError> {
    let (ctx, _) = admin()?;
    let now = ctx.ledger.now_us();
    let keys = ctx.identity.list_api_keys().await?;
    Ok(keys.into_iter().map(|k| key_view(k, now)).collect())
}

/// Creates an API key; its token is returned once.
#[server(prefix = "/rpc", endpoint = "create_api_key")]
pub async fn create_api_key(
    name: String,
    scopes: String,
    expires_in_days: Option<String>,
) -> Result<NewApiKey, AppError> {
    use custos_engine::identity::apikey::Scope;
    use secrecy::ExposeSecret as _;
    let (ctx, actor) = admin()?;
    let mut parsed = Vec::new();
    for s in split_list(&scopes) {
        parsed.push(
            Scope::parse(&s).ok_or_else(|| AppError::field("scopes", format!("unknown scope `{s}`")).answered())?,
        );
    }
    let days = match expires_in_days.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(d) => Some(
            d.parse::<i64>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| AppError::field("expires_in_days", "a number of days from 1 to 3650").answered())?,
        ),
    };
    let now = ctx.ledger.now_us();
    let expires = days.map(|d| now + d * custos_model::time::DAY_US);
    let (key, token) = ctx.identity.create_api_key(&actor, &name, &parsed, expires).await?;
    Ok(NewApiKey { key: key_view(key, now), token: token.expose_secret().to_owned() })
}

/// Revokes an API key.
#[server(prefix = "/rpc", endpoint = "revoke_api_key")]
pub async fn revoke_api_key(prefix: String) -> Result<(), AppError> {
    let (ctx, actor) = admin()?;
    Ok(ctx.identity.revoke_api_key(&actor, &prefix).await?)
}

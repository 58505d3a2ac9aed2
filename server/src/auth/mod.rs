//! Authentication and authorisation at the HTTP edge: who is calling (a
//! session under its user's current session epoch, or an API key) and from
//! which address (`client`: trusted proxies), the access table's decision
//! for every request, the gate for anonymous floods, the re-check of live
//! streams (`still_valid`), sign-in and sign-out forms (which work without
//! JavaScript), and the security headers on every response.

pub mod client;
pub mod session_store;

use custos_engine::time::MINUTE_US;
use custos_model::Channel;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use custos_engine::identity::noise::{NoiseKind, Verdict};
use custos_engine::identity::permission::Permission;
use custos_engine::identity::service::{Acting, Caller, KeyCheck, LoginAttempt, LoginOutcome, LoginRejection};
use custos_engine::identity::throttle::{ClientIp, address_key};
use secrecy::SecretString;
use serde::Deserialize;
use tower_http::request_id::RequestId;
use tower_sessions::Session;

use self::session_store::{AUTH_AT, EPOCH, MFA_PENDING, USER_ID};
use crate::access::{self, Decision, Kind};
use crate::api::ApiError;
use crate::http::AppState;
use custos_model::ErrorCode;

/// How long a password-checked sign-in may wait for its second factor.
const MFA_PENDING_US: i64 = 5 * MINUTE_US;

/// The client's address, user agent and request id, as an audit actor.
pub fn client_actor(
    caller: &Caller,
    channel: Channel,
    parts: (&HeaderMap, Option<std::net::IpAddr>, Option<&RequestId>),
) -> Acting {
    let (headers, addr, request_id) = parts;
    caller.actor(channel).from_client(
        addr.map(|a| a.to_string()),
        headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect()),
        request_id.and_then(|r| r.header_value().to_str().ok()).map(str::to_owned),
    )
}

/// The client's address as resolved by [`load_caller`].
pub fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<ClientIp>().map(|c| c.0)
}

/// What authenticated a request: live streams check it again while they run.
#[derive(Debug, Clone, Default)]
pub enum Credential {
    /// Nobody.
    #[default]
    None,
    /// A session of a user, under the epoch it started in.
    Session {
        /// The session's id.
        id: tower_sessions::session::Id,
        /// The user.
        user_id: i64,
        /// The user's session epoch when the session was (re)validated.
        epoch: i64,
        /// When the user signed in (µs).
        auth_at: i64,
    },
    /// An API key.
    ApiKey {
        /// The key's id.
        key_id: i64,
    },
}

/// Whether the credential that opened a stream still holds, and still
/// grants `need`: the session still exists, has not timed out, and its user
/// is enabled with the same epoch (no password, MFA or role change since)
/// and owes no set-up; the key is neither revoked nor expired.
pub async fn still_valid(s: &AppState, credential: &Credential, need: Permission) -> bool {
    match credential {
        Credential::None => false,
        Credential::ApiKey { key_id } => s.identity.api_key_usable(*key_id).await.unwrap_or(false),
        Credential::Session { id, user_id, epoch, auth_at } => {
            if s.ledger.now_us() - auth_at > s.session_absolute_us {
                return false;
            }
            let store = session_store::DbSessionStore::new(s.ledger.db().clone(), s.identity.clone());
            let alive = match tower_sessions::SessionStore::load(&store, id).await {
                Ok(Some(record)) => record.data.get(USER_ID).and_then(|v| v.as_i64()) == Some(*user_id),
                _ => false,
            };
            let granted = |p: &custos_engine::identity::service::Principal| {
                p.session_epoch == *epoch
                    && p.allows(need)
                    && !p.must_change_password
                    && (p.mfa_enabled || !p.mfa_required)
            };
            alive && matches!(s.identity.principal(*user_id).await, Ok(Some(p)) if granted(&p))
        }
    }
}

/// Works out who is calling: an API key (`Authorization: Bearer cst_…`) or
/// the session's user; puts the `Caller`, the client's address and the
/// `Credential` in the request's extensions. Refused keys are recorded once
/// per address, reason and minute; beyond the flood limit they are answered
/// 429 and no longer recorded.
pub async fn load_caller(State(s): State<AppState>, session: Session, mut req: Request, next: Next) -> Response {
    let now = s.ledger.now_us();
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
        let ip = s.proxies.client_ip(peer, req.headers());
        req.extensions_mut().insert(ClientIp(ip));
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let mut credential = Credential::None;
    let caller = if let Some(token) = bearer {
        let actor =
            client_actor(&Caller::Anonymous, Channel::Api, (req.headers(), client_ip(&req), req.extensions().get()));
        match s.identity.authenticate_api_key(&token, &actor).await {
            Ok(KeyCheck::Valid(key)) => {
                credential = Credential::ApiKey { key_id: key.key_id };
                Caller::ApiKey(key)
            }
            Ok(KeyCheck::Refused) => {
                return ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid").into_response();
            }
            Ok(KeyCheck::Throttled { retry_after_secs }) => {
                return ApiError::too_many(
                    "too many invalid API keys from this address; wait and try again",
                    retry_after_secs,
                )
                .into_response();
            }
            Err(e) => return ApiError::identity_failed("cannot check the API key", &e).into_response(),
        }
    } else {
        match session.get::<i64>(USER_ID).await {
            Ok(Some(uid)) => {
                let auth_at = session.get::<i64>(AUTH_AT).await.ok().flatten().unwrap_or(0);
                let epoch = session.get::<i64>(EPOCH).await.ok().flatten().unwrap_or(0);
                if now - auth_at > s.session_absolute_us {
                    let _ = session.flush().await;
                    s.identity.record_session_expired(uid, "absolute timeout").await;
                    Caller::Anonymous
                } else {
                    match s.identity.principal(uid).await {
                        Ok(Some(p)) if p.session_epoch == epoch => {
                            if let Some(id) = session.id() {
                                credential = Credential::Session { id, user_id: uid, epoch, auth_at };
                            }
                            Caller::User(p)
                        }
                        Ok(Some(_)) => {
                            // The password, MFA or roles changed since this
                            // session started: it has ended.
                            let _ = session.flush().await;
                            s.identity.record_session_expired(uid, "credentials changed").await;
                            Caller::Anonymous
                        }
                        Ok(None) => {
                            // Disabled or deleted since signing in.
                            let _ = session.flush().await;
                            Caller::Anonymous
                        }
                        Err(e) => {
                            return ApiError::identity_failed("cannot load the signed-in user", &e).into_response();
                        }
                    }
                }
            }
            Ok(None) => Caller::Anonymous,
            // The session store is the database (unreadable records are
            // dropped there): it cannot be reached. Not "signed out".
            Err(e) => return ApiError::unreachable(&e).into_response(),
        }
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(credential);
    next.run(req).await
}

/// Gates anonymous calls of the API and server functions per source and
/// minute (see `custos_engine::identity::noise`): past the first of a
/// minute on an endpoint they are not recorded one by one (the minute's
/// summary counts them); beyond the limit, calls that would be refused
/// anyway are refused at once (429). Public endpoints are never refused.
/// Returns the verdict for the self-audit, or the refusal.
pub fn gate_anonymous(s: &AppState, req: &Request, topic: &str, public: bool) -> Result<Verdict, Throttled> {
    let source = client_ip(req).map(address_key).unwrap_or_default();
    let kind = if public { NoiseKind::AnonymousPublic } else { NoiseKind::Anonymous };
    match s.identity.noise().admit(kind, &source, topic) {
        Verdict::Refuse { retry_after_secs } => Err(Throttled(retry_after_secs)),
        v => Ok(v),
    }
}

/// An anonymous flood refused: seconds to wait.
#[derive(Debug, Clone, Copy)]
pub struct Throttled(pub u64);

impl IntoResponse for Throttled {
    fn into_response(self) -> Response {
        ApiError::too_many("too many anonymous requests from this address; sign in or wait", self.0).into_response()
    }
}

/// Applies the access table to every request. Deny by default: a request
/// that matches no row (and is not a static file) never reaches a handler.
pub async fn enforce(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or_default();
    let Some(route) = access::find(req.method().as_str(), &path) else {
        let get = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
        if get && access::is_static(&path) {
            return next.run(req).await;
        }
        return refuse_unlisted(&caller, &path);
    };
    match (route.decide(&caller), route.kind) {
        (Decision::Allow, _) => next.run(req).await,
        (Decision::Unauthenticated, Kind::Page) => {
            let next_path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Redirect::to(&format!("/login?next={}", custos_model::url::encode_path(next_path))).into_response()
        }
        (Decision::Unauthenticated, _) => ApiError::unauthenticated().into_response(),
        (Decision::SetupRequired, Kind::Page) => Redirect::to("/account").into_response(),
        (Decision::SetupRequired, _) => ApiError::new(
            ErrorCode::SetupRequired,
            "change your password or set up multi-factor authentication first (account page)",
        )
        .into_response(),
        (Decision::Forbidden, kind) => {
            let actor = client_actor(
                &caller,
                if kind == Kind::Page { Channel::Ui } else { Channel::Api },
                (req.headers(), client_ip(&req), req.extensions().get()),
            );
            s.identity.record_access_denied(&actor, route.path, &route.need_text()).await;
            if kind == Kind::Page {
                // The page renders "Access denied" itself (its guard reads the
                // same permissions, so server and browser agree); the status is 403.
                let mut res = next.run(req).await;
                *res.status_mut() = StatusCode::FORBIDDEN;
                res
            } else {
                ApiError::forbidden(format!("this needs {}", route.need_text())).into_response()
            }
        }
    }
}

/// The answer to a request no row of the access table covers: anonymous
/// callers learn nothing (401); others get 405 for a wrong method on a
/// known path, else 404. Nothing behind it runs.
fn refuse_unlisted(caller: &Caller, path: &str) -> Response {
    if !caller.is_authenticated() {
        return ApiError::unauthenticated().into_response();
    }
    let methods = access::methods_for(path);
    if !methods.is_empty() {
        let mut res =
            ApiError::new(ErrorCode::MethodNotAllowed, "this method is not served on this path").into_response();
        if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        return res;
    }
    if path.starts_with("/rpc") {
        return ApiError::not_found("no such server function").into_response();
    }
    ApiError::not_found("no such API endpoint; see /api/openapi.json").into_response()
}

/// Only a strict same-site path may be redirected to after sign-in: a `/`
/// followed by path and query characters (no whitespace or control
/// characters, which browsers strip, turning `/\t/evil.example` into
/// `//evil.example`; no backslash; no second `/` at the start).
fn safe_next(next: &str) -> &str {
    let strict = next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    let ok = strict
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/login")
        && !next.starts_with("/auth/");
    if ok { next } else { "/" }
}

async fn start_session(
    session: &Session,
    p: &custos_engine::identity::service::Principal,
    now: i64,
) -> Result<(), tower_sessions::session::Error> {
    // A new session id at every sign-in: a planted id is worth nothing.
    session.cycle_id().await?;
    session.remove_value(MFA_PENDING).await?;
    session.insert(USER_ID, p.user_id).await?;
    session.insert(AUTH_AT, now).await?;
    session.insert(EPOCH, p.session_epoch).await?;
    Ok(())
}

fn rejection_code(r: LoginRejection) -> &'static str {
    match r {
        LoginRejection::InvalidCredentials => "invalid",
        LoginRejection::LockedOut => "locked",
        LoginRejection::Throttled { .. } => "throttled",
    }
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /auth/login`.
pub async fn login(
    State(s): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let LoginForm { username, password, next } = form;
    let next = safe_next(&next).to_owned();
    let actor = client_actor(&Caller::Anonymous, Channel::Ui, (&headers, client.map(|c| c.0.0), request_id.as_deref()));
    let password = SecretString::from(password);
    let attempt = LoginAttempt { username: &username, password: &password, actor };
    match s.identity.login(attempt).await {
        Ok(LoginOutcome::Success(p)) => match start_session(&session, &p, s.ledger.now_us()).await {
            Ok(()) => Redirect::to(&next).into_response(),
            Err(e) => ApiError::internal("cannot start the session", &e).into_response(),
        },
        Ok(LoginOutcome::MfaRequired { user_id }) => {
            let stored = async {
                session.cycle_id().await?;
                // With the user's epoch: a password reset meanwhile voids it.
                let epoch = s.identity.principal(user_id).await.ok().flatten().map_or(-1, |p| p.session_epoch);
                session.insert(MFA_PENDING, (user_id, s.ledger.now_us(), epoch)).await
            };
            match stored.await {
                Ok(()) => {
                    Redirect::to(&format!("/login/mfa?next={}", custos_model::url::encode_path(&next))).into_response()
                }
                Err(e) => ApiError::internal("cannot start the session", &e).into_response(),
            }
        }
        Ok(LoginOutcome::Rejected(r)) => {
            Redirect::to(&format!("/login?error={}&next={}", rejection_code(r), custos_model::url::encode_path(&next)))
                .into_response()
        }
        Err(e) => {
            let _ = ApiError::internal("sign-in failed", &e);
            Redirect::to(&format!("/login?error=unavailable&next={}", custos_model::url::encode_path(&next)))
                .into_response()
        }
    }
}

/// The second-factor form's fields.
#[derive(Debug, Deserialize)]
pub struct MfaForm {
    code: String,
    #[serde(default)]
    next: String,
}

/// `POST /auth/mfa`.
pub async fn mfa(
    State(s): State<AppState>,
    session: Session,
    client: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    Form(form): Form<MfaForm>,
) -> Response {
    let next = safe_next(&form.next).to_owned();
    let now = s.ledger.now_us();
    let pending = session.get::<(i64, i64, i64)>(MFA_PENDING).await.ok().flatten();
    let mut current = None;
    if let Some((uid, _, _)) = pending {
        current = s.identity.principal(uid).await.ok().flatten().map(|p| p.session_epoch);
    }
    let fresh = |(_, since, epoch): &(i64, i64, i64)| now - since < MFA_PENDING_US && current == Some(*epoch);
    let Some((user_id, _, _)) = pending.filter(fresh) else {
        let _ = session.remove_value(MFA_PENDING).await;
        return Redirect::to(&format!("/login?error=expired&next={}", custos_model::url::encode_path(&next)))
            .into_response();
    };
    let actor = client_actor(&Caller::Anonymous, Channel::Ui, (&headers, client.map(|c| c.0.0), request_id.as_deref()));
    match s.identity.login_mfa(&actor, user_id, &form.code).await {
        Ok(LoginOutcome::Success(p)) => match start_session(&session, &p, now).await {
            Ok(()) => Redirect::to(&next).into_response(),
            Err(e) => ApiError::internal("cannot start the session", &e).into_response(),
        },
        Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials)) => {
            Redirect::to(&format!("/login/mfa?error=invalid&next={}", custos_model::url::encode_path(&next)))
                .into_response()
        }
        Ok(LoginOutcome::Rejected(r)) => {
            let _ = session.remove_value(MFA_PENDING).await;
            Redirect::to(&format!("/login?error={}&next={}", rejection_code(r), custos_model::url::encode_path(&next)))
                .into_response()
        }
        Ok(LoginOutcome::MfaRequired { .. }) | Err(_) => {
            Redirect::to(&format!("/login?error=unavailable&next={}", custos_model::url::encode_path(&next)))
                .into_response()
        }
    }
}

/// `POST /auth/logout`.
pub async fn logout(State(s): State<AppState>, session: Session, req: Request) -> Response {
    let caller = req.extensions().get::<Caller>().cloned().unwrap_or_default();
    if caller.user().is_some() {
        let actor = client_actor(&caller, Channel::Ui, (req.headers(), client_ip(&req), req.extensions().get()));
        s.identity.record_logout(&actor).await;
    }
    // flush, not delete: delete keeps the data, which the layer would save again.
    let _ = session.flush().await;
    Redirect::to("/login?signed_out=1").into_response()
}

/// The policy for responses that are not pages (pages set their own, with
/// the nonce of their inline script).
const CSP_NON_HTML: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Security headers on every response; HSTS when clients reach us over HTTPS.
pub async fn security_headers(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let static_file = access::is_static(req.uri().path());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(CSP_NON_HTML));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"));
    if !static_file {
        // Audit data is never to be kept in shared or browser caches.
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if s.https {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    res
}

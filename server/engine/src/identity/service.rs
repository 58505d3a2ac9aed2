//! The identity service: users, roles, logins, MFA and API keys. Every
//! change and every security event is recorded in the ledger (anonymous
//! noise, such as refused keys and throttled sign-ins, once per source and
//! minute plus a summary: see `noise`). A change may grant, or act on, only
//! what the actor holds ([`Authority`]); changing a user's credentials or
//! narrowing their roles ends their sessions (the session epoch).
//!
//! Ordering of a change (the ledger and the identity tables share one SQLite
//! writer, so a write transaction cannot wait on the sequencer): check the
//! preconditions, record the event (if the ledger cannot record it, the
//! change is refused), apply the change, and if applying still fails record
//! a failure event that points at the first. No change goes unrecorded.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::apikey::{self, Scope};
use super::noise::{NoiseGate, NoiseKind, Verdict};
use super::password::{self, PolicyError};
use super::permission::{BUILTIN_ROLES, Permission, PermissionSet, UnknownPermission};
use super::throttle::Throttle;
use super::totp;
use crate::clock::{Clock, RandomError, RandomSource};
use crate::ledger::types::HeaderFields;
use crate::ledger::{Ledger, LedgerError, NewEntry, Receipt};
use crate::storage::Database;

/// Why an identity operation failed. Messages are safe to show: they never
/// contain passwords, secrets or tokens.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input, naming the field.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No such user, role or key.
    #[error("{0} not found")]
    NotFound(String),
    /// Already exists, or in use.
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed on this object.
    #[error("{0}")]
    Refused(String),
    /// The ledger could not record the event, so nothing was changed.
    #[error("the audit ledger could not record this change, so it was not made")]
    NotRecorded(#[source] LedgerError),
    /// Ledger failure (keys).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Database failure.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Password hashing failed.
    #[error("password hashing failed")]
    Hash,
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Too many passwords waiting to be checked: try again in a few seconds.
    #[error("too many sign-ins at once; try again in a few seconds")]
    Busy,
}

impl From<UnknownPermission> for IdentityError {
    fn from(e: UnknownPermission) -> Self {
        IdentityError::Invalid { field: "permissions", reason: e.to_string() }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid { field, reason: reason.into() }
}

/// Brute-force and MFA settings.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Consecutive failures that lock an account.
    pub lockout_threshold: i64,
    /// How long a lockout lasts.
    pub lockout_secs: i64,
    /// Failures per client address per window before attempts are refused.
    pub ip_failures: usize,
    /// Failures per user name (existing or not) per window.
    pub name_failures: usize,
    /// The throttling window.
    pub throttle_window_secs: i64,
    /// Issuer shown in authenticator apps.
    pub issuer: String,
    /// Refused or anonymous requests per source and minute before 429.
    pub noise_per_minute: u64,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            lockout_threshold: 5,
            lockout_secs: 15 * 60,
            ip_failures: 50,
            name_failures: 10,
            throttle_window_secs: 5 * 60,
            issuer: "Custos".into(),
            noise_per_minute: 120,
        }
    }
}

/// What an acting principal may grant to others: at most what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Custos itself (the command line, first-run set-up): unbounded.
    System,
    /// A user or key: the permissions it holds.
    Holds(PermissionSet),
}

impl Default for Authority {
    /// Nothing: a forgotten authority grants nothing.
    fn default() -> Self {
        Authority::Holds(PermissionSet::default())
    }
}

/// Who is acting, for the audit record (never carries secrets).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// User id, key prefix, or `custos`.
    pub id: Option<String>,
    /// user, api_key or system.
    pub kind: &'static str,
    /// User name or key name.
    pub name: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// ui, api or cli.
    pub channel: &'static str,
    /// Request id, for correlation.
    pub request_id: Option<String>,
    /// What this actor may grant (never recorded).
    pub authority: Authority,
}

impl Actor {
    /// The system itself (first-run set-up, the command line).
    pub fn system(channel: &'static str) -> Actor {
        Actor {
            id: Some("custos".into()),
            kind: "system",
            name: Some("custos".into()),
            channel,
            authority: Authority::System,
            ..Actor::default()
        }
    }

    /// A signed-in user.
    pub fn user(p: &Principal, channel: &'static str) -> Actor {
        Actor {
            id: Some(p.user_id.to_string()),
            kind: "user",
            name: Some(p.username.clone()),
            channel,
            authority: Authority::Holds(p.permissions.clone()),
            ..Actor::default()
        }
    }

    /// With client details.
    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>, request_id: Option<String>) -> Self {
        self.ip = ip;
        self.user_agent = user_agent;
        self.request_id = request_id;
        self
    }
}

/// A signed-in user and what they may do.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// User id.
    pub user_id: i64,
    /// User name.
    pub username: String,
    /// Name for display.
    pub display_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Effective permissions.
    pub permissions: PermissionSet,
    /// TOTP is enrolled.
    pub mfa_enabled: bool,
    /// A role requires MFA.
    pub mfa_required: bool,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
    /// Bumped when the user's password or MFA is changed or reset, when the
    /// user is disabled, loses a role, or one of their roles loses a
    /// permission or starts requiring MFA: a session started under an older
    /// epoch has ended. (Adding a role or enrolling MFA does not bump it.)
    pub session_epoch: i64,
}

impl Principal {
    /// Whether a permission is granted.
    pub fn allows(&self, p: Permission) -> bool {
        self.permissions.allows(p)
    }
}

/// A login attempt.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    /// As typed.
    pub username: &'a str,
    /// As typed.
    pub password: &'a SecretString,
    /// Client address and details, for throttling and the record.
    pub actor: Actor,
}

/// Why a login was refused. Deliberately coarse: the message never tells
/// whether the account exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRejection {
    /// Wrong name, password or code; or a disabled account.
    InvalidCredentials,
    /// Too many failures: the account (or name) is locked for a while.
    LockedOut,
    /// Too many failures from this client address.
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// The result of the password step.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in.
    Success(Principal),
    /// Password correct; a TOTP or recovery code is needed next.
    MfaRequired {
        /// The user to finish signing in.
        user_id: i64,
    },
    /// Refused.
    Rejected(LoginRejection),
}

/// A user, for lists.
#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    /// Id.
    pub id: i64,
    /// User name.
    pub username: String,
    /// E-mail.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Disabled.
    pub disabled: bool,
    /// TOTP enrolled.
    pub mfa_enabled: bool,
    /// Locked until (µs), if locked now.
    pub locked_until_us: Option<i64>,
    /// Last successful sign-in (µs).
    pub last_login_us: Option<i64>,
}

/// A role, for lists.
#[derive(Debug, Clone, Serialize)]
pub struct RoleSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Shipped with Custos.
    pub builtin: bool,
    /// Members must use MFA.
    pub require_mfa: bool,
    /// Granted permissions.
    pub permissions: PermissionSet,
    /// Number of users holding it.
    pub members: i64,
}

/// An API key, for lists (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeySummary {
    /// Id.
    pub id: i64,
    /// Public lookup prefix.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Created (µs).
    pub created_us: i64,
    /// Expires (µs).
    pub expires_us: Option<i64>,
    /// Revoked (µs).
    pub revoked_us: Option<i64>,
    /// Last used (µs, to the minute).
    pub last_used_us: Option<i64>,
}

/// A caller authenticated by API key.
#[derive(Debug, Clone, Serialize)]
pub struct ApiPrincipal {
    /// Key id.
    pub key_id: i64,
    /// Key prefix.
    pub prefix: String,
    /// Key name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
}

impl ApiPrincipal {
    /// Permissions the key's scopes grant.
    pub fn permissions(&self) -> PermissionSet {
        let mut p = Vec::new();
        for s in &self.scopes {
            p.push(match s {
                Scope::Ingest => Permission::AuditIngest,
                Scope::Read => Permission::AuditRead,
            });
        }
        PermissionSet::of(&p)
    }
}

/// Who is making a request.
#[derive(Debug, Clone, Default)]
pub enum Caller {
    /// Nobody signed in, no key.
    #[default]
    Anonymous,
    /// A signed-in user.
    User(Principal),
    /// A client with an API key.
    ApiKey(ApiPrincipal),
}

impl Caller {
    /// What the caller may do.
    pub fn permissions(&self) -> PermissionSet {
        match self {
            Caller::Anonymous => PermissionSet::default(),
            Caller::User(p) => p.permissions.clone(),
            Caller::ApiKey(k) => k.permissions(),
        }
    }

    /// Whether `p` is granted.
    pub fn allows(&self, p: Permission) -> bool {
        self.permissions().allows(p)
    }

    /// Whether anyone is signed in (or a key is used).
    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Caller::Anonymous)
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<&Principal> {
        match self {
            Caller::User(p) => Some(p),
            _ => None,
        }
    }

    /// The caller as the actor of an audit record.
    pub fn actor(&self, channel: &'static str) -> Actor {
        match self {
            Caller::Anonymous => Actor { kind: "anonymous", channel, ..Actor::default() },
            Caller::User(p) => Actor::user(p, channel),
            Caller::ApiKey(k) => Actor {
                id: Some(k.prefix.clone()),
                kind: "api_key",
                name: Some(k.name.clone()),
                channel,
                authority: Authority::Holds(k.permissions()),
                ..Actor::default()
            },
        }
    }
}

/// A new user.
#[derive(Debug)]
pub struct NewUser {
    /// 3-64 characters: letters, digits, `.`, `_`, `-`, `@`.
    pub username: String,
    /// Optional e-mail.
    pub email: Option<String>,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Initial password.
    pub password: SecretString,
    /// Role names.
    pub roles: Vec<String>,
    /// The user must change the password at first sign-in.
    pub must_change_password: bool,
}

/// A TOTP enrolment in progress.
#[derive(Debug, Clone, Serialize)]
pub struct MfaEnrollment {
    /// The secret, base32, for manual entry.
    pub secret_base32: String,
    /// The `otpauth://` URI (rendered as a QR code).
    pub otpauth_uri: String,
}

const RECOVERY_CODES: usize = 10;
const USER_COLUMNS: &str = "id, username, email, display_name, password_hash, must_change_password, disabled, \
    mfa_secret, mfa_enabled, failed_logins, locked_until, last_login_at, session_epoch";

struct UserRow {
    id: i64,
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    password_hash: String,
    must_change_password: bool,
    disabled: bool,
    mfa_secret: Option<Vec<u8>>,
    mfa_enabled: bool,
    failed_logins: i64,
    locked_until: Option<i64>,
    last_login_at: Option<i64>,
    session_epoch: i64,
}

impl UserRow {
    /// Consecutive failures that still count: none once a lock has run
    /// out (a lock that expired starts the count afresh, as an unknown
    /// name's does).
    fn live_failures(&self, now: i64) -> i64 {
        if self.locked_until.is_some_and(|t| t <= now) { 0 } else { self.failed_logins }
    }
}

fn flag(r: &QueryResult, col: &str) -> Result<bool, DbErr> {
    Ok(r.try_get::<i16>("", col)? != 0)
}

fn user_from_row(r: &QueryResult) -> Result<UserRow, DbErr> {
    Ok(UserRow {
        id: r.try_get("", "id")?,
        username: r.try_get("", "username")?,
        email: r.try_get("", "email")?,
        display_name: r.try_get("", "display_name")?,
        password_hash: r.try_get("", "password_hash")?,
        must_change_password: flag(r, "must_change_password")?,
        disabled: flag(r, "disabled")?,
        mfa_secret: r.try_get("", "mfa_secret")?,
        mfa_enabled: flag(r, "mfa_enabled")?,
        failed_logins: r.try_get::<i32>("", "failed_logins")?.into(),
        locked_until: r.try_get("", "locked_until")?,
        last_login_at: r.try_get("", "last_login_at")?,
        session_epoch: r.try_get("", "session_epoch")?,
    })
}

fn normalize_username(s: &str) -> String {
    s.trim().to_lowercase()
}

fn validate_username(s: &str) -> Result<String, IdentityError> {
    let u = normalize_username(s);
    if !(3..=64).contains(&u.chars().count()) {
        return Err(invalid("username", "must be 3 to 64 characters long"));
    }
    if !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
        return Err(invalid("username", "may contain only letters, digits, '.', '_', '-' and '@'"));
    }
    Ok(u)
}

fn validate_email(s: Option<&str>) -> Result<Option<String>, IdentityError> {
    let Some(e) = s.map(str::trim).filter(|e| !e.is_empty()) else { return Ok(None) };
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(char::is_whitespace);
    if !valid {
        return Err(invalid("email", "is not an e-mail address"));
    }
    Ok(Some(e.to_owned()))
}

fn policy_error(e: PolicyError) -> IdentityError {
    invalid("password", e.to_string())
}

fn recovery_hash(code: &str) -> Vec<u8> {
    let norm: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    Sha256::digest(format!("custos/v1/recovery-code:{norm}").as_bytes()).to_vec()
}

/// The session key holding the session epoch a session started under.
pub const SESSION_EPOCH_KEY: &str = "epoch";

/// The result of presenting a bearer token.
#[derive(Debug)]
pub enum KeyCheck {
    /// A valid key.
    Valid(ApiPrincipal),
    /// Not a valid key (recorded, or counted in the minute's summary).
    Refused,
    /// Too many refused keys from this source this minute: refused before
    /// any lookup.
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
}

/// A failed sign-in attempt, for [`Identity::login_failure`].
#[derive(Clone, Copy)]
struct Failed<'a> {
    actor: &'a Actor,
    username: &'a str,
    /// The throttles' slots were already taken for this attempt.
    counted: bool,
}

/// The key a client address is throttled under (its /64 for IPv6).
fn throttle_key(actor: &Actor) -> String {
    match actor.ip.as_deref().map(str::parse::<std::net::IpAddr>) {
        Some(Ok(ip)) => super::throttle::address_key(ip),
        Some(Err(_)) => actor.ip.clone().unwrap_or_default(),
        None => String::new(),
    }
}

impl KeyCheck {
    /// The key's principal, when valid.
    pub fn valid(self) -> Option<ApiPrincipal> {
        match self {
            KeyCheck::Valid(p) => Some(p),
            _ => None,
        }
    }
}

/// Refuses a change that would grant (or act on) permissions the actor does
/// not hold; only `admin` (or Custos itself) may.
fn need_authority(actor: &Actor, involved: &PermissionSet, what: &str) -> Result<(), IdentityError> {
    let Authority::Holds(held) = &actor.authority else { return Ok(()) };
    let missing = involved.not_held_by(held);
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    Err(IdentityError::Refused(format!("{what} involves {list}, which you do not hold; only an admin may do this")))
}

/// Password hashes computed at once (each takes ~19 MiB and tens of ms of
/// one core); more wait their turn instead of starving the server.
const CONCURRENT_HASHES: usize = 2;
/// Password checks that may wait for a turn; beyond, and after
/// [`HASH_WAIT`], the attempt is refused (busy) instead of queueing for
/// minutes behind a flood.
const WAITING_HASHES: usize = 32;
/// Longest wait for a turn to hash.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The key a typed user name is throttled under: a digest, so that the
/// throttles' memory does not grow with what is typed.
fn name_key(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// The identity service.
pub struct Identity {
    db: Database,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    settings: IdentitySettings,
    ip_throttle: Throttle,
    name_throttle: Throttle,
    /// Failures per unknown user name, so that an unknown name is "locked"
    /// at the same threshold as an account (the answer never tells them apart).
    unknown_names: Throttle,
    /// Anonymous noise, per source and minute.
    noise: NoiseGate,
    /// Bounds concurrent password hashing.
    hashing: tokio::sync::Semaphore,
    /// Password checks waiting for a turn.
    hash_waiting: std::sync::atomic::AtomicUsize,
    /// A hash to verify against when the user does not exist, so that an
    /// unknown name costs as much time as a wrong password.
    dummy_hash: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// The service, with the built-in roles in place.
    pub async fn new(
        db: Database,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn RandomSource>,
        settings: IdentitySettings,
    ) -> Result<Identity, IdentityError> {
        let dummy_hash =
            password::hash("custos dummy password for timing", rng.as_ref()).map_err(|_| IdentityError::Hash)?;
        let window = settings.throttle_window_secs;
        let id = Identity {
            ip_throttle: Throttle::new(settings.ip_failures, window, clock.clone()),
            name_throttle: Throttle::new(settings.name_failures, window, clock.clone()),
            unknown_names: Throttle::new(
                usize::try_from(settings.lockout_threshold.max(1)).unwrap_or(usize::MAX),
                settings.lockout_secs.max(1),
                clock.clone(),
            ),
            noise: NoiseGate::new(settings.noise_per_minute, clock.clone()),
            hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
            hash_waiting: std::sync::atomic::AtomicUsize::new(0),
            db,
            ledger,
            clock,
            rng,
            settings,
            dummy_hash,
        };
        id.ensure_builtin_roles().await?;
        Ok(id)
    }

    /// The ledger events go to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn now(&self) -> i64 {
        self.clock.now_us()
    }

    /// A turn to hash: at most [`CONCURRENT_HASHES`] at once, at most
    /// [`WAITING_HASHES`] waiting, none waiting longer than [`HASH_WAIT`].
    async fn hash_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, IdentityError> {
        use std::sync::atomic::Ordering;
        if self.hash_waiting.fetch_add(1, Ordering::SeqCst) >= WAITING_HASHES {
            self.hash_waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(IdentityError::Busy);
        }
        let turn = tokio::time::timeout(HASH_WAIT, self.hashing.acquire()).await;
        self.hash_waiting.fetch_sub(1, Ordering::SeqCst);
        match turn {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(IdentityError::Busy),
        }
    }

    /// Checks a password against a PHC string on the blocking pool, in turn.
    async fn password_matches(&self, password: &SecretString, phc: &str) -> Result<bool, IdentityError> {
        let _permit = self.hash_turn().await?;
        let (pw, phc) = (password.clone(), phc.to_owned());
        Ok(tokio::task::spawn_blocking(move || password::verify(pw.expose_secret(), &phc)).await.unwrap_or(false))
    }

    /// Hashes a password on the blocking pool, in turn.
    async fn hash_password(&self, password: &SecretString) -> Result<String, IdentityError> {
        let _permit = self.hash_turn().await?;
        let (pw, rng) = (password.clone(), self.rng.clone());
        tokio::task::spawn_blocking(move || password::hash(pw.expose_secret(), rng.as_ref()))
            .await
            .map_err(|_| IdentityError::Hash)?
            .map_err(|_| IdentityError::Hash)
    }

    /// Every permission a user holds through their roles.
    async fn user_permissions(&self, user_id: i64) -> Result<PermissionSet, IdentityError> {
        let mut held = PermissionSet::default();
        for (_, p, _) in self.roles_of(user_id).await? {
            held.extend(&p);
        }
        Ok(held)
    }

    /// Every permission the named roles grant together.
    async fn roles_permissions(&self, names: &[String]) -> Result<PermissionSet, IdentityError> {
        let roles = self.list_roles().await?;
        let mut all = PermissionSet::default();
        for name in names {
            match roles.iter().find(|r| &r.name == name) {
                Some(r) => all.extend(&r.permissions),
                None => return Err(invalid("roles", format!("no role named `{name}`"))),
            }
        }
        Ok(all)
    }

    /// Ends every session of a user (they started under an older epoch).
    async fn end_sessions(&self, user_id: i64) -> Result<i64, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ? RETURNING session_epoch",
                vec![user_id.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "session_epoch")).transpose()?.unwrap_or(0))
    }

    async fn ensure_builtin_roles(&self) -> Result<(), IdentityError> {
        let now = self.now();
        for r in BUILTIN_ROLES {
            let perms = PermissionSet::of(r.permissions).to_text();
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "INSERT INTO roles (name, description, builtin, require_mfa, permissions, created_at, updated_at) \
                     VALUES (?, ?, 1, 0, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    vec![r.name.into(), r.description.into(), perms.clone().into(), now.into(), now.into()],
                ))
                .await?;
            // Built-in roles always grant what this version defines.
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE roles SET permissions = ?, builtin = 1 WHERE name = ? AND permissions <> ?",
                    vec![perms.clone().into(), r.name.into(), perms.into()],
                ))
                .await?;
        }
        Ok(())
    }

    // --- the audit record -------------------------------------------------

    /// Records a security event; returns its receipt.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        actor: &Actor,
        category: &str,
        action: &str,
        outcome: &str,
        severity: &str,
        resource: (&str, Option<String>),
        details: serde_json::Value,
    ) -> Result<Receipt, LedgerError> {
        let payload = serde_json::json!({
            "actor": {
                "id": actor.id, "kind": actor.kind, "name": actor.name,
                "ip": actor.ip, "user_agent": actor.user_agent,
            },
            "resource": { "type": resource.0, "id": resource.1 },
            "source": { "application": "custos", "channel": actor.channel },
            "correlation": { "request_id": actor.request_id },
            "outcome": outcome,
            "details": details,
        });
        let entry = NewEntry {
            event_id: Uuid::now_v7(),
            occurred_at_us: self.now(),
            fields: HeaderFields {
                category: category.into(),
                action: action.into(),
                outcome: outcome.into(),
                severity: severity.into(),
                actor_id: actor.id.clone(),
                actor_kind: Some(actor.kind.into()),
                resource_type: Some(resource.0.into()),
                resource_id: resource.1,
                tenant: None,
                channel: Some(actor.channel.into()),
                source_app: Some("custos".into()),
            },
            payload: payload.to_string().into_bytes(),
            duration_ms: None,
        };
        self.ledger.append_one(entry).await
    }

    /// Records a change before it is made (refusing it if the ledger cannot).
    async fn record_change(
        &self,
        actor: &Actor,
        action: &str,
        resource: (&str, Option<String>),
        details: serde_json::Value,
    ) -> Result<Receipt, IdentityError> {
        self.record(actor, "admin", action, "success", "notice", resource, details)
            .await
            .map_err(IdentityError::NotRecorded)
    }

    /// Applies a change recorded by `record_change`; if it fails, records the
    /// failure too, pointing at the first event.
    async fn apply<T>(
        &self,
        actor: &Actor,
        action: &str,
        recorded: Receipt,
        resource: (&str, Option<String>),
        change: impl std::future::Future<Output = Result<T, IdentityError>>,
    ) -> Result<T, IdentityError> {
        match change.await {
            Ok(v) => Ok(v),
            Err(e) => {
                let details = serde_json::json!({ "reason": e.to_string(), "recorded_as": recorded.event_id });
                if let Err(le) = self.record(actor, "admin", action, "error", "error", resource, details).await {
                    tracing::error!(error = %le, "could not record the failure of a recorded change");
                }
                Err(e)
            }
        }
    }

    // --- users ---------------------------------------------------------------

    async fn find_user(&self, username: &str) -> Result<Option<UserRow>, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"),
                vec![normalize_username(username).into()],
            ))
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"), vec![id.into()]))
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn roles_of(&self, user_id: i64) -> Result<Vec<(String, PermissionSet, bool)>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(
                "SELECT r.name, r.permissions, r.require_mfa FROM roles r JOIN user_roles ur ON ur.role_id = r.id \
                 WHERE ur.user_id = ? ORDER BY r.name",
                vec![user_id.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let perms: String = r.try_get("", "permissions")?;
                Ok((r.try_get("", "name")?, PermissionSet::parse(&perms)?, flag(r, "require_mfa")?))
            })
            .collect()
    }

    async fn principal_of(&self, u: &UserRow) -> Result<Principal, IdentityError> {
        let roles = self.roles_of(u.id).await?;
        let mut permissions = PermissionSet::default();
        for (_, p, _) in &roles {
            permissions.extend(p);
        }
        Ok(Principal {
            user_id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            mfa_required: roles.iter().any(|(_, _, m)| *m),
            roles: roles.into_iter().map(|(n, _, _)| n).collect(),
            permissions,
            mfa_enabled: u.mfa_enabled,
            must_change_password: u.must_change_password,
            session_epoch: u.session_epoch,
        })
    }

    /// The current principal of a user (None when disabled or gone), read
    /// fresh so that role changes and disabling take effect at once.
    pub async fn principal(&self, user_id: i64) -> Result<Option<Principal>, IdentityError> {
        match self.user_by_id(user_id).await? {
            Some(u) if !u.disabled => Ok(Some(self.principal_of(&u).await?)),
            _ => Ok(None),
        }
    }

    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, IdentityError> {
        let row = self.db.conn().query_one_raw(self.db.stmt("SELECT COUNT(*) AS n FROM users", vec![])).await?;
        Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
    }

    async fn role_ids(&self, names: &[String]) -> Result<Vec<i64>, IdentityError> {
        let mut ids = Vec::new();
        for name in names {
            let row = self
                .db
                .conn()
                .query_one_raw(self.db.stmt("SELECT id FROM roles WHERE name = ?", vec![name.clone().into()]))
                .await?;
            match row {
                Some(r) => ids.push(r.try_get::<i64>("", "id")?),
                None => return Err(invalid("roles", format!("no role named `{name}`"))),
            }
        }
        Ok(ids)
    }

    /// Creates a user.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<i64, IdentityError> {
        let username = validate_username(&new.username)?;
        let email = validate_email(new.email.as_deref())?;
        password::check_policy(new.password.expose_secret(), &username, email.as_deref()).map_err(policy_error)?;
        if self.find_user(&username).await?.is_some() {
            return Err(IdentityError::Conflict(format!("a user named `{username}` already exists")));
        }
        let role_ids = self.role_ids(&new.roles).await?;
        need_authority(actor, &self.roles_permissions(&new.roles).await?, "giving these roles")?;
        let hash = self.hash_password(&new.password).await?;
        let resource = ("user", Some(username.clone()));
        let details = serde_json::json!({ "username": username, "email": email, "roles": new.roles });
        let recorded = self.record_change(actor, "user.create", resource.clone(), details).await?;
        self.apply(actor, "user.create", recorded, resource, async {
            let now = self.now();
            let row = self
                .db
                .conn()
                .query_one_raw(self.db.stmt(
                    "INSERT INTO users (username, email, display_name, password_hash, must_change_password, \
                     password_changed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    vec![
                        username.clone().into(),
                        email.clone().into(),
                        new.display_name.clone().into(),
                        hash.into(),
                        Value::SmallInt(Some(i16::from(new.must_change_password))),
                        now.into(),
                        now.into(),
                        now.into(),
                    ],
                ))
                .await?
                .ok_or_else(|| IdentityError::Conflict("user was not created".into()))?;
            let id: i64 = row.try_get("", "id")?;
            for role in &role_ids {
                self.db
                    .conn()
                    .execute_raw(self.db.stmt(
                        "INSERT INTO user_roles (user_id, role_id) VALUES (?, ?)",
                        vec![id.into(), (*role).into()],
                    ))
                    .await?;
            }
            Ok(id)
        })
        .await
    }

    /// On a brand-new installation, creates the first administrator: from
    /// the given name and password, or with a random password that is
    /// returned (to be shown once). Does nothing when users exist.
    pub async fn ensure_first_admin(
        &self,
        username: Option<&str>,
        password: Option<SecretString>,
    ) -> Result<Option<(String, Option<SecretString>)>, IdentityError> {
        if self.user_count().await? > 0 {
            return Ok(None);
        }
        let username = username.unwrap_or("admin").to_owned();
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (password::generate(self.rng.as_ref())?, true),
        };
        let new = NewUser {
            username: username.clone(),
            email: None,
            display_name: Some("Administrator".into()),
            password: password.clone(),
            roles: vec!["admin".into()],
            must_change_password: generated,
        };
        self.create_user(&Actor::system("cli"), new).await?;
        Ok(Some((username, generated.then_some(password))))
    }

    /// All users.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"), vec![]))
            .await?;
        let now = self.now();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let u = user_from_row(r)?;
            let roles = self.roles_of(u.id).await?.into_iter().map(|(n, _, _)| n).collect();
            out.push(UserSummary {
                id: u.id,
                username: u.username,
                email: u.email,
                display_name: u.display_name,
                roles,
                disabled: u.disabled,
                mfa_enabled: u.mfa_enabled,
                locked_until_us: u.locked_until.filter(|t| *t > now),
                last_login_us: u.last_login_at,
            });
        }
        Ok(out)
    }

    async fn require_user(&self, username: &str) -> Result<UserRow, IdentityError> {
        self.find_user(username).await?.ok_or_else(|| IdentityError::NotFound(format!("user `{username}`")))
    }

    /// Disables or re-enables a user (their sessions end at the next request).
    pub async fn set_disabled(&self, actor: &Actor, username: &str, disabled: bool) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        if actor.kind == "user" && actor.id.as_deref() == Some(&u.id.to_string()) && disabled {
            return Err(IdentityError::Refused("you cannot disable your own account".into()));
        }
        need_authority(actor, &self.user_permissions(u.id).await?, &format!("changing user `{}`", u.username))?;
        let action = if disabled { "user.disable" } else { "user.enable" };
        let resource = ("user", Some(u.username.clone()));
        let recorded = self.record_change(actor, action, resource.clone(), serde_json::json!({})).await?;
        self.apply(actor, action, recorded, resource, async {
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE users SET disabled = ?, failed_logins = 0, locked_until = NULL, updated_at = ?, \
                     session_epoch = session_epoch + ? WHERE id = ?",
                    vec![
                        Value::SmallInt(Some(i16::from(disabled))),
                        self.now().into(),
                        i64::from(disabled).into(),
                        u.id.into(),
                    ],
                ))
                .await?;
            Ok(())
        })
        .await
    }

    /// Stores a new password hash and ends every session of the user;
    /// returns the new session epoch.
    async fn store_password(&self, user_id: i64, hash: String, must_change: bool) -> Result<i64, IdentityError> {
        let now = self.now();
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                "UPDATE users SET password_hash = ?, must_change_password = ?, password_changed_at = ?, \
                 failed_logins = 0, locked_until = NULL, updated_at = ?, session_epoch = session_epoch + 1 \
                 WHERE id = ? RETURNING session_epoch",
                vec![
                    hash.into(),
                    Value::SmallInt(Some(i16::from(must_change))),
                    now.into(),
                    now.into(),
                    user_id.into(),
                ],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "session_epoch")).transpose()?.unwrap_or(0))
    }

    /// An administrator sets a user's password (the user must change it at
    /// next sign-in unless `must_change` is false). Also lifts a lockout.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        username: &str,
        new_password: &SecretString,
        must_change: bool,
    ) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        need_authority(
            actor,
            &self.user_permissions(u.id).await?,
            &format!("resetting the password of `{}`", u.username),
        )?;
        password::check_policy(new_password.expose_secret(), &u.username, u.email.as_deref()).map_err(policy_error)?;
        let hash = self.hash_password(new_password).await?;
        let resource = ("user", Some(u.username.clone()));
        let recorded = self
            .record_change(
                actor,
                "user.password.reset",
                resource.clone(),
                serde_json::json!({ "must_change": must_change }),
            )
            .await?;
        self.apply(actor, "user.password.reset", recorded, resource, self.store_password(u.id, hash, must_change))
            .await
            .map(|_| ())
    }

    /// A user changes their own password (the current one is required).
    /// Every other session of theirs ends; returns the new session epoch,
    /// which the caller's own session takes on to stay signed in.
    pub async fn change_password(
        &self,
        actor: &Actor,
        user_id: i64,
        current: &SecretString,
        new_password: &SecretString,
    ) -> Result<i64, IdentityError> {
        let u = self.user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))?;
        if !self.password_matches(current, &u.password_hash).await? {
            let _ = self
                .record(
                    actor,
                    "authentication",
                    "user.password.change",
                    "failure",
                    "warning",
                    ("user", Some(u.username.clone())),
                    serde_json::json!({ "reason": "current password incorrect" }),
                )
                .await;
            return Err(invalid("current_password", "is not correct"));
        }
        if current.expose_secret() == new_password.expose_secret() {
            return Err(invalid("new_password", "must differ from the current password"));
        }
        password::check_policy(new_password.expose_secret(), &u.username, u.email.as_deref()).map_err(policy_error)?;
        let hash = self.hash_password(new_password).await?;
        let resource = ("user", Some(u.username.clone()));
        let recorded = self
            .record(
                actor,
                "authentication",
                "user.password.change",
                "success",
                "notice",
                resource.clone(),
                serde_json::json!({}),
            )
            .await
            .map_err(IdentityError::NotRecorded)?;
        self.apply(actor, "user.password.change", recorded, resource, self.store_password(u.id, hash, false)).await
    }

    /// Replaces a user's roles.
    pub async fn set_roles(&self, actor: &Actor, username: &str, roles: &[String]) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        let ids = self.role_ids(roles).await?;
        need_authority(actor, &self.user_permissions(u.id).await?, &format!("changing the roles of `{}`", u.username))?;
        need_authority(actor, &self.roles_permissions(roles).await?, "giving these roles")?;
        let before: Vec<String> = self.roles_of(u.id).await?.into_iter().map(|(n, _, _)| n).collect();
        let removes = before.iter().any(|r| !roles.contains(r));
        if actor.kind == "user"
            && actor.id.as_deref() == Some(&u.id.to_string())
            && before.iter().any(|r| r == "admin")
            && !roles.iter().any(|r| r == "admin")
        {
            return Err(IdentityError::Refused("you cannot remove your own admin role".into()));
        }
        let resource = ("user", Some(u.username.clone()));
        let details = serde_json::json!({ "before": before, "after": roles });
        let recorded = self.record_change(actor, "user.roles.update", resource.clone(), details).await?;
        self.apply(actor, "user.roles.update", recorded, resource, async {
            self.db
                .conn()
                .execute_raw(self.db.stmt("DELETE FROM user_roles WHERE user_id = ?", vec![u.id.into()]))
                .await?;
            for id in &ids {
                self.db
                    .conn()
                    .execute_raw(self.db.stmt(
                        "INSERT INTO user_roles (user_id, role_id) VALUES (?, ?)",
                        vec![u.id.into(), (*id).into()],
                    ))
                    .await?;
            }
            // A role taken away ends the user's sessions (they may hold
            // pages, tails or forms of what they may no longer do).
            if removes {
                self.end_sessions(u.id).await?;
            }
            Ok(())
        })
        .await
    }

    // --- roles ----------------------------------------------------------------

    /// All roles.
    pub async fn list_roles(&self) -> Result<Vec<RoleSummary>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(
                "SELECT r.id, r.name, r.description, r.builtin, r.require_mfa, r.permissions, \
                 (SELECT COUNT(*) FROM user_roles ur WHERE ur.role_id = r.id) AS members \
                 FROM roles r ORDER BY r.builtin DESC, r.name",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let perms: String = r.try_get("", "permissions")?;
                Ok(RoleSummary {
                    id: r.try_get("", "id")?,
                    name: r.try_get("", "name")?,
                    description: r.try_get("", "description")?,
                    builtin: flag(r, "builtin")?,
                    require_mfa: flag(r, "require_mfa")?,
                    permissions: PermissionSet::parse(&perms)?,
                    members: r.try_get("", "members")?,
                })
            })
            .collect()
    }

    async fn role_member_ids(&self, role_id: i64) -> Result<Vec<i64>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt("SELECT user_id FROM user_roles WHERE role_id = ?", vec![role_id.into()]))
            .await?;
        Ok(rows.iter().map(|r| r.try_get::<i64>("", "user_id")).collect::<Result<_, _>>()?)
    }

    fn validate_role_name(name: &str) -> Result<String, IdentityError> {
        let n = name.trim().to_lowercase();
        if !(2..=48).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(invalid("name", "must be 2 to 48 letters, digits, '_' or '-'"));
        }
        Ok(n)
    }

    /// Creates a custom role.
    pub async fn create_role(
        &self,
        actor: &Actor,
        name: &str,
        description: &str,
        permissions: &PermissionSet,
        require_mfa: bool,
    ) -> Result<(), IdentityError> {
        let name = Self::validate_role_name(name)?;
        if self.list_roles().await?.iter().any(|r| r.name == name) {
            return Err(IdentityError::Conflict(format!("a role named `{name}` already exists")));
        }
        if permissions.is_empty() {
            return Err(invalid("permissions", "a role must grant at least one permission"));
        }
        need_authority(actor, permissions, "this role")?;
        let resource = ("role", Some(name.clone()));
        let details = serde_json::json!({ "permissions": permissions.to_text(), "require_mfa": require_mfa });
        let recorded = self.record_change(actor, "role.create", resource.clone(), details).await?;
        self.apply(actor, "role.create", recorded, resource, async {
            let now = self.now();
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "INSERT INTO roles (name, description, builtin, require_mfa, permissions, created_at, updated_at) \
                     VALUES (?, ?, 0, ?, ?, ?, ?)",
                    vec![
                        name.clone().into(),
                        description.trim().to_owned().into(),
                        Value::SmallInt(Some(i16::from(require_mfa))),
                        permissions.to_text().into(),
                        now.into(),
                        now.into(),
                    ],
                ))
                .await?;
            Ok(())
        })
        .await
    }

    /// Changes a role: permissions (custom roles only) and whether it
    /// requires MFA (any role).
    pub async fn update_role(
        &self,
        actor: &Actor,
        name: &str,
        permissions: Option<&PermissionSet>,
        require_mfa: bool,
    ) -> Result<(), IdentityError> {
        let role = self
            .list_roles()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| IdentityError::NotFound(format!("role `{name}`")))?;
        if role.builtin && permissions.is_some_and(|p| *p != role.permissions) {
            return Err(IdentityError::Refused(format!("the permissions of built-in role `{name}` cannot be changed")));
        }
        let perms = permissions.cloned().unwrap_or_else(|| role.permissions.clone());
        if perms.is_empty() {
            return Err(invalid("permissions", "a role must grant at least one permission"));
        }
        need_authority(actor, &role.permissions, &format!("changing role `{}`", role.name))?;
        need_authority(actor, &perms, &format!("changing role `{}`", role.name))?;
        if role.require_mfa && !require_mfa {
            // Members may hold other roles too: all they hold counts.
            for member in self.role_member_ids(role.id).await? {
                need_authority(
                    actor,
                    &self.user_permissions(member).await?,
                    &format!("lifting the MFA requirement of role `{}`", role.name),
                )?;
            }
        }
        let resource = ("role", Some(role.name.clone()));
        let details = serde_json::json!({
            "before": { "permissions": role.permissions.to_text(), "require_mfa": role.require_mfa },
            "after": { "permissions": perms.to_text(), "require_mfa": require_mfa },
        });
        // Members lose something (a permission, or their sessions' MFA
        // exemption): their sessions end, as when a role is taken away.
        let narrower = !role.permissions.not_held_by(&perms).is_empty() || (require_mfa && !role.require_mfa);
        let recorded = self.record_change(actor, "role.update", resource.clone(), details).await?;
        self.apply(actor, "role.update", recorded, resource, async {
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE roles SET permissions = ?, require_mfa = ?, updated_at = ? WHERE id = ?",
                    vec![
                        perms.to_text().into(),
                        Value::SmallInt(Some(i16::from(require_mfa))),
                        self.now().into(),
                        role.id.into(),
                    ],
                ))
                .await?;
            if narrower {
                for member in self.role_member_ids(role.id).await? {
                    self.end_sessions(member).await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Deletes a custom role that nobody holds.
    pub async fn delete_role(&self, actor: &Actor, name: &str) -> Result<(), IdentityError> {
        let role = self
            .list_roles()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| IdentityError::NotFound(format!("role `{name}`")))?;
        if role.builtin {
            return Err(IdentityError::Refused(format!("built-in role `{name}` cannot be deleted")));
        }
        if role.members > 0 {
            return Err(IdentityError::Conflict(format!("role `{name}` is held by {} user(s)", role.members)));
        }
        need_authority(actor, &role.permissions, &format!("deleting role `{}`", role.name))?;
        let resource = ("role", Some(role.name.clone()));
        let recorded = self
            .record_change(
                actor,
                "role.delete",
                resource.clone(),
                serde_json::json!({ "permissions": role.permissions.to_text() }),
            )
            .await?;
        self.apply(actor, "role.delete", recorded, resource, async {
            self.db.conn().execute_raw(self.db.stmt("DELETE FROM roles WHERE id = ?", vec![role.id.into()])).await?;
            Ok(())
        })
        .await
    }

    // --- sign-in --------------------------------------------------------------

    /// A user name as typed at sign-in, for the record: a keyed pseudonym
    /// (`name:…`), never the text (it may be a password typed in the wrong
    /// field); equal names give equal pseudonyms.
    fn typed_name(&self, name: &str) -> String {
        format!("name:{}", self.ledger.keys().pseudonym(name))
    }

    /// Records a failed sign-in. `counted`: the throttles' slots were
    /// already taken for this attempt. `known`: the name is an account (an
    /// unknown name is recorded as a pseudonym: what was typed may be a
    /// password).
    async fn login_failure(&self, failed: Failed<'_>, reason: &str, user: Option<&UserRow>, known: bool) {
        let Failed { actor, username, counted } = failed;
        let name = normalize_username(username);
        if !counted {
            self.ip_throttle.fail(&throttle_key(actor));
            self.name_throttle.fail(&name_key(&name));
        }
        let mut locked_now = false;
        if let Some(u) = user {
            let failures = u.live_failures(self.now()) + 1;
            let lock = failures >= self.settings.lockout_threshold;
            let until = lock.then(|| self.now() + self.settings.lockout_secs * 1_000_000);
            let res = self
                .db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE users SET failed_logins = ?, locked_until = COALESCE(?, locked_until) WHERE id = ?",
                    vec![Value::Int(Some(failures as i32)), until.into(), u.id.into()],
                ))
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "could not count a failed sign-in");
            }
            locked_now = lock && u.locked_until.is_none_or(|t| t <= self.now());
        }
        let shown = if known { name } else { self.typed_name(&name) };
        let mut a = actor.clone();
        a.name = Some(shown.clone());
        a.id = user.map(|u| u.id.to_string());
        let resource = ("user", Some(shown));
        let details = serde_json::json!({ "reason": reason });
        if let Err(e) =
            self.record(&a, "authentication", "user.login", "failure", "warning", resource.clone(), details).await
        {
            tracing::error!(error = %e, "could not record a failed sign-in");
        }
        if locked_now {
            let details = serde_json::json!({
                "failures": self.settings.lockout_threshold, "lockout_seconds": self.settings.lockout_secs,
            });
            if let Err(e) = self.record(&a, "security", "user.lockout", "success", "warning", resource, details).await {
                tracing::error!(error = %e, "could not record a lockout");
            }
        }
    }

    /// The password step of signing in. The throttles' slots are taken
    /// before any password is hashed, so that a burst of parallel attempts
    /// cannot all pass the check first.
    pub async fn login(&self, attempt: LoginAttempt<'_>) -> Result<LoginOutcome, IdentityError> {
        let actor = attempt.actor;
        let name = normalize_username(attempt.username);
        let ip_key = throttle_key(&actor);
        if let Err(retry_after_secs) = self.ip_throttle.take(&ip_key) {
            // Recorded once per source and minute; the rest are counted.
            if self.noise.admit(NoiseKind::ThrottledSignIn, &ip_key, "sign-in") == Verdict::Record {
                let mut a = actor.clone();
                a.name = Some(self.typed_name(&name));
                let _ = self
                    .record(
                        &a,
                        "security",
                        "user.login",
                        "denied",
                        "warning",
                        ("address", Some(ip_key.clone())),
                        serde_json::json!({ "reason": "client address throttled" }),
                    )
                    .await;
            }
            return Ok(LoginOutcome::Rejected(LoginRejection::Throttled { retry_after_secs }));
        }
        let failed = Failed { actor: &actor, username: &name, counted: true };
        // What no account can have is refused without hashing anything (a
        // name or password megabytes long must cost neither memory nor time).
        if name.chars().count() > 64 || attempt.password.expose_secret().len() > 4 * password::MAX_LENGTH {
            self.login_failure(failed, "not a possible user name or password", None, false).await;
            return Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials));
        }
        let nkey = name_key(&name);
        // Throttled names get the lockout answer whether or not they exist.
        if self.name_throttle.take(&nkey).is_err() {
            let known = self.find_user(&name).await?.is_some();
            self.login_failure(failed, "too many recent failures", None, known).await;
            return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
        }
        let checked = |r: Result<bool, IdentityError>| match r {
            Ok(b) => Ok(b),
            Err(IdentityError::Busy) => Err(LoginRejection::Throttled { retry_after_secs: 5 }),
            Err(_) => Ok(false),
        };
        let user = self.find_user(&name).await?;
        let Some(u) = user else {
            // An unknown name is "locked" at the same threshold as an account.
            let locked = self.unknown_names.check(&nkey).is_some();
            if let Err(busy) = checked(self.password_matches(attempt.password, &self.dummy_hash).await) {
                return Ok(LoginOutcome::Rejected(busy));
            }
            let reason = if locked { "unknown user (locked)" } else { "unknown user" };
            self.login_failure(failed, reason, None, false).await;
            if locked {
                return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
            }
            self.unknown_names.fail(&nkey);
            return Ok(LoginOutcome::Rejected(if self.unknown_names.check(&nkey).is_some() {
                LoginRejection::LockedOut
            } else {
                LoginRejection::InvalidCredentials
            }));
        };
        let now = self.now();
        if u.locked_until.is_some_and(|t| t > now) {
            if let Err(busy) = checked(self.password_matches(attempt.password, &self.dummy_hash).await) {
                return Ok(LoginOutcome::Rejected(busy));
            }
            self.login_failure(failed, "account locked", None, true).await;
            return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
        }
        let matches = match checked(self.password_matches(attempt.password, &u.password_hash).await) {
            Ok(m) => m,
            Err(busy) => return Ok(LoginOutcome::Rejected(busy)),
        };
        if !matches {
            self.login_failure(failed, "wrong password", Some(&u), true).await;
            let locked = u.live_failures(now) + 1 >= self.settings.lockout_threshold;
            return Ok(LoginOutcome::Rejected(if locked {
                LoginRejection::LockedOut
            } else {
                LoginRejection::InvalidCredentials
            }));
        }
        if u.disabled {
            self.login_failure(failed, "account disabled", None, true).await;
            return Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials));
        }
        // The password was right: this attempt gives its address slot back.
        self.ip_throttle.refund(&ip_key);
        if u.mfa_enabled {
            return Ok(LoginOutcome::MfaRequired { user_id: u.id });
        }
        self.login_success(&actor, &u, false).await.map(LoginOutcome::Success)
    }

    async fn login_success(&self, actor: &Actor, u: &UserRow, mfa: bool) -> Result<Principal, IdentityError> {
        self.name_throttle.reset(&name_key(&u.username));
        self.db
            .conn()
            .execute_raw(self.db.stmt(
                "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?",
                vec![self.now().into(), u.id.into()],
            ))
            .await?;
        let principal = self.principal_of(u).await?;
        let a = Actor { id: Some(u.id.to_string()), kind: "user", name: Some(u.username.clone()), ..actor.clone() };
        let details = serde_json::json!({ "mfa": mfa, "roles": principal.roles });
        // A sign-in that cannot be recorded does not happen.
        self.record(&a, "authentication", "user.login", "success", "info", ("user", Some(u.username.clone())), details)
            .await
            .map_err(IdentityError::NotRecorded)?;
        Ok(principal)
    }

    fn mfa_secret(&self, u: &UserRow) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, IdentityError> {
        match &u.mfa_secret {
            Some(sealed) => Ok(Some(self.ledger.keys().open_secret("mfa", u.id as u64, sealed)?)),
            None => Ok(None),
        }
    }

    /// The second step: a TOTP code or a recovery code.
    pub async fn login_mfa(&self, actor: &Actor, user_id: i64, code: &str) -> Result<LoginOutcome, IdentityError> {
        let Some(u) = self.user_by_id(user_id).await? else {
            return Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials));
        };
        if u.disabled || u.locked_until.is_some_and(|t| t > self.now()) {
            return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
        }
        let a = Actor { id: Some(u.id.to_string()), kind: "user", name: Some(u.username.clone()), ..actor.clone() };
        let resource = ("user", Some(u.username.clone()));
        if self.check_second_factor(&u, code).await? {
            let _ = self
                .record(&a, "authentication", "mfa.verify", "success", "info", resource, serde_json::json!({}))
                .await;
            return self.login_success(actor, &u, true).await.map(LoginOutcome::Success);
        }
        let _ = self
            .record(
                &a,
                "authentication",
                "mfa.verify",
                "failure",
                "warning",
                resource,
                serde_json::json!({ "reason": "wrong code" }),
            )
            .await;
        let failed = Failed { actor, username: &u.username, counted: false };
        self.login_failure(failed, "wrong MFA code", Some(&u), true).await;
        Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials))
    }

    /// Checks a TOTP code (refusing a replayed step) or uses up a recovery code.
    async fn check_second_factor(&self, u: &UserRow, code: &str) -> Result<bool, IdentityError> {
        let Some(secret) = self.mfa_secret(u)? else { return Ok(false) };
        if let Some(step) = totp::verify(&secret, code, self.now()) {
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            // One conditional update: of two sign-ins racing with the same
            // code, exactly one moves the last step and succeeds.
            let used = self
                .db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE users SET mfa_last_step = ? WHERE id = ? AND (mfa_last_step IS NULL OR mfa_last_step < ?)",
                    vec![step.into(), u.id.into(), step.into()],
                ))
                .await?;
            return Ok(used.rows_affected() == 1);
        }
        if code.trim().len() >= 10 {
            let used = self
                .db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
                    vec![self.now().into(), u.id.into(), recovery_hash(code).into()],
                ))
                .await?;
            return Ok(used.rows_affected() == 1);
        }
        Ok(false)
    }

    /// Records an access that was refused (authenticated, but not allowed).
    pub async fn record_access_denied(&self, actor: &Actor, route: &str, needed: &str) {
        let details = serde_json::json!({ "route": route, "needed": needed });
        if let Err(e) = self
            .record(
                actor,
                "authorization",
                "access.denied",
                "denied",
                "warning",
                ("route", Some(route.into())),
                details,
            )
            .await
        {
            tracing::error!(error = %e, "could not record a refused access");
        }
    }

    /// Records a sign-out.
    pub async fn record_logout(&self, actor: &Actor) {
        let resource = ("user", actor.name.clone());
        if let Err(e) = self
            .record(actor, "authentication", "user.logout", "success", "info", resource, serde_json::json!({}))
            .await
        {
            tracing::error!(error = %e, "could not record a sign-out");
        }
    }

    /// Records that a session ended by timeout.
    pub async fn record_session_expired(&self, user_id: i64, reason: &str) {
        let name = self.user_by_id(user_id).await.ok().flatten().map(|u| u.username);
        let actor = Actor {
            id: Some(user_id.to_string()),
            kind: "user",
            name: name.clone(),
            channel: "ui",
            ..Actor::default()
        };
        let details = serde_json::json!({ "reason": reason });
        if let Err(e) =
            self.record(&actor, "authentication", "session.expire", "success", "info", ("user", name), details).await
        {
            tracing::error!(error = %e, "could not record a session expiry");
        }
    }

    // --- MFA enrolment -----------------------------------------------------

    /// Starts TOTP enrolment: a new secret (sealed under the KEK), not yet
    /// active until `mfa_confirm`.
    pub async fn mfa_begin(&self, user_id: i64) -> Result<MfaEnrollment, IdentityError> {
        let u = self.user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))?;
        if u.mfa_enabled {
            return Err(IdentityError::Conflict("multi-factor authentication is already enabled".into()));
        }
        let mut secret = zeroize::Zeroizing::new(vec![0u8; totp::SECRET_LEN]);
        self.rng.fill(&mut secret)?;
        let sealed = self.ledger.keys().seal_secret("mfa", u.id as u64, &secret, self.rng.as_ref())?;
        self.db
            .conn()
            .execute_raw(self.db.stmt(
                "UPDATE users SET mfa_secret = ?, mfa_enabled = 0, mfa_last_step = NULL WHERE id = ?",
                vec![sealed.into(), u.id.into()],
            ))
            .await?;
        let account = u.email.clone().unwrap_or_else(|| u.username.clone());
        Ok(MfaEnrollment {
            secret_base32: totp::base32(&secret),
            otpauth_uri: totp::otpauth_uri(&self.settings.issuer, &account, &secret),
        })
    }

    /// Confirms enrolment with a first code; returns the recovery codes (shown once).
    pub async fn mfa_confirm(&self, actor: &Actor, user_id: i64, code: &str) -> Result<Vec<String>, IdentityError> {
        let u = self.user_by_id(user_id).await?.ok_or_else(|| IdentityError::NotFound("user".into()))?;
        if u.mfa_enabled {
            return Err(IdentityError::Conflict("multi-factor authentication is already enabled".into()));
        }
        let Some(secret) = self.mfa_secret(&u)? else {
            return Err(IdentityError::Refused("start the enrolment first".into()));
        };
        let Some(step) = totp::verify(&secret, code, self.now()) else {
            let resource = ("user", Some(u.username.clone()));
            let _ = self
                .record(
                    actor,
                    "authentication",
                    "mfa.enroll",
                    "failure",
                    "warning",
                    resource,
                    serde_json::json!({ "reason": "wrong code" }),
                )
                .await;
            return Err(invalid("code", "is not the current code of your authenticator"));
        };
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut raw = [0u8; 8];
            self.rng.fill(&mut raw)?;
            let b = totp::base32(&raw).to_lowercase();
            codes.push(format!("{}-{}-{}", &b[0..4], &b[4..8], &b[8..12]));
        }
        let resource = ("user", Some(u.username.clone()));
        self.record(
            actor,
            "authentication",
            "mfa.enroll",
            "success",
            "notice",
            resource.clone(),
            serde_json::json!({ "method": "totp" }),
        )
        .await
        .map_err(IdentityError::NotRecorded)?;
        self.db
            .conn()
            .execute_raw(self.db.stmt(
                "UPDATE users SET mfa_enabled = 1, mfa_last_step = ? WHERE id = ?",
                vec![i64::try_from(step).unwrap_or(i64::MAX).into(), u.id.into()],
            ))
            .await?;
        self.db
            .conn()
            .execute_raw(self.db.stmt("DELETE FROM recovery_codes WHERE user_id = ?", vec![u.id.into()]))
            .await?;
        for c in &codes {
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
                    vec![u.id.into(), recovery_hash(c).into()],
                ))
                .await?;
        }
        Ok(codes)
    }

    /// An administrator removes a user's MFA (lost device).
    pub async fn mfa_reset(&self, actor: &Actor, username: &str) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        need_authority(actor, &self.user_permissions(u.id).await?, &format!("resetting the MFA of `{}`", u.username))?;
        let resource = ("user", Some(u.username.clone()));
        let recorded = self.record_change(actor, "mfa.reset", resource.clone(), serde_json::json!({})).await?;
        self.apply(actor, "mfa.reset", recorded, resource, async {
            self.db
                .conn()
                .execute_raw(self.db.stmt(
                    "UPDATE users SET mfa_secret = NULL, mfa_enabled = 0, mfa_last_step = NULL, \
                     session_epoch = session_epoch + 1 WHERE id = ?",
                    vec![u.id.into()],
                ))
                .await?;
            self.db
                .conn()
                .execute_raw(self.db.stmt("DELETE FROM recovery_codes WHERE user_id = ?", vec![u.id.into()]))
                .await?;
            Ok(())
        })
        .await
    }

    // --- API keys -------------------------------------------------------------

    /// Creates an API key; the token is returned once and never stored.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        name: &str,
        scopes: &[Scope],
        expires_us: Option<i64>,
    ) -> Result<(ApiKeySummary, SecretString), IdentityError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 80 {
            return Err(invalid("name", "must be 1 to 80 characters"));
        }
        if scopes.is_empty() {
            return Err(invalid("scopes", "choose at least one of ingest, read"));
        }
        if expires_us.is_some_and(|e| e <= self.now()) {
            return Err(invalid("expires_at", "must be in the future"));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let granted = ApiPrincipal { key_id: 0, prefix: String::new(), name: String::new(), scopes: scopes.clone() };
        need_authority(actor, &granted.permissions(), "a key with these scopes")?;
        let token = apikey::generate(self.rng.as_ref())?;
        let scope_text = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        let resource = ("api_key", Some(token.prefix.clone()));
        let details = serde_json::json!({ "name": name, "scopes": scope_text, "expires_at_us": expires_us });
        let recorded = self.record_change(actor, "apikey.create", resource.clone(), details).await?;
        let created_by =
            if actor.kind == "user" { actor.id.as_deref().and_then(|i| i.parse::<i64>().ok()) } else { None };
        let now = self.now();
        let id = self
            .apply(actor, "apikey.create", recorded, resource, async {
                let row = self
                    .db
                    .conn()
                    .query_one_raw(self.db.stmt(
                        "INSERT INTO api_keys (prefix, secret_hash, name, scopes, created_by, created_at, expires_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        vec![
                            token.prefix.clone().into(),
                            token.hash.to_vec().into(),
                            name.to_owned().into(),
                            scope_text.clone().into(),
                            created_by.into(),
                            now.into(),
                            expires_us.into(),
                        ],
                    ))
                    .await?
                    .ok_or_else(|| IdentityError::Conflict("key was not created".into()))?;
                Ok(row.try_get::<i64>("", "id")?)
            })
            .await?;
        let summary = ApiKeySummary {
            id,
            prefix: token.prefix.clone(),
            name: name.to_owned(),
            scopes,
            created_us: now,
            expires_us,
            revoked_us: None,
            last_used_us: None,
        };
        Ok((summary, token.token))
    }

    /// All API keys (never their secrets).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeySummary>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(
                "SELECT id, prefix, name, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_keys \
                 ORDER BY created_at DESC",
                vec![],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let scopes: String = r.try_get("", "scopes")?;
                Ok(ApiKeySummary {
                    id: r.try_get("", "id")?,
                    prefix: r.try_get("", "prefix")?,
                    name: r.try_get("", "name")?,
                    scopes: scopes.split_whitespace().filter_map(Scope::parse).collect(),
                    created_us: r.try_get("", "created_at")?,
                    expires_us: r.try_get("", "expires_at")?,
                    revoked_us: r.try_get("", "revoked_at")?,
                    last_used_us: r.try_get("", "last_used_at")?,
                })
            })
            .collect()
    }

    /// Revokes a key at once.
    pub async fn revoke_api_key(&self, actor: &Actor, prefix: &str) -> Result<(), IdentityError> {
        let key = self
            .list_api_keys()
            .await?
            .into_iter()
            .find(|k| k.prefix == prefix)
            .ok_or_else(|| IdentityError::NotFound(format!("API key {prefix}")))?;
        if key.revoked_us.is_some() {
            return Err(IdentityError::Conflict(format!("API key {prefix} is already revoked")));
        }
        let held =
            ApiPrincipal { key_id: key.id, prefix: String::new(), name: String::new(), scopes: key.scopes.clone() };
        need_authority(actor, &held.permissions(), &format!("revoking API key {prefix}"))?;
        let resource = ("api_key", Some(key.prefix.clone()));
        let recorded = self
            .record_change(actor, "apikey.revoke", resource.clone(), serde_json::json!({ "name": key.name }))
            .await?;
        self.apply(actor, "apikey.revoke", recorded, resource, async {
            self.db
                .conn()
                .execute_raw(
                    self.db.stmt(
                        "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                        vec![self.now().into(), key.id.into()],
                    ),
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Authenticates a bearer token. A refused token is recorded (without
    /// the token; with its prefix when it has one) once per source, reason
    /// and minute, the others counted in that minute's summary; beyond the
    /// limit a source's bad tokens are answered 429 and not recorded.
    pub async fn authenticate_api_key(&self, token: &str, actor: &Actor) -> Result<KeyCheck, IdentityError> {
        // The lookup is one indexed read; what a flood of bad keys must not
        // cost is a ledger write each (and a valid key from the same address
        // must still work), so the gate is on the refusals.
        let source = throttle_key(actor);
        let refuse = |reason: &'static str, prefix: Option<String>| async move {
            match self.noise.admit(NoiseKind::RefusedApiKey, &source, reason) {
                Verdict::Record => {
                    let a = Actor { id: prefix.clone(), kind: "api_key", ..actor.clone() };
                    let _ = self
                        .record(
                            &a,
                            "security",
                            "apikey.use",
                            "denied",
                            "warning",
                            ("api_key", prefix),
                            serde_json::json!({ "reason": reason }),
                        )
                        .await;
                    Ok(KeyCheck::Refused)
                }
                Verdict::Count => Ok(KeyCheck::Refused),
                Verdict::Refuse { retry_after_secs } => Ok(KeyCheck::Throttled { retry_after_secs }),
            }
        };
        let Some(prefix) = apikey::prefix_of(token) else { return refuse("malformed key", None).await };
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                "SELECT id, secret_hash, name, scopes, expires_at, revoked_at, last_used_at FROM api_keys WHERE prefix = ?",
                vec![prefix.to_owned().into()],
            ))
            .await?;
        let Some(r) = row else { return refuse("unknown key", Some(prefix.to_owned())).await };
        let stored: Vec<u8> = r.try_get("", "secret_hash")?;
        if !bool::from(apikey::hash(token).as_slice().ct_eq(&stored)) {
            return refuse("wrong secret", Some(prefix.to_owned())).await;
        }
        let now = self.now();
        if r.try_get::<Option<i64>>("", "revoked_at")?.is_some() {
            return refuse("revoked", Some(prefix.to_owned())).await;
        }
        if r.try_get::<Option<i64>>("", "expires_at")?.is_some_and(|e| e <= now) {
            return refuse("expired", Some(prefix.to_owned())).await;
        }
        let id: i64 = r.try_get("", "id")?;
        // Last use to the minute: one write per key per minute, not per call.
        let last: Option<i64> = r.try_get("", "last_used_at")?;
        if last.is_none_or(|l| now - l >= 60_000_000) {
            self.db
                .conn()
                .execute_raw(
                    self.db.stmt("UPDATE api_keys SET last_used_at = ? WHERE id = ?", vec![now.into(), id.into()]),
                )
                .await?;
        }
        let scopes: String = r.try_get("", "scopes")?;
        Ok(KeyCheck::Valid(ApiPrincipal {
            key_id: id,
            prefix: prefix.to_owned(),
            name: r.try_get("", "name")?,
            scopes: scopes.split_whitespace().filter_map(Scope::parse).collect(),
        }))
    }

    /// Whether an API key is still usable (not revoked, not expired): live
    /// streams check it again every few seconds.
    pub async fn api_key_usable(&self, key_id: i64) -> Result<bool, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(
                self.db.stmt("SELECT expires_at, revoked_at FROM api_keys WHERE id = ?", vec![key_id.into()]),
            )
            .await?;
        let Some(r) = row else { return Ok(false) };
        let now = self.now();
        Ok(r.try_get::<Option<i64>>("", "revoked_at")?.is_none()
            && r.try_get::<Option<i64>>("", "expires_at")?.is_none_or(|e| e > now))
    }

    /// The gate for anonymous noise (the server gates anonymous API calls
    /// through it too).
    pub fn noise(&self) -> &NoiseGate {
        &self.noise
    }

    /// Records the summaries of noise minutes that have ended: one event per
    /// kind, source and minute, with how many requests it stands for.
    pub async fn record_noise_summaries(&self) {
        for n in self.noise.drain() {
            // Public reads succeeded; sign-ins come from the UI.
            let (outcome, severity) = match n.kind {
                NoiseKind::AnonymousPublic => ("success", "info"),
                _ => ("denied", "warning"),
            };
            let channel = if n.kind == NoiseKind::ThrottledSignIn { "ui" } else { "api" };
            let actor = Actor { kind: "anonymous", channel, ..Actor::default() };
            let details = serde_json::json!({
                "kind": n.kind.as_str(),
                "requests": n.unrecorded,
                "over_limit": n.refused,
                "first_at_us": n.first_us,
                "last_at_us": n.last_us,
                "note": "requests from this address in this minute not recorded one by one (the first per endpoint was)",
            });
            if let Err(e) = self
                .record(
                    &actor,
                    "security",
                    n.kind.summary_action(),
                    outcome,
                    severity,
                    ("address", Some(n.source)),
                    details,
                )
                .await
            {
                tracing::error!(error = %e, "could not record a summary of refused requests");
            }
        }
    }
}

/// A fingerprint of a secret for logs and correlation (never the secret).
pub fn fingerprint(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..6])
}

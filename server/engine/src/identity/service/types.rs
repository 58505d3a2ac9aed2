//! The identity service's value types: errors, settings, actors and
//! their authority, principals, callers, sign-in outcomes, summaries.

use super::*;

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

impl IdentityError {
    /// Whether the database could not be reached (see
    /// [`crate::storage::is_unreachable`]): worth trying again shortly.
    pub fn is_unreachable(&self) -> bool {
        match self {
            IdentityError::Db(e) | IdentityError::Ledger(LedgerError::Storage(crate::storage::StorageError::Db(e))) => {
                crate::storage::is_unreachable(e)
            }
            _ => false,
        }
    }
}

impl From<UnknownPermission> for IdentityError {
    fn from(e: UnknownPermission) -> Self {
        IdentityError::Invalid { field: "permissions", reason: e.to_string() }
    }
}

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid { field, reason: reason.into() }
}

impl From<crate::identity::names::Refused> for IdentityError {
    fn from(r: crate::identity::names::Refused) -> IdentityError {
        invalid(r.field, r.reason)
    }
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

/// Someone acting through the identity service: the [`Actor`] as events
/// record them (the one actor type), how they came in, the request, and
/// what they may grant (never recorded, never carries secrets).
///
/// [`Actor`]: crate::events::model::Actor
#[derive(Debug, Clone)]
pub struct Acting {
    /// Who, as recorded: user id, key prefix, `custos`, or `anonymous`.
    pub actor: crate::events::model::Actor,
    /// ui, api or cli.
    pub channel: Channel,
    /// Request id, for correlation.
    pub request_id: Option<String>,
    /// What this actor may grant (never recorded).
    pub authority: Authority,
}

impl Acting {
    fn new(id: &str, kind: &str, name: Option<String>, channel: Channel, authority: Authority) -> Acting {
        let actor = crate::events::model::Actor {
            id: id.to_owned(),
            kind: kind.to_owned(),
            name,
            ip: None,
            user_agent: None,
            session_id: None,
        };
        Acting { actor, channel, request_id: None, authority }
    }

    /// The system itself (first-run set-up, the command line).
    pub fn system(channel: Channel) -> Acting {
        Acting::new("custos", "system", Some("custos".into()), channel, Authority::System)
    }

    /// A signed-in user.
    pub fn user(p: &Principal, channel: Channel) -> Acting {
        let held = Authority::Holds(p.permissions.clone());
        Acting::new(&p.user_id.to_string(), "user", Some(p.username.clone()), channel, held)
    }

    /// Someone not signed in (nothing to grant).
    pub fn anonymous(channel: Channel) -> Acting {
        Acting::new("anonymous", "anonymous", None, channel, Authority::default())
    }

    /// With client details.
    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>, request_id: Option<String>) -> Self {
        self.actor.ip = ip;
        self.actor.user_agent = user_agent;
        self.request_id = request_id;
        self
    }

    /// The actor as an event records it.
    pub fn recorded(&self) -> crate::events::model::Actor {
        self.actor.clone()
    }

    /// Whether this is the signed-in user `user_id`.
    pub fn is_user(&self, user_id: i64) -> bool {
        self.actor.kind == "user" && self.actor.id == user_id.to_string()
    }

    /// As `user` (a sign-in that just succeeded), keeping the way in and the client.
    pub fn as_user(&self, user_id: i64, username: &str) -> Acting {
        let mut a = self.clone();
        a.actor.id = user_id.to_string();
        a.actor.kind = "user".into();
        a.actor.name = Some(username.to_owned());
        a
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
    pub actor: Acting,
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
    pub fn actor(&self, channel: Channel) -> Acting {
        match self {
            Caller::Anonymous => Acting::anonymous(channel),
            Caller::User(p) => Acting::user(p, channel),
            Caller::ApiKey(k) => {
                Acting::new(&k.prefix, "api_key", Some(k.name.clone()), channel, Authority::Holds(k.permissions()))
            }
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

impl KeyCheck {
    /// The key's principal, when valid.
    pub fn valid(self) -> Option<ApiPrincipal> {
        match self {
            KeyCheck::Valid(p) => Some(p),
            _ => None,
        }
    }
}

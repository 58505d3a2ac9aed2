//! Plain serde models shared by the server and the browser.

use serde::{Deserialize, Serialize};

/// What the home page shows about the running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Custos version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The ledger's origin (log identity).
    pub origin: String,
    /// Number of entries ever committed (the head seq).
    pub ledger_entries: u64,
    /// Tree size of the latest signed checkpoint.
    pub checkpoint_tree_size: Option<u64>,
    /// When that checkpoint was signed (RFC 3339, UTC).
    pub checkpoint_signed_at: Option<String>,
    /// Id of the data key sealing new events.
    pub current_key_id: u32,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
}

/// The signed-in user, as the UI needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// The principal, `user:<id>` (as policy proposals name their author).
    pub principal: String,
    /// User name.
    pub username: String,
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Effective permission names (`admin` grants all).
    pub permissions: Vec<String>,
    /// TOTP enrolled.
    pub mfa_enabled: bool,
    /// A role requires MFA.
    pub mfa_required: bool,
    /// The password must be changed now.
    pub must_change_password: bool,
}

impl Me {
    /// Whether a permission is granted (the UI hides what is not; the server decides).
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission || p == "admin")
    }
}

/// A user in the admin list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
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
    /// Locked until (RFC 3339), if locked now.
    pub locked_until: Option<String>,
    /// Last sign-in (RFC 3339).
    pub last_login: Option<String>,
}

/// A role in the admin list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Shipped with Custos.
    pub builtin: bool,
    /// Members must use MFA.
    pub require_mfa: bool,
    /// Permission names.
    pub permissions: Vec<String>,
    /// Holders.
    pub members: i64,
}

/// A permission a role can grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionView {
    /// Stable name.
    pub name: String,
    /// One line.
    pub description: String,
}

/// An API key in the admin list (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Public prefix.
    pub prefix: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Created (RFC 3339).
    pub created: String,
    /// Expires (RFC 3339).
    pub expires: Option<String>,
    /// Last used (RFC 3339, to the minute).
    pub last_used: Option<String>,
    /// active, expired or revoked.
    pub status: String,
}

/// A key just created: its token is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// The key.
    pub key: ApiKeyView,
    /// The token, to copy now.
    pub token: String,
}

/// A TOTP enrolment to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaSetup {
    /// The secret, base32, for manual entry.
    pub secret: String,
    /// The otpauth URI.
    pub otpauth_uri: String,
    /// The URI as a QR code, SVG.
    pub qr_svg: String,
}

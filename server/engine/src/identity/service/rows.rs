//! Rows of the identity tables and the checks of what users type.

use super::*;

pub(super) const RECOVERY_CODES: usize = 10;
pub(super) const USER_COLUMNS: &str = "id, username, email, display_name, password_hash, must_change_password, disabled, \
    mfa_secret, mfa_enabled, failed_logins, locked_until, last_login_at, session_epoch";

pub(super) struct UserRow {
    pub(super) id: i64,
    pub(super) username: String,
    pub(super) email: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) password_hash: String,
    pub(super) must_change_password: bool,
    pub(super) disabled: bool,
    pub(super) mfa_secret: Option<Vec<u8>>,
    pub(super) mfa_enabled: bool,
    pub(super) failed_logins: i64,
    pub(super) locked_until: Option<i64>,
    pub(super) last_login_at: Option<i64>,
    pub(super) session_epoch: i64,
}

impl UserRow {
    /// Consecutive failures that still count: none once a lock has run
    /// out (a lock that expired starts the count afresh, as an unknown
    /// name's does).
    pub(super) fn live_failures(&self, now: i64) -> i64 {
        if self.locked_until.is_some_and(|t| t <= now) { 0 } else { self.failed_logins }
    }
}

pub(super) fn flag(r: &QueryResult, col: &str) -> Result<bool, DbErr> {
    Ok(r.try_get::<i16>("", col)? != 0)
}

/// A `users` row as the database has it (`USER_COLUMNS`; flags are
/// SMALLINT on both databases).
#[derive(sea_orm::FromQueryResult)]
struct UserRecord {
    id: i64,
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    password_hash: String,
    must_change_password: i16,
    disabled: i16,
    mfa_secret: Option<Vec<u8>>,
    mfa_enabled: i16,
    failed_logins: i32,
    locked_until: Option<i64>,
    last_login_at: Option<i64>,
    session_epoch: i64,
}

pub(super) fn user_from_row(r: &QueryResult) -> Result<UserRow, DbErr> {
    use sea_orm::FromQueryResult as _;
    let u = UserRecord::from_query_result(r, "")?;
    Ok(UserRow {
        id: u.id,
        username: u.username,
        email: u.email,
        display_name: u.display_name,
        password_hash: u.password_hash,
        must_change_password: u.must_change_password != 0,
        disabled: u.disabled != 0,
        mfa_secret: u.mfa_secret,
        mfa_enabled: u.mfa_enabled != 0,
        failed_logins: u.failed_logins.into(),
        locked_until: u.locked_until,
        last_login_at: u.last_login_at,
        session_epoch: u.session_epoch,
    })
}

pub(super) fn policy_error(e: PolicyError) -> IdentityError {
    invalid("password", e.to_string())
}

pub(super) fn recovery_hash(code: &str) -> Vec<u8> {
    let norm: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    Sha256::digest(format!("custos/v1/recovery-code:{norm}").as_bytes()).to_vec()
}

//! Signing in: the password step, the second factor, and the records of
//! sign-ins, sign-outs, refused access and expired sessions.

use super::*;
use crate::time::SECOND_US;

impl Identity {
    // --- sign-in --------------------------------------------------------------

    /// A user name as typed at sign-in, for the record: a keyed pseudonym
    /// (`name:…`), never the text (it may be a password typed in the wrong
    /// field); equal names give equal pseudonyms.
    pub(super) fn typed_name(&self, name: &str) -> String {
        format!("name:{}", self.ledger.keys().pseudonym(name))
    }

    /// Records a failed sign-in. `counted`: the throttles' slots were
    /// already taken for this attempt. `known`: the name is an account (an
    /// unknown name is recorded as a pseudonym: what was typed may be a
    /// password).
    pub(super) async fn login_failure(&self, failed: Failed<'_>, reason: &str, user: Option<&UserRow>, known: bool) {
        let Failed { actor, username, counted } = failed;
        let name = Username::lookup_key(username);
        if !counted {
            self.ip_throttle.fail(&throttle_key(actor)).await;
            self.name_throttle.fail(&name_key(&name)).await;
        }
        let mut locked_now = false;
        if let Some(u) = user {
            let failures = u.live_failures(self.now()) + 1;
            let lock = failures >= self.settings.lockout_threshold;
            let until = lock.then(|| self.now() + self.settings.lockout_secs * SECOND_US);
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
        a.actor.name = Some(shown.clone());
        if let Some(u) = user {
            a.actor.id = u.id.to_string();
        }
        let resource = ("user", Some(shown));
        let details = serde_json::json!({ "reason": reason });
        if let Err(e) = self
            .record(&a, "authentication", "user.login", Outcome::Failure, Severity::Warning, resource.clone(), details)
            .await
        {
            tracing::error!(error = %e, "could not record a failed sign-in");
        }
        if locked_now {
            let details = serde_json::json!({
                "failures": self.settings.lockout_threshold, "lockout_seconds": self.settings.lockout_secs,
            });
            if let Err(e) = self
                .record(&a, "security", "user.lockout", Outcome::Success, Severity::Warning, resource, details)
                .await
            {
                tracing::error!(error = %e, "could not record a lockout");
            }
        }
    }

    /// Deletes the shared sign-in throttles' counts that no window still
    /// holds (PostgreSQL; nothing to do on SQLite). Returns how many went.
    pub async fn sweep_throttles(&self) -> Result<u64, IdentityError> {
        if self.db.kind() != crate::storage::DbKind::Postgres {
            return Ok(0);
        }
        let longest = self.settings.throttle_window_secs.max(self.settings.lockout_secs).max(1);
        Ok(super::super::throttle::sweep_shared(&self.db, self.now() - longest * SECOND_US).await?)
    }

    /// The password step of signing in. The throttles' slots are taken
    /// before any password is hashed, so that a burst of parallel attempts
    /// cannot all pass the check first.
    pub async fn login(&self, attempt: LoginAttempt<'_>) -> Result<LoginOutcome, IdentityError> {
        let actor = attempt.actor;
        let name = Username::lookup_key(attempt.username);
        let ip_key = throttle_key(&actor);
        if let Err(retry_after_secs) = self.ip_throttle.take(&ip_key).await {
            // Recorded once per source and minute; the rest are counted.
            if self.noise.admit(NoiseKind::ThrottledSignIn, &ip_key, "sign-in") == Verdict::Record {
                let mut a = actor.clone();
                a.actor.name = Some(self.typed_name(&name));
                let _ = self
                    .record(
                        &a,
                        "security",
                        "user.login",
                        Outcome::Denied,
                        Severity::Warning,
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
        if self.name_throttle.take(&nkey).await.is_err() {
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
            let locked = self.unknown_names.check(&nkey).await.is_some();
            if let Err(busy) = checked(self.password_matches(attempt.password, &self.dummy_hash).await) {
                return Ok(LoginOutcome::Rejected(busy));
            }
            let reason = if locked { "unknown user (locked)" } else { "unknown user" };
            self.login_failure(failed, reason, None, false).await;
            if locked {
                return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
            }
            self.unknown_names.fail(&nkey).await;
            return Ok(LoginOutcome::Rejected(if self.unknown_names.check(&nkey).await.is_some() {
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
        self.ip_throttle.refund(&ip_key).await;
        if u.mfa_enabled {
            return Ok(LoginOutcome::MfaRequired { user_id: u.id });
        }
        self.login_success(&actor, &u, false).await.map(LoginOutcome::Success)
    }

    pub(super) async fn login_success(
        &self,
        actor: &Acting,
        u: &UserRow,
        mfa: bool,
    ) -> Result<Principal, IdentityError> {
        self.name_throttle.reset(&name_key(&u.username)).await;
        self.db
            .conn()
            .execute_raw(self.db.stmt(
                "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ? WHERE id = ?",
                vec![self.now().into(), u.id.into()],
            ))
            .await?;
        let principal = self.principal_of(u).await?;
        let a = actor.as_user(u.id, &u.username);
        let details = serde_json::json!({ "mfa": mfa, "roles": principal.roles });
        // A sign-in that cannot be recorded does not happen.
        self.record(
            &a,
            "authentication",
            "user.login",
            Outcome::Success,
            Severity::Info,
            ("user", Some(u.username.clone())),
            details,
        )
        .await
        .map_err(IdentityError::NotRecorded)?;
        Ok(principal)
    }

    pub(super) fn mfa_secret(&self, u: &UserRow) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, IdentityError> {
        match &u.mfa_secret {
            Some(sealed) => Ok(Some(self.ledger.keys().open_secret("mfa", u.id as u64, sealed)?)),
            None => Ok(None),
        }
    }

    /// The second step: a TOTP code or a recovery code.
    pub async fn login_mfa(&self, actor: &Acting, user_id: i64, code: &str) -> Result<LoginOutcome, IdentityError> {
        let Some(u) = self.user_by_id(user_id).await? else {
            return Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials));
        };
        if u.disabled || u.locked_until.is_some_and(|t| t > self.now()) {
            return Ok(LoginOutcome::Rejected(LoginRejection::LockedOut));
        }
        let a = actor.as_user(u.id, &u.username);
        let resource = ("user", Some(u.username.clone()));
        if self.check_second_factor(&u, code).await? {
            let _ = self
                .record(
                    &a,
                    "authentication",
                    "mfa.verify",
                    Outcome::Success,
                    Severity::Info,
                    resource,
                    serde_json::json!({}),
                )
                .await;
            return self.login_success(actor, &u, true).await.map(LoginOutcome::Success);
        }
        let _ = self
            .record(
                &a,
                "authentication",
                "mfa.verify",
                Outcome::Failure,
                Severity::Warning,
                resource,
                serde_json::json!({ "reason": "wrong code" }),
            )
            .await;
        let failed = Failed { actor, username: &u.username, counted: false };
        self.login_failure(failed, "wrong MFA code", Some(&u), true).await;
        Ok(LoginOutcome::Rejected(LoginRejection::InvalidCredentials))
    }

    /// Checks a TOTP code (refusing a replayed step) or uses up a recovery code.
    pub(super) async fn check_second_factor(&self, u: &UserRow, code: &str) -> Result<bool, IdentityError> {
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
    pub async fn record_access_denied(&self, actor: &Acting, route: &str, needed: &str) {
        let details = serde_json::json!({ "route": route, "needed": needed });
        if let Err(e) = self
            .record(
                actor,
                "authorization",
                "access.denied",
                Outcome::Denied,
                Severity::Warning,
                ("route", Some(route.into())),
                details,
            )
            .await
        {
            tracing::error!(error = %e, "could not record a refused access");
        }
    }

    /// Records a sign-out.
    pub async fn record_logout(&self, actor: &Acting) {
        let resource = ("user", actor.actor.name.clone());
        if let Err(e) = self
            .record(
                actor,
                "authentication",
                "user.logout",
                Outcome::Success,
                Severity::Info,
                resource,
                serde_json::json!({}),
            )
            .await
        {
            tracing::error!(error = %e, "could not record a sign-out");
        }
    }

    /// Records that a session ended by timeout.
    pub async fn record_session_expired(&self, user_id: i64, reason: &str) {
        let name = self.user_by_id(user_id).await.ok().flatten().map(|u| u.username);
        let mut actor = Acting::anonymous(Channel::Ui).as_user(user_id, "");
        actor.actor.name = name.clone();
        let details = serde_json::json!({ "reason": reason });
        if let Err(e) = self
            .record(
                &actor,
                "authentication",
                "session.expire",
                Outcome::Success,
                Severity::Info,
                ("user", name),
                details,
            )
            .await
        {
            tracing::error!(error = %e, "could not record a session expiry");
        }
    }
}

//! MFA enrolment (TOTP with recovery codes) and its reset by an administrator.

use super::*;

impl Identity {
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
    pub async fn mfa_confirm(&self, actor: &Acting, user_id: i64, code: &str) -> Result<Vec<String>, IdentityError> {
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
                    Outcome::Failure,
                    Severity::Warning,
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
            Outcome::Success,
            Severity::Notice,
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
    pub async fn mfa_reset(&self, actor: &Acting, username: &str) -> Result<(), IdentityError> {
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
}

//! Users: find, create, list, disable, passwords and roles of a user.

use super::*;

impl Identity {
    // --- users ---------------------------------------------------------------

    pub(super) async fn find_user(&self, username: &str) -> Result<Option<UserRow>, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"),
                vec![Username::lookup_key(username).into()],
            ))
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub(super) async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"), vec![id.into()]))
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub(super) async fn roles_of(&self, user_id: i64) -> Result<Vec<(String, PermissionSet, bool)>, IdentityError> {
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

    pub(super) async fn principal_of(&self, u: &UserRow) -> Result<Principal, IdentityError> {
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

    pub(super) async fn role_ids(&self, names: &[String]) -> Result<Vec<i64>, IdentityError> {
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
    pub async fn create_user(&self, actor: &Acting, new: NewUser) -> Result<i64, IdentityError> {
        let username = Username::parse(&new.username)?;
        let email = Email::parse_optional(new.email.as_deref())?;
        password::check_policy(new.password.expose_secret(), username.as_str(), email.as_ref().map(Email::as_str))
            .map_err(policy_error)?;
        if self.find_user(username.as_str()).await?.is_some() {
            return Err(IdentityError::Conflict(format!("a user named `{username}` already exists")));
        }
        let role_ids = self.role_ids(&new.roles).await?;
        need_authority(actor, &self.roles_permissions(&new.roles).await?, "giving these roles")?;
        let hash = self.hash_password(&new.password).await?;
        let resource = ("user", Some(username.to_string()));
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
                        username.as_str().into(),
                        email.as_ref().map(Email::as_str).into(),
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
        self.create_user(&Acting::system(Channel::Cli), new).await?;
        Ok(Some((username, generated.then_some(password))))
    }

    /// When a user's account was created (µs; None for no such user).
    pub async fn user_created_at(&self, user_id: i64) -> Result<Option<i64>, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt("SELECT created_at FROM users WHERE id = ?", vec![user_id.into()]))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "created_at")).transpose()?)
    }

    /// The users who may do `p` now (enabled, through one of their roles),
    /// as principals `user:<id>`: who can approve a policy proposal.
    pub async fn holders_of(&self, p: Permission) -> Result<Vec<String>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"), vec![]))
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let u = user_from_row(r)?;
            if !u.disabled && self.principal_of(&u).await?.allows(p) {
                out.push(format!("user:{}", u.id));
            }
        }
        Ok(out)
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

    pub(super) async fn require_user(&self, username: &str) -> Result<UserRow, IdentityError> {
        self.find_user(username).await?.ok_or_else(|| IdentityError::NotFound(format!("user `{username}`")))
    }

    /// Disables or re-enables a user (their sessions end at the next request).
    pub async fn set_disabled(&self, actor: &Acting, username: &str, disabled: bool) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        if actor.is_user(u.id) && disabled {
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
    pub(super) async fn store_password(
        &self,
        user_id: i64,
        hash: String,
        must_change: bool,
    ) -> Result<i64, IdentityError> {
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
        actor: &Acting,
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
        actor: &Acting,
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
                    Outcome::Failure,
                    Severity::Warning,
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
                Outcome::Success,
                Severity::Notice,
                resource.clone(),
                serde_json::json!({}),
            )
            .await
            .map_err(IdentityError::NotRecorded)?;
        self.apply(actor, "user.password.change", recorded, resource, self.store_password(u.id, hash, false)).await
    }

    /// Replaces a user's roles.
    pub async fn set_roles(&self, actor: &Acting, username: &str, roles: &[String]) -> Result<(), IdentityError> {
        let u = self.require_user(username).await?;
        let ids = self.role_ids(roles).await?;
        need_authority(actor, &self.user_permissions(u.id).await?, &format!("changing the roles of `{}`", u.username))?;
        need_authority(actor, &self.roles_permissions(roles).await?, "giving these roles")?;
        let before: Vec<String> = self.roles_of(u.id).await?.into_iter().map(|(n, _, _)| n).collect();
        let removes = before.iter().any(|r| !roles.contains(r));
        if actor.is_user(u.id) && before.iter().any(|r| r == "admin") && !roles.iter().any(|r| r == "admin") {
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
}

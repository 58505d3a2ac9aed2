//! Roles: list, create, change and delete custom roles.

use super::*;

impl Identity {
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

    pub(super) async fn role_member_ids(&self, role_id: i64) -> Result<Vec<i64>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt("SELECT user_id FROM user_roles WHERE role_id = ?", vec![role_id.into()]))
            .await?;
        Ok(rows.iter().map(|r| r.try_get::<i64>("", "user_id")).collect::<Result<_, _>>()?)
    }

    pub(super) fn validate_role_name(name: &str) -> Result<String, IdentityError> {
        let n = name.trim().to_lowercase();
        if !(2..=48).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(invalid("name", "must be 2 to 48 letters, digits, '_' or '-'"));
        }
        Ok(n)
    }

    /// Creates a custom role.
    pub async fn create_role(
        &self,
        actor: &Acting,
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
        actor: &Acting,
        name: &str,
        permissions: Option<&PermissionSet>,
        require_mfa: bool,
    ) -> Result<(), IdentityError> {
        let role = self.role(name).await?;
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

    /// A role by name.
    async fn role(&self, name: &str) -> Result<RoleSummary, IdentityError> {
        let roles = self.list_roles().await?;
        roles.into_iter().find(|r| r.name == name).ok_or_else(|| IdentityError::NotFound(format!("role `{name}`")))
    }

    /// Deletes a custom role that nobody holds.
    pub async fn delete_role(&self, actor: &Acting, name: &str) -> Result<(), IdentityError> {
        let role = self.role(name).await?;
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
}

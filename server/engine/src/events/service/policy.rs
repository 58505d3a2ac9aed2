//! The masking policy: versions, the one in force, previews and changes
//! (recorded before they are made, `based_on` refusing lost updates).

use super::*;
use crate::events::model::Channel;
use crate::events::own::{OwnAction, OwnEvent};

pub(super) struct Policy {
    pub(super) version: u64,
    pub(super) masker: Masker,
    pub(super) created_at_us: Option<i64>,
    pub(super) created_by: Option<String>,
    pub(super) comment: String,
}

impl Policy {
    fn view(&self) -> MaskingPolicy {
        MaskingPolicy {
            version: self.version,
            rules: self.masker.rules().to_vec(),
            created_at: self.created_at_us.map(rfc3339),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
        }
    }
}

impl Events {
    // --- masking policy ---------------------------------------------------

    /// The policy in force.
    pub fn policy(&self) -> MaskingPolicy {
        self.current().view()
    }

    /// Loads the newest stored policy version if it is newer than ours.
    pub async fn refresh_policy(&self) -> Result<(), EventsError> {
        self.policy_checked_us.store(self.ledger.now_us(), std::sync::atomic::Ordering::Relaxed);
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT version, rules, created_at, created_by, comment FROM masking_policy_versions \
                 WHERE version > ? ORDER BY version DESC LIMIT 1",
                vec![(self.current().version as i64).into()],
            ))
            .await?;
        if let Some(r) = row {
            let p = policy_from_row(&r)?;
            let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
            if p.version > slot.version {
                *slot = Arc::new(p);
            }
        }
        Ok(())
    }

    /// Every stored version, newest first (version 0, the defaults, last).
    pub async fn policy_history(&self) -> Result<Vec<MaskingPolicy>, EventsError> {
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT version, rules, created_at, created_by, comment FROM masking_policy_versions ORDER BY version DESC",
                vec![],
            ))
            .await?;
        let mut out = rows.iter().map(|r| policy_from_row(r).map(|p| p.view())).collect::<Result<Vec<_>, _>>()?;
        out.push(MaskingPolicy {
            version: 0,
            rules: default_rules(),
            created_at: None,
            created_by: None,
            comment: "built-in defaults".into(),
        });
        Ok(out)
    }

    /// Checks a rule list without saving it.
    pub fn check(rules: Vec<MaskRule>) -> Result<Masker, EventsError> {
        crate::events::mask::check_rules(&rules).map_err(|RulesError(e)| invalid("rules", e))?;
        Masker::new(rules).map_err(|RulesError(e)| invalid("rules", e))
    }

    /// Masks a text with the given rules (or the policy in force).
    pub fn preview(&self, text: &str, rules: Option<Vec<MaskRule>>) -> Result<String, EventsError> {
        let keys = self.ledger.keys();
        let pseudonym = |v: &str| keys.pseudonym(v);
        Ok(match rules {
            Some(r) => Self::check(r)?.mask_text(text, &pseudonym).0,
            None => self.current().masker.mask_text(text, &pseudonym).0,
        })
    }

    /// Saves a new policy version. `based_on` must be the version in force
    /// (optimistic concurrency: two admins cannot silently overwrite each
    /// other). The change is recorded in the ledger first: if it cannot be
    /// recorded, nothing changes.
    pub async fn set_policy(
        &self,
        rules: Vec<MaskRule>,
        based_on: u64,
        comment: &str,
        by: &Actor,
        request_id: Option<String>,
    ) -> Result<MaskingPolicy, EventsError> {
        if comment.chars().count() > 500 {
            return Err(invalid("comment", "must be at most 500 characters"));
        }
        let masker = Self::check(rules.clone())?;
        self.refresh_policy().await?;
        let current = self.current();
        if based_on != current.version {
            return Err(invalid(
                "based_on",
                format!("version {based_on} is not the current version {}; reload and try again", current.version),
            ));
        }
        let version = current.version + 1;
        let now = self.ledger.now_us();
        let event = OwnEvent::new(OwnAction::MaskingPolicyUpdate, by.clone(), Channel::Api)
            .resource("masking_policy", Some(version.to_string()))
            .request(request_id)
            .details(json!({ "version": version, "previous": current.version, "rules": rules, "comment": comment }));
        self.record_own(event).await?;
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rules_json = serde_json::to_string(&rules).map_err(|e| invalid("rules", e.to_string()))?;
        conn.execute_raw(stmt_for(
            b,
            "INSERT INTO masking_policy_versions (version, rules, created_at, created_by, comment) VALUES (?, ?, ?, ?, ?)",
            vec![
                (version as i64).into(),
                rules_json.into(),
                now.into(),
                by.name.clone().unwrap_or_else(|| by.id.clone()).into(),
                comment.to_owned().into(),
            ],
        ))
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                invalid("based_on", "another change was saved at the same time; reload and try again")
            }
            _ => e.into(),
        })?;
        let policy = Policy {
            version,
            masker,
            created_at_us: Some(now),
            created_by: by.name.clone().or_else(|| Some(by.id.clone())),
            comment: comment.to_owned(),
        };
        let view = policy.view();
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        if version > slot.version {
            *slot = Arc::new(policy);
        }
        Ok(view)
    }
}

pub(super) fn policy_from_row(r: &sea_orm::QueryResult) -> Result<Policy, EventsError> {
    let version: i64 = r.try_get("", "version")?;
    let rules_json: String = r.try_get("", "rules")?;
    let rules: Vec<MaskRule> = serde_json::from_str(&rules_json)
        .map_err(|e| LedgerError::Corrupt(format!("masking policy version {version}: {e}")))?;
    Ok(Policy {
        version: version as u64,
        masker: Masker::new(rules)
            .map_err(|e| LedgerError::Corrupt(format!("masking policy version {version}: {e}")))?,
        created_at_us: Some(r.try_get("", "created_at")?),
        created_by: Some(r.try_get("", "created_by")?),
        comment: r.try_get("", "comment")?,
    })
}

//! The masking policy: versions, the one in force, previews and changes
//! (recorded before they are made, `based_on` refusing lost updates).

use super::*;
use crate::events::model::Detector;

/// What a masking dry-run found ([`Events::masking_dry_run`]).
#[derive(Debug, Default)]
pub struct MaskingDryRun {
    /// The proposal's rules, as in force (the secret-key rule first).
    pub rules: Vec<MaskRule>,
    /// Events looked at.
    pub events: u64,
    /// Originals put back (kept by the policy the event was stored under).
    pub restored: u64,
    /// The oldest and newest event's recording time.
    pub from_us: Option<i64>,
    /// See `from_us`.
    pub to_us: Option<i64>,
    /// Values each detector masks under the policy in force.
    pub current: BTreeMap<Detector, u64>,
    /// Under the proposal.
    pub proposed: BTreeMap<Detector, u64>,
    /// Up to three (event id, as stored, under the proposal) per detector,
    /// from values stored in clear.
    pub examples: BTreeMap<Detector, Vec<(String, String, String)>>,
}

/// Puts a kept original back at `path` (`actor.id`, `details.a.list[0]`);
/// false when the path is not there.
fn put_back(event: &mut Value, path: &str, original: &str) -> bool {
    let mut at = event;
    let mut tokens = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        tokens.push(Value::String(key.to_owned()));
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            match idx.trim_end_matches(']').parse::<u64>() {
                Ok(i) => tokens.push(Value::from(i)),
                Err(_) => return false,
            }
        }
    }
    for t in &tokens {
        let next = match (at, t) {
            (Value::Object(m), Value::String(k)) => m.get_mut(k),
            (Value::Array(a), Value::Number(i)) => i.as_u64().and_then(|i| a.get_mut(i as usize)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    if !at.is_string() {
        return false;
    }
    *at = Value::String(original.to_owned());
    true
}

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

    /// Writes masking version `version` in the policy store's activation
    /// transaction (the database refuses it without its `policy_versions`
    /// row); [`Events::refresh_policy`] then puts it in force.
    pub async fn insert_masking_version(
        tx: &impl ConnectionTrait,
        version: u64,
        rules: &[MaskRule],
        at_us: i64,
        by: &str,
        comment: &str,
    ) -> Result<(), EventsError> {
        let b = tx.get_database_backend();
        let rules_json = serde_json::to_string(rules).map_err(|e| invalid("rules", e.to_string()))?;
        tx.execute_raw(stmt_for(
            b,
            "INSERT INTO masking_policy_versions (version, rules, created_at, created_by, comment) VALUES (?, ?, ?, ?, ?)",
            vec![(version as i64).into(), rules_json.into(), at_us.into(), by.to_owned().into(), comment.to_owned().into()],
        ))
        .await?;
        Ok(())
    }

    /// Masks free text (a reason, a comment) by the policy in force.
    pub fn mask_free_text(&self, text: &str) -> String {
        let keys = self.ledger.keys();
        self.current().masker.mask_text(text, &|v| keys.pseudonym(v)).0
    }

    /// The newest events applications sent (Custos's own are left out),
    /// recorded at or after `since_us`, at most `limit`, newest first.
    pub async fn sample(&self, since_us: i64, limit: u64) -> Result<Vec<StoredEntry>, EventsError> {
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                &format!(
                    "SELECT {} FROM ledger_entries WHERE recorded_at >= ? \
                     AND (source_app IS NULL OR source_app <> 'custos') ORDER BY seq DESC LIMIT ?",
                    store::ENTRY_COLUMNS
                ),
                vec![since_us.into(), (limit as i64).into()],
            ))
            .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    /// A dry-run of masking `rules` over a sample of recent events, with
    /// the live masker. Counts: each event as it was sent (the originals the
    /// policy of its day kept put back), masked by the policy in force and
    /// by the proposal, the values each detector masks. Examples: only from
    /// the events as stored (what readers of the log already see), never
    /// from originals put back, so no value any policy hid is shown.
    pub async fn masking_dry_run(
        &self,
        rules: Vec<MaskRule>,
        since_us: i64,
        limit: u64,
    ) -> Result<MaskingDryRun, EventsError> {
        let proposed = Self::check(rules)?;
        let current = self.current();
        let keys = self.ledger.keys();
        let pseudonym = |v: &str| keys.pseudonym(v);
        let entries = self.sample(since_us, limit).await?;
        let mut run = MaskingDryRun { events: entries.len() as u64, ..Default::default() };
        for entry in &entries {
            let at = entry.header.recorded_at_us;
            run.from_us = Some(run.from_us.map_or(at, |t: i64| t.min(at)));
            run.to_us = Some(run.to_us.map_or(at, |t: i64| t.max(at)));
            let plain = self.ledger.open_payload(entry).await?;
            let payload: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
            let stored = payload.get("event").cloned().unwrap_or(Value::Null);
            let mut sent = stored.clone();
            if let Some(kept) = payload.get("unmasked").and_then(Value::as_object) {
                for (path, original) in kept {
                    if let Some(v) = original.as_str()
                        && put_back(&mut sent, path, v)
                    {
                        run.restored += 1;
                    }
                }
            }
            let (Ok(sent), Ok(mut stored)) =
                (serde_json::from_value::<Event>(sent), serde_json::from_value::<Event>(stored))
            else {
                continue;
            };
            let id = stored.id.to_string();
            current.masker.mask_event_seen(&mut sent.clone(), &pseudonym, &mut |d, _, _| {
                *run.current.entry(d).or_default() += 1;
            });
            proposed.mask_event_seen(&mut sent.clone(), &pseudonym, &mut |d, _, _| {
                *run.proposed.entry(d).or_default() += 1;
            });
            let examples = &mut run.examples;
            proposed.mask_event_seen(&mut stored, &pseudonym, &mut |d, found, replacement| {
                let list = examples.entry(d).or_default();
                if d != Detector::SecretKey && list.len() < 3 && found != replacement {
                    list.push((id.clone(), found.to_owned(), replacement.to_owned()));
                }
            });
        }
        run.rules = proposed.rules().to_vec();
        Ok(run)
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

//! The trail: every policy step the ledger holds, as the explorer pages
//! through it ([`PolicyStore::trail`]), and rebuilt from the ledger alone
//! ([`rebuild`]).
//!
//! The rebuild: the server-sealed
//! `custos.policy.*` entries (and the masking changes saved before the
//! store, `policy.masking.update`), minus the steps a recorded failure
//! names (`recorded_as`), folded into each kind's versions; each version's
//! patch applied to the previous content (from the kind's defaults) must
//! give the recorded SHA-256. An auditor's check that the store's tables
//! say what the ledger proves.

use std::collections::{BTreeMap, BTreeSet};

use custos_model::{PatchOp, TrailEntry, TrailPage};
use sea_orm::ConnectionTrait;
use serde_json::Value;

use super::kinds::PolicyKind;
use super::store::{PolicyStore, TrailQuery, step};
use super::{PolicyError, invalid, patch};
use crate::events::{Events, SearchFilter};
use crate::storage::stmt_for;

impl PolicyStore {
    /// The masking versions saved before the store (no proposal).
    async fn legacy_masking_versions(&self) -> Result<Vec<u64>, PolicyError> {
        let b = self.conn().get_database_backend();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                b,
                "SELECT version FROM policy_versions WHERE kind = 'masking' AND proposal_id IS NULL ORDER BY version LIMIT 90",
                vec![],
            ))
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64>("", "version")? as u64)).collect()
    }

    /// Every policy step the ledger holds, newest first: the store's own
    /// (and the masking changes saved before it), and the `policy` events
    /// applications sent. Filters: `kind`, `actor`, `step`, `from`, `to`,
    /// `source` (`custos`, `applications`), `cursor`, `limit`.
    pub async fn trail(&self, q: &TrailQuery) -> Result<TrailPage, PolicyError> {
        let mut pairs = vec![("category".to_owned(), "policy".to_owned())];
        let (mut kind, mut wanted_step, mut own) = (None, None, None);
        for (k, v) in &q.pairs {
            match k.as_str() {
                "kind" => kind = Some(v.clone()),
                "step" => {
                    if !step::names().contains(&v.as_str()) {
                        return Err(invalid("step", format!("must be one of {}", step::names().join(", "))));
                    }
                    wanted_step = Some(v.clone());
                }
                "source" => match v.as_str() {
                    "custos" => own = Some(true),
                    "applications" => own = Some(false),
                    _ => return Err(invalid("source", "must be custos or applications")),
                },
                "actor" | "from" | "to" | "cursor" | "limit" => pairs.push((k.clone(), v.clone())),
                other => {
                    return Err(invalid(
                        other,
                        "unknown parameter: kind, actor, step, source, from, to, cursor, limit",
                    ));
                }
            }
        }
        if !q.applications {
            if own == Some(false) {
                return Err(PolicyError::Forbidden("the policy events applications send need audit:read".into()));
            }
            own = Some(true);
        }
        // The masking changes saved before the store are `activated` steps
        // of kind masking, recorded as `policy.masking.update` on resource
        // `masking_policy`/<version>: the filters take them in.
        let legacy = kind.as_deref().is_none_or(|k| k == "masking")
            && wanted_step.as_deref().is_none_or(|s| s == "activated")
            && own != Some(false);
        if let Some(k) = &kind {
            pairs.push(("resource_id".into(), k.clone()));
            if legacy {
                for v in self.legacy_masking_versions().await? {
                    pairs.push(("resource_id".into(), v.to_string()));
                }
            }
        }
        match &wanted_step {
            Some(s) => pairs.push(("action".into(), format!("custos.policy.{s}"))),
            None if own == Some(true) => pairs.push(("action".into(), "custos.policy.*".into())),
            None => {}
        }
        if legacy && (wanted_step.is_some() || own == Some(true)) {
            pairs.push(("action".into(), step::LEGACY_MASKING.into()));
        }
        let mut f = SearchFilter::from_pairs(&pairs).map_err(|mut e| PolicyError::Invalid(e.remove(0)))?;
        if q.pairs.iter().all(|(k, _)| k != "limit") {
            f.limit = 50;
        }
        f.exclude_own = own == Some(false);
        let page = self.events.search(&f).await?;
        // An application's event may carry a legacy version number as its
        // resource id: only the kind asked for stays.
        let items =
            page.items.iter().map(trail_entry).filter(|t| kind.as_deref().is_none_or(|k| t.kind == k)).collect();
        Ok(TrailPage { items, next_cursor: page.next_cursor })
    }
}

/// A policy event as a trail entry.
pub fn trail_entry(e: &custos_model::EventView) -> TrailEntry {
    let d = e.details.clone().unwrap_or(Value::Null);
    let own = e.source.application.as_deref() == Some("custos");
    let step = match e.action.strip_prefix("custos.policy.") {
        Some(s) if own => s.to_owned(),
        _ if own && e.action == step::LEGACY_MASKING => "activated".into(),
        _ => e.action.clone(),
    };
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
    let before = d.get("before").cloned();
    let after = d.get("after").cloned();
    let mut diff: Vec<PatchOp> = d.get("diff").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    if diff.is_empty()
        && let (Some(b), Some(a)) = (&before, &after)
    {
        diff = patch::diff(b, a);
    }
    let kind = if own && e.action == step::LEGACY_MASKING {
        "masking".to_owned()
    } else {
        s("kind")
            .or_else(|| e.resource.as_ref().map(|r| r.id.clone().unwrap_or_else(|| r.kind.clone())))
            .unwrap_or_default()
    };
    let approvers = match d.get("approvers") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| {
                x.as_str().map(str::to_owned).or_else(|| x.get("name").and_then(Value::as_str).map(str::to_owned))
            })
            .collect(),
        _ => vec![],
    };
    TrailEntry {
        seq: e.seq,
        event_id: e.id.to_string(),
        at: e.recorded_at.clone(),
        step,
        action: e.action.clone(),
        outcome: e.outcome.clone(),
        kind,
        actor: e.actor.id.clone(),
        actor_name: e.actor.name.clone(),
        application: e.source.application.clone(),
        version: d.get("version").and_then(Value::as_u64),
        proposal: s("proposal"),
        sha256: s("sha256"),
        diff,
        before,
        after,
        text: s("reason").or_else(|| s("comment")).or_else(|| e.reason.clone()).filter(|t| !t.is_empty()),
        alone: d.get("alone").and_then(Value::as_bool).unwrap_or(false),
        approvers,
        severity: e.severity.clone(),
        details: e.details.clone(),
    }
}

/// A version as the ledger proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenVersion {
    /// 1, 2, …
    pub version: u64,
    /// SHA-256 of its content (hex), recomputed from the patches.
    pub sha256: String,
    /// Who proposed it (principal); the saver for legacy masking versions.
    pub author: String,
    /// The approvers' principals, in order.
    pub approvers: Vec<String>,
    /// Approved without a second person.
    pub alone: bool,
    /// The proposal.
    pub proposal: Option<String>,
}

/// Every kind's versions, from the ledger alone. Fails when a recorded
/// patch does not reproduce its recorded hash, or versions skip.
pub async fn rebuild(
    events: &Events,
    kinds: &[std::sync::Arc<dyn PolicyKind>],
) -> Result<BTreeMap<String, Vec<ProvenVersion>>, PolicyError> {
    let mut all = Vec::new();
    let mut f = SearchFilter {
        categories: vec!["policy".into()],
        descending: false,
        limit: 1000,
        only_own: true,
        ..Default::default()
    };
    loop {
        let page = events.search(&f).await?;
        let last = page.items.last().map(|e| e.seq);
        all.extend(page.items);
        match (page.next_cursor, last) {
            (Some(_), Some(seq)) => f.after_seq = Some(seq),
            _ => break,
        }
    }
    let failed: BTreeSet<String> =
        all.iter().filter_map(|e| e.details.as_ref()?.get("recorded_as")?.as_str().map(str::to_owned)).collect();
    let mut content: BTreeMap<String, Value> = kinds.iter().map(|k| (k.name().to_owned(), k.defaults())).collect();
    let mut out: BTreeMap<String, Vec<ProvenVersion>> = BTreeMap::new();
    let corrupt = |m: String| PolicyError::Events(crate::ledger::LedgerError::Corrupt(m).into());
    for e in &all {
        if failed.contains(&e.id.to_string()) || e.outcome != "success" {
            continue;
        }
        let d = e.details.clone().unwrap_or(Value::Null);
        if e.action == step::LEGACY_MASKING {
            let version = d.get("version").and_then(Value::as_u64).unwrap_or(0);
            let doc = patch::canonical(&serde_json::json!({ "rules": d.get("rules").cloned().unwrap_or(Value::Null) }));
            let list = out.entry("masking".into()).or_default();
            if version != list.len() as u64 + 1 {
                return Err(corrupt(format!("masking: version {version} follows {}", list.len())));
            }
            list.push(ProvenVersion {
                version,
                sha256: patch::sha256_hex(&doc),
                author: e.actor.name.clone().unwrap_or_else(|| e.actor.id.clone()),
                approvers: vec![],
                alone: false,
                proposal: None,
            });
            content.insert("masking".into(), doc);
            continue;
        }
        if e.action != step::ACTIVATED && e.action != step::ROLLED_BACK {
            continue;
        }
        let kind = d.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        let version = d.get("version").and_then(Value::as_u64).unwrap_or(0);
        let diff: Vec<custos_model::PatchOp> = serde_json::from_value(d.get("diff").cloned().unwrap_or(Value::Null))
            .map_err(|x| corrupt(format!("{kind} v{version}: {x}")))?;
        let before = content.get(&kind).cloned().ok_or_else(|| corrupt(format!("unknown kind {kind}")))?;
        let after = patch::apply(&before, &diff).map_err(|x| corrupt(format!("{kind} v{version}: {x}")))?;
        let sha = patch::sha256_hex(&after);
        if Some(sha.as_str()) != d.get("sha256").and_then(Value::as_str) {
            return Err(corrupt(format!("{kind} v{version}: the recorded patch does not give the recorded hash")));
        }
        let list = out.entry(kind.clone()).or_default();
        if version != list.len() as u64 + 1 {
            return Err(corrupt(format!("{kind}: version {version} follows {}", list.len())));
        }
        let approvers = match d.get("approvers") {
            Some(Value::Array(a)) => {
                a.iter().filter_map(|x| x.get("principal").and_then(Value::as_str).map(str::to_owned)).collect()
            }
            _ => vec![],
        };
        list.push(ProvenVersion {
            version,
            sha256: sha,
            author: d.get("author").and_then(Value::as_str).unwrap_or_default().to_owned(),
            approvers,
            alone: d.get("alone").and_then(Value::as_bool).unwrap_or(false),
            proposal: d.get("proposal").and_then(Value::as_str).map(str::to_owned),
        });
        content.insert(kind, after);
    }
    Ok(out)
}

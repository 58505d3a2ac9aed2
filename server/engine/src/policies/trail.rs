//! The trail rebuilt from the ledger alone: the server-sealed
//! `custos.policy.*` entries (and the masking changes saved before the
//! store, `policy.masking.update`), minus the steps a recorded failure
//! names (`recorded_as`), folded into each kind's versions; each version's
//! patch applied to the previous content (from the kind's defaults) must
//! give the recorded SHA-256. An auditor's check that the store's tables
//! say what the ledger proves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::kinds::PolicyKind;
use super::store::step;
use super::{PolicyError, patch};
use crate::events::{Events, SearchFilter};

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
    let mut f =
        SearchFilter { categories: vec!["policy".into()], descending: false, limit: 1000, ..Default::default() };
    loop {
        let page = events.search(&f).await?;
        let last = page.items.last().map(|e| e.seq);
        all.extend(page.items.into_iter().filter(|e| e.source.application.as_deref() == Some("custos")));
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

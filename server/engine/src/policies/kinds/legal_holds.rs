//! Legal holds as a policy kind (`retention::doc::HoldsDoc`), version 0
//! having none. A change may place holds and release them, never remove or
//! rewrite one: released holds stay in the policy. Placing and releasing
//! are policy steps in the ledger (proposed, approved, activated). The
//! dry-run: how many expired events each would keep from a run now.
//! Proposing needs `retention:manage`.

use custos_model::{PolicyVersion, TestReport};
use serde_json::{Value, json};

use super::retention::{compare, retention_in_force};
use super::{KindFuture, PolicyKind, Sample};
use crate::events::Events;
use crate::events::validate::FieldError;
use crate::identity::permission::Permission;
use crate::retention::doc::{HOLDS_KIND, HoldsDoc};

/// The legal-hold kind.
#[derive(Debug, Clone, Copy)]
pub struct LegalHoldsKind;

impl PolicyKind for LegalHoldsKind {
    fn name(&self) -> &'static str {
        HOLDS_KIND
    }

    fn title(&self) -> &'static str {
        "Legal holds"
    }

    fn permission(&self) -> Permission {
        Permission::RetentionManage
    }

    fn defaults(&self) -> Value {
        json!({"holds": []})
    }

    fn validate(&self, doc: &Value) -> Result<Value, FieldError> {
        let d = HoldsDoc::parse(doc)?;
        d.check()?;
        serde_json::to_value(&d).map_err(|e| FieldError { path: "content".into(), reason: e.to_string() })
    }

    fn summary(&self, doc: &Value) -> String {
        match HoldsDoc::parse(doc) {
            Ok(d) => {
                let on: Vec<String> =
                    d.holds.iter().filter(|h| h.active()).map(|h| format!("{} ({})", h.id, h.case_id)).collect();
                let released = d.holds.len() - on.len();
                if on.is_empty() {
                    format!("No legal hold in force ({released} released)")
                } else {
                    format!("{} hold(s) in force: {} ({released} released)", on.len(), on.join(", "))
                }
            }
            Err(e) => e.reason,
        }
    }

    fn test<'a>(
        &'a self,
        events: &'a Events,
        current: &'a Value,
        doc: &'a Value,
        _sample: Sample,
    ) -> KindFuture<'a, TestReport> {
        Box::pin(async move {
            let proposed = HoldsDoc::parse(doc).map_err(crate::policies::PolicyError::Invalid)?;
            let in_force = HoldsDoc::parse(current).unwrap_or_default();
            proposed.check_change(&in_force).map_err(crate::policies::PolicyError::Invalid)?;
            let rules = retention_in_force(events).await?;
            compare(self.name(), events, doc, (&rules, &in_force), (&rules, &proposed)).await
        })
    }

    fn persist<'a>(&'a self, _tx: &'a sea_orm::DatabaseTransaction, _v: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn apply<'a>(&'a self, _events: &'a Events, _active: &'a PolicyVersion) -> KindFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

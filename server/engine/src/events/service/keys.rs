//! Data key rotation, recorded before it happens.

use super::*;

impl Events {
    /// Rotates the data key, recorded before it happens (`ledger.key.rotate`
    /// by `by`): if the ledger cannot record it, no key is made. A rotation
    /// that then fails is recorded too, pointing at the first record.
    /// Returns the new key's id.
    pub async fn rotate_key(&self, by: &Actor, channel: &str, request_id: Option<String>) -> Result<u32, EventsError> {
        let (_, previous) = self.ledger.keys().data_key_ids();
        let next = self.ledger.next_key_id().await?;
        let event = |outcome: &str, details: Value| Event {
            id: Uuid::now_v7(),
            occurred_at_us: self.ledger.now_us(),
            category: "admin".into(),
            action: "ledger.key.rotate".into(),
            outcome: outcome.into(),
            reason: None,
            severity: if outcome == "success" { "notice" } else { "error" }.into(),
            actor: by.clone(),
            resource: Some(Resource { kind: "data_key".into(), id: Some(next.to_string()), name: None }),
            tenant: None,
            source: Source { application: Some("custos".into()), host: None, channel: channel.into() },
            correlation: Correlation { request_id: request_id.clone(), trace_id: None, parent_id: None },
            metrics: None,
            details: Some(details),
        };
        let recorded = self.record(event("success", json!({ "key_id": next, "previous_key_id": previous }))).await?;
        match self.ledger.rotate_key_to(next).await {
            Ok(key_id) => Ok(key_id),
            Err(e) => {
                let details =
                    json!({ "previous_key_id": previous, "recorded_as": recorded.event_id, "error": e.to_string() });
                if let Err(le) = self.record(event("error", details)).await {
                    tracing::error!(error = %le, "could not record a failed key rotation");
                }
                Err(e.into())
            }
        }
    }
}

//! Data key rotation, recorded before it happens.

use super::*;
use crate::events::model::{Channel, Outcome};
use crate::events::own::{OwnAction, OwnEvent};

impl Events {
    /// Rotates the data key, recorded before it happens (`ledger.key.rotate`
    /// by `by`): if the ledger cannot record it, no key is made. A rotation
    /// that then fails is recorded too, pointing at the first record.
    /// Returns the new key's id.
    pub async fn rotate_key(
        &self,
        by: &Actor,
        channel: Channel,
        request_id: Option<String>,
    ) -> Result<u32, EventsError> {
        let (_, previous) = self.ledger.keys().data_key_ids();
        let next = self.ledger.next_key_id().await?;
        let event = |outcome: Outcome, details: Value| {
            OwnEvent::new(OwnAction::KeyRotate, by.clone(), channel)
                .outcome(outcome)
                .resource("data_key", Some(next.to_string()))
                .request(request_id.clone())
                .details(details)
        };
        let recorded =
            self.record_own(event(Outcome::Success, json!({ "key_id": next, "previous_key_id": previous }))).await?;
        match self.ledger.rotate_key_to(next).await {
            Ok(key_id) => Ok(key_id),
            Err(e) => {
                let details =
                    json!({ "previous_key_id": previous, "recorded_as": recorded.event_id, "error": e.to_string() });
                if let Err(le) = self.record_own(event(Outcome::Error, details)).await {
                    tracing::error!(error = %le, "could not record a failed key rotation");
                }
                Err(e.into())
            }
        }
    }
}

//! Reading one event with its proof, unmasked on request: the unmasking is
//! recorded before anything is revealed.

use super::*;
use crate::events::own::Requester;
use crate::events::own::{OwnAction, OwnEvent};
use crate::ledger::EntryVerification;

/// Which event: by its id or its seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRef {
    /// The event id.
    Id(Uuid),
    /// The ledger seq.
    Seq(u64),
}

impl std::str::FromStr for EventRef {
    type Err = FieldError;

    /// A UUID or a whole number; the error names the field `id`.
    fn from_str(s: &str) -> Result<EventRef, FieldError> {
        if let Ok(id) = Uuid::parse_str(s) {
            Ok(EventRef::Id(id))
        } else if let Ok(seq) = s.parse::<u64>() {
            Ok(EventRef::Seq(seq))
        } else {
            Err(FieldError {
                path: "id".into(),
                reason: "must be an event id (UUID) or a seq (a positive whole number)".into(),
            })
        }
    }
}

/// A request to see the originals the masking rules kept, with its reason.
#[derive(Debug, Clone)]
pub struct Unmask {
    by: Requester,
    reason: String,
}

impl Unmask {
    /// Why the originals are needed: 5 to 500 characters (trimmed). The
    /// error names the field `reason`.
    pub fn new(by: Requester, reason: Option<&str>) -> Result<Unmask, FieldError> {
        match reason.map(str::trim) {
            Some(r) if (5..=500).contains(&r.chars().count()) => Ok(Unmask { by, reason: r.to_owned() }),
            _ => Err(FieldError {
                path: "reason".into(),
                reason: "is required with unmask=true (5 to 500 characters): say why".into(),
            }),
        }
    }
}

/// An event with what proves it.
#[derive(Debug, Clone)]
pub struct ProvenEvent {
    /// The event (masked unless unmasked).
    pub event: EventView,
    /// Stored fields vs leaf hash, MAC, decryption, and the inclusion
    /// proof against a signed checkpoint.
    pub verification: EntryVerification,
    /// The leaf hash the inclusion proof starts from.
    pub leaf_hash: [u8; 32],
}

impl Events {
    /// One event, decrypted and masked, with its inclusion proof against a
    /// signed checkpoint (one is signed now if none covers it yet). With
    /// `unmask`, the kept originals too, after the unmasking is recorded
    /// (`audit.unmask` with the reason): no record, no originals.
    /// `Ok(None)`: no such event.
    pub async fn read_with_proof(
        &self,
        at: EventRef,
        unmask: Option<&Unmask>,
    ) -> Result<Option<ProvenEvent>, EventsError> {
        let found = match at {
            EventRef::Id(id) => self.entry_by_id(id).await?,
            EventRef::Seq(seq) => self.ledger.entry(seq).await?,
        };
        let Some(entry) = found else { return Ok(None) };
        if let Some(u) = unmask {
            let event = OwnEvent::new(OwnAction::Unmask, u.by.actor.clone(), u.by.channel)
                .resource("audit_event", Some(entry.header.event_id.to_string()))
                .tenant(entry.header.fields.tenant.clone())
                .request(u.by.request_id.clone())
                .details(json!({ "seq": entry.header.seq, "justification": u.reason }));
            self.record_own(event).await?;
        }
        let event = self.view(&entry, unmask.is_some()).await?;
        let seq = entry.header.seq;
        let mut verification = self.ledger.verify_entry(seq).await?;
        if verification.inclusion.is_none() {
            // Not yet covered by a signed checkpoint: sign one now.
            self.ledger.checkpoint_covering(seq).await?;
            verification = self.ledger.verify_entry(seq).await?;
        }
        Ok(Some(ProvenEvent { event, verification, leaf_hash: entry.leaf_hash }))
    }
}

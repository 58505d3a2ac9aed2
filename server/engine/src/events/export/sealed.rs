//! The export's hot path for formats that need only an event's flat
//! columns (CSV): the decrypted payload is read without building the event
//! (strings borrowed where they have no escapes, `details` kept as the
//! JSON text it was sealed as).

use std::borrow::Cow;

use crate::events::service::PAYLOAD_VERSION;
use crate::ledger::types::StoredEntry;
use crate::time::rfc3339;

#[derive(serde::Deserialize)]
struct SealedRef<'a> {
    #[serde(default)]
    v: u64,
    #[serde(borrow)]
    event: Option<EventRef<'a>>,
}

#[derive(serde::Deserialize)]
struct EventRef<'a> {
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor: ActorRef<'a>,
    #[serde(borrow, default)]
    resource: Option<ResourceRef<'a>>,
    #[serde(borrow)]
    source: SourceRef<'a>,
    #[serde(borrow, default)]
    correlation: CorrelationRef<'a>,
    #[serde(borrow, default)]
    details: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct ActorRef<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct ResourceRef<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct SourceRef<'a> {
    #[serde(borrow, default)]
    application: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

#[derive(serde::Deserialize, Default)]
struct CorrelationRef<'a> {
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
}

/// Calls `f` with the entry's flat columns (`FLAT_COLUMNS` order, as
/// `flat_cells` gives them for the decoded event) read straight from its
/// decrypted payload; false, without calling it, when the payload is not
/// an event of the current shape (the caller then decodes it in full).
pub(super) fn with_flat_cells(entry: &StoredEntry, plain: &[u8], f: impl FnOnce(&[&str; 21])) -> bool {
    let Ok(SealedRef { v: PAYLOAD_VERSION, event: Some(e) }) = serde_json::from_slice::<SealedRef<'_>>(plain) else {
        return false;
    };
    let h = &entry.header;
    let fields = &h.fields;
    fn o<'b>(v: &'b Option<Cow<'_, str>>) -> &'b str {
        v.as_deref().unwrap_or_default()
    }
    let seq = h.seq.to_string();
    let id = h.event_id.to_string();
    let occurred = rfc3339(h.occurred_at_us);
    let recorded = rfc3339(h.recorded_at_us);
    let r = e.resource.as_ref();
    f(&[
        &seq,
        &id,
        &occurred,
        &recorded,
        &fields.category,
        &fields.action,
        &fields.outcome,
        &fields.severity,
        &e.actor.id,
        &e.actor.kind,
        o(&e.actor.name),
        o(&e.actor.ip),
        r.map(|r| &*r.kind).unwrap_or_default(),
        r.map(|r| o(&r.id)).unwrap_or_default(),
        r.map(|r| o(&r.name)).unwrap_or_default(),
        fields.tenant.as_deref().unwrap_or_default(),
        &e.source.channel,
        o(&e.source.application),
        o(&e.correlation.request_id),
        o(&e.reason),
        e.details.map(|d| d.get()).filter(|d| *d != "null").unwrap_or_default(),
    ]);
    true
}

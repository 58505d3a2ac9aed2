//! The export's hot path for formats that need only an event's flat
//! columns (CSV): the decrypted payload is read without building the event
//! (strings borrowed where they have no escapes, `details` kept as the
//! JSON text it was sealed as).

use std::borrow::Cow;

use crate::events::service::PAYLOAD_VERSION;
use crate::ledger::encoding::HeaderRef;
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
/// header and decrypted payload; false, without calling it, when the
/// payload is not an event of the current shape or a header field is not
/// UTF-8 (the caller then decodes the entry in full, which refuses a header
/// that is not UTF-8 as corrupt).
pub(super) fn with_flat_cells(h: &HeaderRef<'_>, plain: &[u8], f: impl FnOnce(&[&str; 21])) -> bool {
    // Checked as UTF-8 once, whole: parsed from bytes, serde_json would
    // check each borrowed string on its own (6% of a CSV export's time).
    let Ok(plain) = std::str::from_utf8(plain) else {
        return false;
    };
    let Ok(SealedRef { v: PAYLOAD_VERSION, event: Some(e) }) = serde_json::from_str::<SealedRef<'_>>(plain) else {
        return false;
    };
    let [Ok(category), Ok(action), Ok(outcome), Ok(severity)] = h.required.map(std::str::from_utf8) else {
        return false;
    };
    // `optional` is in header order: actor_id, actor_kind, resource_type,
    // resource_id, tenant, channel, source_app.
    let Ok(tenant) = h.optional[4].map(std::str::from_utf8).transpose() else {
        return false;
    };
    fn o<'b>(v: &'b Option<Cow<'_, str>>) -> &'b str {
        v.as_deref().unwrap_or_default()
    }
    let seq = h.seq.to_string();
    let id = uuid::Uuid::from_bytes(*h.event_id).to_string();
    let occurred = rfc3339(h.occurred_at_us);
    let recorded = rfc3339(h.recorded_at_us);
    let r = e.resource.as_ref();
    f(&[
        &seq,
        &id,
        &occurred,
        &recorded,
        category,
        action,
        outcome,
        severity,
        &e.actor.id,
        &e.actor.kind,
        o(&e.actor.name),
        o(&e.actor.ip),
        r.map(|r| &*r.kind).unwrap_or_default(),
        r.map(|r| o(&r.id)).unwrap_or_default(),
        r.map(|r| o(&r.name)).unwrap_or_default(),
        tenant.unwrap_or_default(),
        &e.source.channel,
        o(&e.source.application),
        o(&e.correlation.request_id),
        o(&e.reason),
        e.details.map(|d| d.get()).filter(|d| *d != "null").unwrap_or_default(),
    ]);
    true
}

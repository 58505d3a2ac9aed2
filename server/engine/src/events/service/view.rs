//! Reading a sealed payload back: the view of an entry (masked unless
//! unmasked), whether the server sealed it, and retry digests.

use super::*;

pub(crate) fn contains_text(v: &EventView, needle: &str) -> bool {
    serde_json::to_string(v).map(|s| s.to_lowercase().contains(needle)).unwrap_or(false)
}

pub(super) fn receipt_view(r: &Receipt) -> IngestReceipt {
    IngestReceipt {
        seq: r.seq,
        id: r.event_id,
        recorded_at: rfc3339(r.recorded_at_us),
        duplicate: r.duplicate,
        conflict: false,
    }
}

/// SHA-256 (hex) of an event as validated, before masking: what makes a
/// retry a retry. serde_json maps keep their keys sorted, so equal events
/// serialise equally.
pub(super) fn content_digest(e: &Event) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(e).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Whether a decrypted payload was sealed by the server about itself (its
/// sealed submitter is Custos), not sent by a client.
pub(crate) fn sealed_by_server(plain: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Sealed<'a> {
        #[serde(borrow)]
        submitted_by: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Sealed<'_>>(plain).is_ok_and(|s| s.submitted_by.as_deref() == Some(SERVER_SUBMITTER))
}

/// The view of a decrypted entry. Events ingested through [`Events`] carry
/// their full shape; entries Custos wrote before (lifecycle, identity) are
/// read from the header and whatever of the shape their payload has.
pub(crate) fn view_of(entry: &StoredEntry, plain: &[u8], unmask: bool) -> EventView {
    let h = &entry.header;
    let f = &h.fields;
    // Parsed straight into types (no intermediate JSON tree) on the path
    // search and export take for every row.
    #[derive(serde::Deserialize)]
    struct Sealed {
        #[serde(default)]
        v: u64,
        event: Option<Event>,
        #[serde(default)]
        unmasked: BTreeMap<String, String>,
    }
    let (reason, actor, resource, source, correlation, metrics, details, unmasked) = match serde_json::from_slice::<
        Sealed,
    >(plain)
    {
        Ok(Sealed { v: PAYLOAD_VERSION, event: Some(e), unmasked }) => {
            (e.reason, e.actor, e.resource, e.source, e.correlation, e.metrics, e.details, unmask.then_some(unmasked))
        }
        _ => {
            let legacy = legacy_parts(f, plain);
            (None, legacy.0, legacy.1, legacy.2, legacy.3, None, legacy.4, unmask.then(BTreeMap::new))
        }
    };
    EventView {
        seq: h.seq,
        id: h.event_id,
        occurred_at: rfc3339(h.occurred_at_us),
        recorded_at: rfc3339(h.recorded_at_us),
        category: f.category.clone(),
        action: f.action.clone(),
        outcome: f.outcome.clone(),
        reason,
        severity: f.severity.clone(),
        actor,
        resource,
        tenant: f.tenant.clone(),
        source,
        correlation,
        metrics,
        details,
        unmasked,
    }
}

/// What an entry Custos wrote before the events service (lifecycle,
/// identity) says about itself: the header, and whatever of the event's
/// shape its payload has.
pub(super) fn legacy_parts(
    f: &HeaderFields,
    plain: &[u8],
) -> (Actor, Option<Resource>, Source, Correlation, Option<Value>) {
    let payload: Value = serde_json::from_slice(plain).unwrap_or(Value::Null);
    let pick = |k: &str| payload.get(k).cloned();
    let header_actor = Actor {
        id: f.actor_id.clone().unwrap_or_default(),
        kind: f.actor_kind.clone().unwrap_or_else(|| "system".into()),
        name: None,
        ip: None,
        user_agent: None,
        session_id: None,
    };
    let actor = pick("actor")
        .and_then(|a| {
            let mut a: serde_json::Map<String, Value> = serde_json::from_value(a).ok()?;
            a.retain(|_, v| !v.is_null());
            a.entry("id").or_insert_with(|| header_actor.id.clone().into());
            a.entry("kind").or_insert_with(|| header_actor.kind.clone().into());
            serde_json::from_value::<Actor>(Value::Object(a)).ok()
        })
        .unwrap_or(header_actor);
    let resource =
        f.resource_type.as_ref().map(|t| Resource { kind: t.clone(), id: f.resource_id.clone(), name: None });
    let source = Source {
        application: f.source_app.clone(),
        host: None,
        channel: f.channel.clone().unwrap_or_else(|| "system".into()),
    };
    let correlation = pick("correlation").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let details = match pick("details") {
        Some(d) if !d.is_null() => Some(d),
        Some(_) => None,
        None if payload.is_null() => None,
        None => Some(payload),
    };
    (actor, resource, source, correlation, details)
}

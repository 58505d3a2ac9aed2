//! Live updates: a stream of server-sent events (the live tail of new
//! events, the alerts' changes) tells a page that something changed, and
//! the page reloads what it shows.

use leptos::prelude::*;

/// An open stream of server-sent events (a live tail, the alerts' changes);
/// closed by [`Tail::close`] or, with [`close_on_cleanup`], with its page.
#[cfg(feature = "hydrate")]
pub struct Tail {
    source: web_sys::EventSource,
    _listeners: Vec<wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>>,
}

#[cfg(feature = "hydrate")]
impl Tail {
    /// Stops following.
    pub fn close(&self) {
        self.source.close();
    }
}

/// Opens `GET url` (the live tail): `state` says whether it is connected
/// (`connected` once the server's `ready` arrives), `on_event` gets the data
/// of each `audit` event (an event as JSON).
#[cfg(feature = "hydrate")]
pub fn open_tail(
    url: &str,
    state: RwSignal<String>,
    connected: &'static str,
    on_event: impl FnMut(String) + 'static,
) -> Option<Tail> {
    open_stream(url, "audit", state, connected, on_event)
}

/// Opens `GET url`, a stream of server-sent events: `state` says whether it
/// is connected (`connected` once the server's `ready` arrives), `on_event`
/// gets the data of each event named `event`.
#[cfg(feature = "hydrate")]
pub fn open_stream(
    url: &str,
    event: &str,
    state: RwSignal<String>,
    connected: &'static str,
    on_event: impl FnMut(String) + 'static,
) -> Option<Tail> {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new(url) else {
        state.set("could not connect".into());
        return None;
    };
    state.set("connecting…".into());
    let mut on_event = on_event;
    let ready = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| state.set(connected.into()));
    let listener = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |m: web_sys::MessageEvent| {
        if let Some(text) = m.data().as_string() {
            on_event(text);
        }
    });
    let error = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| state.set("reconnecting…".into()));
    let _ = source.add_event_listener_with_callback("ready", ready.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback("error", error.as_ref().unchecked_ref());
    Some(Tail { source, _listeners: vec![ready, listener, error] })
}

/// Closes `tail` when the component that opened it goes away.
#[cfg(feature = "hydrate")]
pub fn close_on_cleanup(tail: Option<Tail>) {
    let tail: StoredValue<Option<Tail>, LocalStorage> = StoredValue::new_local(tail);
    on_cleanup(move || {
        if let Some(t) = tail.try_update_value(Option::take).flatten() {
            t.close();
        }
    });
}

/// Counts new events (except the actions in `ignore`, such as the page's own
/// reads, which the self-audit records) into `seen` while the page is open;
/// `state` says whether the stream is connected.
#[allow(unused_variables)]
pub fn follow(ignore: &'static [&'static str], seen: RwSignal<u64>, state: RwSignal<String>) {
    #[cfg(feature = "hydrate")]
    {
        let tail = open_tail("/api/audit/tail", state, "live", move |text| {
            let action = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_owned))
                .unwrap_or_default();
            if !ignore.contains(&action.as_str()) {
                seen.update(|n| *n += 1);
            }
        });
        close_on_cleanup(tail);
    }
}

/// A bucket start (RFC 3339, UTC) as a short axis label.
pub fn bucket_label(start: &str, hourly: bool) -> String {
    if hourly {
        format!("{} {}", start.get(5..10).unwrap_or(start), start.get(11..16).unwrap_or(""))
    } else {
        start.get(..10).unwrap_or(start).to_owned()
    }
}

/// A number with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_numbers() {
        assert_eq!(bucket_label("2026-11-26T14:00:00Z", true), "11-26 14:00");
        assert_eq!(bucket_label("2026-11-26T00:00:00Z", false), "2026-11-26");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}

//! SIEM forwarding: the destinations with their health and lag (live), a
//! test, pause / resume and replay each, and a form to add one with a
//! preview of its format on a real recent event. Adding or removing a
//! destination is a proposal to the `forwarding` policy, reviewed like any
//! policy; secrets are sealed by the server and never shown again.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use serde_json::{Value, json};

use super::policies::when;
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{DestinationHealth, ForwardPreview, ForwardTest, ForwardingStatus, PolicyKindView, Proposal};

const TYPES: [(&str, &str); 3] = [
    ("syslog", "Syslog (RFC 5424 over TLS, TCP or UDP)"),
    ("splunk_hec", "Splunk HTTP Event Collector"),
    ("webhook", "HTTP webhook (Elastic, OpenSearch, Sentinel, Vector…)"),
];
const FORMATS: [(&str, &str); 5] = [
    ("json", "JSON (the API's event)"),
    ("cef", "CEF (ArcSight)"),
    ("leef", "LEEF 2.0 (QRadar)"),
    ("ocsf", "OCSF"),
    ("ecs", "ECS (Elastic)"),
];

/// The page.
#[component]
pub fn ForwardingPage() -> impl IntoView {
    let kind = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            kind.set(Some(get_json::<PolicyKindView>("/api/policies/forwarding").await));
        });
    });
    view! {
        <Title text="Forwarding"/>
        <h1>"SIEM forwarding"</h1>
        <p class="muted">"Every event the ledger commits goes to each destination in its format, in order, at least once: the ledger is the buffer, so a destination that is down for days loses nothing. Signed checkpoints go too, so copies of the tree heads live outside Custos. Changes are proposals to the forwarding policy, reviewed like any policy. "
            <a href="/policies/trail?kind=forwarding">"Its trail →"</a></p>
        <Destinations/>
        {move || match kind.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <Policy kind=k/> }.into_any(),
        }}
    }
}

fn lag(d: &DestinationHealth) -> String {
    if d.cursor.is_none() {
        return "not started".into();
    }
    if d.lag_events == 0 {
        return "caught up".into();
    }
    if live(d) {
        // Entries committed a moment ago (this page's own audited reads,
        // among others) are on their way.
        return format!("live: {} entries, {:.1} s", d.lag_events, d.lag_seconds);
    }
    format!("{} entries, {:.1} s", d.lag_events, d.lag_seconds)
}

/// Caught up, or behind only by what was committed in the last 2 seconds.
fn live(d: &DestinationHealth) -> bool {
    d.cursor.is_some() && (d.lag_events == 0 || d.lag_seconds < 2.0)
}

/// The destinations' health, refreshed every two seconds.
#[component]
fn Destinations() -> impl IntoView {
    let status = RwSignal::new(None::<Result<ForwardingStatus, ClientError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            status.set(Some(get_json::<ForwardingStatus>("/api/forwarding/destinations").await));
        });
    };
    Effect::new(move |_| {
        load();
        let handle = set_interval_with_handle(load, std::time::Duration::from_secs(2));
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
    view! {
        <section class="panel">
            <h2>"Destinations"</h2>
            {move || match status.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(s)) if s.destinations.is_empty() => view! {
                    <p class="muted" data-testid="no-destinations">"No destination yet: nothing is forwarded. Add one below."</p>
                }.into_any(),
                Some(Ok(s)) => view! {
                    <table class="data" data-testid="destinations">
                        <thead><tr><th>"Destination"</th><th>"Sends to"</th><th>"State"</th><th>"Lag"</th><th>"Delivered"</th><th>"Last success / error"</th><th></th></tr></thead>
                        <tbody>
                            {s.destinations.into_iter().map(|d| view! { <DestinationRow d=d reload=load/> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn DestinationRow(d: DestinationHealth, reload: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let id = d.id.clone();
    let result = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let act = move |path: String, body: Option<String>, done: &'static str| {
        busy.set(true);
        leptos::task::spawn_local(async move {
            let r = send_json::<Value>("POST", &path, body).await;
            result.set(Some(match r {
                // 204 and 202 answers: done (a 204 has no body to read).
                Ok(_) => Ok(done.to_owned()),
                Err(e) if (200..300).contains(&e.status) => Ok(done.to_owned()),
                Err(e) => Err(e.to_string()),
            }));
            busy.set(false);
            reload();
        });
    };
    let base = format!("/api/forwarding/destinations/{}", encode(&id));
    let test = {
        let base = base.clone();
        move |_| {
            let path = format!("{base}/test");
            busy.set(true);
            leptos::task::spawn_local(async move {
                let r = send_json::<ForwardTest>("POST", &path, None).await;
                result.set(Some(match r {
                    Ok(t) if t.delivered => Ok(format!("Test event #{} delivered in {} ms", t.seq, t.latency_ms)),
                    Ok(t) => Err(format!("Test event #{} not delivered: {}", t.seq, t.error.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                }));
                busy.set(false);
            });
        }
    };
    let pause = {
        let base = base.clone();
        let paused = d.paused;
        move |_| {
            let (path, done) = if paused {
                (format!("{base}/resume"), "Resumed")
            } else {
                (format!("{base}/pause"), "Paused: nothing is sent, nothing is lost")
            };
            act(path, Some("{}".into()), done);
        }
    };
    let replay_from = RwSignal::new(String::new());
    let replay_reason = RwSignal::new(String::new());
    let replay = {
        let base = base.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let from = replay_from.get_untracked().trim().to_owned();
            let mut body = json!({ "reason": replay_reason.get_untracked() });
            match from.parse::<u64>() {
                Ok(n) => body["from_seq"] = json!(n),
                Err(_) => body["from_time"] = json!(from),
            }
            act(format!("{base}/replay"), Some(body.to_string()), "Replay asked for: it begins within a second");
        }
    };
    let state_class = format!("tag forward-{}", d.state);
    view! {
        <tr data-testid="destination" data-destination=id.clone() data-state=d.state.clone()>
            <td><strong>{d.name.clone()}</strong><br/><code class="small">{id.clone()}</code>
                <br/><span class="small muted">{format!("{} · {}", d.kind, d.format)}</span></td>
            <td class="wrap small">{d.address.clone()}</td>
            <td><span class=state_class data-testid="destination-state">{d.state.clone()}</span>
                {(d.failures > 0).then(|| view! { <br/><span class="small muted">{format!("{} failed tries", d.failures)}</span> })}
                {d.next_try_at.clone().map(|t| view! { <br/><span class="small muted">{format!("next try {}", when(&t))}</span> })}
            </td>
            <td data-testid="destination-lag" data-lag=d.lag_events.to_string() data-live=live(&d).to_string() data-cursor=d.cursor.unwrap_or(0).to_string()>{lag(&d)}
                <br/><span class="small muted">{format!("at #{} of #{}", d.cursor.map(|c| c.to_string()).unwrap_or_else(|| "—".into()), d.head)}</span></td>
            <td data-testid="destination-delivered" data-delivered=d.delivered.to_string()>{d.delivered.to_string()}
                {(d.truncated > 0).then(|| view! { <br/><span class="small error">{format!("{} cut at the UDP size", d.truncated)}</span> })}
                <br/><span class="small muted">{format!("checkpoints to #{}", d.checkpoint_size)}</span></td>
            <td class="wrap small">
                {d.last_success_at.clone().map(|t| view! { <span class="ok">{format!("ok {}", when(&t))}</span><br/> })}
                {d.last_error.clone().map(|e| view! { <span class="error">{e}</span> })}
            </td>
            <td class="actions">
                <button type="button" class="small" data-testid="test-destination" disabled=move || busy.get() on:click=test>"Send a test event"</button>
                <button type="button" class="small" data-testid="pause-destination" disabled=move || busy.get() on:click=pause>{if d.paused { "Resume" } else { "Pause" }}</button>
                <details>
                    <summary class="small">"Replay…"</summary>
                    <form class="stack" on:submit=replay data-testid="replay-form">
                        <label class="small">"From ledger position or time (RFC 3339)"
                            <input type="text" data-testid="replay-from" placeholder="1 or 2027-01-15T00:00:00Z" prop:value=move || replay_from.get() on:input=move |ev| replay_from.set(event_target_value(&ev))/></label>
                        <label class="small">"Reason (recorded)"
                            <input type="text" data-testid="replay-reason" prop:value=move || replay_reason.get() on:input=move |ev| replay_reason.set(event_target_value(&ev))/></label>
                        <button type="submit" class="small">"Send again"</button>
                    </form>
                </details>
                {move || result.get().map(|r| match r {
                    Ok(m) => view! { <p class="small ok" data-testid="destination-result">{m}</p> }.into_any(),
                    Err(m) => view! { <p class="small error" data-testid="destination-result">{m}</p> }.into_any(),
                })}
            </td>
        </tr>
    }
}

/// The policy in force (remove a destination) and the form to add one.
#[component]
fn Policy(kind: PolicyKindView) -> impl IntoView {
    let doc = kind.active.content.clone();
    let version = kind.active.version;
    let destinations: Vec<Value> = doc.get("destinations").and_then(Value::as_array).cloned().unwrap_or_default();
    let navigate = use_navigate();
    let propose_error = RwSignal::new(None::<String>);
    let propose = move |content: Value, reason: String| {
        let navigate = navigate.clone();
        propose_error.set(None);
        let body = json!({ "content": content, "based_on": version, "reason": reason }).to_string();
        leptos::task::spawn_local(async move {
            match send_json::<Proposal>("POST", "/api/policies/forwarding/proposals", Some(body)).await {
                Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                Err(e) => propose_error.set(Some(e.to_string())),
            }
        });
    };
    let remove = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |id: String| {
            let mut d = doc.clone();
            if let Some(list) = d.get_mut("destinations").and_then(Value::as_array_mut) {
                list.retain(|c| c.get("id").and_then(Value::as_str) != Some(id.as_str()));
            }
            propose(d, format!("remove the destination {id}"));
        }
    };
    view! {
        <section class="panel">
            <h2>"Policy"</h2>
            <p class="muted small" data-testid="forwarding-summary">{format!("Version {version} in force: {}", kind.active.summary)}</p>
            {(!kind.pending.is_empty()).then(|| view! {
                <p class="small">"Waiting for review: "
                    {kind.pending.iter().map(|p| view! { <a href=format!("/policies/proposals/{}", p.id)>{p.reason.clone()}</a>" " }).collect_view()}</p>
            })}
            <ul class="small">
                {destinations.iter().map(|d| {
                    let id = d.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let remove = remove.clone();
                    let rid = id.clone();
                    view! { <li>{format!("{id}: {}", d.get("filter").and_then(Value::as_str).map(|f| format!("events where {f}")).unwrap_or_else(|| "every event".into()))}
                        " "<button type="button" class="small danger" data-testid="remove-destination" on:click=move |_| remove(rid.clone())>"Remove…"</button></li> }
                }).collect_view()}
            </ul>
            {move || propose_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
        <AddDestination doc=doc propose=propose/>
    }
}

#[component]
fn AddDestination(doc: Value, propose: impl Fn(Value, String) + Clone + Send + Sync + 'static) -> impl IntoView {
    let kind = RwSignal::new("syslog".to_owned());
    let format = RwSignal::new("cef".to_owned());
    let id = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let filter = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let port = RwSignal::new(String::new());
    let transport = RwSignal::new("tls".to_owned());
    let ca = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let secret = RwSignal::new(String::new());
    let auth = RwSignal::new("hmac".to_owned());
    let body = RwSignal::new("json_array".to_owned());
    let start = RwSignal::new("now".to_owned());
    let reason = RwSignal::new(String::new());
    let preview = RwSignal::new(None::<Result<ForwardPreview, ClientError>>);
    let build = move || {
        let k = kind.get_untracked();
        let mut d = json!({
            "id": id.get_untracked().trim(), "name": name.get_untracked().trim(), "type": k,
            "format": format.get_untracked(), "start": start.get_untracked(),
        });
        let f = filter.get_untracked().trim().to_owned();
        if !f.is_empty() {
            d["filter"] = json!(f);
        }
        match k.as_str() {
            "syslog" => {
                d["host"] = json!(host.get_untracked().trim());
                d["transport"] = json!(transport.get_untracked());
                if let Ok(p) = port.get_untracked().trim().parse::<u64>() {
                    d["port"] = json!(p);
                }
                if transport.get_untracked() == "tls" && !ca.get_untracked().trim().is_empty() {
                    d["ca_pem"] = json!(ca.get_untracked().trim());
                }
            }
            "splunk_hec" => {
                d["url"] = json!(url.get_untracked().trim());
                d["token"] = json!({ "value": secret.get_untracked().trim() });
            }
            _ => {
                d["url"] = json!(url.get_untracked().trim());
                d["body"] = json!(body.get_untracked());
                d["auth"] = json!(auth.get_untracked());
                if auth.get_untracked() != "none" {
                    d["secret"] = json!({ "value": secret.get_untracked() });
                }
            }
        }
        d
    };
    let show_preview = move |_| {
        let d = build();
        leptos::task::spawn_local(async move {
            preview
                .set(Some(send_json::<ForwardPreview>("POST", "/api/forwarding/preview", Some(d.to_string())).await));
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut d = doc.clone();
        if !d.get("destinations").is_some_and(Value::is_array) {
            d["destinations"] = json!([]);
        }
        if let Some(list) = d["destinations"].as_array_mut() {
            list.push(build());
        }
        propose(d, reason.get_untracked());
    };
    let field = |label: &'static str,
                 sig: RwSignal<String>,
                 testid: &'static str,
                 kind_: &'static str,
                 hint: &'static str| {
        view! {
            <label>{label}
                <input type=kind_ data-testid=testid placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev))/>
            </label>
        }
    };
    let select = |label: &'static str,
                  sig: RwSignal<String>,
                  testid: &'static str,
                  options: &'static [(&'static str, &'static str)]| {
        view! {
            <label>{label}
                <select data-testid=testid on:change=move |ev| sig.set(event_target_value(&ev)) prop:value=move || sig.get()>
                    {options.iter().map(|(k, l)| view! { <option value=*k>{*l}</option> }).collect_view()}
                </select>
            </label>
        }
    };
    view! {
        <section class="panel">
            <h2>"Add a destination"</h2>
            <div class="split">
                <form class="stack narrow" on:submit=submit data-testid="add-destination">
                    {select("Type", kind, "destination-type", &TYPES)}
                    {field("Id (a-z, 0-9, - and _)", id, "destination-id", "text", "qradar")}
                    {field("Name", name, "destination-name", "text", "QRadar (SOC)")}
                    {select("Format", format, "destination-format", &FORMATS)}
                    {field("Filter (the explorer's; empty: every event)", filter, "destination-filter", "text", "category=authentication&outcome=failure")}
                    {move || match kind.get().as_str() {
                        "syslog" => view! {
                            {field("Host", host, "destination-host", "text", "siem.example.org")}
                            {select("Transport", transport, "destination-transport", &[("tls", "TLS (RFC 5425)"), ("tcp", "TCP (octet counting)"), ("udp", "UDP (messages cut at 2,048 bytes)")])}
                            {move || (transport.get() == "udp").then(|| view! { <p class="small error" data-testid="udp-warning">"UDP has no delivery guarantee and no encryption: messages can be lost or read on the way. Use it only where nothing else is accepted."</p> })}
                            {field("Port (default 6514 for TLS, 514 otherwise)", port, "destination-port", "number", "6514")}
                            <label>"CA certificate (PEM; the system's roots when empty)"
                                <textarea rows="3" data-testid="destination-ca" prop:value=move || ca.get() on:input=move |ev| ca.set(event_target_value(&ev))></textarea>
                            </label>
                        }.into_any(),
                        "splunk_hec" => view! {
                            {field("Collector URL", url, "destination-url", "url", "https://splunk.example.org:8088")}
                            {field("HEC token (sealed, never shown again)", secret, "destination-secret", "password", "")}
                        }.into_any(),
                        _ => view! {
                            {field("URL", url, "destination-url", "url", "https://vector.example.org/custos")}
                            {select("Body", body, "destination-body", &[("json_array", "JSON array"), ("ndjson", "NDJSON")])}
                            {select("Authentication", auth, "destination-auth", &[("hmac", "HMAC signature"), ("bearer", "Bearer token"), ("none", "None")])}
                            {field("Secret or token (at least 16 characters; sealed)", secret, "destination-secret", "password", "")}
                        }.into_any(),
                    }}
                    {select("Start with", start, "destination-start", &[("now", "events from now on"), ("beginning", "the whole ledger")])}
                    {field("Reason (required; recorded)", reason, "destination-reason", "text", "")}
                    <div>
                        <button type="button" data-testid="preview-destination" on:click=show_preview>"Preview the format"</button>
                        " "<button type="submit" class="primary" data-testid="submit-destination">"Submit for review"</button>
                    </div>
                </form>
                <div class="preview" data-testid="format-preview">
                    <h3>"Format preview"</h3>
                    {move || match preview.get() {
                        None => view! { <p class="muted small">"Preview shows the newest event the filter takes, as this destination would receive it."</p> }.into_any(),
                        Some(Err(e)) => view! { <p class="error" role="alert" data-testid="preview-error">{e.to_string()}</p> }.into_any(),
                        Some(Ok(p)) if p.seq.is_none() => view! { <p class="muted">"No event matches the filter yet."</p> }.into_any(),
                        Some(Ok(p)) => view! {
                            <p class="small muted">{format!("Event #{}", p.seq.unwrap_or_default())}</p>
                            <pre class="wrap small" data-testid="preview-record">{p.record}</pre>
                            <p class="small muted">"On the wire:"</p>
                            <pre class="wrap small" data-testid="preview-wire">{p.wire}</pre>
                        }.into_any(),
                    }}
                </div>
            </div>
        </section>
    }
}

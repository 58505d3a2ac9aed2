//! Notifications: the channels alerts go to (with a test button each), a
//! form to add one (submitted for review as a change to the
//! `notifications` policy; its secret is sealed by the server and never
//! shown again), and the log of every delivery attempt (filters in the
//! URL).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};
use serde_json::{Value, json};

use super::policies::when;
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{NotificationAttempt, NotificationLog, PolicyKindView, Proposal};

const TYPES: [(&str, &str); 5] = [
    ("webhook", "Webhook (JSON, signed)"),
    ("email", "E-mail (SMTP)"),
    ("slack", "Slack"),
    ("teams", "Microsoft Teams"),
    ("mattermost", "Mattermost"),
];

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Where a channel sends, for people (never a secret).
fn target(c: &Value) -> String {
    let hint = c.get("secret").map(|x| s(x, "hint")).unwrap_or_default();
    match s(c, "type").as_str() {
        "webhook" => format!("{} (signing secret {hint})", s(c, "url")),
        "email" => {
            let to: Vec<String> = c
                .get("to")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let port = c.get("smtp_port").and_then(Value::as_u64).map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{} via {}{port} ({})",
                to.join(", "),
                s(c, "smtp_host"),
                c.get("smtp_tls").and_then(Value::as_str).unwrap_or("starttls")
            )
        }
        _ => format!("incoming webhook {hint}"),
    }
}

/// The routes naming a channel, for people.
fn routes_of(doc: &Value, id: &str) -> String {
    let list: Vec<String> = doc
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("channels").and_then(Value::as_array).is_some_and(|c| c.iter().any(|x| x.as_str() == Some(id)))
        })
        .map(|r| {
            let rules: Vec<&str> = r
                .get("rules")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let rules = if rules.contains(&"*") { "every rule".to_owned() } else { rules.join(", ") };
            match r.get("min_severity").and_then(Value::as_str) {
                Some(m) => format!("{rules}, {m} and above"),
                None => rules,
            }
        })
        .collect();
    if list.is_empty() { "no route: nothing is sent".into() } else { list.join("; ") }
}

/// The page.
#[component]
pub fn NotificationsPage() -> impl IntoView {
    let kind = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            kind.set(Some(get_json::<PolicyKindView>("/api/policies/notifications").await));
        });
    };
    Effect::new(move |_| load());
    view! {
        <Title text="Notifications"/>
        <h1>"Notifications"</h1>
        <p class="muted">"Alerts go to the channels their routes name, through a durable outbox: retried for a day with growing pauses, every attempt logged. Changes are proposals to the notifications policy, reviewed like any policy. "
            <a href="/policies/trail?kind=notifications">"Its trail →"</a></p>
        {move || match kind.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <Channels kind=k/> }.into_any(),
        }}
        <DeliveryLog/>
    }
}

#[component]
fn Channels(kind: PolicyKindView) -> impl IntoView {
    let doc = kind.active.content.clone();
    let version = kind.active.version;
    let channels: Vec<Value> = doc.get("channels").and_then(Value::as_array).cloned().unwrap_or_default();
    let pending = kind.pending.clone();
    let navigate = use_navigate();
    let propose_error = RwSignal::new(None::<String>);
    let propose = {
        let navigate = navigate.clone();
        move |content: Value, reason: String| {
            let navigate = navigate.clone();
            propose_error.set(None);
            let body = json!({ "content": content, "based_on": version, "reason": reason }).to_string();
            leptos::task::spawn_local(async move {
                match send_json::<Proposal>("POST", "/api/policies/notifications/proposals", Some(body)).await {
                    Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                    Err(e) => propose_error.set(Some(e.to_string())),
                }
            });
        }
    };
    let remove = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |id: String| {
            let mut d = doc.clone();
            if let Some(list) = d.get_mut("channels").and_then(Value::as_array_mut) {
                list.retain(|c| c.get("id").and_then(Value::as_str) != Some(id.as_str()));
            }
            if let Some(routes) = d.get_mut("routes").and_then(Value::as_array_mut) {
                for r in routes.iter_mut() {
                    if let Some(c) = r.get_mut("channels").and_then(Value::as_array_mut) {
                        c.retain(|x| x.as_str() != Some(id.as_str()));
                    }
                }
                routes.retain(|r| r.get("channels").and_then(Value::as_array).is_some_and(|c| !c.is_empty()));
            }
            propose(d, format!("remove the channel {id}"));
        }
    };
    view! {
        <section class="panel">
            <h2>"Channels"</h2>
            <p class="muted small">{format!("Version {version} in force: {}", kind.active.summary)}</p>
            {(!pending.is_empty()).then(|| view! {
                <p class="small">"Waiting for review: "
                    {pending.iter().map(|p| view! { <a href=format!("/policies/proposals/{}", p.id)>{p.reason.clone()}</a>" " }).collect_view()}</p>
            })}
            {if channels.is_empty() {
                view! { <p class="muted" data-testid="no-channels">"No channel yet: alerts reach the inbox only."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="channels">
                        <thead><tr><th>"Channel"</th><th>"Type"</th><th>"Sends to"</th><th>"Alerts sent"</th><th></th></tr></thead>
                        <tbody>
                            {channels.iter().map(|c| {
                                let id = s(c, "id");
                                let on = c.get("enabled").and_then(Value::as_bool).unwrap_or(true);
                                let result = RwSignal::new(None::<Result<NotificationAttempt, ClientError>>);
                                let busy = RwSignal::new(false);
                                let test_id = id.clone();
                                let test = move |_| {
                                    let id = test_id.clone();
                                    busy.set(true);
                                    leptos::task::spawn_local(async move {
                                        let r = send_json::<NotificationAttempt>("POST", &format!("/api/notifications/channels/{}/test", encode(&id)), None).await;
                                        result.set(Some(r));
                                        busy.set(false);
                                    });
                                };
                                let remove = remove.clone();
                                let remove_id = id.clone();
                                view! {
                                    <tr data-testid="channel" data-channel=id.clone()>
                                        <td><strong>{s(c, "name")}</strong><br/><code class="small">{id.clone()}</code>{(!on).then_some(" (off)")}</td>
                                        <td>{s(c, "type")}</td>
                                        <td class="wrap">{target(c)}</td>
                                        <td>{routes_of(&doc, &id)}</td>
                                        <td class="actions">
                                            <button type="button" class="small" data-testid="test-channel" disabled=move || busy.get() on:click=test>"Send a test"</button>
                                            <button type="button" class="small danger" data-testid="remove-channel" on:click=move |_| remove(remove_id.clone())>"Remove…"</button>
                                            {move || result.get().map(|r| match r {
                                                Ok(a) if a.status == "delivered" => view! { <p class="small ok" data-testid="test-result">{format!("Delivered ({}) in {} ms", a.response_code.map(|c| c.to_string()).unwrap_or_default(), a.latency_ms)}</p> }.into_any(),
                                                Ok(a) => view! { <p class="small error" data-testid="test-result">{format!("Not delivered: {}", a.error.unwrap_or_default())}</p> }.into_any(),
                                                Err(e) => view! { <p class="small error" data-testid="test-result">{e.to_string()}</p> }.into_any(),
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            {move || propose_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
        <AddChannel doc=doc.clone() propose=propose/>
    }
}

#[component]
fn AddChannel(doc: Value, propose: impl Fn(Value, String) + Clone + Send + Sync + 'static) -> impl IntoView {
    let kind = RwSignal::new("webhook".to_owned());
    let id = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let url = RwSignal::new(String::new());
    let secret = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let host = RwSignal::new(String::new());
    let port = RwSignal::new(String::new());
    let tls = RwSignal::new("starttls".to_owned());
    let user = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let min = RwSignal::new("warning".to_owned());
    let rules = RwSignal::new("*".to_owned());
    let reason = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let k = kind.get_untracked();
        let cid = id.get_untracked().trim().to_owned();
        let mut c = json!({ "id": cid, "name": name.get_untracked().trim(), "type": k });
        let opt = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        match k.as_str() {
            "webhook" => {
                c["url"] = json!(url.get_untracked().trim());
                c["secret"] = json!({ "value": secret.get_untracked() });
            }
            "email" => {
                c["to"] =
                    json!(to.get_untracked().split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>());
                c["from"] = json!(from.get_untracked().trim());
                c["smtp_host"] = json!(host.get_untracked().trim());
                if let Some(p) = opt(port.get_untracked()) {
                    c["smtp_port"] = p.parse::<u64>().map(Value::from).unwrap_or(Value::String(p));
                }
                c["smtp_tls"] = json!(tls.get_untracked());
                if let Some(u) = opt(user.get_untracked()) {
                    c["smtp_username"] = json!(u);
                    c["smtp_password"] = json!({ "value": password.get_untracked() });
                }
            }
            _ => c["secret"] = json!({ "value": secret.get_untracked().trim() }),
        }
        let mut d = doc.clone();
        if !d.get("channels").is_some_and(Value::is_array) {
            d["channels"] = json!([]);
        }
        if !d.get("routes").is_some_and(Value::is_array) {
            d["routes"] = json!([]);
        }
        if let Some(list) = d["channels"].as_array_mut() {
            list.push(c);
        }
        let rule_list: Vec<String> =
            rules.get_untracked().split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let mut route = json!({ "rules": rule_list, "channels": [cid] });
        if min.get_untracked() != "any" {
            route["min_severity"] = json!(min.get_untracked());
        }
        if let Some(list) = d["routes"].as_array_mut() {
            list.push(route);
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
    view! {
        <section class="panel">
            <h2>"Add a channel"</h2>
            <form class="stack narrow" on:submit=submit data-testid="add-channel">
                <label>"Type"
                    <select data-testid="channel-type" on:change=move |ev| kind.set(event_target_value(&ev)) prop:value=move || kind.get()>
                        {TYPES.iter().map(|(k, l)| view! { <option value=*k>{*l}</option> }).collect_view()}
                    </select>
                </label>
                {field("Id (a-z, 0-9, - and _)", id, "channel-id", "text", "secops-mail")}
                {field("Name", name, "channel-name", "text", "SecOps mailbox")}
                {move || match kind.get().as_str() {
                    "webhook" => view! {
                        {field("URL", url, "channel-url", "url", "https://soar.example.org/hooks/custos")}
                        {field("Signing secret (at least 16 characters; sealed, never shown again)", secret, "channel-secret", "password", "")}
                        <p class="muted small">"Each request carries X-Custos-Timestamp and X-Custos-Signature: v1=HMAC-SHA256(secret, timestamp + \".\" + body), and an Idempotency-Key that is the same on every retry. See the README."</p>
                    }.into_any(),
                    "email" => view! {
                        {field("To (comma-separated)", to, "channel-to", "text", "secops@example.org")}
                        {field("From", from, "channel-from", "email", "custos@example.org")}
                        {field("SMTP server", host, "channel-host", "text", "mail.example.org")}
                        {field("Port (default 587, 465 for TLS)", port, "channel-port", "number", "587")}
                        <label>"Encryption"
                            <select data-testid="channel-tls" on:change=move |ev| tls.set(event_target_value(&ev)) prop:value=move || tls.get()>
                                <option value="starttls">"STARTTLS"</option>
                                <option value="tls">"TLS"</option>
                                <option value="none">"None (a relay on this host only)"</option>
                            </select>
                        </label>
                        {field("User name (optional)", user, "channel-user", "text", "")}
                        {field("Password (sealed, never shown again)", password, "channel-password", "password", "")}
                    }.into_any(),
                    _ => view! {
                        {field("Incoming-webhook URL (a credential: sealed, never shown again)", secret, "channel-secret", "password", "https://hooks.slack.com/services/…")}
                    }.into_any(),
                }}
                <label>"Send alerts of"
                    <select data-testid="channel-min" on:change=move |ev| min.set(event_target_value(&ev)) prop:value=move || min.get()>
                        <option value="any">"any severity"</option>
                        <option value="notice">"notice and above"</option>
                        <option value="warning">"warning and above"</option>
                        <option value="error">"error and above"</option>
                        <option value="critical">"critical only"</option>
                    </select>
                </label>
                {field("From the rules (ids, comma-separated; * for every rule)", rules, "channel-rules", "text", "*")}
                {field("Reason (required; recorded)", reason, "channel-reason", "text", "")}
                <div><button type="submit" class="primary" data-testid="submit-channel">"Submit for review"</button></div>
            </form>
        </section>
    }
}

#[component]
fn DeliveryLog() -> impl IntoView {
    let query = use_query_map();
    let filters =
        Memo::new(move |_| query.with(|q| (q.get("channel").unwrap_or_default(), q.get("status").unwrap_or_default())));
    let log = RwSignal::new(None::<Result<NotificationLog, ClientError>>);
    let reload = move || {
        let (channel, status) = filters.get_untracked();
        leptos::task::spawn_local(async move {
            let mut q = vec!["limit=100".to_owned()];
            if !channel.is_empty() {
                q.push(format!("channel={}", encode(&channel)));
            }
            if !status.is_empty() {
                q.push(format!("status={}", encode(&status)));
            }
            log.set(Some(get_json::<NotificationLog>(&format!("/api/notifications/logs?{}", q.join("&"))).await));
        });
    };
    Effect::new(move |_| {
        filters.track();
        reload();
    });
    view! {
        <section class="panel">
            <h2>"Delivery log"</h2>
            <form class="filters" method="get" action="/notifications">
                <label>"Channel "<input name="channel" data-testid="log-channel" prop:value=move || filters.get().0/></label>
                " "
                <label>"Status "
                    <select name="status" data-testid="log-status" prop:value=move || filters.get().1>
                        <option value="">"any"</option>
                        <option value="delivered">"delivered"</option>
                        <option value="failed">"failed (retried)"</option>
                        <option value="dead">"dead (given up)"</option>
                    </select>
                </label>
                " "<button type="submit" class="small">"Filter"</button>
                " "<button type="button" class="small" data-testid="log-refresh" on:click=move |_| reload()>"Refresh"</button>
            </form>
            {move || match log.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(l)) => view! {
                    <p class="muted small" data-testid="log-counts">{format!("{} waiting for a (re)try, {} given up.", l.pending, l.dead)}</p>
                    {if l.items.is_empty() {
                        view! { <p class="muted">"No attempt yet."</p> }.into_any()
                    } else {
                        view! {
                            <table class="data" data-testid="delivery-log">
                                <thead><tr><th>"When"</th><th>"Channel"</th><th>"About"</th><th>"Try"</th><th>"Status"</th><th>"Code"</th><th>"Latency"</th><th>"Error"</th></tr></thead>
                                <tbody>
                                    {l.items.into_iter().map(|a| view! {
                                        <tr data-testid="attempt" data-channel=a.channel_id.clone() data-status=a.status.clone()>
                                            <td>{when(&a.at)}</td>
                                            <td>{format!("{} ({})", a.channel_id, a.channel_type)}</td>
                                            <td>{match (a.rule_id.clone(), a.alert_id.clone()) {
                                                (Some(r), Some(id)) => view! { <a href="/alerts?status=all" title=id>{r}</a> }.into_any(),
                                                _ => view! { <span class="muted">"test"</span> }.into_any(),
                                            }}</td>
                                            <td>{a.attempt}</td>
                                            <td><span class=format!("tag delivery-{}", a.status)>{a.status.clone()}</span></td>
                                            <td>{a.response_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())}</td>
                                            <td>{format!("{} ms", a.latency_ms)}</td>
                                            <td class="wrap small">{a.error.clone().unwrap_or_default()}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }}
                }.into_any(),
            }}
        </section>
    }
}

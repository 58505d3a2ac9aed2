//! The alert inbox: the alerts the rules opened, open / acknowledged /
//! resolved (the status in the URL), updated live as alerts open, count
//! repeats and move (`/api/alerts/live`), each linking to its events in
//! the explorer; holders of `alert:manage` acknowledge, comment on and
//! resolve them, each step recorded in the ledger.
//!
//! Also the toast every page shows when an alert opens.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::policies::when;
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{Alert, AlertPage, AlertSilence, AlertStatus};

const TABS: [(&str, &str); 4] =
    [("open", "Open"), ("acknowledged", "Acknowledged"), ("resolved", "Resolved"), ("all", "All")];

/// The inbox.
#[component]
pub fn AlertsPage() -> impl IntoView {
    let query = use_query_map();
    let status = Memo::new(move |_| {
        query.with(|q| q.get("status").filter(|s| TABS.iter().any(|(t, _)| t == s)).unwrap_or_else(|| "open".into()))
    });
    let me = expect_context::<crate::MeResource>();
    let can_act =
        Signal::derive(move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("alert:manage")));
    let page = RwSignal::new(None::<Result<AlertPage, ClientError>>);
    // A live reload that failed: said beside the list, which stays.
    let stale = RwSignal::new(None::<String>);
    let silences_version = RwSignal::new(0u32);
    let more = RwSignal::new(Vec::<Alert>::new());
    // Reads the tab again: as many alerts as are shown (the pages loaded
    // with "More" too, up to 200), or the first 50 when the tab changed.
    let reload = move |live: bool| {
        let s = status.get_untracked();
        let shown = if live {
            page.with_untracked(|p| p.as_ref().and_then(|p| p.as_ref().ok()).map_or(0, |p| p.items.len()))
                + more.with_untracked(Vec::len)
        } else {
            0
        };
        let limit = shown.clamp(50, 200);
        leptos::task::spawn_local(async move {
            let filter = if s == "all" { String::new() } else { format!("status={s}&") };
            let p = get_json::<AlertPage>(&format!("/api/alerts?{filter}limit={limit}")).await;
            if status.get_untracked() != s {
                return; // the tab changed meanwhile
            }
            match p {
                Err(e) if live && matches!(page.get_untracked(), Some(Ok(_))) => {
                    stale.set(Some(format!("Not up to date: {e}")));
                }
                p => {
                    stale.set(None);
                    more.set(Vec::new());
                    page.set(Some(p));
                }
            }
        });
    };
    Effect::new(move |_| {
        status.track();
        reload(false);
    });
    let load_more = move |_| {
        let Some(Ok(p)) = page.get_untracked() else { return };
        let Some(cursor) = p.next_cursor.clone() else { return };
        let s = status.get_untracked();
        leptos::task::spawn_local(async move {
            let filter = if s == "all" { String::new() } else { format!("status={s}&") };
            if let Ok(next) =
                get_json::<AlertPage>(&format!("/api/alerts?{filter}limit=50&cursor={}", encode(&cursor))).await
            {
                more.update(|m| m.extend(next.items));
                page.update(|p| {
                    if let Some(Ok(p)) = p {
                        p.next_cursor = next.next_cursor;
                    }
                });
            }
        });
    };
    // Live: the server says when alerts open, count a repeat, move or are
    // silenced (at most once a second); the page reads them again, and
    // each time the stream (re)connects, for what it may have missed.
    let live = RwSignal::new(String::new());
    #[cfg(feature = "hydrate")]
    {
        let tail = crate::live::open_stream("/api/alerts/live", "changed", live, "live", move |_| reload(true));
        crate::live::close_on_cleanup(tail);
        Effect::new(move |was: Option<bool>| {
            let connected = live.get() == "live";
            if connected && was == Some(false) {
                reload(true);
            }
            connected
        });
    }
    let items = Memo::new(move |_| match page.get() {
        Some(Ok(p)) => p.items.iter().cloned().chain(more.get()).collect::<Vec<Alert>>(),
        _ => Vec::new(),
    });
    let shown = Memo::new(move |_| match page.get() {
        None => Shown::Loading,
        Some(Err(e)) => Shown::Failed(e.to_string()),
        Some(Ok(_)) if items.with(Vec::is_empty) => Shown::Empty,
        Some(Ok(_)) => Shown::List,
    });
    let has_more = Memo::new(move |_| matches!(page.get(), Some(Ok(p)) if p.next_cursor.is_some()));
    view! {
        <Title text="Alerts"/>
        <h1>"Alerts " <span class="tag live-state" data-testid="alerts-live">{move || live.get()}</span></h1>
        <p class="muted">"What the alert rules opened. A rule's repeats are counted into its open alert; once resolved, the next firing opens a new one. "
            <a href="/policies">"The rules in force →"</a></p>
        <nav class="tabs" aria-label="Status">
            {TABS.iter().map(|(key, label)| {
                let count = move || page.get().and_then(|p| p.ok()).map(|p| {
                    if *key == "all" { p.counts.values().sum::<u64>() } else { p.counts.get(*key).copied().unwrap_or(0) }
                });
                view! {
                    <a href=format!("/alerts?status={key}") data-testid=format!("tab-{key}")
                        aria-current=move || (status.get() == *key).then_some("page")>
                        {*label}{move || count().map(|n| format!(" ({n})"))}
                    </a>
                }
            }).collect_view()}
        </nav>
        {move || match shown.get() {
            Shown::Loading => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Shown::Failed(e) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
            Shown::Empty => view! { <p class="muted" data-testid="no-alerts">"No alerts here."</p> }.into_any(),
            // Keyed by id: an alert that changes (a repeat counted, a step)
            // updates in place, and what someone is typing stays.
            Shown::List => view! {
                {move || stale.get().map(|e| view! { <p class="error" role="alert" data-testid="alerts-stale">{e}</p> })}
                <ul class="alerts" data-testid="alerts">
                    <For each=move || items.get() key=|a| a.id.clone() let:a>
                        <AlertItem id=a.id items can_act on_change=move || { reload(true); silences_version.update(|v| *v += 1); }/>
                    </For>
                </ul>
                {move || has_more.get().then(|| view! { <button type="button" on:click=load_more data-testid="more-alerts">"More"</button> })}
            }.into_any(),
        }}
        <Silences can_act=can_act.get_untracked() version=silences_version/>
    }
}

/// What the inbox shows.
#[derive(Clone, PartialEq)]
enum Shown {
    Loading,
    Failed(String),
    Empty,
    List,
}

/// The silences in force (and the last ended), with "End now".
#[component]
fn Silences(can_act: bool, version: RwSignal<u32>) -> impl IntoView {
    let list = RwSignal::new(None::<Result<Vec<AlertSilence>, ClientError>>);
    Effect::new(move |_| {
        version.track();
        leptos::task::spawn_local(async move {
            list.set(Some(get_json::<Vec<AlertSilence>>("/api/alerts/silences").await))
        });
    });
    let error = RwSignal::new(None::<String>);
    let end = move |id: String| {
        leptos::task::spawn_local(async move {
            match send_json::<AlertSilence>("POST", &format!("/api/alerts/silences/{}/end", encode(&id)), None).await {
                Ok(_) => version.update(|v| *v += 1),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <section class="panel">
            <h2>"Silences"</h2>
            <p class="muted small">"While a silence is in force, the alerts it covers are opened and shown here, not sent. Making and ending one are recorded in the ledger."</p>
            {move || match list.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(l)) if l.is_empty() => view! { <p class="muted" data-testid="no-silences">"None."</p> }.into_any(),
                Some(Ok(l)) => view! {
                    <table class="data" data-testid="silences">
                        <thead><tr><th>"Covers"</th><th>"Until"</th><th>"Why"</th><th>"By"</th><th></th></tr></thead>
                        <tbody>
                            {l.into_iter().map(|s| {
                                let over = s.ended_early || s.ends_at < js_now();
                                let covers = format!("{}{}", s.rule.clone().unwrap_or_else(|| "any rule".into()),
                                    s.group.iter().map(|(k, v)| format!(", {k} {v}")).collect::<String>());
                                let id = s.id.clone();
                                view! {
                                    <tr data-testid="silence-row" data-active=(!over).to_string()>
                                        <td>{covers}</td>
                                        <td>{when(&s.ends_at)}{s.ended_early.then_some(" (ended early)")}</td>
                                        <td>{s.reason.clone()}</td>
                                        <td>{s.author_name.clone()}</td>
                                        <td>{(can_act && !over).then(|| view! {
                                            <button type="button" class="small" data-testid="end-silence" on:click=move |_| end(id.clone())>"End now"</button>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

/// Now, as RFC 3339 (UTC), in the browser; empty on the server.
fn js_now() -> String {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::new_0().to_iso_string().as_string().unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

/// One alert: what fired, for whom, how often, its history and the steps.
/// What can change (its count, status, history, silence) follows `items`
/// in place; the comment box is kept.
#[component]
fn AlertItem(
    id: String,
    items: Memo<Vec<Alert>>,
    #[prop(into)] can_act: Signal<bool>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let first = items.with_untracked(|v| v.iter().find(|a| a.id == id).cloned());
    let Some(first) = first else { return ().into_any() };
    let this = id.clone();
    // As the list has it; as last seen while it leaves the list.
    let alert = Memo::new(move |last: Option<&Alert>| {
        items.with(|v| v.iter().find(|a| a.id == this).cloned()).unwrap_or_else(|| last.unwrap_or(&first).clone())
    });
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Callbacks (Copy): the actions are drawn again if `can_act` changes.
    let act = Callback::new(move |step: &'static str| {
        let id = id.clone();
        busy.set(true);
        error.set(None);
        let body = serde_json::json!({ "comment": comment.get_untracked() }).to_string();
        leptos::task::spawn_local(async move {
            match send_json::<Alert>("POST", &format!("/api/alerts/{}/{step}", encode(&id)), Some(body)).await {
                Ok(_) => {
                    comment.set(String::new());
                    on_change();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    });
    let hours = RwSignal::new("4".to_owned());
    let fixed = alert.get_untracked();
    let (silence_group, silence_rule) = (fixed.group.clone(), fixed.rule_id.clone());
    let silence = Callback::new(move |()| {
        busy.set(true);
        error.set(None);
        let body = serde_json::json!({
            "rule": silence_rule, "group": silence_group, "hours": hours.get_untracked().parse::<u32>().unwrap_or(4),
            "reason": comment.get_untracked(),
        })
        .to_string();
        leptos::task::spawn_local(async move {
            match send_json::<AlertSilence>("POST", "/api/alerts/silences", Some(body)).await {
                Ok(_) => {
                    comment.set(String::new());
                    on_change();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    });
    let group = fixed.group.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    let status = Memo::new(move |_| alert.with(|a| a.status));
    let word = move || status.get().as_str();
    view! {
        <li class=format!("alert sev-{}", fixed.severity) data-testid="alert" data-rule=fixed.rule_id.clone() data-status=word>
            <div class="alert-head">
                <span class=format!("tag sev-{}", fixed.severity)>{fixed.severity.clone()}</span>
                " "<strong data-testid="alert-rule">{fixed.rule_name.clone()}</strong>
                {(!group.is_empty()).then(|| view! { <span class="muted">" — "{group.clone()}</span> })}
                " "<span class=move || format!("tag state-{}", word()) data-testid="alert-status">{word}</span>
                {move || alert.with(|a| a.silenced_by.is_some()).then(|| view! { " "<span class="tag" data-testid="alert-silenced" title="A silence kept it from being sent">"silenced"</span> })}
            </div>
            <div class="small muted">
                <span data-testid="alert-matches">{move || alert.with(|a| format!("{} match{}", a.matches, if a.matches == 1 { "" } else { "es" }))}</span>
                {move || alert.with(|a| format!(" · opened {} · last {}", when(&a.opened_at), when(&a.last_at)))}
                {move || alert.with(|a| a.opened_seq.map(|s| format!(" · ledger entry {s}")))}
                {format!(" · rules version {}", fixed.rules_version)}
                " · "<a href=move || alert.with(|a| format!("/events?{}", a.explore)) data-testid="alert-events">"Its events →"</a>
            </div>
            {move || alert.with(|a| (!a.history.is_empty()).then(|| view! {
                <ul class="history small" data-testid="alert-history">
                    {a.history.iter().map(|h| view! {
                        <li><strong>{h.name.clone()}</strong>{format!(" {} on {}", h.step, when(&h.at))}
                            {(!h.comment.is_empty()).then(|| view! { ": "<q>{h.comment.clone()}</q> })}</li>
                    }).collect_view()}
                </ul>
            }))}
            {move || can_act.get().then(|| view! {
                <div class="alert-actions">
                    <input type="text" placeholder="Comment (recorded in the ledger)" data-testid="alert-comment" maxlength="2000"
                        prop:value=move || comment.get() on:input=move |ev| comment.set(event_target_value(&ev))/>
                    {move || (status.get() == AlertStatus::Open).then(|| view! {
                        <button type="button" class="primary small" data-testid="acknowledge" disabled=move || busy.get() on:click=move |_| act.run("acknowledge")>"Acknowledge"</button>
                    })}
                    {move || (status.get() != AlertStatus::Resolved).then(|| view! {
                        <button type="button" class="small" data-testid="resolve" disabled=move || busy.get() on:click=move |_| act.run("resolve")>"Resolve"</button>
                    })}
                    <button type="button" class="small" data-testid="add-comment" disabled=move || busy.get() || comment.get().trim().is_empty() on:click=move |_| act.run("comment")>"Comment"</button>
                    <select class="small" data-testid="silence-hours" aria-label="Silence for" on:change=move |ev| hours.set(event_target_value(&ev)) prop:value=move || hours.get()>
                        <option value="1">"1 hour"</option>
                        <option value="4">"4 hours"</option>
                        <option value="24">"1 day"</option>
                        <option value="168">"7 days"</option>
                    </select>
                    <button type="button" class="small" data-testid="silence" title="Alerts of this rule and group are shown, not sent; the comment is the reason"
                        disabled=move || busy.get() || comment.get().trim().is_empty() on:click=move |_| silence.run(())>"Silence"</button>
                </div>
            })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </li>
    }
    .into_any()
}

/// A toast on every page when an alert opens (for readers of the audit
/// log), linking to the inbox; it goes away after 15 seconds or when
/// closed.
#[component]
pub fn AlertToast() -> impl IntoView {
    let toasts = RwSignal::new(Vec::<(u64, String, String)>::new());
    #[cfg(feature = "hydrate")]
    {
        let state = RwSignal::new(String::new());
        let next = StoredValue::new(0u64);
        let tail = crate::live::open_tail("/api/audit/tail?action=custos.alert.opened", state, "live", move |text| {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let name = v["details"]["rule_name"].as_str().unwrap_or("An alert rule fired").to_owned();
            let severity = v["details"]["rule_severity"].as_str().unwrap_or("warning").to_owned();
            let n = next.get_value();
            next.set_value(n + 1);
            toasts.update(|t| {
                t.push((n, name, severity));
                if t.len() > 3 {
                    t.remove(0);
                }
            });
            leptos::task::spawn_local(async move {
                crate::client::sleep_ms(15_000).await;
                toasts.update(|t| t.retain(|(i, _, _)| *i != n));
            });
        });
        crate::live::close_on_cleanup(tail);
    }
    view! {
        <div class="toasts" aria-live="polite">
            {move || toasts.get().into_iter().map(|(n, name, severity)| view! {
                <div class=format!("toast sev-{severity}") role="status" data-testid="alert-toast">
                    <a href="/alerts">{format!("New alert: {name}")}</a>
                    <button type="button" class="link" aria-label="Dismiss" on:click=move |_| toasts.update(|t| t.retain(|(i, _, _)| *i != n))>"×"</button>
                </div>
            }).collect_view()}
        </div>
    }
}

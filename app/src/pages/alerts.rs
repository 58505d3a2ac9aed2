//! The alert inbox: the alerts the rules opened, open / acknowledged /
//! resolved (the status in the URL), updated live as alerts open and move
//! (the ledger's tail of `custos.alert.*`), each linking to its events in
//! the explorer; holders of `alert:manage` acknowledge, comment on and
//! resolve them, each step recorded in the ledger.
//!
//! Also the toast every page shows when an alert opens.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::policies::when;
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{Alert, AlertPage, AlertStatus};

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
    let can_act = move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("alert:manage"));
    let page = RwSignal::new(None::<Result<AlertPage, ClientError>>);
    let more = RwSignal::new(Vec::<Alert>::new());
    let reload = move || {
        let s = status.get_untracked();
        leptos::task::spawn_local(async move {
            let filter = if s == "all" { String::new() } else { format!("status={s}&") };
            let p = get_json::<AlertPage>(&format!("/api/alerts?{filter}limit=50")).await;
            more.set(Vec::new());
            page.set(Some(p));
        });
    };
    Effect::new(move |_| {
        status.track();
        reload();
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
    // Live: every alert step is a ledger event; reload on each.
    let live = RwSignal::new(String::new());
    #[cfg(feature = "hydrate")]
    {
        use crate::live::Tail;
        let tail = crate::live::open_tail("/api/audit/tail?action=custos.alert.*", live, "live", move |_| reload());
        let tail: StoredValue<Option<Tail>, LocalStorage> = StoredValue::new_local(tail);
        on_cleanup(move || {
            if let Some(t) = tail.try_update_value(Option::take).flatten() {
                t.close();
            }
        });
    }
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
        {move || match page.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(p)) => {
                let items: Vec<Alert> = p.items.iter().cloned().chain(more.get()).collect();
                if items.is_empty() {
                    return view! { <p class="muted" data-testid="no-alerts">"No alerts here."</p> }.into_any();
                }
                let has_more = p.next_cursor.is_some();
                view! {
                    <ul class="alerts" data-testid="alerts">
                        {items.into_iter().map(|a| view! { <AlertItem alert=a can_act=can_act() on_change=move || reload()/> }).collect_view()}
                    </ul>
                    {has_more.then(|| view! { <button type="button" on:click=load_more data-testid="more-alerts">"More"</button> })}
                }.into_any()
            }
        }}
    }
}

/// One alert: what fired, for whom, how often, its history and the steps.
#[component]
fn AlertItem(alert: Alert, can_act: bool, on_change: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let id = alert.id.clone();
    let act = move |step: &'static str| {
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
    };
    let (act1, act2, act3) = (act.clone(), act.clone(), act);
    let group = if alert.group.is_empty() {
        String::new()
    } else {
        alert.group.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    let status = alert.status;
    let word = status.as_str();
    view! {
        <li class=format!("alert sev-{}", alert.severity) data-testid="alert" data-rule=alert.rule_id.clone() data-status=word>
            <div class="alert-head">
                <span class=format!("tag sev-{}", alert.severity)>{alert.severity.clone()}</span>
                " "<strong data-testid="alert-rule">{alert.rule_name.clone()}</strong>
                {(!group.is_empty()).then(|| view! { <span class="muted">" — "{group.clone()}</span> })}
                " "<span class=format!("tag state-{word}") data-testid="alert-status">{word}</span>
            </div>
            <div class="small muted">
                <span data-testid="alert-matches">{format!("{} match{}", alert.matches, if alert.matches == 1 { "" } else { "es" })}</span>
                {format!(" · opened {} · last {}", when(&alert.opened_at), when(&alert.last_at))}
                {alert.opened_seq.map(|s| format!(" · ledger entry {s}"))}
                {format!(" · rules version {}", alert.rules_version)}
                " · "<a href=format!("/events?{}", alert.explore) data-testid="alert-events">"Its events →"</a>
            </div>
            {(!alert.history.is_empty()).then(|| view! {
                <ul class="history small" data-testid="alert-history">
                    {alert.history.iter().map(|h| view! {
                        <li><strong>{h.name.clone()}</strong>{format!(" {} on {}", h.step, when(&h.at))}
                            {(!h.comment.is_empty()).then(|| view! { ": "<q>{h.comment.clone()}</q> })}</li>
                    }).collect_view()}
                </ul>
            })}
            {can_act.then(|| view! {
                <div class="alert-actions">
                    <input type="text" placeholder="Comment (recorded in the ledger)" data-testid="alert-comment" maxlength="2000"
                        prop:value=move || comment.get() on:input=move |ev| comment.set(event_target_value(&ev))/>
                    {(status == AlertStatus::Open).then(|| view! {
                        <button type="button" class="primary small" data-testid="acknowledge" disabled=move || busy.get() on:click=move |_| act1("acknowledge")>"Acknowledge"</button>
                    })}
                    {(status != AlertStatus::Resolved).then(|| view! {
                        <button type="button" class="small" data-testid="resolve" disabled=move || busy.get() on:click=move |_| act2("resolve")>"Resolve"</button>
                    })}
                    <button type="button" class="small" data-testid="add-comment" disabled=move || busy.get() || comment.get().trim().is_empty() on:click=move |_| act3("comment")>"Comment"</button>
                </div>
            })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </li>
    }
}

/// A toast on every page when an alert opens (for readers of the audit
/// log), linking to the inbox; it goes away after 15 seconds or when
/// closed.
#[component]
pub fn AlertToast() -> impl IntoView {
    let toasts = RwSignal::new(Vec::<(u64, String, String)>::new());
    #[cfg(feature = "hydrate")]
    {
        use crate::live::Tail;
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
        let tail: StoredValue<Option<Tail>, LocalStorage> = StoredValue::new_local(tail);
        on_cleanup(move || {
            if let Some(t) = tail.try_update_value(Option::take).flatten() {
                t.close();
            }
        });
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

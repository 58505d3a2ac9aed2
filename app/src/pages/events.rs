//! The events explorer: filters in the URL, a histogram that narrows the
//! range when dragged across, a keyset-paged table with a column chooser,
//! a detail drawer (unmask with a reason, integrity, related events), live
//! tail, saved searches and exports with progress.
//!
//! Everything is fetched from the REST API by the browser after hydration
//! (the server renders the frame and the filters from the URL).

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::params::ParamsMap;

use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{CATEGORIES, EventView, ExportJob, Histogram, OUTCOMES, SEVERITIES, SavedSearch, SearchPage};

/// Range presets: URL value and label.
const PRESETS: [(&str, &str); 6] = [
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("", "Custom range"),
];

/// Text filters: URL parameter and label.
const TEXT_FILTERS: [(&str, &str); 5] = [
    ("actor", "User"),
    ("action", "Action"),
    ("resource_id", "Resource"),
    ("channel", "Channel"),
    ("tenant", "Tenant"),
];
/// Choice filters: URL parameter, label, values.
const CHOICE_FILTERS: [(&str, &str, &[&str]); 3] =
    [("outcome", "Status", &OUTCOMES), ("category", "Event type", &CATEGORIES), ("severity", "Severity", &SEVERITIES)];

/// Table columns: key, heading, shown by default.
const COLUMNS: [(&str, &str, bool); 12] = [
    ("time", "Time", true),
    ("seq", "Seq", false),
    ("category", "Type", true),
    ("action", "Action", true),
    ("outcome", "Status", true),
    ("severity", "Severity", true),
    ("actor", "User", true),
    ("resource", "Resource", true),
    ("tenant", "Tenant", false),
    ("channel", "Channel", false),
    ("application", "Application", false),
    ("request_id", "Request id", false),
];

const PAGE: usize = 100;
/// Rows the live tail keeps on screen.
const TAIL_KEEP: usize = 1000;

/// The explorer's state as it lives in the URL.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    values: BTreeMap<String, String>,
    range: String,
    from: String,
    to: String,
}

impl Filters {
    fn from_query(q: &ParamsMap) -> Filters {
        let mut f = Filters::default();
        for (k, _) in TEXT_FILTERS.iter().map(|(k, l)| (*k, *l)).chain(CHOICE_FILTERS.iter().map(|(k, l, _)| (*k, *l)))
        {
            if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
                f.values.insert(k.to_owned(), v);
            }
        }
        if let Some(v) = q.get("q").filter(|v| !v.is_empty()) {
            f.values.insert("q".into(), v);
        }
        f.from = q.get("from").unwrap_or_default();
        f.to = q.get("to").unwrap_or_default();
        f.range = match q.get("range") {
            Some(r) => r,
            None if f.from.is_empty() && f.to.is_empty() => "24h".into(),
            None => String::new(),
        };
        f
    }

    /// The URL's query string.
    fn to_query(&self) -> String {
        let mut parts: Vec<String> = self.values.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        if self.range.is_empty() {
            if !self.from.is_empty() {
                parts.push(format!("from={}", encode(&self.from)));
            }
            if !self.to.is_empty() {
                parts.push(format!("to={}", encode(&self.to)));
            }
        } else {
            parts.push(format!("range={}", encode(&self.range)));
        }
        parts.join("&")
    }

    /// The API's query string: the range resolved against now.
    fn api_query(&self, now_ms: f64) -> String {
        let mut parts: Vec<String> = self.values.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let (from, to) = self.bounds(now_ms);
        if let Some(f) = from {
            parts.push(format!("from={}", encode(&f)));
        }
        if let Some(t) = to {
            parts.push(format!("to={}", encode(&t)));
        }
        parts.join("&")
    }

    /// The live tail's query: the filters and the range's start, no end.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn tail_query(&self, now_ms: f64) -> String {
        let mut parts: Vec<String> = self.values.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        if let (Some(f), _) = self.bounds(now_ms) {
            parts.push(format!("from={}", encode(&f)));
        }
        parts.join("&")
    }

    fn bounds(&self, now_ms: f64) -> (Option<String>, Option<String>) {
        match range_ms(&self.range) {
            Some(ms) => {
                // Up to the next whole minute (so just-sent events are in,
                // and the histogram's bars fall on round times).
                let to = ((now_ms + 1000.0) / 60_000.0).ceil() * 60_000.0;
                (Some(iso(to - ms)), Some(iso(to)))
            }
            None => {
                ((!self.from.is_empty()).then(|| self.from.clone()), (!self.to.is_empty()).then(|| self.to.clone()))
            }
        }
    }
}

/// 1440 -> "24 min", 10080 -> "2 h 48 min".
fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn range_ms(r: &str) -> Option<f64> {
    let (n, unit) = r.split_at(r.len().checked_sub(1)?);
    let n: f64 = n.parse().ok()?;
    Some(
        n * match unit {
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        },
    )
}

// --- time, in the browser (the server renders no times) -------------------

#[cfg(feature = "hydrate")]
fn now_ms() -> f64 {
    js_sys::Date::now()
}

#[cfg(not(feature = "hydrate"))]
fn now_ms() -> f64 {
    0.0
}

#[cfg(feature = "hydrate")]
fn iso(ms: f64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms)).to_iso_string().into()
}

#[cfg(not(feature = "hydrate"))]
fn iso(ms: f64) -> String {
    format!("{ms}")
}

#[cfg(feature = "hydrate")]
fn parse_ms(s: &str) -> f64 {
    js_sys::Date::parse(s)
}

#[cfg(not(feature = "hydrate"))]
fn parse_ms(_: &str) -> f64 {
    0.0
}

/// An RFC 3339 time for people: in the viewer's time zone (or UTC).
#[cfg(feature = "hydrate")]
fn show_time(s: &str, utc: bool) -> String {
    if utc {
        return s.replace('T', " ").trim_end_matches('Z').chars().take(23).collect::<String>() + " UTC";
    }
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(s));
    let opts = js_sys::Object::new();
    for (k, v) in [
        ("year", "numeric"),
        ("month", "2-digit"),
        ("day", "2-digit"),
        ("hour", "2-digit"),
        ("minute", "2-digit"),
        ("second", "2-digit"),
        ("timeZoneName", "short"),
    ] {
        let _ = js_sys::Reflect::set(&opts, &k.into(), &v.into());
    }
    d.to_locale_string("default", &opts).into()
}

#[cfg(not(feature = "hydrate"))]
fn show_time(s: &str, _utc: bool) -> String {
    s.to_owned()
}

#[cfg(feature = "hydrate")]
fn local_get(key: &str) -> Option<String> {
    web_sys::window()?.local_storage().ok()??.get_item(key).ok()?
}

#[cfg(not(feature = "hydrate"))]
fn local_get(_: &str) -> Option<String> {
    None
}

#[cfg(feature = "hydrate")]
fn local_set(key: &str, value: &str) {
    if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = s.set_item(key, value);
    }
}

#[cfg(not(feature = "hydrate"))]
fn local_set(_: &str, _: &str) {}

fn cell(e: &EventView, key: &str, utc: bool) -> String {
    match key {
        "time" => show_time(&e.occurred_at, utc),
        "seq" => e.seq.to_string(),
        "category" => e.category.clone(),
        "action" => e.action.clone(),
        "outcome" => e.outcome.clone(),
        "severity" => e.severity.clone(),
        "actor" => e.actor.name.clone().map_or_else(|| e.actor.id.clone(), |n| format!("{n} ({})", e.actor.id)),
        "resource" => e.resource.as_ref().map_or_else(String::new, |r| match &r.id {
            Some(id) => format!("{}:{id}", r.kind),
            None => r.kind.clone(),
        }),
        "tenant" => e.tenant.clone().unwrap_or_default(),
        "channel" => e.source.channel.clone(),
        "application" => e.source.application.clone().unwrap_or_default(),
        "request_id" => e.correlation.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Load {
    Loading,
    Ready,
    Failed(ClientError),
}

/// The explorer page.
#[component]
pub fn EventsPage() -> impl IntoView {
    let query = use_query_map();
    let navigate = use_navigate();
    let filters = Memo::new(move |_| query.with(Filters::from_query));
    let me = expect_context::<crate::MeResource>();
    let can = move |p: &str| me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can(p));

    // The form: edited locally, applied to the URL.
    let draft = RwSignal::new(filters.get_untracked());
    Effect::new(move |_| draft.set(filters.get()));
    let go = {
        let navigate = navigate.clone();
        move |f: Filters| navigate(&format!("/events?{}", f.to_query()), NavigateOptions::default())
    };

    // Results.
    let rows = RwSignal::new(Vec::<EventView>::new());
    let cursor = RwSignal::new(None::<String>);
    let load = RwSignal::new(Load::Loading);
    let more_loading = RwSignal::new(false);
    let resolved = RwSignal::new(String::new());
    Effect::new(move |_| {
        let api = filters.get().api_query(now_ms());
        resolved.set(api.clone());
        load.set(Load::Loading);
        leptos::task::spawn_local(async move {
            match get_json::<SearchPage>(&format!("/api/audit?{api}&limit={PAGE}")).await {
                Ok(p) => {
                    rows.set(p.items);
                    cursor.set(p.next_cursor);
                    load.set(Load::Ready);
                }
                Err(e) => load.set(Load::Failed(e)),
            }
        });
    });
    let load_more = move |_| {
        let Some(c) = cursor.get_untracked() else { return };
        let api = resolved.get_untracked();
        more_loading.set(true);
        leptos::task::spawn_local(async move {
            match get_json::<SearchPage>(&format!("/api/audit?{api}&limit={PAGE}&cursor={}", encode(&c))).await {
                Ok(p) => {
                    rows.update(|r| r.extend(p.items));
                    cursor.set(p.next_cursor);
                }
                Err(e) => load.set(Load::Failed(e)),
            }
            more_loading.set(false);
        });
    };

    // Table settings, kept in this browser.
    let utc = RwSignal::new(false);
    let shown = RwSignal::new(COLUMNS.iter().filter(|c| c.2).map(|c| c.0.to_owned()).collect::<Vec<String>>());
    Effect::new(move |_| {
        if let Some(tz) = local_get("custos.tz") {
            utc.set(tz == "utc");
        }
        if let Some(cols) = local_get("custos.columns") {
            let list: Vec<String> =
                cols.split(',').filter(|c| COLUMNS.iter().any(|k| k.0 == *c)).map(str::to_owned).collect();
            if !list.is_empty() {
                shown.set(list);
            }
        }
    });

    // The detail drawer.
    let selected = RwSignal::new(None::<EventView>);

    // Live tail.
    let live = RwSignal::new(false);
    let paused = RwSignal::new(false);
    let buffered = RwSignal::new(Vec::<EventView>::new());
    let tail_state = RwSignal::new(String::new());
    live_tail(filters, live, paused, rows, buffered, tail_state);

    let apply = {
        let go = go.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            go(draft.get_untracked());
        }
    };
    let clear = {
        let go = go.clone();
        move |_| go(Filters { range: "24h".into(), ..Filters::default() })
    };

    view! {
            <Title text="Events"/>
            <div class="explorer" data-testid="explorer">
                <div class="page-head">
                    <h1>"Events"</h1>
                    <SavedSearches filters=filters go=go.clone()/>
                </div>
    {view! {
                <form class="filters" on:submit=apply data-testid="filters">
                    {TEXT_FILTERS.iter().map(|(key, label)| {
                        let key = key.to_string();
                        let k2 = key.clone();
                        view! {
                            <label>
                                <span>{*label}</span>
                                <input type="text" name=key.clone() data-testid=format!("filter-{key}")
                                    prop:value=move || draft.with(|d| d.values.get(&key).cloned().unwrap_or_default())
                                    on:input=move |ev| {
                                        let v = event_target_value(&ev);
                                        draft.update(|d| { if v.is_empty() { d.values.remove(&k2); } else { d.values.insert(k2.clone(), v); } });
                                    }/>
                            </label>
                        }
                    }).collect_view()}
                    {CHOICE_FILTERS.iter().map(|(key, label, values)| {
                        let key = key.to_string();
                        let k2 = key.clone();
                        let k3 = key.clone();
                        view! {
                            <label>
                                <span>{*label}</span>
                                <select name=key.clone() data-testid=format!("filter-{key}")
                                    prop:value=move || draft.with(|d| d.values.get(&k3).cloned().unwrap_or_default())
                                    on:change=move |ev| {
                                        let v = event_target_value(&ev);
                                        draft.update(|d| { if v.is_empty() { d.values.remove(&k2); } else { d.values.insert(k2.clone(), v); } });
                                    }>
                                    <option value="">"Any"</option>
                                    {values.iter().map(|v| view! { <option value=*v>{*v}</option> }).collect_view()}
                                </select>
                            </label>
                        }
                    }).collect_view()}
                    <label>
                        <span>"Period"</span>
                        <select name="range" data-testid="filter-range"
                            prop:value=move || draft.with(|d| d.range.clone())
                            on:change=move |ev| {
                                let v = event_target_value(&ev);
                                draft.update(|d| {
                                    if v.is_empty() && d.from.is_empty() {
                                        // Custom: start from the preset's window.
                                        let (f, t) = d.bounds(now_ms());
                                        d.from = f.unwrap_or_default();
                                        d.to = t.unwrap_or_default();
                                    }
                                    d.range = v;
                                });
                            }>
                            {PRESETS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                        </select>
                    </label>
                    <Show when=move || draft.with(|d| d.range.is_empty())>
                        <label>
                            <span>"From (UTC)"</span>
                            <input type="text" placeholder="2026-11-26T00:00:00Z" data-testid="filter-from"
                                prop:value=move || draft.with(|d| d.from.clone())
                                on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.from = v); }/>
                        </label>
                        <label>
                            <span>"To (UTC)"</span>
                            <input type="text" placeholder="2026-11-27T00:00:00Z" data-testid="filter-to"
                                prop:value=move || draft.with(|d| d.to.clone())
                                on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| d.to = v); }/>
                        </label>
                    </Show>
                    <label class="grow">
                        <span>"Free text"</span>
                        <input type="search" name="q" placeholder="words in the event" data-testid="filter-q"
                            prop:value=move || draft.with(|d| d.values.get("q").cloned().unwrap_or_default())
                            on:input=move |ev| {
                                let v = event_target_value(&ev);
                                draft.update(|d| { if v.is_empty() { d.values.remove("q"); } else { d.values.insert("q".into(), v); } });
                            }/>
                    </label>
                    <div class="actions">
                        <button type="submit" class="primary" data-testid="apply-filters">"Search"</button>
                        <button type="button" on:click=clear>"Clear"</button>
                    </div>
                </form>

                }.into_any()}
                <HistogramView resolved=resolved go=go.clone() filters=filters/>

    {view! {
                <div class="toolbar">
                    <div class="count" data-testid="result-count">
                        {move || match load.get() {
                            Load::Loading => "Searching…".to_owned(),
                            Load::Failed(_) => String::new(),
                            Load::Ready => {
                                let n = rows.with(Vec::len);
                                if cursor.with(Option::is_some) {
                                    format!("{n} events shown, more available")
                                } else if n == 1 {
                                    "1 event".to_owned()
                                } else {
                                    format!("{n} events")
                                }
                            }
                        }}
                    </div>
                    <div class="tail" data-testid="live-tail">
                        <label class="check">
                            <input type="checkbox" data-testid="live-toggle" prop:checked=move || live.get()
                                on:change=move |ev| { live.set(event_target_checked(&ev)); paused.set(false); }/>
                            "Live"
                        </label>
                        <Show when=move || live.get()>
                            <span class="muted" data-testid="tail-state">{move || tail_state.get()}</span>
                            {move || if paused.get() {
                                view! {
                                    <button type="button" data-testid="tail-resume" on:click=move |_| {
                                        let mut new = buffered.get_untracked();
                                        buffered.set(Vec::new());
                                        new.reverse();
                                        rows.update(|r| { new.append(r); new.truncate(TAIL_KEEP); *r = new; });
                                        paused.set(false);
                                    }>{move || format!("Resume ({} new)", buffered.with(Vec::len))}</button>
                                }.into_any()
                            } else {
                                view! { <button type="button" data-testid="tail-pause" on:click=move |_| paused.set(true)>"Pause"</button> }.into_any()
                            }}
                        </Show>
                    </div>
                    <label class="check">
                        <input type="checkbox" data-testid="utc-toggle" prop:checked=move || utc.get()
                            on:change=move |ev| { let v = event_target_checked(&ev); utc.set(v); local_set("custos.tz", if v { "utc" } else { "local" }); }/>
                        "UTC"
                    </label>
                    <details class="columns" data-testid="columns">
                        <summary>"Columns"</summary>
                        <div class="menu">
                            {COLUMNS.iter().map(|(key, label, _)| {
                                let key = key.to_string();
                                let k2 = key.clone();
                                view! {
                                    <label class="check">
                                        <input type="checkbox" data-testid=format!("column-{key}")
                                            prop:checked=move || shown.with(|s| s.contains(&key))
                                            on:change=move |ev| {
                                                let on = event_target_checked(&ev);
                                                shown.update(|s| {
                                                    s.retain(|c| *c != k2);
                                                    if on { s.push(k2.clone()); }
                                                    s.sort_by_key(|c| COLUMNS.iter().position(|k| k.0 == c));
                                                });
                                                local_set("custos.columns", &shown.get_untracked().join(","));
                                            }/>
                                        {*label}
                                    </label>
                                }
                            }).collect_view()}
                        </div>
                    </details>
                    <Show when=move || can("audit:export")>
                        <Exports resolved=resolved/>
                    </Show>
                </div>

                }.into_any()}
                {move || match load.get() {
                    Load::Failed(e) => view! {
                        <div class="error" role="alert" data-testid="search-error">
                            <strong>"The search failed. "</strong>{e.to_string()}
                        </div>
                    }.into_any(),
                    Load::Ready if rows.with(Vec::is_empty) => view! {
                        <div class="empty" data-testid="empty">
                            <p>"No events match these filters in this period."</p>
                            <p class="muted">"Widen the period or clear a filter."</p>
                        </div>
                    }.into_any(),
                    _ => ().into_any(),
                }}

    {view! {
                <div class="table-wrap">
                    <table class="events" data-testid="events-table" aria-busy=move || (load.get() == Load::Loading).to_string()>
                        <thead>
                            <tr>
                                {move || shown.get().into_iter().map(|k| {
                                    let label = COLUMNS.iter().find(|c| c.0 == k).map_or("", |c| c.1);
                                    view! { <th scope="col" data-col=k.clone()>{label}</th> }
                                }).collect_view()}
                            </tr>
                        </thead>
                        <tbody>
                            <For each=move || rows.get() key=|e| e.seq let:e>
                                {
                                    let ev = e.clone();
                                    let outcome = e.outcome.clone();
                                    let seq = e.seq;
                                    view! {
                                        <tr data-testid="event-row" data-seq=seq.to_string() class=format!("outcome-{outcome}")
                                            class:selected=move || selected.with(|s| s.as_ref().is_some_and(|s| s.seq == seq))
                                            on:click=move |_| selected.set(Some(ev.clone()))>
                                            {move || {
                                                let e = e.clone();
                                                let utc = utc.get();
                                                shown.get().into_iter().map(|k| {
                                                    let text = cell(&e, &k, utc);
                                                    let title = (k == "time").then(|| e.occurred_at.clone());
                                                    view! { <td data-col=k.clone() title=title>{text}</td> }
                                                }).collect_view()
                                            }}
                                        </tr>
                                    }
                                }
                            </For>
                        </tbody>
                    </table>
                    {move || (load.get() == Load::Loading).then(|| view! { <div class="loading" data-testid="loading">"Loading events…"</div> })}
                </div>

                }.into_any()}            <Show when=move || cursor.with(Option::is_some) && load.get() == Load::Ready>
                    <button type="button" class="more" data-testid="load-more" on:click=load_more disabled=move || more_loading.get()>
                        {move || if more_loading.get() { "Loading…" } else { "Load more" }}
                    </button>
                </Show>
            </div>
            <Drawer selected=selected utc=utc can_unmask=Signal::derive(move || can("audit:unmask"))/>
        }
}

/// Follows new matching events (server-sent events) while `live` is on.
#[allow(unused_variables)]
fn live_tail(
    filters: Memo<Filters>,
    live: RwSignal<bool>,
    paused: RwSignal<bool>,
    rows: RwSignal<Vec<EventView>>,
    buffered: RwSignal<Vec<EventView>>,
    state: RwSignal<String>,
) {
    #[cfg(feature = "hydrate")]
    {
        use crate::live::Tail;
        let source: StoredValue<Option<Tail>, LocalStorage> = StoredValue::new_local(None);
        let close = move || {
            if let Some(t) = source.try_update_value(Option::take).flatten() {
                t.close();
            }
        };
        Effect::new(move |_| {
            let f = filters.get();
            let on = live.get();
            close();
            buffered.set(Vec::new());
            if !on {
                return;
            }
            let url = format!("/api/audit/tail?{}", f.tail_query(now_ms()));
            let tail = crate::live::open_tail(&url, state, "following new events", move |text| {
                let Ok(e) = serde_json::from_str::<EventView>(&text) else { return };
                if paused.get_untracked() {
                    buffered.update(|b| b.push(e));
                } else {
                    rows.update(|r| {
                        if !r.iter().any(|x| x.seq == e.seq) {
                            r.insert(0, e);
                            r.truncate(TAIL_KEEP);
                        }
                    });
                }
            });
            source.set_value(tail);
        });
        on_cleanup(close);
    }
}

/// Events per bucket over the period; dragging across narrows it.
#[component]
fn HistogramView(
    resolved: RwSignal<String>,
    go: impl Fn(Filters) + Clone + Send + Sync + 'static,
    filters: Memo<Filters>,
) -> impl IntoView {
    let data = RwSignal::new(None::<Result<Histogram, ClientError>>);
    Effect::new(move |_| {
        let api = resolved.get();
        if api.is_empty() && filters.get_untracked().range.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            let h = get_json::<Histogram>(&format!("/api/audit/histogram?{api}&buckets=60")).await;
            data.set(Some(h));
        });
    });
    // One chart per page: later data updates it (a second `init` on the
    // same element would draw into the old, detached instance).
    // Browser-only storage (the handle is a JS object); the server never
    // draws, and local storage dropped on another server thread panics.
    #[cfg(feature = "hydrate")]
    let chart: ChartStore = StoredValue::new_local(None);
    #[cfg(not(feature = "hydrate"))]
    let chart: ChartStore = StoredValue::new(None);
    Effect::new(move |_| {
        if let Some(Ok(h)) = data.get() {
            draw_histogram(&h, chart);
        }
    });
    // Drag selection, as fractions of the plot's width.
    let drag = RwSignal::new(None::<(f64, f64)>);
    let width = move |ev: &leptos::ev::PointerEvent| -> f64 {
        use leptos::wasm_bindgen::JsCast as _;
        ev.current_target()
            .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
            .map_or(1.0, |el| f64::from(el.client_width()).max(1.0))
    };
    let frac = move |ev: &leptos::ev::PointerEvent| (f64::from(ev.offset_x()) / width(ev)).clamp(0.0, 1.0);
    let finish = move |ev: leptos::ev::PointerEvent| {
        let Some((a, _)) = drag.get_untracked() else { return };
        let b = frac(&ev);
        drag.set(None);
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        if hi - lo < 0.01 {
            return;
        }
        let Some(Ok(h)) = data.get_untracked() else { return };
        let (from, to) = (parse_ms(&h.from), parse_ms(&h.to));
        let span = to - from;
        let mut f = filters.get_untracked();
        f.range = String::new();
        f.from = iso(from + span * lo);
        f.to = iso(from + span * hi);
        go(f);
    };
    view! {
        <section class="histogram" aria-label="Events over time" data-testid="histogram">
            {move || match data.get() {
                Some(Ok(h)) => view! {
                    <div class="hist-meta muted">
                        {format!("{} matching {}, {} per bar", h.total, if h.total == 1 { "event" } else { "events" }, duration(h.bucket_seconds))}
                        " · drag across the chart to narrow the period"
                        {move || filters.with(|f| f.values.contains_key("q")).then_some(" (free text not counted)")}
                    </div>
                }.into_any(),
                Some(Err(e)) => view! { <div class="error" role="alert">{format!("The histogram failed: {e}")}</div> }.into_any(),
                None => view! { <div class="hist-meta muted">"Loading the histogram…"</div> }.into_any(),
            }}
            <div class="hist-frame">
                <div id="histogram-chart" class="hist-chart"></div>
                <div class="hist-brush" data-testid="histogram-brush"
                    on:pointerdown=move |ev| { let f = frac(&ev); drag.set(Some((f, f))); }
                    on:pointermove=move |ev| { if let Some((a, _)) = drag.get_untracked() { drag.set(Some((a, frac(&ev)))); } }
                    on:pointerup=finish
                    on:pointerleave=move |_| drag.set(None)>
                    {move || drag.get().map(|(a, b)| {
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        view! { <div class="hist-selection" style:left=format!("{:.2}%", lo * 100.0) style:width=format!("{:.2}%", (hi - lo) * 100.0)></div> }
                    })}
                </div>
            </div>
        </section>
    }
}

/// Grid margins of the chart, in pixels: the brush covers the plot only.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const CHART_LEFT: u32 = 48;
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const CHART_RIGHT: u32 = 12;

#[cfg(feature = "hydrate")]
type ChartStore = StoredValue<Option<charming::Echarts>, LocalStorage>;
#[cfg(not(feature = "hydrate"))]
type ChartStore = StoredValue<Option<()>>;

#[cfg(feature = "hydrate")]
fn draw_histogram(h: &Histogram, handle: ChartStore) {
    use charming::component::{Axis, Grid};
    use charming::element::{AxisLabel, AxisType, Color, ItemStyle, Tooltip, Trigger};
    use charming::series::Bar;
    let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("histogram-chart"))
    else {
        return;
    };
    let width = (el.get_bounding_client_rect().width() as u32).max(200);
    let span_ms = h.bucket_seconds as f64 * 1000.0 * h.series.len() as f64;
    let labels: Vec<String> = h
        .series
        .iter()
        .map(|b| {
            let t = show_time(&b.start, false);
            if span_ms > 2.0 * 86_400_000.0 {
                t.chars().take(10).collect()
            } else {
                t.chars().skip(12).take(5).collect()
            }
        })
        .collect();
    let counts: Vec<i64> = h.series.iter().map(|b| b.count as i64).collect();
    let chart = charming::Chart::new()
        .animation(false)
        .tooltip(Tooltip::new().trigger(Trigger::Axis))
        .grid(Grid::new().left(CHART_LEFT as f64).right(CHART_RIGHT as f64).top(10).bottom(24))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels).axis_label(AxisLabel::new().font_size(10)))
        .y_axis(Axis::new().type_(AxisType::Value).min_interval(1).axis_label(AxisLabel::new().font_size(10)))
        .series(Bar::new().data(counts).bar_width("90%").item_style(ItemStyle::new().color(Color::from("#2966b8"))));
    let updated = handle.with_value(|e| match e {
        Some(e) => {
            charming::WasmRenderer::update(e, &chart);
            true
        }
        None => false,
    });
    if !updated && let Ok(e) = charming::WasmRenderer::new(width, 140).render("histogram-chart", &chart) {
        handle.set_value(Some(e));
    }
}

#[cfg(not(feature = "hydrate"))]
fn draw_histogram(_: &Histogram, _: ChartStore) {}

/// Saved searches: pick one, save the current one, delete your own.
#[component]
fn SavedSearches(filters: Memo<Filters>, go: impl Fn(Filters) + Clone + Send + Sync + 'static) -> impl IntoView {
    let list = RwSignal::new(Vec::<SavedSearch>::new());
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let shared = RwSignal::new(false);
    let navigate = use_navigate();
    let refresh = move || {
        leptos::task::spawn_local(async move {
            match get_json::<Vec<SavedSearch>>("/api/searches").await {
                Ok(v) => list.set(v),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    Effect::new(move |_| refresh());
    let _ = go;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = serde_json::json!({ "name": name.get_untracked(), "query": filters.get_untracked().to_query(), "shared": shared.get_untracked() });
        leptos::task::spawn_local(async move {
            match send_json::<SavedSearch>("POST", "/api/searches", Some(body.to_string())).await {
                Ok(_) => {
                    saving.set(false);
                    name.set(String::new());
                    error.set(None);
                    refresh();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let current = move || {
        let q = filters.with(Filters::to_query);
        list.with(|l| l.iter().find(|s| s.query == q).cloned())
    };
    view! {
        <div class="saved" data-testid="saved-searches">
            <select data-testid="saved-select" aria-label="Saved searches"
                prop:value=move || current().map(|s| s.id).unwrap_or_default()
                on:change=move |ev| {
                    let id = event_target_value(&ev);
                    if let Some(s) = list.get_untracked().into_iter().find(|s| s.id == id) {
                        navigate(&format!("/events?{}", s.query), NavigateOptions::default());
                    }
                }>
                <option value="">"Saved searches…"</option>
                {move || list.get().into_iter().map(|s| {
                    let label = if s.mine { s.name.clone() } else { format!("{} (shared by {})", s.name, s.owner) };
                    view! { <option value=s.id.clone()>{label}</option> }
                }).collect_view()}
            </select>
            {move || current().filter(|s| s.mine).map(|s| {
                let id = s.id.clone();
                view! {
                    <button type="button" class="link" data-testid="saved-delete" on:click=move |_| {
                        let id = id.clone();
                        leptos::task::spawn_local(async move {
                            let _ = send_json::<serde_json::Value>("DELETE", &format!("/api/searches/{}", encode(&id)), None).await;
                            refresh();
                        });
                    }>"Delete"</button>
                }
            })}
            <Show when=move || !saving.get() fallback=move || view! {
                <form class="save-form" on:submit=save>
                    <input type="text" placeholder="Name" data-testid="saved-name" required
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || shared.get() on:change=move |ev| shared.set(event_target_checked(&ev))/>
                        "Shared"
                    </label>
                    <button type="submit" class="primary" data-testid="saved-confirm">"Save"</button>
                    <button type="button" on:click=move |_| saving.set(false)>"Cancel"</button>
                </form>
            }>
                <button type="button" data-testid="saved-save" on:click=move |_| saving.set(true)>"Save search"</button>
            </Show>
            {move || error.get().map(|e| view! { <span class="error small" role="alert">{e}</span> })}
        </div>
    }
}

/// Export buttons: a background export per click, its progress, then the
/// download and its signed manifest.
#[component]
fn Exports(resolved: RwSignal<String>) -> impl IntoView {
    let job = RwSignal::new(None::<ExportJob>);
    let error = RwSignal::new(None::<ClientError>);
    let poll = move |id: String| {
        leptos::task::spawn_local(async move {
            loop {
                match get_json::<ExportJob>(&format!("/api/audit/exports/{id}")).await {
                    Ok(j) => {
                        let running = j.state == "running";
                        job.set(Some(j));
                        if !running {
                            break;
                        }
                    }
                    Err(e) => {
                        error.set(Some(e));
                        break;
                    }
                }
                sleep_ms(400).await;
            }
        });
    };
    let start = move |format: &'static str| {
        let api = resolved.get_untracked();
        error.set(None);
        leptos::task::spawn_local(async move {
            match send_json::<ExportJob>("POST", &format!("/api/audit/exports?format={format}&{api}"), None).await {
                Ok(j) => {
                    let id = j.id.to_string();
                    job.set(Some(j));
                    poll(id);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <div class="exports" data-testid="exports">
            <span class="muted">"Export"</span>
            {[("csv", "CSV"), ("json", "JSON"), ("ndjson", "NDJSON"), ("xlsx", "Excel"), ("pdf", "PDF")].into_iter().map(|(f, label)| view! {
                <button type="button" data-testid=format!("export-{f}") on:click=move |_| start(f)
                    disabled=move || job.with(|j| j.as_ref().is_some_and(|j| j.state == "running"))>{label}</button>
            }).collect_view()}
            {move || job.get().map(|j| {
                let pct = j.total.filter(|t| *t > 0).map(|t| (j.rows as f64 * 100.0 / t as f64).min(100.0));
                let id = j.id.to_string();
                match j.state.as_str() {
                    "running" => view! {
                        <span class="progress" data-testid="export-progress">
                            <progress max="100" value=pct.unwrap_or(0.0).to_string()></progress>
                            {match j.total { Some(t) => format!("{} / {t} rows", j.rows), None => format!("{} rows", j.rows) }}
                        </span>
                    }.into_any(),
                    "done" => view! {
                        <span class="done" data-testid="export-done">
                            <a href=format!("/api/audit/exports/{id}/file") download=j.file_name.clone().unwrap_or_default() data-testid="export-download">
                                {format!("Download {} ({} rows)", j.format.to_uppercase(), j.rows)}
                            </a>
                            " · "
                            <a href=format!("/api/audit/exports/{id}/manifest") download="" data-testid="export-manifest">"Manifest"</a>
                        </span>
                    }.into_any(),
                    _ => view! { <span class="error" role="alert" data-testid="export-error">{j.error.unwrap_or_default()}</span> }.into_any(),
                }
            })}
            {move || error.get().map(|e| view! { <span class="error" role="alert" data-testid="export-error">{e.to_string()}</span> })}
        </div>
    }
}

use crate::client::sleep_ms;

/// The detail drawer of one event.
#[component]
fn Drawer(selected: RwSignal<Option<EventView>>, utc: RwSignal<bool>, can_unmask: Signal<bool>) -> impl IntoView {
    let detail = RwSignal::new(None::<Result<serde_json::Value, ClientError>>);
    let related = RwSignal::new(Vec::<EventView>::new());
    let reason = RwSignal::new(String::new());
    let unmask_error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let Some(e) = selected.get() else { return };
        detail.set(None);
        related.set(Vec::new());
        unmask_error.set(None);
        reason.set(String::new());
        let id = e.id.to_string();
        leptos::task::spawn_local(async move {
            detail.set(Some(get_json(&format!("/api/audit/{id}")).await));
        });
        // Related: the same request or trace id, a day either side.
        let key = e.correlation.request_id.clone().or(e.correlation.trace_id.clone());
        if let Some(key) = key {
            let t = parse_ms(&e.occurred_at);
            let url = format!(
                "/api/audit?q={}&from={}&to={}&limit=20",
                encode(&key),
                encode(&iso(t - 86_400_000.0)),
                encode(&iso(t + 86_400_000.0))
            );
            let seq = e.seq;
            leptos::task::spawn_local(async move {
                if let Ok(p) = get_json::<SearchPage>(&url).await {
                    related.set(p.items.into_iter().filter(|r| r.seq != seq).collect());
                }
            });
        }
    });
    let unmask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(e) = selected.get_untracked() else { return };
        let url = format!("/api/audit/{}?unmask=true&reason={}", e.id, encode(reason.get_untracked().trim()));
        leptos::task::spawn_local(async move {
            match get_json::<serde_json::Value>(&url).await {
                Ok(v) => {
                    unmask_error.set(None);
                    detail.set(Some(Ok(v)));
                }
                Err(e) => unmask_error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <Show when=move || selected.with(Option::is_some)>
            <aside class="drawer" role="dialog" aria-label="Event detail" data-testid="drawer">
                <div class="drawer-head">
                    <h2>{move || selected.with(|s| s.as_ref().map(|e| format!("{} · seq {}", e.action, e.seq)).unwrap_or_default())}</h2>
                    <button type="button" class="link" data-testid="drawer-close" on:click=move |_| selected.set(None)>"Close"</button>
                </div>
                {move || match detail.get() {
                    None => view! { <p class="muted">"Loading the event and its proof…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    Some(Ok(v)) => {
                        let ev = v["event"].clone();
                        let utc = utc.get();
                        view! {
                            <EventFields ev=ev.clone() utc=utc/>
                            {ev.get("unmasked").and_then(|u| u.as_object()).map(|u| view! {
                                <section class="unmasked" data-testid="unmasked">
                                    <h3>"Original values"</h3>
                                    {if u.is_empty() {
                                        view! { <p class="muted">"The masking rules kept no original of this event."</p> }.into_any()
                                    } else {
                                        view! { <dl>{u.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt><dd>{v.as_str().unwrap_or_default().to_owned()}</dd> }).collect_view()}</dl> }.into_any()
                                    }}
                                </section>
                            })}
                            <Integrity v=v.clone()/>
                        }.into_any()
                    }
                }}
                <Show when=move || can_unmask.get()>
                    <form class="unmask" on:submit=unmask data-testid="unmask-form">
                        <h3>"Unmask"</h3>
                        <p class="muted small">"Shows the original values the masking rules kept. Your reason is recorded in the ledger."</p>
                        <input type="text" placeholder="Reason (e.g. incident INC-1234)" data-testid="unmask-reason" required minlength="5"
                            prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                        <button type="submit" data-testid="unmask-submit">"Unmask"</button>
                        {move || unmask_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    </form>
                </Show>
                <section class="related" data-testid="related">
                    <h3>"Related events"</h3>
                    {move || {
                        let list = related.get();
                        if list.is_empty() {
                            view! { <p class="muted">"No other event with this request or trace id."</p> }.into_any()
                        } else {
                            view! {
                                <ul>
                                    {list.into_iter().map(|r| {
                                        let r2 = r.clone();
                                        view! { <li><button type="button" class="link" on:click=move |_| selected.set(Some(r2.clone()))>
                                            {format!("seq {} · {} · {}", r.seq, r.action, r.outcome)}
                                        </button></li> }
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                    }}
                </section>
            </aside>
        </Show>
    }
}

#[component]
fn EventFields(ev: serde_json::Value, utc: bool) -> impl IntoView {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(obj) = ev.as_object() {
        for (k, v) in obj {
            match k.as_str() {
                "details" | "unmasked" => {}
                "occurred_at" | "recorded_at" => rows.push((k.clone(), show_time(v.as_str().unwrap_or_default(), utc))),
                _ => match v.as_object() {
                    Some(inner) => {
                        for (ik, iv) in inner {
                            if !iv.is_null() {
                                rows.push((format!("{k}.{ik}"), s(iv)));
                            }
                        }
                    }
                    None => rows.push((k.clone(), s(v))),
                },
            }
        }
    }
    let details =
        ev.get("details").filter(|d| !d.is_null()).map(|d| serde_json::to_string_pretty(d).unwrap_or_default());
    view! {
        <section class="fields" data-testid="event-fields">
            <dl>{rows.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}</dl>
            {details.map(|d| view! { <h3>"Details"</h3><pre class="json" data-testid="event-details">{d}</pre> })}
        </section>
    }
}

#[component]
fn Integrity(v: serde_json::Value) -> impl IntoView {
    let ver = &v["verification"];
    let inc = &ver["inclusion"];
    let ok = |b: &serde_json::Value| match b.as_bool() {
        Some(true) => "✓ yes",
        Some(false) => "✗ NO",
        None => "not checked",
    };
    let verified = inc["verified"].as_bool() == Some(true)
        && ver["leaf_matches"].as_bool() == Some(true)
        && ver["mac_valid"].as_bool() != Some(false);
    view! {
        <section class=if verified { "integrity ok" } else { "integrity bad" } data-testid="integrity">
            <h3>{if verified { "Integrity: verified" } else { "Integrity: NOT verified" }}</h3>
            <dl>
                <dt>"Leaf hash matches the stored fields"</dt><dd>{ok(&ver["leaf_matches"])}</dd>
                <dt>"MAC valid"</dt><dd>{ok(&ver["mac_valid"])}</dd>
                <dt>"Decrypts"</dt><dd>{ok(&ver["decrypts"])}</dd>
                <dt>"Inclusion proof against the signed checkpoint"</dt><dd data-testid="inclusion">{ok(&inc["verified"])}</dd>
                <dt>"Checkpoint tree size"</dt><dd>{inc["tree_size"].to_string()}</dd>
                <dt>"Checkpoint root"</dt><dd><code>{inc["root_hash"].as_str().unwrap_or_default().to_owned()}</code></dd>
                <dt>"Leaf hash"</dt><dd><code>{v["leaf_hash"].as_str().unwrap_or_default().to_owned()}</code></dd>
                <dt>"Proof hashes"</dt><dd>{inc["hashes"].as_array().map_or(0, Vec::len).to_string()}</dd>
                <dt>"Public key"</dt><dd><code class="wrap">{v["public_key"].as_str().unwrap_or_default().to_owned()}</code></dd>
            </dl>
        </section>
    }
}

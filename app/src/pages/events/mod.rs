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

pub(crate) mod browser;
mod drawer;
mod exports;
mod histogram;
mod saved;

use self::browser::*;
pub(crate) use self::drawer::Integrity;
use self::drawer::*;
use self::exports::*;
use self::histogram::*;
use self::saved::*;
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{CATEGORIES, EventView, ExportJob, Histogram, OUTCOMES, SEVERITIES, SavedSearch, SearchPage};

/// Range presets: URL value and label.
const PRESETS: [(&str, &str); 7] = [
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
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

/// Where a live event goes among `rows`, which are newest first in event
/// time (`occurred_at`, then seq, as search pages come): its place by that
/// order, or None when it is already shown, or when it falls after the
/// last row loaded while more can be loaded (an event sent late: "Load
/// more" brings it in its place). `occurred_at` is RFC 3339 in UTC with
/// microseconds, so its text sorts as its time.
fn tail_slot(rows: &[EventView], e: &EventView, more: bool) -> Option<usize> {
    if rows.iter().any(|x| x.seq == e.seq) {
        return None;
    }
    fn key(x: &EventView) -> (&str, u64) {
        (x.occurred_at.as_str(), x.seq)
    }
    let at = rows.partition_point(|x| key(x) > key(e));
    (at < rows.len() || !more).then_some(at)
}

/// Puts live events in their places (see [`tail_slot`]), keeping at most
/// [`TAIL_KEEP`] rows. True when rows were let go while more could be
/// loaded: the cursor then points past rows no longer shown, and "Load
/// more" would skip them, so the caller drops it (search again to page
/// further back).
fn place_live(rows: &mut Vec<EventView>, new: Vec<EventView>, more: bool) -> bool {
    let mut trimmed = false;
    for e in new {
        if let Some(at) = tail_slot(rows, &e, more) {
            rows.insert(at, e);
            if rows.len() > TAIL_KEEP {
                rows.truncate(TAIL_KEEP);
                trimmed = true;
            }
        }
    }
    trimmed && more
}

/// Live events held while the tail is paused: at most [`TAIL_KEEP`], the
/// newest by event time (an older one could not stay on screen once
/// resumed, so holding it would only grow a tab left paused), and how many
/// arrived.
#[derive(Debug, Clone, Default)]
struct Held {
    events: Vec<EventView>,
    arrived: usize,
}

impl Held {
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn hold(&mut self, e: EventView) {
        self.arrived += 1;
        place_live(&mut self.events, vec![e], false);
    }
}

/// The explorer's state as it lives in the URL.
#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    values: BTreeMap<String, String>,
    range: String,
    from: String,
    to: String,
    /// Leave out Custos's own activity (a preference kept per user in this
    /// browser, not part of the URL).
    hide_own: bool,
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
        if self.hide_own {
            parts.push("own=exclude".into());
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
        if self.hide_own {
            parts.push("own=exclude".into());
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
    // Custos's own activity (page views, API reads) hidden or shown,
    // remembered per user in this browser.
    let hide_own = RwSignal::new(false);
    let filters = Memo::new(move |_| Filters { hide_own: hide_own.get(), ..query.with(Filters::from_query) });
    let me = expect_context::<crate::MeResource>();
    let own_key = move || me.get().and_then(|r| r.ok().flatten()).map(|m| format!("custos.hide_own.{}", m.username));
    Effect::new(move |_| {
        if let Some(k) = own_key() {
            hide_own.set(local_get(&k).as_deref() == Some("1"));
        }
    });
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
                    // A live event placed earlier may come again here.
                    rows.update(|r| {
                        let shown: std::collections::HashSet<u64> = r.iter().map(|e| e.seq).collect();
                        r.extend(p.items.into_iter().filter(|e| !shown.contains(&e.seq)));
                    });
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
    let buffered = RwSignal::new(Held::default());
    let tail_state = RwSignal::new(String::new());
    live_tail(filters, live, paused, rows, cursor, buffered, tail_state);

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
                                        let new = buffered.try_update(std::mem::take).map(|h| h.events).unwrap_or_default();
                                        let more = cursor.with_untracked(Option::is_some);
                                        if rows.try_update(|r| place_live(r, new, more)).unwrap_or(false) {
                                            cursor.set(None);
                                        }
                                        paused.set(false);
                                    }>{move || format!("Resume ({} new)", buffered.with(|h| h.arrived))}</button>
                                }.into_any()
                            } else {
                                view! { <button type="button" data-testid="tail-pause" on:click=move |_| paused.set(true)>"Pause"</button> }.into_any()
                            }}
                        </Show>
                    </div>
                    <label class="check" title="Custos records its own page views and API reads; hide them here">
                        <input type="checkbox" data-testid="hide-own" prop:checked=move || hide_own.get()
                            on:change=move |ev| {
                                let v = event_target_checked(&ev);
                                hide_own.set(v);
                                if let Some(k) = own_key() { local_set(&k, if v { "1" } else { "0" }); }
                            }/>
                        "Hide Custos's own activity"
                    </label>
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
    cursor: RwSignal<Option<String>>,
    buffered: RwSignal<Held>,
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
            buffered.set(Held::default());
            if !on {
                return;
            }
            let url = format!("/api/audit/tail?{}", f.tail_query(now_ms()));
            let tail = crate::live::open_tail(&url, state, "following new events", move |text| {
                let Ok(e) = serde_json::from_str::<EventView>(&text) else { return };
                if paused.get_untracked() {
                    buffered.update(|h| h.hold(e));
                } else {
                    let more = cursor.with_untracked(Option::is_some);
                    if rows.try_update(|r| place_live(r, vec![e], more)).unwrap_or(false) {
                        cursor.set(None);
                    }
                }
            });
            source.set_value(tail);
        });
        on_cleanup(close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, minute: u32) -> EventView {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "id": "01890000-0000-7000-8000-000000000000",
            "occurred_at": format!("2026-12-04T10:{minute:02}:00.000000Z"), "recorded_at": "2026-12-04T10:59:00.000000Z",
            "category": "c", "action": "a", "outcome": "success", "severity": "info",
            "actor": {"id": "u", "kind": "user"}, "source": {"channel": "api"}, "correlation": {},
        }))
        .unwrap()
    }

    fn seqs(rows: &[EventView]) -> Vec<u64> {
        rows.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn live_events_take_their_place_in_event_time() {
        // Newest first: minute 30, 20 (seq 5 and 4: equal times by seq), 10.
        let mut rows = vec![ev(6, 30), ev(5, 20), ev(4, 20), ev(3, 10)];
        // A new event at minute 40 goes first; one sent late (minute 20,
        // seq 7) goes before the older seqs of its minute; one already
        // shown is not repeated.
        place_live(&mut rows, vec![ev(8, 40), ev(7, 20), ev(5, 20)], true);
        assert_eq!(seqs(&rows), vec![8, 6, 7, 5, 4, 3]);
        // Older than every loaded row: left to "Load more" while there is
        // more, placed last when everything is loaded.
        place_live(&mut rows, vec![ev(9, 5)], true);
        assert_eq!(rows.len(), 6);
        place_live(&mut rows, vec![ev(9, 5)], false);
        assert_eq!(seqs(&rows).last(), Some(&9));
        // Never more than TAIL_KEEP rows; letting rows go while more could
        // be loaded is reported (the cursor is then dropped).
        let mut many: Vec<EventView> = (0..TAIL_KEEP as u64).map(|s| ev(s + 100, 1)).rev().collect();
        assert!(place_live(&mut many, vec![ev(50, 59)], true));
        assert_eq!((many.len(), many[0].seq), (TAIL_KEEP, 50));
        assert!(!place_live(&mut many, vec![ev(51, 59)], false), "nothing more to load");
        assert!(!place_live(&mut rows, vec![ev(60, 59)], true), "room left");
    }

    #[test]
    fn a_paused_tail_holds_only_the_events_resuming_could_show() {
        let mut held = Held::default();
        // 1,500 events, arriving oldest first, then one late (minute 0).
        for s in 0..1500u64 {
            held.hold(ev(s + 1, (s / 30) as u32));
        }
        held.hold(ev(2000, 0));
        assert_eq!(held.arrived, 1501);
        assert_eq!(held.events.len(), TAIL_KEEP);
        // The newest by event time, newest first: the late one is not held.
        assert_eq!(held.events[0].seq, 1500);
        assert!(held.events.iter().all(|e| e.seq > 500 && e.seq != 2000));
        // Resuming over the rows on screen (with more to load, or not)
        // shows exactly what holding every event would have.
        let every: Vec<EventView> =
            (0..1500u64).map(|s| ev(s + 1, (s / 30) as u32)).chain(std::iter::once(ev(2000, 0))).collect();
        let screen: Vec<EventView> = (0..10u64).map(|s| ev(3000 - s, 0)).collect();
        for more in [true, false] {
            let (mut all, mut kept) = (screen.clone(), screen.clone());
            let all_trimmed = place_live(&mut all, every.clone(), more);
            let kept_trimmed = place_live(&mut kept, held.events.clone(), more);
            assert_eq!(seqs(&all), seqs(&kept), "more: {more}");
            assert_eq!(all_trimmed, kept_trimmed, "more: {more}");
        }
    }
}

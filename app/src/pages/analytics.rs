//! The analytics dashboard: what is happening, at a glance. Every figure
//! comes from `GET /api/audit/analytics` (rollups, never a scan); the
//! charts update as events arrive, and a click on a bar or slice opens the
//! explorer with that filter.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::charts::{self, ChartClick, ChartHandle};
use crate::client::{ClientError, encode, get_json};
use crate::event::{ActionMetrics, Analytics, ResourceMetrics};
use crate::live::{bucket_label, thousands};

const RANGES: [(&str, &str); 5] = [
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
];

/// The dashboard's own reads, which the self-audit records: not news.
const OWN: [&str; 3] = ["audit.analytics", "audit.tail", "ui.page.view"];

type Data = RwSignal<Option<Result<Analytics, ClientError>>>;
/// Navigates to the explorer with a query.
type Drill = std::sync::Arc<dyn Fn(String) + Send + Sync>;

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Some(v) => format!("{v:.0} ms"),
        None => "–".into(),
    }
}

/// The analytics page.
#[component]
pub fn AnalyticsPage() -> impl IntoView {
    let query = use_query_map();
    let range = Memo::new(move |_| {
        query.with(|q| q.get("range")).filter(|r| RANGES.iter().any(|(k, _)| k == r)).unwrap_or_else(|| "24h".into())
    });
    let data: Data = RwSignal::new(None);
    let loading = RwSignal::new(false);
    let fetch = move || {
        let r = range.get_untracked();
        loading.set(true);
        leptos::task::spawn_local(async move {
            let a = get_json::<Analytics>(&format!("/api/audit/analytics?range={}", encode(&r))).await;
            data.set(Some(a));
            loading.set(false);
        });
    };
    Effect::new(move |_| {
        range.track();
        fetch();
    });
    // Live: new events mark the figures stale; they reload at most every 2 s.
    let seen = RwSignal::new(0u64);
    let live = RwSignal::new(String::new());
    crate::live::follow(&OWN, seen, live);
    let applied = RwSignal::new(0u64);
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || {
                let n = seen.get_untracked();
                if n != applied.get_untracked() && !loading.get_untracked() {
                    applied.set(n);
                    fetch();
                }
            },
            std::time::Duration::from_secs(2),
        );
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
    let navigate = use_navigate();
    let nav = navigate.clone();
    let drill: Drill = std::sync::Arc::new(move |q: String| {
        // The whole period, unless the click chose a bucket of it.
        let period = data.with_untracked(|d| match d {
            Some(Ok(a)) if !q.contains("from=") => format!("from={}&to={}", encode(&a.from), encode(&a.to)),
            _ => String::new(),
        });
        let sep = if q.is_empty() { "" } else { "&" };
        nav(&format!("/events?{q}{sep}{period}"), Default::default());
    });
    view! {
        <Title text="Analytics"/>
        <div class="page-head">
            <h1>"Analytics"</h1>
            <div class="toolbar">
                <label>"Period"
                    <select data-testid="range" on:change=move |ev| {
                        navigate(&format!("/analytics?range={}", event_target_value(&ev)), Default::default());
                    }>
                        {RANGES.iter().map(|(k, label)| view! {
                            <option value=*k selected=move || range.get() == *k>{*label}</option>
                        }).collect_view()}
                    </select>
                </label>
                <span class="tag live-state" data-testid="live-state">{move || live.get()}</span>
                <span class="muted small" data-testid="updates">{move || format!("{} new events seen", seen.get())}</span>
            </div>
        </div>
        <p class="lead">"Counts come from rollups that count every committed event exactly once; click a bar or a slice to open those events in the explorer."</p>
        {move || match data.get() {
            None => view! { <p class="muted">"Loading the figures…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{format!("The figures could not be loaded: {e}")}</p> }.into_any(),
            Some(Ok(_)) => ().into_any(),
        }}
        <Kpis data/>
        <div class="dash-grid">
            <Volume data drill=drill.clone()/>
            <Rates data/>
            <TopList data drill=drill.clone() which="actions"/>
            <TopList data drill=drill.clone() which="actors"/>
            <Outcomes data drill=drill.clone()/>
            <ActionsPanel data drill=drill.clone() which="authentication"/>
            <ResourcePanel data drill=drill.clone() which="tool"/>
            <ActionsPanel data drill=drill.clone() which="mcp"/>
            <ResourcePanel data drill=drill.clone() which="mcp"/>
            <ResourcePanel data drill=drill.clone() which="plugin"/>
            <ResourcePanel data drill=drill.clone() which="notification"/>
        </div>
        <QueryTimes data/>
    }
}

#[component]
fn Kpis(data: Data) -> impl IntoView {
    let get = move |f: fn(&Analytics) -> String| {
        move || {
            data.with(|d| match d {
                Some(Ok(a)) => f(a),
                _ => "…".into(),
            })
        }
    };
    view! {
        <div class="cards" data-testid="kpis">
            <div class="card"><div class="card-label">"Events"</div>
                <div class="card-value" data-testid="kpi-total">{get(|a| thousands(a.total))}</div></div>
            <div class="card"><div class="card-label">"Failure rate"</div>
                <div class="card-value" data-testid="kpi-failure-rate">{get(|a| pct(a.failure_rate))}</div></div>
            <div class="card"><div class="card-label">"Denial rate"</div>
                <div class="card-value" data-testid="kpi-denial-rate">{get(|a| pct(a.denial_rate))}</div></div>
            <div class="card"><div class="card-label">"Sign-ins ok / failed"</div>
                <div class="card-value" data-testid="kpi-logins">{get(|a| format!("{} / {}", thousands(a.authentication.successes), thousands(a.authentication.failures)))}</div></div>
            <div class="card"><div class="card-label">"MFA verifications"</div>
                <div class="card-value" data-testid="kpi-mfa">{get(|a| thousands(a.authentication.mfa))}</div></div>
            <div class="card"><div class="card-label">"Lockouts"</div>
                <div class="card-value" data-testid="kpi-lockouts">{get(|a| thousands(a.authentication.lockouts))}</div></div>
        </div>
    }
}

/// A panel with a chart container (drawn in the browser).
#[component]
fn ChartPanel(
    title: String,
    id: &'static str,
    height: u32,
    #[prop(optional)] wide: bool,
    children: Children,
) -> impl IntoView {
    let label = title.clone();
    view! {
        <section class=if wide { "panel chart-panel wide" } else { "panel chart-panel" } aria-label=label data-testid=id>
            <h2>{title}</h2>
            <div id=format!("{id}-chart") class=format!("chart h{height}")></div>
            {children()}
        </section>
    }
}

/// Draws whenever the data changes (browser only).
#[allow(unused_variables)]
fn redraw(
    data: Data,
    id: &'static str,
    height: u32,
    build: impl Fn(&Analytics) -> Option<ChartSpec> + 'static,
    on_click: Option<std::rc::Rc<dyn Fn(ChartClick)>>,
) {
    let handle: ChartHandle = charts::handle();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let spec = data.with(|d| match d {
            Some(Ok(a)) => build(a),
            _ => None,
        });
        if let Some(spec) = spec {
            let chart = match spec {
                ChartSpec::Stacked(l, s) => charts::stacked(l, &s, false),
                ChartSpec::Lines(l, s, unit) => charts::lines(l, &s, unit),
                ChartSpec::Ranked(n, s) => charts::ranked(n, &s),
                ChartSpec::Doughnut(items) => charts::doughnut(&items),
            };
            charts::draw(&format!("{id}-chart"), height, &chart, handle, on_click.clone());
        }
    });
}

/// What to draw, built from the data (drawn by `redraw` in the browser).
#[allow(dead_code)]
enum ChartSpec {
    Stacked(Vec<String>, Vec<(String, Vec<f64>, String)>),
    Lines(Vec<String>, Vec<(String, Vec<f64>, String)>, &'static str),
    Ranked(Vec<String>, Vec<(String, Vec<f64>, String)>),
    Doughnut(Vec<(String, f64, String)>),
}

fn labels(a: &Analytics) -> Vec<String> {
    a.buckets.iter().map(|b| bucket_label(b, a.bucket == "hour")).collect()
}

fn color_of(i: usize) -> String {
    charts::PALETTE[i % charts::PALETTE.len()].to_owned()
}

#[component]
fn Volume(data: Data, drill: Drill) -> impl IntoView {
    let by = RwSignal::new("category");
    let click: std::rc::Rc<dyn Fn(ChartClick)> = std::rc::Rc::new(move |c: ChartClick| {
        let Some((from, to)) = data.with_untracked(|d| match d {
            Some(Ok(a)) => a
                .buckets
                .get(c.index)
                .map(|s| (s.clone(), a.buckets.get(c.index + 1).cloned().unwrap_or_else(|| a.to.clone()))),
            _ => None,
        }) else {
            return;
        };
        // That bucket, not the whole period.
        drill(format!("{}={}&from={}&to={}", by.get_untracked(), encode(&c.series), encode(&from), encode(&to)));
    });
    redraw(
        data,
        "volume",
        300,
        move |a| {
            let series = if by.get() == "category" { &a.by_category } else { &a.by_outcome };
            let s = series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let color =
                        if by.get() == "category" { color_of(i) } else { charts::outcome_color(&s.name).to_owned() };
                    (s.name.clone(), s.counts.iter().map(|c| *c as f64).collect(), color)
                })
                .collect();
            Some(ChartSpec::Stacked(labels(a), s))
        },
        Some(click),
    );
    view! {
        <ChartPanel title="Events over time".into() id="volume" height=300 wide=true>
            <div class="segmented" role="group" aria-label="Stack by">
                <button class:active=move || by.get() == "category" data-testid="stack-category" on:click=move |_| by.set("category")>"By category"</button>
                <button class:active=move || by.get() == "outcome" data-testid="stack-outcome" on:click=move |_| by.set("outcome")>"By outcome"</button>
            </div>
        </ChartPanel>
    }
}

#[component]
fn Rates(data: Data) -> impl IntoView {
    redraw(
        data,
        "rates",
        240,
        |a| {
            let n = a.buckets.len();
            let (mut total, mut failed, mut denied) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
            for s in &a.by_outcome {
                for (i, c) in s.counts.iter().enumerate() {
                    total[i] += c;
                    match s.name.as_str() {
                        "failure" | "error" => failed[i] += c,
                        "denied" => denied[i] += c,
                        _ => {}
                    }
                }
            }
            let rate = |v: &[u64]| -> Vec<f64> {
                v.iter()
                    .zip(&total)
                    .map(|(x, t)| if *t == 0 { 0.0 } else { (*x as f64 * 1000.0 / *t as f64).round() / 10.0 })
                    .collect()
            };
            Some(ChartSpec::Lines(
                labels(a),
                vec![
                    ("Failure rate".into(), rate(&failed), charts::outcome_color("failure").into()),
                    ("Denial rate".into(), rate(&denied), charts::outcome_color("denied").into()),
                ],
                " %",
            ))
        },
        None,
    );
    view! { <ChartPanel title="Failure and denial rates".into() id="rates" height=240><span></span></ChartPanel> }
}

#[component]
fn TopList(data: Data, drill: Drill, which: &'static str) -> impl IntoView {
    let (id, title, param) = if which == "actions" {
        ("top-actions", "Top actions", "action")
    } else {
        ("top-actors", "Top actors", "actor")
    };
    let click: std::rc::Rc<dyn Fn(ChartClick)> =
        std::rc::Rc::new(move |c: ChartClick| drill(format!("{param}={}", encode(&c.name))));
    redraw(
        data,
        id,
        280,
        move |a| {
            let list = if which == "actions" { &a.top_actions } else { &a.top_actors };
            Some(ChartSpec::Ranked(
                list.iter().map(|v| v.value.clone()).collect(),
                vec![("Events".into(), list.iter().map(|v| v.count as f64).collect(), "#2966b8".into())],
            ))
        },
        Some(click),
    );
    view! { <ChartPanel title=title.into() id height=280><span></span></ChartPanel> }
}

#[component]
fn Outcomes(data: Data, drill: Drill) -> impl IntoView {
    let click: std::rc::Rc<dyn Fn(ChartClick)> =
        std::rc::Rc::new(move |c: ChartClick| drill(format!("outcome={}", encode(&c.name))));
    redraw(
        data,
        "outcomes",
        280,
        |a| {
            let o = &a.outcomes;
            Some(ChartSpec::Doughnut(
                [("success", o.success), ("failure", o.failure), ("denied", o.denied), ("error", o.error)]
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), *v as f64, charts::outcome_color(n).to_owned()))
                    .collect(),
            ))
        },
        Some(click),
    );
    view! { <ChartPanel title="Outcomes".into() id="outcomes" height=280><span></span></ChartPanel> }
}

const OUTCOMES: [&str; 4] = crate::event::Outcome::WORDS;

fn by_outcome(items: &[(String, [u64; 4])]) -> Vec<(String, Vec<f64>, String)> {
    OUTCOMES
        .iter()
        .enumerate()
        .filter(|(i, _)| items.iter().any(|(_, c)| c[*i] > 0))
        .map(|(i, o)| {
            ((*o).to_owned(), items.iter().map(|(_, c)| c[i] as f64).collect(), charts::outcome_color(o).to_owned())
        })
        .collect()
}

fn counts(o: &crate::event::OutcomeCounts) -> [u64; 4] {
    [o.success, o.failure, o.denied, o.error]
}

/// Actions of a category by outcome (sign-ins, MCP requests and connections).
#[component]
fn ActionsPanel(data: Data, drill: Drill, which: &'static str) -> impl IntoView {
    let (id, title) = if which == "authentication" {
        ("auth", "Authentication by action")
    } else {
        ("mcp-actions", "MCP requests and connections")
    };
    let pick = move |a: &Analytics| -> Vec<ActionMetrics> {
        if which == "authentication" { a.auth_actions.clone() } else { a.mcp_actions.clone() }
    };
    let click: std::rc::Rc<dyn Fn(ChartClick)> = std::rc::Rc::new(move |c: ChartClick| {
        drill(format!("category={which}&action={}&outcome={}", encode(&c.name), encode(&c.series)))
    });
    redraw(
        data,
        id,
        240,
        move |a| {
            let items: Vec<(String, [u64; 4])> =
                pick(a).iter().map(|m| (m.action.clone(), counts(&m.outcomes))).collect();
            Some(ChartSpec::Ranked(items.iter().map(|(n, _)| n.clone()).collect(), by_outcome(&items)))
        },
        Some(click),
    );
    view! { <ChartPanel title=title.into() id height=240><span></span></ChartPanel> }
}

/// Tools, MCP servers, plugins or notification channels: outcomes, latency
/// and status.
#[component]
fn ResourcePanel(data: Data, drill: Drill, which: &'static str) -> impl IntoView {
    let (id, title, name_col) = match which {
        "tool" => ("tools", "Tool usage and latency", "Tool"),
        "mcp" => ("mcp-servers", "MCP servers", "Server"),
        "plugin" => ("plugins", "Plugins", "Plugin"),
        _ => ("notifications", "Notifications sent and failed", "Channel"),
    };
    let pick = move |a: &Analytics| -> Vec<ResourceMetrics> {
        match which {
            "tool" => a.tools.clone(),
            "mcp" => a.mcp_servers.clone(),
            "plugin" => a.plugins.clone(),
            _ => a.notification_channels.clone(),
        }
    };
    let d2 = drill.clone();
    let click: std::rc::Rc<dyn Fn(ChartClick)> = std::rc::Rc::new(move |c: ChartClick| {
        d2(format!("category={which}&resource_id={}&outcome={}", encode(&c.name), encode(&c.series)))
    });
    redraw(
        data,
        id,
        220,
        move |a| {
            let items: Vec<(String, [u64; 4])> =
                pick(a).iter().map(|m| (m.name.clone(), counts(&m.outcomes))).collect();
            Some(ChartSpec::Ranked(items.iter().map(|(n, _)| n.clone()).collect(), by_outcome(&items)))
        },
        Some(click),
    );
    let rows = move || {
        data.with(|d| match d {
            Some(Ok(a)) => pick(a),
            _ => Vec::new(),
        })
    };
    view! {
        <ChartPanel title=title.into() id height=220 wide=which == "tool">
            <div class="table-wrap">
                <table class="compact" data-testid=format!("{id}-table")>
                    <thead><tr>
                        <th>{name_col}</th><th class="num">"Events"</th><th class="num">"Failed"</th>
                        <th class="num">"p50"</th><th class="num">"p95"</th><th class="num">"p99"</th><th>"Status (last hour seen)"</th>
                    </tr></thead>
                    <tbody>
                        {move || rows().into_iter().map(|r| {
                            let failed = r.outcomes.failure + r.outcomes.error + r.outcomes.denied;
                            let last_bad = r.last_hour.failure + r.last_hour.error + r.last_hour.denied;
                            let status = if last_bad == 0 { "ok" } else if last_bad * 2 < r.last_hour.total() { "degraded" } else { "failing" };
                            let q = format!("category={which}&resource_id={}", encode(&r.name));
                            let d = drill.clone();
                            view! {
                                <tr>
                                    <td><a href="#" on:click=move |ev| { ev.prevent_default(); d(q.clone()); }>{if r.name.is_empty() { "(none)".to_owned() } else { r.name.clone() }}</a></td>
                                    <td class="num">{thousands(r.outcomes.total())}</td>
                                    <td class="num">{thousands(failed)}</td>
                                    <td class="num">{ms(r.p50_ms)}</td>
                                    <td class="num">{ms(r.p95_ms)}</td>
                                    <td class="num">{ms(r.p99_ms)}</td>
                                    <td><span class=format!("tag status-{status}")>{status}</span>
                                        <span class="muted small">{format!(" {}", bucket_label(&r.last_seen, true))}</span></td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </ChartPanel>
    }
}

#[component]
fn QueryTimes(data: Data) -> impl IntoView {
    view! {
        <p class="muted small" data-testid="query-times">
            {move || data.with(|d| match d {
                Some(Ok(a)) => format!(
                    "{} to {} (UTC), per {}; computed in {:.1} ms ({})",
                    a.from, a.to, a.bucket,
                    a.queries.iter().map(|q| q.ms).sum::<f64>(),
                    a.queries.iter().map(|q| format!("{} {:.1} ms", q.name, q.ms)).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            })}
        </p>
    }
}

//! The compliance dashboard: are we compliant? Each framework's logging
//! controls with a status computed now from the system, and the evidence
//! behind each check (`GET /api/compliance`).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::charts::{self, ChartHandle};
use crate::client::{ClientError, get_json};
use crate::event::{
    CheckStatus, ComplianceCheck, ComplianceHistory, ComplianceReport, Evidence, EvidenceOf, REPORT_PERIODS,
};

const STATUSES: [(CheckStatus, &str, &str); 5] = [
    (CheckStatus::Pass, "Passing", "#3a9d5d"),
    (CheckStatus::Warn, "Attention", "#b8892b"),
    (CheckStatus::Fail, "Failing", "#b91c1c"),
    (CheckStatus::NoEvidence, "No evidence", "#6b7fa3"),
    (CheckStatus::NotConfigured, "Not configured", "#8a94a3"),
];

fn label(status: CheckStatus) -> &'static str {
    STATUSES.iter().find(|(s, _, _)| *s == status).map_or("Unknown", |(_, l, _)| *l)
}

/// Where the UI shows a piece of evidence: the explorer with the check's
/// filters, the integrity page, the policies page or the policy trail.
fn href(e: &Evidence) -> String {
    match &e.about {
        EvidenceOf::Events { filters } => {
            let q: Vec<String> = filters
                .iter()
                .map(|(k, v)| format!("{}={}", custos_model::url::encode(k), custos_model::url::encode(v)))
                .collect();
            format!("/events?{}", q.join("&"))
        }
        EvidenceOf::Verifications | EvidenceOf::Checkpoints | EvidenceOf::Keys => "/integrity".into(),
        EvidenceOf::MaskingPolicy => "/policies".into(),
        EvidenceOf::MaskingPolicyHistory => "/policies/trail?kind=masking".into(),
        EvidenceOf::Alerts => "/alerts".into(),
        EvidenceOf::AlertRules => "/policies".into(),
        EvidenceOf::Forwarding => "/forwarding".into(),
        EvidenceOf::Retention => "/retention".into(),
        EvidenceOf::Backups => "/backups".into(),
    }
}

/// What opening an evidence link needs (the page's own permission).
fn needs(e: &Evidence) -> &'static str {
    match &e.about {
        EvidenceOf::Events { .. } | EvidenceOf::Alerts => "audit:read",
        EvidenceOf::AlertRules => "policy:read",
        EvidenceOf::Forwarding => "siem:manage",
        EvidenceOf::Retention => "policy:read",
        EvidenceOf::Backups => "policy:read",
        EvidenceOf::Verifications | EvidenceOf::Checkpoints | EvidenceOf::Keys => "audit:verify",
        EvidenceOf::MaskingPolicy | EvidenceOf::MaskingPolicyHistory => "policy:read",
    }
}

/// The compliance page.
#[component]
pub fn CompliancePage() -> impl IntoView {
    let hours = RwSignal::new(24u64);
    let data = RwSignal::new(None::<Result<ComplianceReport, ClientError>>);
    let fetch = move || {
        let h = hours.get_untracked();
        leptos::task::spawn_local(async move {
            data.set(Some(get_json::<ComplianceReport>(&format!("/api/compliance?verify_within_hours={h}")).await));
        });
    };
    Effect::new(move |_| {
        hours.track();
        fetch();
    });
    let chart: ChartHandle = charts::handle();
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let items = data.with(|d| match d {
            Some(Ok(r)) => Some(
                STATUSES
                    .iter()
                    .map(|(s, l, c)| {
                        let n = r.frameworks.iter().flat_map(|f| &f.controls).filter(|c| c.status == *s).count();
                        ((*l).to_owned(), n as f64, (*c).to_owned())
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        });
        if let Some(items) = items {
            charts::draw("controls-chart", 220, &charts::doughnut(&items), chart, None);
        }
    });
    let _ = chart;
    view! {
        <Title text="Compliance"/>
        <div class="page-head">
            <h1>"Compliance"</h1>
            <div class="toolbar">
                <label>"Chain verified within"
                    <select data-testid="verify-window" on:change=move |ev| {
                        if let Ok(h) = event_target_value(&ev).parse() { hours.set(h); }
                    }>
                        {[24u64, 72, 168, 720].into_iter().map(|h| view! {
                            <option value=h.to_string() selected=move || hours.get() == h>{format!("{h} hours")}</option>
                        }).collect_view()}
                    </select>
                </label>
                <button data-testid="refresh" on:click=move |_| fetch()>"Check again"</button>
            </div>
        </div>
        <p class="lead">"Each status is computed from this system when the page loads: verifications and checkpoints in the ledger, the database's own guards, keys, masking rules and what is being recorded. Features not built yet say “not configured”."</p>
        <section class="panel chart-panel" data-testid="controls" aria-label="Controls by status">
            <h2>"Controls by status"</h2>
            <div id="controls-chart" class="chart h220"></div>
        </section>
        <PeriodView/>
        {move || match data.get() {
            None => view! { <p class="muted">"Computing the checks…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{format!("The checks could not be computed: {e}")}</p> }.into_any(),
            Some(Ok(r)) => view! { <Report report=r/> }.into_any(),
        }}
    }
}

/// A status as a coloured tag.
#[component]
pub fn Badge(status: CheckStatus) -> impl IntoView {
    view! { <span class=format!("tag status-{status}") data-status=status.as_str()>{label(status)}</span> }
}

#[component]
fn Report(report: ComplianceReport) -> impl IntoView {
    let count = |s: CheckStatus| report.checks.iter().filter(|c| c.status == s).count();
    let summary = STATUSES
        .iter()
        .map(|(s, l, _)| {
            view! {
                <div class="card"><div class="card-label">{*l}</div>
                    <div class="card-value" data-testid=format!("checks-{s}")>{count(*s)}</div></div>
            }
        })
        .collect_view();
    let checks = report.checks.clone();
    let find = move |id: &str| checks.iter().find(|c| c.id == id).cloned();
    view! {
        <div class="cards" data-testid="summary">{summary}</div>
        <p class="muted small" data-testid="generated-at">{format!("Computed at {} (UTC).", report.generated_at)}</p>
        <section class="panel" aria-label="Checks">
            <h2>"Checks"</h2>
            <ul class="checks" data-testid="checks">
                {report.checks.iter().map(|c| view! { <CheckItem check=c.clone()/> }).collect_view()}
            </ul>
        </section>
        {report.frameworks.iter().map(|f| {
            let find = find.clone();
            view! {
                <section class="panel framework" data-testid=format!("framework-{}", f.id) aria-label=f.name.clone()>
                    <h2>{f.name.clone()}</h2>
                    <table class="compact">
                        <thead><tr><th>"Control"</th><th>"Status"</th><th>"Evidence"</th></tr></thead>
                        <tbody>
                            {f.controls.iter().map(|c| view! {
                                <tr data-control=c.id.clone()>
                                    <td><strong>{c.id.clone()}</strong>" "{c.title.clone()}</td>
                                    <td><Badge status=c.status/></td>
                                    <td>{c.checks.iter().filter_map(|id| find(id)).map(|k| view! {
                                        <a class="check-link" href=format!("#check-{}", k.id) title=k.detail.clone()>
                                            <span class=format!("dot status-{}", k.status)></span>{k.title.clone()}
                                        </a>
                                    }).collect_view()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                </section>
            }
        }).collect_view()}
    }
}

/// The daily snapshots over a period, and the evidence report for it.
#[component]
fn PeriodView() -> impl IntoView {
    let period = RwSignal::new("last_30_days".to_owned());
    let hist = RwSignal::new(None::<Result<ComplianceHistory, ClientError>>);
    Effect::new(move |_| {
        let p = period.get();
        leptos::task::spawn_local(async move {
            hist.set(Some(get_json::<ComplianceHistory>(&format!("/api/compliance/history?period={p}")).await));
        });
    });
    let ready = RwSignal::new(None::<crate::event::ReportInfo>);
    let done = Callback::new(move |r| ready.set(Some(r)));
    view! {
        <section class="panel" data-testid="compliance-period" aria-label="Over a period">
            <div class="page-head">
                <h2>"Over a period"</h2>
                <label>"Period"
                    <select data-testid="history-period" on:change=move |ev| period.set(event_target_value(&ev))>
                        {REPORT_PERIODS.iter().map(|(v, l)| view! {
                            <option value=*v selected=move || period.get() == *v>{*l}</option>
                        }).collect_view()}
                    </select>
                </label>
            </div>
            <p class="muted small">"From the daily snapshots the server records in the ledger at the start of each day (UTC): what the checks were then, not recomputed. A day without a snapshot is a gap."</p>
            {move || match hist.get() {
                None => view! { <p class="muted">"Reading the snapshots…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(h)) => {
                    let days = h.days.len();
                    view! {
                        <p data-testid="history-summary">{format!("{} to {}: snapshots on {} of {days} days.", h.from, h.to, h.snapshots)}
                            {(h.snapshots == 0).then_some(" The first is taken a minute after the server starts, then at the start of each day (UTC).")}</p>
                        <div class="day-strip" data-testid="history-days" aria-label="Each day">
                            {h.days.iter().map(|d| {
                                let (class, title) = match &d.fail {
                                    None if d.unverified => ("day fail", format!("{}: the snapshot no longer matches its sealed record", d.day)),
                                    None => ("day gap", format!("{}: no snapshot", d.day)),
                                    Some(f) if f.is_empty() => ("day ok", format!("{}: nothing failing", d.day)),
                                    Some(f) => ("day fail", format!("{}: failing {}", d.day, f.join(", "))),
                                };
                                view! { <span class=class title=title></span> }
                            }).collect_view()}
                        </div>
                        <table class="compact small" data-testid="history-checks">
                            <thead><tr><th>"Check"</th><th>"Pass"</th><th>"Warning"</th><th>"Fail"</th><th>"No evidence"</th><th>"Not configured"</th><th>"No snapshot"</th></tr></thead>
                            <tbody>{h.checks.iter().map(|c| view! {
                                <tr data-check=c.id.clone()><td>{c.id.clone()}</td><td>{c.days.pass}</td><td>{c.days.warn}</td>
                                    <td class={if c.days.fail > 0 { "bad" } else { "" }}>{c.days.fail}</td><td>{c.days.no_evidence}</td>
                                    <td>{c.days.not_configured}</td><td>{c.days.missing}</td></tr>
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any()
                }
            }}
            <h3>"Download evidence report"</h3>
            <super::reports::GenerateForm on_done=done period=period/>
            {move || ready.get().map(|r| view! {
                <p data-testid="report-ready" role="status">{format!("Report for {} to {}: ", r.period_from, r.period_to)}<super::reports::ReportLinks report=r/></p>
            })}
        </section>
    }
    .into_any()
}

#[component]
fn CheckItem(check: ComplianceCheck) -> impl IntoView {
    view! {
        <li id=format!("check-{}", check.id) data-check=check.id.clone()>
            <Badge status=check.status/>
            <div>
                <strong>{check.title.clone()}</strong>
                <div class="check-detail">{check.detail.clone()}</div>
                <div class="evidence">
                    {check.evidence.iter().map(|e| {
                        // A link only to a page the viewer may open.
                        let me = use_context::<crate::MeResource>();
                        let may = me.and_then(|m| m.get_untracked()).and_then(|r| r.ok().flatten()).is_some_and(|m| m.can(needs(e)));
                        if may {
                            view! { <a href=href(e)>{e.label.clone()}</a> }.into_any()
                        } else {
                            view! { <span class="muted" title=format!("Opening it needs {}", needs(e))>{e.label.clone()}</span> }.into_any()
                        }
                    }).collect_view()}
                </div>
            </div>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_becomes_links_of_this_ui() {
        let e = Evidence::events("x", &[("action", "audit.*"), ("range", "30d")]);
        assert_eq!(href(&e), "/events?action=audit.*&range=30d");
        assert_eq!(href(&Evidence::events("x", &[("q", "a b&c=d")])), "/events?q=a%20b%26c%3Dd", "values are encoded");
        assert_eq!(href(&Evidence::new("k", EvidenceOf::Keys)), "/integrity");
        assert_eq!(href(&Evidence::new("m", EvidenceOf::MaskingPolicyHistory)), "/policies/trail?kind=masking");
        assert_eq!(needs(&Evidence::new("m", EvidenceOf::MaskingPolicy)), "policy:read");
        assert_eq!(needs(&e), "audit:read");
    }
}

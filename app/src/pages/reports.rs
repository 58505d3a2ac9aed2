//! Compliance evidence reports: generate one now (a framework and a
//! period), and the history with the PDF, the JSON twin and each one's
//! signed manifest (`/api/reports`).

use leptos::prelude::*;
use leptos_meta::Title;

use super::compliance::Badge;
use super::policies::when;
use crate::client::{ClientError, get_json, send_json};
use crate::event::{REPORT_PERIODS, ReportFramework, ReportInfo, ReportRequest};

/// The four downloads of a report.
#[component]
pub fn ReportLinks(report: ReportInfo) -> impl IntoView {
    let base = format!("/api/reports/{}", report.id);
    view! {
        <span class="report-links" data-testid="report-links">
            <a href=format!("{base}/pdf") download="" data-testid="report-pdf">"PDF"</a>
            " · "<a href=format!("{base}/pdf/manifest") download="" data-testid="report-pdf-manifest">"its manifest"</a>
            " · "<a href=format!("{base}/json") download="" data-testid="report-json">"JSON"</a>
            " · "<a href=format!("{base}/json/manifest") download="" data-testid="report-json-manifest">"its manifest"</a>
        </span>
    }
}

/// Asks for a report; the form's state.
#[component]
pub fn GenerateForm(
    /// Called with the report once generated.
    on_done: Callback<ReportInfo>,
    /// The framework selected first.
    #[prop(optional)]
    framework: Option<String>,
    /// The period, shared with the caller (the compliance page's picker).
    #[prop(optional)]
    period: Option<RwSignal<String>>,
) -> impl IntoView {
    let frameworks = RwSignal::new(None::<Result<Vec<ReportFramework>, ClientError>>);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            frameworks.set(Some(get_json::<Vec<ReportFramework>>("/api/reports/frameworks").await));
        });
    });
    let fw = RwSignal::new(framework.unwrap_or_else(|| "pcidss4".into()));
    let per = period.unwrap_or_else(|| RwSignal::new("previous_month".into()));
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let seed = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        busy.set(true);
        let custom = per.get_untracked() == "custom";
        let req = ReportRequest {
            framework: fw.get_untracked(),
            period: (!custom).then(|| per.get_untracked()),
            from: custom.then(|| from.get_untracked()),
            to: custom.then(|| to.get_untracked()),
            seed: Some(seed.get_untracked()).filter(|s| !s.trim().is_empty()),
        };
        leptos::task::spawn_local(async move {
            let body = serde_json::to_string(&req).unwrap_or_default();
            match send_json::<ReportInfo>("POST", "/api/reports", Some(body)).await {
                Ok(r) => on_done.run(r),
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    };
    view! {
        <form class="report-form" on:submit=submit data-testid="report-form">
            <label>"Framework"
                <select data-testid="report-framework" on:change=move |ev| fw.set(event_target_value(&ev))>
                    {move || frameworks.get().and_then(Result::ok).unwrap_or_default().into_iter().map(|f| {
                        let id = f.id.clone();
                        view! { <option value=f.id.clone() selected=move || fw.get() == id>{f.name}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>"Period"
                <select data-testid="report-period" on:change=move |ev| per.set(event_target_value(&ev))>
                    {REPORT_PERIODS.iter().map(|(v, l)| view! {
                        <option value=*v selected=move || per.get() == *v>{*l}</option>
                    }).collect_view()}
                    <option value="custom" selected=move || per.get() == "custom">"From … to …"</option>
                </select>
            </label>
            {move || (per.get() == "custom").then(|| view! {
                <label>"From"<input type="date" data-testid="report-from" prop:value=from on:input=move |ev| from.set(event_target_value(&ev))/></label>
                <label>"To"<input type="date" data-testid="report-to" prop:value=to on:input=move |ev| to.set(event_target_value(&ev))/></label>
            })}
            <label>"Sample seed"<input type="text" placeholder="random" maxlength="128" data-testid="report-seed"
                prop:value=seed on:input=move |ev| seed.set(event_target_value(&ev))/></label>
            <button type="submit" class="primary" data-testid="report-generate" disabled=move || busy.get()>
                {move || if busy.get() { "Generating…" } else { "Generate report" }}
            </button>
            {move || busy.get().then(|| view! {
                <p class="muted small" data-testid="report-progress" role="status">"Reading the period's daily snapshots, checking each against its sealed record, counting and sampling the period's events, then signing both files…"</p>
            })}
            {move || frameworks.get().and_then(Result::err).map(|e| view! { <p class="error" role="alert">{format!("The frameworks could not be read: {e}")}</p> })}
            {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="report-error">{e}</p> })}
        </form>
    }
    .into_any()
}

/// The page.
#[component]
pub fn ReportsPage() -> impl IntoView {
    let list = RwSignal::new(None::<Result<Vec<ReportInfo>, ClientError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            list.set(Some(get_json::<Vec<ReportInfo>>("/api/reports?limit=100").await));
        });
    };
    Effect::new(move |_| load());
    let last = RwSignal::new(None::<ReportInfo>);
    let done = Callback::new(move |r: ReportInfo| {
        last.set(Some(r));
        load();
    });
    view! {
        <Title text="Reports"/>
        <h1>"Evidence reports"</h1>
        <p class="lead">"A report covers one framework over whole days (UTC): each control's status every day from the daily compliance snapshots the server recorded in the ledger (a missing day is shown as a gap), the events the framework asks to be recorded, verifications, retention, backups, alerting, forwarding, policy changes with their approvals, and a reproducible sample for your tests. The PDF and its JSON twin are each signed: check them offline with "<code>"custos verify-export FILE MANIFEST --public-key KEY"</code>"."</p>
        <section class="panel" data-testid="report-generate-panel">
            <h2>"Generate now"</h2>
            <GenerateForm on_done=done/>
            {move || last.get().map(|r| view! {
                <p data-testid="report-ready" role="status">
                    <Badge status=r.status.unwrap_or(crate::event::CheckStatus::NoEvidence)/>
                    {format!(" Report for {} to {} ready: ", r.period_from, r.period_to)}
                    <ReportLinks report=r/>
                </p>
            })}
        </section>
        <section class="panel" data-testid="report-history">
            <h2>"History"</h2>
            {move || match list.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(v)) if v.is_empty() => view! { <p class="muted">"No report yet."</p> }.into_any(),
                Some(Ok(v)) => view! {
                    <table class="data small" data-testid="reports-table">
                        <thead><tr><th>"Generated"</th><th>"Framework"</th><th>"Period"</th><th>"Status"</th><th>"By"</th><th>"SHA-256 (PDF)"</th><th>"Files"</th></tr></thead>
                        <tbody>{v.into_iter().map(|r| view! {
                            <tr data-report=r.id.to_string()>
                                <td>{when(&r.generated_at)}</td>
                                <td>{r.framework.clone()}</td>
                                <td>{format!("{} to {}", r.period_from, r.period_to)}</td>
                                <td>{r.status.map(|s| view! { <Badge status=s/> })}</td>
                                <td>{format!("{} ({})", r.requested_by, r.trigger)}</td>
                                <td class="mono small">{r.pdf_sha256.clone().map(|h| format!("{}…", &h[..16.min(h.len())])).unwrap_or_default()}</td>
                                <td><ReportLinks report=r.clone()/></td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
    .into_any()
}

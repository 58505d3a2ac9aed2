//! Compliance evidence reports: generate one now (a framework and a
//! period), and the history with the PDF, the JSON twin and each one's
//! signed manifest (`/api/reports`); the schedules in force with their
//! runs, and a form proposing a new one (the `report_schedules` policy,
//! reviewed like any policy).

use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::{Value, json};

use super::compliance::Badge;
use super::policies::{pending, proposer, when, with_item};
use crate::client::{ClientError, get_json, send_json};
use crate::event::cron::{Cron, format_utc};
use crate::event::{
    PolicyKindView, REPORT_PERIODS, ReportFramework, ReportInfo, ReportRequest, ReportRun, SchedulesView,
};

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
        <SchedulesPanel/>
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

/// A period's label.
fn period_label(v: &str) -> String {
    REPORT_PERIODS.iter().find(|p| p.0 == v).map_or(v.to_owned(), |p| p.1.to_owned())
}

/// A cron expression's next three runs, or why the server would refuse it.
fn cron_preview(expr: &str) -> Result<Vec<String>, String> {
    let cron = Cron::parse(expr.trim())?;
    if let Some(gap) = cron.shortest_gap().filter(|g| *g < 3_600_000_000) {
        return Err(format!(
            "runs {} minute(s) apart at times; a schedule runs at most once an hour",
            gap / 60_000_000
        ));
    }
    let now = (super::events::browser::now_ms() * 1000.0) as i64;
    Ok(cron.next_runs(now, 3).into_iter().map(format_utc).collect())
}

/// The schedules in force, their runs, and a form proposing another.
#[component]
fn SchedulesPanel() -> impl IntoView {
    let me = expect_context::<crate::MeResource>();
    // Proposing needs what the reports show (the server checks it again).
    let can_propose = Signal::derive(move || {
        me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| {
            ["report:generate", "audit:read", "audit:verify", "audit:export", "policy:read"].iter().all(|p| m.can(p))
        })
    });
    let can_redirect =
        Signal::derive(move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("notification:manage")));
    let can_read = Signal::derive(move || {
        me.get()
            .and_then(|r| r.ok().flatten())
            .is_some_and(|m| ["report:generate", "audit:read", "audit:verify", "policy:read"].iter().all(|p| m.can(p)))
    });
    let view_ = RwSignal::new(None::<Result<SchedulesView, ClientError>>);
    let runs = RwSignal::new(None::<Result<Vec<ReportRun>, ClientError>>);
    let kind = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let channels = RwSignal::new(Vec::<(String, String, String)>::new());
    Effect::new(move |_| {
        if !can_read.get() {
            return;
        }
        leptos::task::spawn_local(async move {
            view_.set(Some(get_json::<SchedulesView>("/api/reports/schedules").await));
            runs.set(Some(get_json::<Vec<ReportRun>>("/api/reports/runs?limit=20").await));
        });
    });
    Effect::new(move |_| {
        if !can_propose.get() {
            return;
        }
        leptos::task::spawn_local(async move {
            kind.set(Some(get_json::<PolicyKindView>("/api/policies/report_schedules").await));
            if let Ok(n) = get_json::<PolicyKindView>("/api/policies/notifications").await {
                let list = n.active.content.get("channels").and_then(Value::as_array).cloned().unwrap_or_default();
                channels.set(
                    list.iter()
                        .map(|c| {
                            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                            (s("id"), s("name"), s("type"))
                        })
                        .collect(),
                );
            }
        });
    });
    view! {
        <section class="panel" data-testid="report-schedules">
            <h2>"Schedules"</h2>
            <p class="muted small">"A schedule makes a framework's report at the times of its cron expression (UTC), over a period taken from the day the run is due, e-mails the PDF to its recipients through the notification channels (a webhook or chat gets the link and the digest), and keeps its newest reports. Schedules are a policy: every change is a proposal, reviewed like any policy. "
                <a href="/policies/trail?kind=report_schedules">"Their trail →"</a></p>
            {move || match view_.get() {
                None if !can_read.get() => view! { <p class="muted small" data-testid="schedules-need">"The schedules name who receives the reports: seeing them needs audit:read, audit:verify and policy:read, as reading a report does."</p> }.into_any(),
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(v)) if v.schedules.is_empty() => view! { <p class="muted" data-testid="no-schedules">"No schedule: reports are made when someone asks."</p> }.into_any(),
                Some(Ok(v)) => view! {
                    <table class="data small" data-testid="schedules-table">
                        <thead><tr><th>"Schedule"</th><th>"When (UTC)"</th><th>"Report"</th><th>"To"</th><th>"Kept"</th><th>"Next run"</th><th>"Last run"</th><th></th></tr></thead>
                        <tbody>{v.schedules.into_iter().map(|st| {
                            let s = st.schedule;
                            let to: Vec<String> = s.recipients.iter().map(|r| if r.to.is_empty() { r.channel.clone() } else { format!("{} ({})", r.channel, r.to.join(", ")) }).collect();
                            view! {
                                <tr data-schedule=s.id.clone()>
                                    <td>{s.name.clone()}<br/><span class="muted mono">{s.id.clone()}</span></td>
                                    <td class="mono">{s.cron.clone()}</td>
                                    <td>{format!("{}, {}", s.framework, period_label(&s.period))}</td>
                                    <td>{to.join("; ")}</td>
                                    <td>{s.keep}</td>
                                    <td>{if s.enabled { st.next_run.as_deref().map(when).unwrap_or_else(|| "—".into()) } else { "off".into() }}</td>
                                    <td>{st.last_run.map(|r| format!("{} ({})", when(&r.due_at), r.state)).unwrap_or_else(|| "none yet".into())}</td>
                                    <td>{let (sid, on) = (s.id.clone(), s.enabled); move || kind.get().and_then(Result::ok).map(|k| view! { <ScheduleActions kind=k id=sid.clone() enabled=on/> })}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            {move || match runs.get() {
                Some(Ok(list)) if !list.is_empty() => view! {
                    <h3>"Runs"</h3>
                    <table class="data small" data-testid="runs-table">
                        <thead><tr><th>"Due"</th><th>"Schedule"</th><th>"State"</th><th>"Report"</th><th>"Sent"</th><th>"Note"</th></tr></thead>
                        <tbody>{list.into_iter().map(|r| view! {
                            <tr data-run=r.id.clone()>
                                <td>{when(&r.due_at)}</td>
                                <td>{r.schedule_id.clone()}</td>
                                <td>{r.state.clone()}</td>
                                <td>{r.report_id.clone().map(|id| view! { <a href=format!("/api/reports/{id}/pdf") download="">"PDF"</a> })}</td>
                                <td>{r.deliveries.iter().map(|d| format!("{}: {}", d.channel, d.status)).collect::<Vec<_>>().join(", ")}</td>
                                <td class="small">{r.error.clone().unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                _ => ().into_any(),
            }}
            {move || match kind.get() {
                Some(Ok(k)) => view! { <ScheduleForm kind=k channels=channels can_redirect=can_redirect/> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                None if can_read.get() && !can_propose.get() => view! { <p class="muted small">"Proposing a schedule also needs audit:export: a report sent out of Custos is an export."</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
    }
    .into_any()
}

/// Turning a schedule off or on, and removing it: each a proposal.
#[component]
fn ScheduleActions(kind: PolicyKindView, id: String, enabled: bool) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let propose = proposer("report_schedules", kind.active.version, error);
    let doc = kind.active.content.clone();
    let change = move |remove: bool| {
        let mut d = doc.clone();
        if let Some(list) = d.get_mut("schedules").and_then(Value::as_array_mut) {
            if remove {
                list.retain(|x| x.get("id").and_then(Value::as_str) != Some(id.as_str()));
            } else if let Some(x) = list.iter_mut().find(|x| x.get("id").and_then(Value::as_str) == Some(id.as_str())) {
                x["enabled"] = json!(!enabled);
            }
        }
        let what = if remove {
            "remove"
        } else if enabled {
            "turn off"
        } else {
            "turn on"
        };
        propose(d, format!("{what} the report schedule {id}"));
    };
    let toggle = change.clone();
    view! {
        <button type="button" class="small" data-testid="schedule-toggle" on:click=move |_| toggle(false)>{if enabled { "Turn off…" } else { "Turn on…" }}</button>
        " "
        <button type="button" class="small danger" data-testid="schedule-remove" on:click=move |_| change(true)>"Remove…"</button>
        {move || error.get().map(|e| view! { <p class="error small" role="alert">{e}</p> })}
    }
}

/// Proposes a new schedule (the version in force plus one).
#[component]
fn ScheduleForm(
    kind: PolicyKindView,
    channels: RwSignal<Vec<(String, String, String)>>,
    can_redirect: Signal<bool>,
) -> impl IntoView {
    let doc = kind.active.content.clone();
    let error = RwSignal::new(None::<String>);
    let propose = proposer("report_schedules", kind.active.version, error);
    let frameworks = RwSignal::new(Vec::<ReportFramework>::new());
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            frameworks.set(get_json::<Vec<ReportFramework>>("/api/reports/frameworks").await.unwrap_or_default());
        });
    });
    let id = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let cron = RwSignal::new(String::new());
    let fw = RwSignal::new("pcidss4".to_owned());
    let per = RwSignal::new("previous_month".to_owned());
    let channel = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let keep = RwSignal::new("12".to_owned());
    let reason = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let addresses: Vec<String> = to
            .get_untracked()
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        let mut recipient = json!({"channel": channel.get_untracked()});
        if !addresses.is_empty() {
            recipient["to"] = json!(addresses);
        }
        let item = json!({
            "id": id.get_untracked().trim(), "name": name.get_untracked().trim(), "cron": cron.get_untracked().trim(),
            "framework": fw.get_untracked(), "period": per.get_untracked(), "recipients": [recipient],
            "keep": keep.get_untracked().trim().parse::<u32>().unwrap_or(0),
        });
        propose(with_item(&doc, "schedules", item), reason.get_untracked());
    };
    view! {
        {pending(&kind)}
        <form class="stack narrow" on:submit=submit data-testid="add-schedule">
            <h3>"Add a schedule"</h3>
            <label>"Id (a-z, 0-9, - and _)"<input type="text" data-testid="schedule-id" placeholder="pci-monthly" prop:value=id on:input=move |ev| id.set(event_target_value(&ev))/></label>
            <label>"Name"<input type="text" data-testid="schedule-name" placeholder="PCI DSS for the QSA" prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/></label>
            <label>"When: a cron expression, UTC (minute hour day month weekday)"
                <input type="text" class="mono" data-testid="schedule-cron" placeholder="0 6 1 * *" prop:value=cron on:input=move |ev| cron.set(event_target_value(&ev))/></label>
            <p class="small" data-testid="schedule-cron-preview" role="status">{move || {
                let c = cron.get();
                if c.trim().is_empty() {
                    "For example 0 6 1 * * (06:00 on the first of each month) or 30 7 * * mon (Mondays at 07:30).".to_owned()
                } else {
                    match cron_preview(&c) {
                        Ok(runs) if runs.is_empty() => "It never runs.".to_owned(),
                        Ok(runs) => format!("Next runs: {}", runs.join("; ")),
                        Err(e) => format!("Not a cron expression: {e}"),
                    }
                }
            }}</p>
            <label>"Framework"
                <select data-testid="schedule-framework" on:change=move |ev| fw.set(event_target_value(&ev))>
                    {move || frameworks.get().into_iter().map(|f| {
                        let fid = f.id.clone();
                        view! { <option value=f.id.clone() selected=move || fw.get() == fid>{f.name}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>"Period (from the day the run is due, UTC)"
                <select data-testid="schedule-period" on:change=move |ev| per.set(event_target_value(&ev))>
                    {REPORT_PERIODS.iter().map(|(v, l)| view! { <option value=*v selected=move || per.get() == *v>{*l}</option> }).collect_view()}
                </select>
            </label>
            <label>"Send to (a notification channel)"
                <select data-testid="schedule-channel" required on:change=move |ev| channel.set(event_target_value(&ev))>
                    <option value="">"choose…"</option>
                    {move || channels.get().into_iter().map(|(cid, cname, ctype)| view! {
                        <option value=cid.clone()>{format!("{cname} ({ctype})")}</option>
                    }).collect_view()}
                </select>
            </label>
            {move || channels.get().is_empty().then(|| view! { <p class="muted small">"No notification channel yet: add one on the "<a href="/notifications">"notifications page"</a>" first."</p> })}
            {move || can_redirect.get().then(|| view! {
                <label>"E-mail addresses instead of the channel's (optional, comma-separated)"
                    <input type="text" data-testid="schedule-to" placeholder="qsa@example.org" prop:value=to on:input=move |ev| to.set(event_target_value(&ev))/></label>
            })}
            <label>"Reports kept"<input type="number" min="1" max="1000" data-testid="schedule-keep" prop:value=keep on:input=move |ev| keep.set(event_target_value(&ev))/></label>
            <label>"Why (for the reviewers)"<input type="text" data-testid="schedule-reason" prop:value=reason on:input=move |ev| reason.set(event_target_value(&ev))/></label>
            <button type="submit" class="primary" data-testid="schedule-propose">"Propose"</button>
            {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="schedule-error">{e}</p> })}
        </form>
    }
    .into_any()
}

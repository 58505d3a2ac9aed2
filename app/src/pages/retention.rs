//! Retention: what is kept and for how long, what a run would remove now
//! (the dry-run), run now with progress, the runs, the legal holds, and
//! the archive catalogue with verify and download. Rules and holds are
//! proposals to the `retention` and `legal_holds` policies, reviewed like
//! any policy.

use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::{Value, json};

use super::policies::{pending, proposer, when, with_item};
use crate::client::{ClientError, get_json, send_json};
use crate::event::{
    ArchiveInfo, CATEGORIES, PolicyKindView, RETENTION_FRAMEWORKS, RETENTION_PRESETS, RetentionPlan, RetentionRun,
    RetentionStatus,
};

fn period(days: Option<u64>) -> String {
    match days {
        None => "forever".into(),
        Some(d) if d % 365 == 0 => format!("{} year(s) ({d} days)", d / 365),
        Some(d) => format!("{d} days"),
    }
}

/// The page.
#[component]
pub fn RetentionPage() -> impl IntoView {
    let me = expect_context::<crate::MeResource>();
    let can_manage =
        Signal::derive(move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("retention:manage")));
    let status = RwSignal::new(None::<Result<RetentionStatus, ClientError>>);
    let plan = RwSignal::new(None::<Result<RetentionPlan, ClientError>>);
    let runs = RwSignal::new(None::<Result<Vec<RetentionRun>, ClientError>>);
    let archives = RwSignal::new(None::<Result<Vec<ArchiveInfo>, ClientError>>);
    let rules = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let holds = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    let erasures = RwSignal::new(None::<Result<PolicyKindView, ClientError>>);
    // After an action: what it changes (the policy forms keep what was typed).
    let load = move || {
        leptos::task::spawn_local(async move {
            status.set(Some(get_json::<RetentionStatus>("/api/retention").await));
            runs.set(Some(get_json::<Vec<RetentionRun>>("/api/retention/runs?limit=20").await));
            archives.set(Some(get_json::<Vec<ArchiveInfo>>("/api/retention/archives").await));
            plan.set(Some(get_json::<RetentionPlan>("/api/retention/plan").await));
        });
    };
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            rules.set(Some(get_json::<PolicyKindView>("/api/policies/retention").await));
            holds.set(Some(get_json::<PolicyKindView>("/api/policies/legal_holds").await));
            erasures.set(Some(get_json::<PolicyKindView>("/api/policies/erasures").await));
        });
        load();
    });
    view! {
        <Title text="Retention"/>
        <h1>"Retention and legal hold"</h1>
        <p class="muted">"Events are kept for the longest period of the rules that match them, then archived and removed; a legal hold keeps what it covers whatever the period. A removed event leaves a tombstone (its position and hashes), so the chain and every proof of the events that stay still verify, under a signed record in the ledger. Rules and holds are proposals, reviewed like any policy. "
            <a href="/policies/trail?kind=retention">"Rules' trail →"</a>" "<a href="/policies/trail?kind=legal_holds">"Holds' trail →"</a></p>
        <StatusPanel status=status can_manage=can_manage reload=load/>
        <PlanPanel plan=plan/>
        {move || match rules.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <Rules kind=k can_manage=can_manage min_days=status.get_untracked().and_then(|s| s.ok()).map_or(365, |s| s.min_days)/> }.into_any(),
        }}
        {move || match holds.get() {
            None => ().into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <Holds kind=k can_manage=can_manage/> }.into_any(),
        }}
        {move || match erasures.get() {
            None => ().into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(k)) => view! { <Erasures kind=k can_manage=can_manage runs=runs/> }.into_any(),
        }}
        <RunsPanel runs=runs/>
        <ArchivesPanel archives=archives can_manage=can_manage reload=load/>
    }
}

#[component]
fn StatusPanel(
    status: RwSignal<Option<Result<RetentionStatus, ClientError>>>,
    can_manage: Signal<bool>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let running = RwSignal::new(None::<RetentionRun>);
    let error = RwSignal::new(None::<String>);
    let run_now = move |_| {
        error.set(None);
        leptos::task::spawn_local(async move {
            match send_json::<RetentionRun>("POST", "/api/retention/runs", None).await {
                Err(e) => error.set(Some(e.to_string())),
                Ok(mut run) => {
                    running.set(Some(run.clone()));
                    // Follow it until it ends.
                    while run.state == "running" {
                        crate::client::sleep_ms(500).await;
                        match get_json::<RetentionRun>(&format!("/api/retention/runs/{}", run.id)).await {
                            Ok(r) => run = r,
                            Err(e) => {
                                error.set(Some(e.to_string()));
                                break;
                            }
                        }
                        running.set(Some(run.clone()));
                    }
                    reload();
                }
            }
        });
    };
    view! {
        <section class="panel" data-testid="retention-status">
            <h2>"Now"</h2>
            {move || match status.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(s)) => view! {
                    <dl class="facts">
                        <dt>"Policy"</dt><dd data-testid="retention-summary">{format!("Version {}: {}", s.policy_version, s.summary)}</dd>
                        <dt>"Floor"</dt><dd>{format!("{} days (retention.min_days); below it only by an admin's recorded override", s.min_days)}</dd>
                        <dt>"Legal holds in force"</dt><dd data-testid="holds-active">{s.holds_active}</dd>
                        <dt>"Schedule"</dt><dd>{match (&s.schedule, &s.next_run) {
                            (Some(at), Some(next)) => format!("daily at {at} UTC; next {}", when(next)),
                            _ => "on demand only (retention.run_at = off)".into(),
                        }}</dd>
                        <dt>"Last run"</dt><dd data-testid="last-run">{s.last_run.as_ref().map_or("none yet".into(), |r| format!("{} ({}): {} removed, {} held", when(&r.started_at), r.state, r.removed, r.held))}</dd>
                        <dt>"Oldest event kept"</dt><dd>{s.oldest.as_ref().map_or("none".into(), |(seq, at)| format!("#{seq}, recorded {}", when(at)))}</dd>
                        <dt>"Removed so far"</dt><dd data-testid="removed-total">{s.removed_total}</dd>
                        <dt>"Cold copies"</dt><dd data-testid="cold-copies">{match (&s.cold_copies, s.cold_copied_through) {
                            (Some(every), Some(t)) => format!("{every}: sealed entries copied through #{t}"),
                            (Some(every), None) => format!("{every}: the first copy is made at the next tick"),
                            (None, _) => "off (retention.cold_copies)".into(),
                        }}</dd>
                        <dt>"Archives"</dt><dd class="small" data-testid="archive-where">{match &s.object_store {
                            Some(o) => format!("uploaded to {o} before anything is removed (staged in {})", s.archive_dir),
                            None => format!("{} (no object store configured)", s.archive_dir),
                        }}</dd>
                    </dl>
                }.into_any(),
            }}
            {move || can_manage.get().then(|| view! {
                <button type="button" class="primary" data-testid="run-now" on:click=run_now
                    disabled=move || running.get().is_some_and(|r| r.state == "running")>"Run now"</button>
            })}
            {move || running.get().map(|r| view! {
                <p data-testid="run-progress" class="small">{format!(
                    "Run {}: {} — looked at {} of {} positions, {} removed, {} kept by holds, {} archive(s){}",
                    &r.id[..8.min(r.id.len())], r.state, r.scanned, r.total, r.removed, r.held, r.archives,
                    r.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                )}</p>
            })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn PlanPanel(plan: RwSignal<Option<Result<RetentionPlan, ClientError>>>) -> impl IntoView {
    view! {
        <section class="panel" data-testid="retention-plan">
            <h2>"A run now would…"</h2>
            {move || match plan.get() {
                None => view! { <p class="muted">"Computing…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(p)) => view! {
                    <p data-testid="plan-summary">{format!("remove {} event(s); legal holds keep {} expired event(s) ({} positions looked at).", p.removable, p.held, p.scanned)}</p>
                    {(!p.by_category_month.is_empty()).then(|| view! {
                        <table class="data small" data-testid="plan-table">
                            <thead><tr><th>"Category"</th><th>"Recorded in"</th><th>"Events"</th></tr></thead>
                            <tbody>{p.by_category_month.iter().map(|c| view! {
                                <tr><td>{c.category.clone()}</td><td>{c.month.clone()}</td><td>{c.events}</td></tr>
                            }).collect_view()}</tbody>
                        </table>
                    })}
                    {(!p.by_hold.is_empty()).then(|| view! {
                        <p class="small">"Kept by holds: "{p.by_hold.iter().map(|(h, n)| format!("{h}: {n}")).collect::<Vec<_>>().join(", ")}</p>
                    })}
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Rules(kind: PolicyKindView, can_manage: Signal<bool>, min_days: u32) -> impl IntoView {
    let doc = kind.active.content.clone();
    let version = kind.active.version;
    let list: Vec<Value> = doc.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
    let error = RwSignal::new(None::<String>);
    let propose = proposer("retention", version, error);
    let remove = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |id: String| {
            let mut d = doc.clone();
            if let Some(rules) = d.get_mut("rules").and_then(Value::as_array_mut) {
                rules.retain(|r| r.get("id").and_then(Value::as_str) != Some(id.as_str()));
            }
            propose(d, format!("remove the retention rule {id}"));
        }
    };
    let default_days = doc.get("default_days").and_then(Value::as_u64);
    // The form.
    let id = RwSignal::new(String::new());
    let category = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let tenant = RwSignal::new(String::new());
    let preset = RwSignal::new("365".to_owned());
    let framework = RwSignal::new(String::new());
    let override_reason = RwSignal::new(String::new());
    let reason = RwSignal::new(String::new());
    let days = move || preset.get().parse::<u32>().ok();
    let submit = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let mut r = json!({"id": id.get_untracked().trim(), "days": days()});
            for (k, v) in [("category", category), ("action", action), ("tenant", tenant), ("framework", framework)] {
                let v = v.get_untracked().trim().to_owned();
                if !v.is_empty() {
                    r[k] = json!(v);
                }
            }
            if days().is_some_and(|d| d < min_days) {
                r["floor_override"] = json!(override_reason.get_untracked().trim());
            }
            let d = with_item(&doc, "rules", r);
            propose(d, reason.get_untracked());
        }
    };
    view! {
        <section class="panel" data-testid="retention-rules">
            <h2>"Rules"</h2>
            <p class="muted small">{format!("Version {version} in force: {}. When several rules match an event, the longest period applies; events no rule matches are kept {}.", kind.active.summary, period(default_days))}</p>
            {pending(&kind)}
            {if list.is_empty() {
                view! { <p class="muted" data-testid="no-rules">"No rule: every event is kept indefinitely."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="rules-table">
                        <thead><tr><th>"Rule"</th><th>"Events"</th><th>"Kept"</th><th>"Regime"</th><th></th></tr></thead>
                        <tbody>{list.iter().map(|r| {
                            let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
                            let rid = s("id").unwrap_or_default();
                            let scope: Vec<String> = [("category", s("category")), ("action", s("action")), ("tenant", s("tenant")), ("app", s("source_app"))]
                                .into_iter().filter_map(|(k, v)| v.map(|v| format!("{k} {v}"))).collect();
                            let remove = remove.clone();
                            let target = rid.clone();
                            view! {
                                <tr data-rule=rid.clone()>
                                    <td>{rid.clone()}</td>
                                    <td>{if scope.is_empty() { "every event".into() } else { scope.join(", ") }}</td>
                                    <td>{period(r.get("days").and_then(Value::as_u64))}{s("floor_override").map(|o| format!(" — below the floor: {o}"))}</td>
                                    <td>{s("framework").unwrap_or_default()}</td>
                                    <td>{move || can_manage.get().then(|| { let remove = remove.clone(); let target = target.clone(); view! {
                                        <button type="button" class="small danger" on:click=move |_| remove(target.clone())>"Remove…"</button>
                                    }})}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
            {move || can_manage.get().then(|| { let submit = submit.clone(); view! {
                <form class="stack narrow" on:submit=submit data-testid="add-rule">
                    <h3>"Add a rule"</h3>
                    <label>"Id (a-z, 0-9, - and _)"<input type="text" data-testid="rule-id" placeholder="tools-90d" prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/></label>
                    <label>"Category"
                        <select data-testid="rule-category" on:change=move |ev| category.set(event_target_value(&ev)) prop:value=move || category.get()>
                            <option value="">"any"</option>
                            {CATEGORIES.iter().map(|c| view! { <option value=*c>{*c}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"Action (exact, prefix.* or empty)"<input type="text" data-testid="rule-action" placeholder="user.*" prop:value=move || action.get() on:input=move |ev| action.set(event_target_value(&ev))/></label>
                    <label>"Tenant (empty: any)"<input type="text" data-testid="rule-tenant" prop:value=move || tenant.get() on:input=move |ev| tenant.set(event_target_value(&ev))/></label>
                    <label>"Kept for"
                        <select data-testid="rule-period" on:change=move |ev| {
                            let v = event_target_value(&ev);
                            if let Some((name, d, _)) = RETENTION_FRAMEWORKS.iter().find(|(n, _, _)| format!("fw:{n}") == v) {
                                framework.set((*name).into());
                                preset.set(d.to_string());
                            } else {
                                framework.set(String::new());
                                preset.set(v);
                            }
                        }>
                            {RETENTION_PRESETS.iter().map(|(label, d)| {
                                let v = d.map_or("forever".to_owned(), |d| d.to_string());
                                view! { <option value=v.clone() selected=v == "365">{*label}</option> }
                            }).collect_view()}
                            {RETENTION_FRAMEWORKS.iter().map(|(name, d, what)| view! {
                                <option value=format!("fw:{name}") title=*what>{format!("{name}: {}", period(Some(u64::from(*d))))}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    {move || days().is_some_and(|d| d < min_days).then(|| view! {
                        <label>{format!("Below the floor of {min_days} days: why (an admin's override; recorded)")}
                            <input type="text" data-testid="rule-override" prop:value=move || override_reason.get() on:input=move |ev| override_reason.set(event_target_value(&ev))/></label>
                    })}
                    <label>"Reason (required; recorded)"<input type="text" data-testid="rule-reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/></label>
                    <p class="small muted">"The proposal page shows what a run would remove under it (the dry-run) before anyone approves it."</p>
                    <button type="submit" class="primary" data-testid="submit-rule">"Submit for review"</button>
                </form>
            }})}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn Holds(kind: PolicyKindView, can_manage: Signal<bool>) -> impl IntoView {
    let doc = kind.active.content.clone();
    let version = kind.active.version;
    let list: Vec<Value> = doc.get("holds").and_then(Value::as_array).cloned().unwrap_or_default();
    let error = RwSignal::new(None::<String>);
    let propose = proposer("legal_holds", version, error);
    let release = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |id: String, why: String| {
            let mut d = doc.clone();
            if let Some(holds) = d.get_mut("holds").and_then(Value::as_array_mut) {
                for h in holds.iter_mut().filter(|h| h.get("id").and_then(Value::as_str) == Some(id.as_str())) {
                    h["released"] = json!({"reason": why.clone()});
                }
            }
            propose(d, format!("release the legal hold {id}: {why}"));
        }
    };
    let id = RwSignal::new(String::new());
    let case = RwSignal::new(String::new());
    let why = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let submit = {
        let (doc, propose) = (doc.clone(), propose.clone());
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let mut h = json!({"id": id.get_untracked().trim(), "case_id": case.get_untracked().trim(),
                "reason": why.get_untracked().trim(), "query": query.get_untracked().trim()});
            for (k, v) in [("from", from), ("to", to)] {
                let v = v.get_untracked().trim().to_owned();
                if !v.is_empty() {
                    h[k] = json!(v);
                }
            }
            let d = with_item(&doc, "holds", h);
            propose(
                d,
                format!("place the legal hold {} (case {})", id.get_untracked().trim(), case.get_untracked().trim()),
            );
        }
    };
    view! {
        <section class="panel" data-testid="legal-holds">
            <h2>"Legal holds"</h2>
            <p class="muted small">{format!("Version {version} in force: {}. A hold keeps every event it covers whatever the rules say; released holds stay listed. If a hold cannot be evaluated, nothing is removed.", kind.active.summary)}</p>
            {pending(&kind)}
            {if list.is_empty() {
                view! { <p class="muted">"No legal hold."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="holds-table">
                        <thead><tr><th>"Hold"</th><th>"Case"</th><th>"Keeps"</th><th>"Why"</th><th>"State"</th><th></th></tr></thead>
                        <tbody>{list.iter().map(|h| {
                            let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                            let hid = s("id");
                            let released = h.get("released").and_then(|r| r.get("reason")).and_then(Value::as_str).map(str::to_owned);
                            let period = match (h.get("from").and_then(Value::as_str), h.get("to").and_then(Value::as_str)) {
                                (None, None) => String::new(),
                                (a, b) => format!(" occurred {} – {}", a.unwrap_or("…"), b.unwrap_or("…")),
                            };
                            let q = s("query");
                            let keeps = format!("{}{period}", if q.is_empty() { "every event".into() } else { q });
                            let release = release.clone();
                            let target = hid.clone();
                            let note = RwSignal::new(String::new());
                            let is_released = released.is_some();
                            view! {
                                <tr data-hold=hid.clone()>
                                    <td>{hid.clone()}</td><td>{s("case_id")}</td><td>{keeps}</td><td>{s("reason")}</td>
                                    <td>{released.map_or("in force".into(), |r| format!("released: {r}"))}</td>
                                    <td>{move || (can_manage.get() && !is_released).then(|| { let release = release.clone(); let target = target.clone(); view! {
                                        <input type="text" class="small" placeholder="why release" prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))/>
                                        <button type="button" class="small" on:click=move |_| release(target.clone(), note.get_untracked())>"Release…"</button>
                                    }})}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
            {move || can_manage.get().then(|| { let submit = submit.clone(); view! {
                <form class="stack narrow" on:submit=submit data-testid="add-hold">
                    <h3>"Place a hold"</h3>
                    <label>"Id (a-z, 0-9, - and _)"<input type="text" data-testid="hold-id" prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/></label>
                    <label>"Case id"<input type="text" data-testid="hold-case" prop:value=move || case.get() on:input=move |ev| case.set(event_target_value(&ev))/></label>
                    <label>"Reason"<input type="text" data-testid="hold-reason" prop:value=move || why.get() on:input=move |ev| why.set(event_target_value(&ev))/></label>
                    <label>"Keeps (the explorer's filter: tenant, actor, resource_id, category…; empty: everything)"
                        <input type="text" data-testid="hold-query" placeholder="actor=alice&tenant=acme" prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev))/></label>
                    <label>"Occurred from (RFC 3339, optional)"<input type="text" placeholder="2026-01-01T00:00:00Z" prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev))/></label>
                    <label>"Occurred before (RFC 3339, optional)"<input type="text" prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev))/></label>
                    <button type="submit" class="primary" data-testid="submit-hold">"Submit for review"</button>
                </form>
            }})}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn RunsPanel(runs: RwSignal<Option<Result<Vec<RetentionRun>, ClientError>>>) -> impl IntoView {
    view! {
        <section class="panel" data-testid="retention-runs">
            <h2>"Runs"</h2>
            {move || match runs.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! { <p class="muted">"No run yet."</p> }.into_any(),
                Some(Ok(list)) => view! {
                    <table class="data small" data-testid="runs-table">
                        <thead><tr><th>"Started"</th><th>"By"</th><th>"Trigger"</th><th>"State"</th><th>"Removed"</th><th>"Held"</th><th>"Archives"</th><th>"Error"</th></tr></thead>
                        <tbody>{list.into_iter().map(|r| view! {
                            <tr data-state=r.state.clone()><td>{when(&r.started_at)}</td><td>{r.requested_by.clone()}</td><td>{r.trigger.clone()}</td><td>{r.state.clone()}</td>
                                <td>{r.removed}</td><td>{r.held}</td><td>{r.archives}</td><td>{r.error.clone().unwrap_or_default()}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn ArchivesPanel(
    archives: RwSignal<Option<Result<Vec<ArchiveInfo>, ClientError>>>,
    can_manage: Signal<bool>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let verify = move |name: String| {
        error.set(None);
        leptos::task::spawn_local(async move {
            match send_json::<ArchiveInfo>("POST", &format!("/api/retention/archives/{name}/verify"), None).await {
                Ok(_) => reload(),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <section class="panel" data-testid="archives">
            <h2>"Archives"</h2>
            <p class="muted small">"Before anything is removed it is written to an archive bundle: the entries as sealed, the signed checkpoint and a consistency proof. Anyone can check one offline with the public key: "<code>"custos verify --archive FILE --public-key KEY"</code>"."</p>
            {move || match archives.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! { <p class="muted">"No archive yet."</p> }.into_any(),
                Some(Ok(list)) => view! {
                    <table class="data small" data-testid="archives-table">
                        <thead><tr><th>"Archive"</th><th>"Range"</th><th>"Entries"</th><th>"Size"</th><th>"SHA-256"</th><th>"Verified"</th><th></th></tr></thead>
                        <tbody>{list.into_iter().map(|a| {
                            let name = a.name.clone();
                            let verified = match (a.verified_ok, &a.verified_at) {
                                (Some(true), Some(at)) => format!("intact ({})", when(at)),
                                (Some(false), Some(at)) => format!("FAILED ({}): {}", when(at), a.verified_detail.clone().unwrap_or_default()),
                                _ => "not yet".into(),
                            };
                            view! {
                                <tr data-archive=a.name.clone()>
                                    <td class="wrap">{a.name.clone()}<br/><span class="muted" data-testid="archive-location">{format!("{}; {}", match a.reason.as_str() { "cold_copy" => "cold copy", "erasure" => "erasure", "compaction" => "compaction", _ => "retention" }, if a.location == "object_store" { a.uri.clone() } else { "local directory".into() })}</span></td>
                                    <td>{format!("#{}–#{}", a.from_seq, a.through_seq)}</td>
                                    <td data-testid="archive-entries">{a.entries}</td>
                                    <td>{format!("{} KiB", a.bytes.div_ceil(1024))}</td>
                                    <td class="mono small">{a.sha256[..16.min(a.sha256.len())].to_owned()}"…"</td>
                                    <td data-testid="archive-verified">{verified}</td>
                                    <td>{move || can_manage.get().then(|| { let name = name.clone(); let n2 = name.clone(); view! {
                                        <button type="button" class="small" data-testid="verify-archive" on:click=move |_| verify(name.clone())>"Verify"</button>
                                        " "<a href=format!("/api/retention/archives/{n2}/download") download="">"Download"</a>
                                    }})}</td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn Erasures(
    kind: PolicyKindView,
    can_manage: Signal<bool>,
    runs: RwSignal<Option<Result<Vec<RetentionRun>, ClientError>>>,
) -> impl IntoView {
    let doc = kind.active.content.clone();
    let version = kind.active.version;
    let list: Vec<Value> = doc.get("requests").and_then(Value::as_array).cloned().unwrap_or_default();
    let error = RwSignal::new(None::<String>);
    let propose = proposer("erasures", version, error);
    let id = RwSignal::new(String::new());
    let subject = RwSignal::new(String::new());
    let why = RwSignal::new(String::new());
    let reference = RwSignal::new(String::new());
    let submit = {
        let doc = doc.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let mut r = json!({"id": id.get_untracked().trim(), "subject": subject.get_untracked().trim(),
                "reason": why.get_untracked().trim()});
            let reference = reference.get_untracked().trim().to_owned();
            if !reference.is_empty() {
                r["reference"] = json!(reference);
            }
            let d = with_item(&doc, "requests", r);
            propose(d, format!("erase {} (request {})", subject.get_untracked().trim(), id.get_untracked().trim()));
        }
    };
    // How each request went: its latest erasure run (runs are newest first).
    let state_of = move |rid: &str| -> String {
        runs.with(|r| {
            let run = r.as_ref().and_then(|r| r.as_ref().ok()).and_then(|list| {
                list.iter().find(|x| x.kind == "erasure" && x.request.as_deref() == Some(rid)).cloned()
            });
            match run {
                Some(x) if x.state == "done" => format!("erased {} ({} kept by holds)", x.removed, x.held),
                Some(x) if x.state == "failed" => {
                    format!("failed: {} (tried again within the hour)", x.error.unwrap_or_default())
                }
                Some(x) => format!("{}…", x.state),
                None => "waiting for approval, or for the next minute's pass".to_owned(),
            }
        })
    };
    view! {
        <section class="panel" data-testid="erasures">
            <h2>"Erasure requests (GDPR Art. 17)"</h2>
            <p class="muted small">{format!("Version {version} in force: {}. A request names one data subject (an actor, a pseudonym as stored, or a resource). Once a second person approves it, that subject's events are archived and removed within a minute, except those under a legal hold (counted as held); the erasure is recorded. Filed requests stay listed.", kind.active.summary)}</p>
            {pending(&kind)}
            {(!list.is_empty()).then(|| view! {
                <table class="data small" data-testid="erasures-table">
                    <thead><tr><th>"Request"</th><th>"Subject"</th><th>"Why"</th><th>"Reference"</th><th>"State"</th></tr></thead>
                    <tbody>{list.iter().map(|r| {
                        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                        let rid = s("id");
                        let (key, attr) = (rid.clone(), rid.clone());
                        view! { <tr data-request=attr><td>{rid}</td><td>{s("subject")}</td><td>{s("reason")}</td><td>{s("reference")}</td><td data-testid="erasure-state">{move || state_of(&key)}</td></tr> }
                    }).collect_view()}</tbody>
                </table>
            })}
            {move || can_manage.get().then(|| { let submit = submit.clone(); view! {
                <form class="stack narrow" on:submit=submit data-testid="add-erasure">
                    <h3>"File a request"</h3>
                    <label>"Id (a-z, 0-9, - and _)"<input type="text" data-testid="erasure-id" placeholder="dsr-2027-17" prop:value=move || id.get() on:input=move |ev| id.set(event_target_value(&ev))/></label>
                    <label>"Subject (actor=…, or resource_id=…; tenant= may narrow it)"<input type="text" data-testid="erasure-subject" placeholder="actor=alice@example.org" prop:value=move || subject.get() on:input=move |ev| subject.set(event_target_value(&ev))/></label>
                    <label>"Why"<input type="text" data-testid="erasure-reason" prop:value=move || why.get() on:input=move |ev| why.set(event_target_value(&ev))/></label>
                    <label>"Reference (optional)"<input type="text" data-testid="erasure-reference" prop:value=move || reference.get() on:input=move |ev| reference.set(event_target_value(&ev))/></label>
                    <p class="small muted">"The proposal page shows how many events it would erase (the dry-run) before anyone approves it."</p>
                    <button type="submit" class="primary" data-testid="submit-erasure">"Submit for review"</button>
                </form>
            }})}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

//! The policy audit-trail explorer: every policy step across kinds from
//! the ledger, newest first, filtered in the URL (kind, step, actor,
//! source, from, to). Each entry opens to its diff (an application's
//! `details.before`/`after` too), approvers, the recorded details and the
//! ledger proof of the event (inclusion against a signed checkpoint).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_query_map};

use super::{DiffView, op_line, when};
use crate::client::{ClientError, encode, get_json};
use crate::event::{TrailEntry, TrailPage};

const FILTERS: [(&str, &str); 6] = [
    ("kind", "Policy (kind)"),
    ("step", "Step"),
    ("actor", "Who (actor id)"),
    ("source", "Source"),
    ("from", "From (RFC 3339)"),
    ("to", "To (RFC 3339)"),
];
const STEPS: [&str; 9] =
    ["proposed", "tested", "approved", "rejected", "withdrawn", "expired", "activated", "rolled_back", "rule_set"];

/// The trail page.
#[component]
pub fn TrailPage() -> impl IntoView {
    let query = use_query_map();
    let navigate = use_navigate();
    let current = Memo::new(move |_| {
        query.with(|q| FILTERS.iter().map(|(k, _)| (k.to_string(), q.get(k).unwrap_or_default())).collect::<Vec<_>>())
    });
    let draft = RwSignal::new(current.get_untracked());
    Effect::new(move |_| draft.set(current.get()));
    let qs = move |list: &[(String, String)]| {
        list.iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    };
    let items = RwSignal::new(Vec::<TrailEntry>::new());
    let cursor = RwSignal::new(None::<String>);
    let state = RwSignal::new(None::<Result<(), ClientError>>);
    Effect::new(move |_| {
        let q = qs(&current.get());
        state.set(None);
        leptos::task::spawn_local(async move {
            match get_json::<TrailPage>(&format!("/api/policies/trail?{q}&limit=50")).await {
                Ok(p) => {
                    items.set(p.items);
                    cursor.set(p.next_cursor);
                    state.set(Some(Ok(())));
                }
                Err(e) => state.set(Some(Err(e))),
            }
        });
    });
    let more = move |_| {
        let Some(c) = cursor.get_untracked() else { return };
        let q = qs(&current.get_untracked());
        leptos::task::spawn_local(async move {
            match get_json::<TrailPage>(&format!("/api/policies/trail?{q}&limit=50&cursor={}", encode(&c))).await {
                Ok(p) => {
                    items.update(|i| i.extend(p.items));
                    cursor.set(p.next_cursor);
                }
                Err(e) => state.set(Some(Err(e))),
            }
        });
    };
    let apply = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            navigate(&format!("/policies/trail?{}", qs(&draft.get_untracked())), NavigateOptions::default());
        }
    };
    let clear = move |_| navigate("/policies/trail", NavigateOptions::default());
    let me = expect_context::<crate::MeResource>();
    let can_export = move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("audit:export"));
    view! {
        <Title text="Policy audit trail"/>
        <p><a href="/policies">"← Policies"</a></p>
        <div class="page-head">
            <h1>"Policy audit trail"</h1>
            {move || can_export().then(|| view! {
                <span class="small">"Export (all policy events): "
                    <a href="/api/audit/export?format=csv&category=policy" data-testid="export-csv">"CSV"</a>" · "
                    <a href="/api/audit/export?format=json&category=policy">"JSON"</a></span>
            })}
        </div>
        <p class="lead">"Every step of every policy, as the ledger recorded it: proposals, tests, approvals, rejections, withdrawals, expiries, activations and rollbacks, and the policy events applications send."</p>
        <form class="filters" on:submit=apply data-testid="trail-filters">
            {FILTERS.iter().enumerate().map(|(i, (k, label))| {
                let value = move || draft.with(|d| d[i].1.clone());
                let set = move |v: String| draft.update(|d| d[i].1 = v);
                match *k {
                    "step" => view! {
                        <label>{*label}
                            <select name=*k on:change=move |ev| set(event_target_value(&ev)) prop:value=value>
                                <option value="">"any"</option>
                                {STEPS.iter().map(|s| view! { <option value=*s>{s.replace('_', " ")}</option> }).collect_view()}
                            </select>
                        </label>
                    }.into_any(),
                    "source" => view! {
                        <label>{*label}
                            <select name=*k on:change=move |ev| set(event_target_value(&ev)) prop:value=value>
                                <option value="">"any"</option>
                                <option value="custos">"Custos (policy store)"</option>
                                <option value="applications">"Applications"</option>
                            </select>
                        </label>
                    }.into_any(),
                    _ => view! {
                        <label>{*label}<input type="text" name=*k prop:value=value on:input=move |ev| set(event_target_value(&ev))/></label>
                    }.into_any(),
                }
            }).collect_view()}
            <div class="actions"><button type="submit" class="primary">"Apply"</button><button type="button" on:click=clear>"Clear"</button></div>
        </form>
        {move || match state.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(())) if items.with(Vec::is_empty) => view! { <div class="empty"><p>"No policy step matches."</p></div> }.into_any(),
            Some(Ok(())) => view! {
                <ol class="timeline" data-testid="trail">
                    {items.get().into_iter().map(|e| view! { <Entry e=e/> }).collect_view()}
                </ol>
                {move || cursor.get().is_some().then(|| view! { <button type="button" on:click=more>"Load more"</button> })}
            }.into_any(),
        }}
    }
}

#[component]
fn Entry(e: TrailEntry) -> impl IntoView {
    let proof = RwSignal::new(None::<Result<serde_json::Value, ClientError>>);
    let id = e.event_id.clone();
    let load_proof = move |_| {
        let id = id.clone();
        leptos::task::spawn_local(
            async move { proof.set(Some(get_json(&format!("/api/audit/{}", encode(&id))).await)) },
        );
    };
    let who = e.actor_name.clone().unwrap_or_else(|| e.actor.clone());
    let failed = e.outcome != "success";
    let headline = format!(
        "{}{}{}",
        e.kind,
        e.version.map(|v| format!(" → version {v}")).unwrap_or_default(),
        if e.alone { " (approved without a second person)" } else { "" }
    );
    let has_diff = !e.diff.is_empty();
    let before_after = match (&e.before, &e.after) {
        (Some(b), Some(a)) => Some((b.clone(), a.clone())),
        _ => None,
    };
    view! {
        <li class=format!("step step-{}{}", e.step, if failed { " failed" } else { "" }) data-testid="trail-entry" data-step=e.step.clone()>
            <details>
                <summary>
                    <span class="when">{when(&e.at)}</span>" "
                    <span class=format!("tag step-tag step-{}", e.step)>{e.step.replace('_', " ")}</span>" "
                    <strong>{headline}</strong>" by "<span data-testid="trail-actor">{who}</span>
                    {(e.application.as_deref() != Some("custos")).then(|| view! { " "<span class="tag">{format!("from {}", e.application.clone().unwrap_or_else(|| "an application".into()))}</span> })}
                    {failed.then(|| view! { " "<span class="tag status-fail">{e.outcome.clone()}</span> })}
                    {e.text.clone().map(|t| view! { <div class="muted small">{t}</div> })}
                </summary>
                <div class="entry-body">
                    <dl class="facts small">
                        <dt>"Action"</dt><dd><code>{e.action.clone()}</code>{format!(" (seq {}, {})", e.seq, e.severity)}</dd>
                        {e.proposal.clone().map(|p| view! { <dt>"Proposal"</dt><dd><a href=format!("/policies/proposals/{p}")>{p.clone()}</a></dd> })}
                        {(!e.approvers.is_empty()).then(|| view! { <dt>"Approvers"</dt><dd data-testid="trail-approvers">{e.approvers.join(", ")}</dd> })}
                        {e.sha256.clone().map(|s| view! { <dt>"SHA-256"</dt><dd><code class="wrap">{s}</code></dd> })}
                    </dl>
                    {match before_after {
                        Some((b, a)) => view! { <DiffView before=b after=a patch=e.diff.clone() left="Before" right="After"/> }.into_any(),
                        None if has_diff => view! {
                            <ul class="patch-list" data-testid="trail-diff">{e.diff.iter().map(|op| {
                                let (o, p, v) = op_line(op);
                                view! { <li><span class=format!("tag op-{o}")>{o.clone()}</span>" "<code>{p}</code>" "<code class="muted">{v}</code></li> }
                            }).collect_view()}</ul>
                        }.into_any(),
                        None => ().into_any(),
                    }}
                    {e.details.clone().filter(|d| d.get("counts").is_some()).map(|d| view! {
                        <table class="data compact"><thead><tr><th>"Rule"</th><th>"With the version in force"</th><th>"With the proposal"</th></tr></thead>
                        <tbody>{d["counts"].as_array().cloned().unwrap_or_default().into_iter().map(|c| view! {
                            <tr><td>{c["label"].as_str().unwrap_or_default().to_owned()}</td><td>{c["current"].to_string()}</td><td>{c["proposed"].to_string()}</td></tr>
                        }).collect_view()}</tbody></table>
                    })}
                    <details class="raw"><summary>"Everything recorded"</summary>
                        <pre class="json">{e.details.as_ref().map(|d| serde_json::to_string_pretty(d).unwrap_or_default()).unwrap_or_default()}</pre>
                    </details>
                    <button type="button" class="small" on:click=load_proof data-testid="load-proof">"Ledger proof"</button>
                    {move || proof.get().map(|p| match p {
                        Ok(v) => view! { <crate::pages::events::Integrity v=v/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    })}
                </div>
            </details>
        </li>
    }
}

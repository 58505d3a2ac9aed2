//! The review of one proposal: what changes (side by side, and as JSON
//! Patch), its dry-run, the decisions so far, and approve / reject with a
//! comment. The author's own approve button is disabled (and the server
//! refuses it anyway); while nobody else can approve, the author may
//! activate alone, recorded as such.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::{DiffView, TestReportView, when};
use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{PolicyVersion, Proposal, TestReport};

/// The review page.
#[component]
pub fn ReviewPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").unwrap_or_default()));
    let me = expect_context::<crate::MeResource>();
    let me_now = move || me.get().and_then(|r| r.ok().flatten());
    let proposal = RwSignal::new(None::<Result<Proposal, ClientError>>);
    let before = RwSignal::new(None::<PolicyVersion>);
    let load = move || {
        let id = id.get_untracked();
        leptos::task::spawn_local(async move {
            let p = get_json::<Proposal>(&format!("/api/policies/proposals/{}", encode(&id))).await;
            if let Ok(p) = &p
                && let Ok(v) =
                    get_json::<PolicyVersion>(&format!("/api/policies/{}/versions/{}", encode(&p.kind), p.based_on))
                        .await
            {
                before.set(Some(v));
            }
            proposal.set(Some(p));
        });
    };
    Effect::new(move |_| {
        id.track();
        load();
    });
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let act = move |what: &'static str| {
        let id = id.get_untracked();
        busy.set(true);
        error.set(None);
        let body = (what != "activate").then(|| serde_json::json!({ "comment": comment.get_untracked() }).to_string());
        leptos::task::spawn_local(async move {
            match send_json::<Proposal>("POST", &format!("/api/policies/proposals/{}/{what}", encode(&id)), body).await
            {
                Ok(p) => proposal.set(Some(Ok(p))),
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    };
    let rerun = RwSignal::new(None::<Result<TestReport, ClientError>>);
    let run_test = move |_| {
        let Some(Ok(p)) = proposal.get_untracked() else { return };
        let body = serde_json::json!({ "content": p.content }).to_string();
        leptos::task::spawn_local(async move {
            rerun.set(Some(
                send_json::<TestReport>("POST", &format!("/api/policies/{}/test", encode(&p.kind)), Some(body)).await,
            ));
        });
    };
    view! {
        <Title text="Review a policy change"/>
        <p><a href="/policies">"← Policies"</a></p>
        {move || match proposal.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(p)) => {
                let mine = me_now().is_some_and(|m| m.principal == p.author);
                let can_approve = me_now().is_some_and(|m| m.can("policy:approve"));
                let pending = p.state == "pending";
                let got = p.decisions.iter().filter(|d| d.decision == "approved").count();
                view! {
                    <h1>{format!("Change to the {} policy", p.kind)}</h1>
                    <dl class="facts" data-testid="proposal">
                        <dt>"State"</dt><dd><span class=format!("tag state-{}", p.state) data-testid="proposal-state">{p.state.clone()}</span>
                            {p.version.map(|v| format!(" — became version {v}"))}{p.alone.then_some(" — approved without a second person")}</dd>
                        <dt>"Proposed by"</dt><dd data-testid="proposal-author">{format!("{} on {}", p.author_name, when(&p.proposed_at))}</dd>
                        <dt>"Reason"</dt><dd>{p.reason.clone()}</dd>
                        <dt>"Changes version"</dt><dd>{p.based_on}{p.restores.map(|r| format!(" (a rollback to version {r})"))}</dd>
                        <dt>"Approvals"</dt><dd>{format!("{got} of {} needed", p.approvals_needed)}</dd>
                        <dt>"Expires"</dt><dd>{when(&p.expires_at)}</dd>
                        <dt>"SHA-256"</dt><dd><code class="wrap">{p.sha256.clone()}</code></dd>
                    </dl>
                    <section class="panel">
                        <h2>"What changes"</h2>
                        {move || before.get().map(|b| view! { <p class="muted small">{format!("Version {}: {}", b.version, b.summary)}</p> })}
                        <p class="small"><strong>"Proposed: "</strong>{p.summary.clone()}</p>
                        {
                            let (after, patch) = (p.content.clone(), p.diff.clone());
                            move || before.get().map(|b| view! {
                                <DiffView before=b.content after=after.clone() patch=patch.clone() left=format!("Version {}", b.version) right="Proposed"/>
                            })
                        }
                    </section>
                    <section class="panel">
                        <h2>"Dry-run on recent events"</h2>
                        {p.test.clone().map(|t| view! { <TestReportView report=t/> })}
                        <button type="button" class="small" on:click=run_test data-testid="rerun-test">"Run it again, with examples"</button>
                        {move || rerun.get().map(|r| match r {
                            Ok(r) => view! { <TestReportView report=r/> }.into_any(),
                            Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                        })}
                    </section>
                    <section class="panel">
                        <h2>"Decisions"</h2>
                        {if p.decisions.is_empty() {
                            view! { <p class="muted">"None yet."</p> }.into_any()
                        } else {
                            view! { <ul data-testid="decisions">{p.decisions.iter().map(|d| view! {
                                <li><strong>{d.name.clone()}</strong>{format!(" {} on {}", d.decision.replace('_', " "), when(&d.at))}
                                    {(!d.comment.is_empty()).then(|| view! { ": "<q>{d.comment.clone()}</q> })}</li>
                            }).collect_view()}</ul> }.into_any()
                        }}
                        {pending.then(|| view! {
                            <div class="stack narrow">
                                <label>"Comment (required to reject; recorded in the ledger)"
                                    <textarea rows="2" data-testid="comment" prop:value=move || comment.get() on:input=move |ev| comment.set(event_target_value(&ev))></textarea>
                                </label>
                                <div class="actions">
                                    <button type="button" class="primary" data-testid="approve"
                                        disabled=move || mine || !can_approve || busy.get()
                                        title=if mine { "You cannot approve your own proposal" } else if !can_approve { "Approving needs policy:approve" } else { "" }
                                        on:click=move |_| act("approve")>"Approve"</button>
                                    " "
                                    <button type="button" class="danger" data-testid="reject" disabled=move || mine || !can_approve || busy.get()
                                        on:click=move |_| act("reject")>"Reject"</button>
                                </div>
                                {mine.then(|| view! {
                                    <p class="muted small">"You proposed this: someone else must approve it. While nobody else can approve policies (a new installation), you may activate it alone; that is recorded as approved without a second person."</p>
                                    <div class="actions">
                                        <button type="button" data-testid="activate-alone" disabled=move || busy.get() on:click=move |_| act("activate")>"Activate without a second person"</button>
                                        <button type="button" class="danger" data-testid="withdraw" disabled=move || busy.get() on:click=move |_| act("withdraw")>"Withdraw"</button>
                                    </div>
                                })}
                            </div>
                        })}
                        {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="decision-error">{e}</p> })}
                    </section>
                    <p><a href=format!("/policies/trail?kind={}", encode(&p.kind))>"This policy's trail →"</a></p>
                }.into_any()
            }
        }}
    }
}

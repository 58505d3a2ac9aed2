//! Policies: every kind with its version in force and pending proposals
//! (`/policies`), the masking editor (`/policies/masking/edit`), the review
//! of a proposal (`/policies/proposals/:id`) and the trail explorer
//! (`/policies/trail`). Everything comes from `/api/policies` in the
//! browser; the server decides who may do what.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use serde_json::{Value, json};

use crate::client::{ClientError, encode, get_json, send_json};
use crate::event::{PatchOp, PolicyKindView, PolicyOverview, PolicyVersion, Proposal, TestReport};

pub mod alert_rules;
pub mod masking;
pub mod review;
pub mod trail;

/// `2026-12-01T10:00:00.123456Z` as `2026-12-01 10:00:00 UTC`.
pub(crate) fn when(s: &str) -> String {
    let s = s.split('.').next().unwrap_or(s).trim_end_matches('Z').replace('T', " ");
    if s.is_empty() { "—".into() } else { format!("{s} UTC") }
}

/// `doc` with `item` appended to its list `key` (made if missing).
pub(crate) fn with_item(doc: &Value, key: &str, item: Value) -> Value {
    let mut d = doc.clone();
    if !d.get(key).is_some_and(Value::is_array) {
        d[key] = json!([]);
    }
    if let Some(list) = d[key].as_array_mut() {
        list.push(item);
    }
    d
}

/// Proposes `content` to `kind`, then opens the proposal.
pub(crate) fn proposer(
    kind: &'static str,
    version: u64,
    error: RwSignal<Option<String>>,
) -> impl Fn(Value, String) + Clone {
    let navigate = use_navigate();
    move |content: Value, reason: String| {
        let navigate = navigate.clone();
        error.set(None);
        let body = json!({ "content": content, "based_on": version, "reason": reason }).to_string();
        leptos::task::spawn_local(async move {
            match send_json::<Proposal>("POST", &format!("/api/policies/{kind}/proposals"), Some(body)).await {
                Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    }
}

pub(crate) fn pending(kind: &PolicyKindView) -> impl IntoView + use<> {
    (!kind.pending.is_empty()).then(|| {
        view! {
            <p class="small">"Waiting for review: "
                {kind.pending.iter().map(|p| view! { <a href=format!("/policies/proposals/{}", p.id)>{p.reason.clone()}</a>" " }).collect_view()}</p>
        }
    })
}

/// A JSON Pointer and what an operation does there, for people.
pub(crate) fn op_line(op: &PatchOp) -> (String, String, String) {
    let short = |v: &serde_json::Value| {
        let t = v.to_string();
        if t.chars().count() > 120 { format!("{}…", t.chars().take(120).collect::<String>()) } else { t }
    };
    match op {
        PatchOp::Add { path, value } => ("add".into(), path.clone(), short(value)),
        PatchOp::Remove { path } => ("remove".into(), path.clone(), String::new()),
        PatchOp::Replace { path, value } => ("replace".into(), path.clone(), short(value)),
    }
}

/// One row of a side-by-side diff: the left line, the right line.
pub(crate) type Line = (Option<String>, Option<String>);

/// The lines of two documents side by side (a changed line on one row).
pub(crate) fn side_by_side(before: &serde_json::Value, after: &serde_json::Value) -> Vec<Line> {
    let a: Vec<String> = serde_json::to_string_pretty(before).unwrap_or_default().lines().map(str::to_owned).collect();
    let b: Vec<String> = serde_json::to_string_pretty(after).unwrap_or_default().lines().map(str::to_owned).collect();
    // Longest common subsequence of lines (documents are small).
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Some(a[i].clone()), Some(b[j].clone())));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push((None, Some(b[j].clone())));
            j += 1;
        } else {
            out.push((Some(a[i].clone()), None));
            i += 1;
        }
    }
    // Pair a removal with the addition right after it (a changed line).
    let mut paired: Vec<Line> = Vec::new();
    for row in out {
        match (paired.last_mut(), &row) {
            (Some((Some(_), r @ None)), (None, Some(added))) => *r = Some(added.clone()),
            _ => paired.push(row),
        }
    }
    paired
}

/// A side-by-side diff of two documents, with the JSON Patch below.
#[component]
pub fn DiffView(
    before: serde_json::Value,
    after: serde_json::Value,
    patch: Vec<PatchOp>,
    #[prop(into)] left: String,
    #[prop(into)] right: String,
) -> impl IntoView {
    // Changed lines with three lines of context; longer unchanged runs fold.
    let all = side_by_side(&before, &after);
    let changed: Vec<bool> = all.iter().map(|(l, r)| l.is_none() || l != r).collect();
    let last = all.len().saturating_sub(1);
    let near = |i: usize| (i.saturating_sub(3)..=(i + 3).min(last)).any(|k| changed[k]);
    let mut rows: Vec<Result<Line, usize>> = Vec::new();
    for (i, row) in all.into_iter().enumerate() {
        if near(i) {
            rows.push(Ok(row));
        } else if let Some(Err(n)) = rows.last_mut() {
            *n += 1;
        } else {
            rows.push(Err(1));
        }
    }
    view! {
        <div class="diff" data-testid="diff">
            <table class="diff-table">
                <thead><tr><th>{left}</th><th>{right}</th></tr></thead>
                <tbody>
                    {rows.into_iter().map(|row| {
                        let (l, r) = match row {
                            Ok(lr) => lr,
                            Err(n) => return view! { <tr class="gap"><td colspan="2">{format!("… {n} unchanged line(s) …")}</td></tr> }.into_any(),
                        };
                        let same = l.is_some() && l == r;
                        let lc = if same { "same" } else if l.is_some() { "removed" } else { "blank" };
                        let rc = if same { "same" } else if r.is_some() { "added" } else { "blank" };
                        view! { <tr><td class=lc><code>{l.unwrap_or_default()}</code></td><td class=rc><code>{r.unwrap_or_default()}</code></td></tr> }.into_any()
                    }).collect_view()}
                </tbody>
            </table>
            <details class="patch">
                <summary>{format!("JSON Patch (RFC 6902): {} operation(s)", patch.len())}</summary>
                <ul data-testid="patch">
                    {patch.iter().map(|op| {
                        let (o, p, v) = op_line(op);
                        view! { <li><span class=format!("tag op-{o}")>{o.clone()}</span>" "<code>{p}</code>" "<code class="muted">{v}</code></li> }
                    }).collect_view()}
                </ul>
            </details>
        </div>
    }
}

/// A dry-run report: per rule the values masked today and under the
/// proposal, with examples when the report has them.
#[component]
pub fn TestReportView(report: TestReport) -> impl IntoView {
    let period = match (&report.from, &report.to) {
        (Some(f), Some(t)) => format!("{} events, {} to {}", report.events, when(f), when(t)),
        _ => format!("{} events", report.events),
    };
    view! {
        <section class="test-report" data-testid="test-report">
            <p class="muted small">{format!("Sample: {period}.")}</p>
            <table class="data compact">
                <thead><tr><th>"Rule"</th><th>"With the version in force"</th><th>"With the proposal"</th><th>"Examples (as stored → proposed)"</th></tr></thead>
                <tbody>
                    {report.rows.into_iter().map(|r| {
                        let changed = r.current != r.proposed;
                        view! {
                            <tr class=if changed { "changed" } else { "" }>
                                <td>{r.label.clone()}</td>
                                <td class="num">{r.current}</td>
                                <td class="num" data-testid="test-proposed">{r.proposed}</td>
                                <td>{r.examples.into_iter().map(|e| view! {
                                    <div class="example"><code>{e.before}</code>" → "<code>{e.after}</code></div>
                                }).collect_view()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {report.notes.into_iter().map(|n| view! { <p class="muted small">{n}</p> }).collect_view()}
        </section>
    }
}

/// Who decided, for a version or proposal.
pub(crate) fn approvers_line(list: &[crate::event::Decided], alone: bool) -> String {
    if alone {
        return "approved without a second person (nobody else could approve)".into();
    }
    let names: Vec<&str> = list.iter().filter(|d| d.decision == "approved").map(|d| d.name.as_str()).collect();
    if names.is_empty() { "—".into() } else { format!("approved by {}", names.join(", ")) }
}

/// The policies page.
#[component]
pub fn PoliciesPage() -> impl IntoView {
    let me = expect_context::<crate::MeResource>();
    let can = move |p: &str| me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can(p));
    let data = RwSignal::new(None::<Result<PolicyOverview, ClientError>>);
    let reload = RwSignal::new(0u32);
    Effect::new(move |_| {
        reload.track();
        leptos::task::spawn_local(async move { data.set(Some(get_json::<PolicyOverview>("/api/policies").await)) });
    });
    view! {
        <Title text="Policies"/>
        <div class="page-head">
            <h1>"Policies"</h1>
            <a href="/policies/trail" data-testid="trail-link">"Policy audit trail →"</a>
        </div>
        <p class="lead">"Every change is a proposal with a reason, tried on recent events and approved by a second person before it becomes the next version. Each step is recorded in the ledger."</p>
        {move || match data.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(o)) => o.kinds.into_iter().map(|k| {
                // Proposing needs the kind's own permission.
                let can_edit = can(&k.permission);
                view! { <KindPanel k=k can_edit=can_edit reload=reload/> }
            }).collect_view().into_any(),
        }}
    }
}

#[component]
fn KindPanel(k: PolicyKindView, can_edit: bool, reload: RwSignal<u32>) -> impl IntoView {
    let a = k.active.clone();
    let kind = k.kind.clone();
    let versions = RwSignal::new(None::<Result<Vec<PolicyVersion>, ClientError>>);
    let show_versions = RwSignal::new(false);
    let rollback_error = RwSignal::new(None::<String>);
    let navigate = leptos_router::hooks::use_navigate();
    let load_versions = {
        let kind = kind.clone();
        move |_| {
            show_versions.set(true);
            let kind = kind.clone();
            leptos::task::spawn_local(async move {
                #[derive(serde::Deserialize)]
                struct List {
                    versions: Vec<PolicyVersion>,
                }
                let r =
                    get_json::<List>(&format!("/api/policies/{}/versions", encode(&kind))).await.map(|l| l.versions);
                versions.set(Some(r));
            });
        }
    };
    let active_version = a.version;
    let rollback = {
        let kind = kind.clone();
        move |n: u64, reason: String| {
            let kind = kind.clone();
            let navigate = navigate.clone();
            leptos::task::spawn_local(async move {
                let body = serde_json::json!({ "based_on": active_version, "restores": n, "reason": reason });
                match send_json::<Proposal>(
                    "POST",
                    &format!("/api/policies/{}/proposals", encode(&kind)),
                    Some(body.to_string()),
                )
                .await
                {
                    Ok(p) => navigate(&format!("/policies/proposals/{}", p.id), Default::default()),
                    Err(e) => rollback_error.set(Some(e.to_string())),
                }
            });
        }
    };
    let rollback_reason = RwSignal::new(String::new());
    view! {
        <section class="panel policy-kind" data-testid=format!("kind-{}", k.kind)>
            <div class="page-head">
                <h2>{k.title.clone()}" "<span class="tag">{k.kind.clone()}</span></h2>
                {can_edit.then(|| match k.kind.as_str() {
                    "masking" => Some(view! { <a class="button primary" href="/policies/masking/edit" data-testid="edit-masking">"Propose a change"</a> }.into_any()),
                    "alert_rules" => Some(view! { <a class="button primary" href="/policies/alert_rules/edit" data-testid="edit-alert_rules">"Edit the rules"</a> }.into_any()),
                    "notifications" => Some(view! { <a class="button primary" href="/notifications" data-testid="edit-notifications">"Channels and delivery log"</a> }.into_any()),
                    _ => None,
                })}
            </div>
            <dl class="facts">
                <dt>"In force"</dt>
                <dd data-testid="active-version">{if a.version == 0 { "version 0 (built-in defaults)".to_owned() } else { format!("version {}", a.version) }}</dd>
                <dt>"Rules"</dt><dd>{a.summary.clone()}</dd>
                <dt>"Set by"</dt><dd>{if a.version == 0 { "—".to_owned() } else { format!("{} on {}", a.author_name, a.created_at.as_deref().map(when).unwrap_or_default()) }}</dd>
                <dt>"Approval"</dt><dd data-testid="active-approval">{approvers_line(&a.approvers, a.alone)}</dd>
                <dt>"Reason"</dt><dd>{a.reason.clone()}</dd>
                <dt>"SHA-256"</dt><dd><code class="wrap">{a.sha256.clone()}</code></dd>
                <dt>"Review rule"</dt><dd>{format!("{} approval(s) by someone other than the author, within {} days (needs {} to propose)", k.review.approvals, k.review.ttl_days, k.permission)}</dd>
            </dl>
            <h3>"Waiting for review"</h3>
            {if k.pending.is_empty() {
                view! { <p class="muted">"No pending proposal."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="pending">
                        <thead><tr><th>"Proposal"</th><th>"By"</th><th>"Proposed"</th><th>"Expires"</th><th>"Approvals"</th><th></th></tr></thead>
                        <tbody>
                            {k.pending.iter().map(|p| {
                                let got = p.decisions.iter().filter(|d| d.decision == "approved").count();
                                view! {
                                    <tr>
                                        <td>{p.reason.clone()}<br/><span class="muted small">{p.summary.clone()}</span></td>
                                        <td>{p.author_name.clone()}</td>
                                        <td>{when(&p.proposed_at)}</td>
                                        <td>{when(&p.expires_at)}</td>
                                        <td>{format!("{got} of {}", p.approvals_needed)}</td>
                                        <td><a href=format!("/policies/proposals/{}", p.id) data-testid="review-link">"Review"</a></td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
            <p>
                <button type="button" class="link" on:click=load_versions data-testid="show-versions">"Versions"</button>
                " · "<a href=format!("/policies/trail?kind={}", encode(&k.kind))>"Trail of this policy"</a>
            </p>
            <Show when=move || show_versions.get()>
                {
                    let rollback = rollback.clone();
                    move || match versions.get() {
                        None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                        Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                        Some(Ok(list)) => {
                            let rollback = rollback.clone();
                            view! {
                                <table class="data compact" data-testid="versions">
                                    <thead><tr><th>"Version"</th><th>"When"</th><th>"By"</th><th>"Approval"</th><th>"Reason"</th><th></th></tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|v| {
                                            let rollback = rollback.clone();
                                            let n = v.version;
                                            view! {
                                                <tr>
                                                    <td>{v.version}{v.restores.map(|r| format!(" (restores {r})"))}</td>
                                                    <td>{v.created_at.as_deref().map(when).unwrap_or_else(|| "built in".into())}</td>
                                                    <td>{v.author_name.clone()}</td>
                                                    <td>{approvers_line(&v.approvers, v.alone)}</td>
                                                    <td>{v.reason.clone()}</td>
                                                    <td>{(can_edit && n != active_version).then(|| view! {
                                                        <button type="button" class="small" on:click=move |_| {
                                                            let reason = rollback_reason.get_untracked();
                                                            if reason.trim().is_empty() {
                                                                rollback_error.set(Some("Give a reason for the rollback first.".into()));
                                                            } else {
                                                                rollback(n, reason);
                                                            }
                                                        }>{format!("Propose a rollback to {n}")}</button>
                                                    })}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                {can_edit.then(|| view! {
                                    <label>"Reason for a rollback"<input type="text" prop:value=move || rollback_reason.get() on:input=move |ev| rollback_reason.set(event_target_value(&ev))/></label>
                                })}
                                {move || rollback_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                            }.into_any()
                        }
                    }
                }
            </Show>
            <button type="button" class="link small" on:click=move |_| reload.update(|n| *n += 1)>"Reload"</button>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_line_sits_beside_its_replacement() {
        let rows = side_by_side(&json!({"a": 1, "b": 2, "c": [1]}), &json!({"a": 1, "b": 3, "c": [1, 2]}));
        assert!(rows.contains(&(Some("  \"b\": 2,".into()), Some("  \"b\": 3,".into()))), "{rows:?}");
        assert!(rows.contains(&(Some("  \"a\": 1,".into()), Some("  \"a\": 1,".into()))));
        assert!(rows.iter().any(|(l, r)| l.is_none() && r.as_deref() == Some("    2")), "{rows:?}");
        let ops = [PatchOp::Remove { path: "/rules/1".into() }];
        assert_eq!(op_line(&ops[0]), ("remove".into(), "/rules/1".into(), String::new()));
        assert_eq!(when("2026-12-01T10:00:00.123456Z"), "2026-12-01 10:00:00 UTC");
    }
}

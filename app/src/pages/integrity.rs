//! The integrity page: is the log intact? Run a verification (all or a
//! range) with the server's progress, the history of verifications (each a
//! ledger event), the signed checkpoints with their signature status, the
//! public key, and the data keys with rotation for admins.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::Deserialize;

use crate::MeResource;
use crate::client::{ClientError, get_json, send_json};
use crate::event::{EventView, KeyStatus};
use crate::live::thousands;

#[derive(Debug, Clone, Deserialize)]
struct Failure {
    seq: u64,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    detail: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Report {
    from_seq: u64,
    to_seq: u64,
    entries_checked: u64,
    #[serde(default)]
    checkpoints_matched: u64,
    failure: Option<Failure>,
}

#[derive(Debug, Clone, Deserialize)]
struct Job {
    state: custos_model::JobState,
    checked: u64,
    total: u64,
    report: Option<Report>,
    error: Option<String>,
    status_url: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Checkpoint {
    tree_size: u64,
    root_hash: String,
    created_at: String,
    signature_verified: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Checkpoints {
    public_key: String,
    checkpoints: Vec<Checkpoint>,
}

fn failure_text(f: &Failure) -> String {
    let why = if f.detail.is_empty() { &f.kind } else { &f.detail };
    format!("FAILED at seq {}: {why}", f.seq)
}

/// The integrity page.
#[component]
pub fn IntegrityPage() -> impl IntoView {
    let me = expect_context::<MeResource>();
    let is_admin = move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("admin"));
    let history = RwSignal::new(None::<Result<Vec<EventView>, ClientError>>);
    let checkpoints = RwSignal::new(None::<Result<Checkpoints, ClientError>>);
    let keys = RwSignal::new(None::<Result<KeyStatus, ClientError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            history.set(Some(get_json("/api/audit/verifications?limit=20").await));
            checkpoints.set(Some(get_json("/api/audit/checkpoints?limit=10").await));
            keys.set(Some(get_json("/api/keys").await));
        });
    };
    Effect::new(move |_| load());
    view! {
        <Title text="Integrity"/>
        <div class="page-head"><h1>"Integrity"</h1></div>
        <p class="lead">"Verification recomputes every entry's MAC, leaf and chain hash and the Merkle roots that the signed checkpoints sign. Anyone can repeat it offline with "<code>"custos verify"</code>" and the public key."</p>
        <VerifyPanel on_done=move || load()/>
        <section class="panel" aria-label="Verification history" data-testid="history">
            <h2>"Verification history"</h2>
            {move || match history.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(v)) if v.is_empty() => view! { <p class="empty">"No verification yet."</p> }.into_any(),
                Some(Ok(v)) => view! {
                    <div class="table-wrap"><table class="compact">
                        <thead><tr><th>"When (UTC)"</th><th>"By"</th><th>"Range"</th><th class="num">"Entries"</th><th>"Result"</th></tr></thead>
                        <tbody>{v.into_iter().map(|e| {
                            let report: Option<Report> = e.details.as_ref().and_then(|d| d.get("report")).and_then(|r| serde_json::from_value(r.clone()).ok());
                            let result = match (&report, e.outcome.as_str()) {
                                (Some(r), _) => match &r.failure { Some(f) => failure_text(f), None => "intact".into() },
                                (None, o) => format!("did not complete ({o})"),
                            };
                            let ok = result == "intact";
                            view! {
                                <tr data-seq=e.seq>
                                    <td>{e.recorded_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                    <td>{e.actor.name.clone().unwrap_or(e.actor.id.clone())}</td>
                                    <td>{report.as_ref().map(|r| format!("{}–{}", r.from_seq, r.to_seq)).unwrap_or_default()}</td>
                                    <td class="num">{report.as_ref().map(|r| thousands(r.entries_checked)).unwrap_or_default()}</td>
                                    <td><span class=if ok { "tag status-pass" } else { "tag status-fail" }>{result}</span></td>
                                </tr>
                            }
                        }).collect_view()}</tbody>
                    </table></div>
                }.into_any(),
            }}
        </section>
        <section class="panel" aria-label="Signed checkpoints" data-testid="checkpoints">
            <h2>"Signed checkpoints"</h2>
            {move || match checkpoints.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(c)) => view! {
                    <p class="muted small">"Public key: "<code data-testid="public-key">{c.public_key.clone()}</code>" "
                        <a href="/api/audit/public-key" download data-testid="download-key">"Download the public key"</a></p>
                    <div class="table-wrap"><table class="compact">
                        <thead><tr><th>"Signed at (UTC)"</th><th class="num">"Tree size"</th><th>"Root hash"</th><th>"Signature"</th></tr></thead>
                        <tbody>{c.checkpoints.into_iter().map(|k| view! {
                            <tr>
                                <td>{k.created_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                <td class="num">{thousands(k.tree_size)}</td>
                                <td><code>{k.root_hash.chars().take(16).collect::<String>()}"…"</code></td>
                                <td><span class=if k.signature_verified { "tag status-pass" } else { "tag status-fail" } data-testid="signature">
                                    {if k.signature_verified { "verified" } else { "does NOT verify" }}</span></td>
                            </tr>
                        }).collect_view()}</tbody>
                    </table></div>
                }.into_any(),
            }}
        </section>
        <section class="panel" aria-label="Keys" data-testid="keys">
            <h2>"Keys"</h2>
            {move || match keys.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                Some(Ok(k)) => view! {
                    <p data-testid="key-status">{format!("New events are sealed with data key {}, created {} days ago.", k.current_key_id, k.current_key_age_days)}</p>
                    <div class="table-wrap"><table class="compact">
                        <thead><tr><th>"Key"</th><th>"Purpose"</th><th>"Created (UTC)"</th><th></th></tr></thead>
                        <tbody>{k.keys.into_iter().map(|x| view! {
                            <tr><td>{x.key_id}</td><td>{x.purpose.clone()}</td>
                                <td>{x.created_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                <td>{x.current.then_some("in use")}</td></tr>
                        }).collect_view()}</tbody>
                    </table></div>
                }.into_any(),
            }}
            <Show when=is_admin>
                <RotateButton keys/>
            </Show>
        </section>
    }
}

#[component]
fn RotateButton(keys: RwSignal<Option<Result<KeyStatus, ClientError>>>) -> impl IntoView {
    let busy = RwSignal::new(false);
    let message = RwSignal::new(None::<String>);
    let rotate = move |_| {
        #[cfg(feature = "hydrate")]
        if !web_sys::window()
            .and_then(|w| w.confirm_with_message("Rotate the data key? New events will be sealed with a new key; old keys stay to read older events.").ok())
            .unwrap_or(false)
        {
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match send_json::<KeyStatus>("POST", "/api/keys/rotate", None).await {
                Ok(k) => {
                    message.set(Some(format!("Rotated: new events are sealed with data key {}.", k.current_key_id)));
                    keys.set(Some(Ok(k)));
                }
                Err(e) => message.set(Some(format!("Rotation failed: {e}"))),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="toolbar">
            <button data-testid="rotate" disabled=move || busy.get() on:click=rotate>"Rotate the data key"</button>
            <span role="status" data-testid="rotate-result">{move || message.get()}</span>
        </div>
    }
}

/// Start a verification and follow it.
#[component]
fn VerifyPanel(on_done: impl Fn() + Clone + Send + Sync + 'static) -> impl IntoView {
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let job = RwSignal::new(None::<Job>);
    let error = RwSignal::new(None::<String>);
    let running = move || job.with(|j| j.as_ref().is_some_and(|j| j.state == custos_model::JobState::Running));
    let start = move |_| {
        let on_done = on_done.clone();
        error.set(None);
        let mut body = serde_json::Map::new();
        for (k, v) in [("from_seq", from.get_untracked()), ("to_seq", to.get_untracked())] {
            if !v.trim().is_empty() {
                match v.trim().parse::<u64>() {
                    Ok(n) => {
                        body.insert(k.into(), n.into());
                    }
                    Err(_) => {
                        error.set(Some(format!("{k}: must be a whole number")));
                        return;
                    }
                }
            }
        }
        let body = serde_json::Value::Object(body).to_string();
        leptos::task::spawn_local(async move {
            let mut current = match send_json::<Job>("POST", "/api/audit/verify", Some(body)).await {
                Ok(j) => j,
                Err(e) => {
                    error.set(Some(e.to_string()));
                    return;
                }
            };
            job.set(Some(current.clone()));
            while current.state == custos_model::JobState::Running {
                crate::client::sleep_ms(200).await;
                match get_json::<Job>(&current.status_url).await {
                    Ok(j) => current = j,
                    Err(e) => {
                        error.set(Some(e.to_string()));
                        return;
                    }
                }
                job.set(Some(current.clone()));
            }
            on_done();
        });
    };
    let percent = move || {
        job.with(|j| match j {
            Some(j) if j.state != custos_model::JobState::Running => 100.0,
            Some(j) if j.total > 0 => (j.checked as f64 * 100.0 / j.total as f64).min(100.0),
            _ => 0.0,
        })
    };
    view! {
        <section class="panel" aria-label="Verify" data-testid="verify">
            <h2>"Verify the ledger"</h2>
            <div class="toolbar">
                <label>"From seq"<input type="text" inputmode="numeric" placeholder="first" data-testid="from-seq"
                    prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev))/></label>
                <label>"To seq"<input type="text" inputmode="numeric" placeholder="head" data-testid="to-seq"
                    prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev))/></label>
                <button class="primary" data-testid="verify-start" disabled=running on:click=start>
                    {move || if running() { "Verifying…" } else { "Verify" }}
                </button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || job.get().map(|j| {
                let result = match (j.state.as_str(), &j.report, &j.error) {
                    ("running", _, _) => format!("{} of {} entries checked", thousands(j.checked), thousands(j.total)),
                    (_, Some(r), _) => match &r.failure {
                        Some(f) => failure_text(f),
                        None => format!("Intact: {} entries checked (seq {}–{}), {} checkpoint roots matched.", thousands(r.entries_checked), r.from_seq, r.to_seq, r.checkpoints_matched),
                    },
                    (_, None, Some(e)) => format!("The verification could not run: {e}"),
                    _ => j.state.to_string(),
                };
                let failed = j.report.as_ref().is_some_and(|r| r.failure.is_some()) || j.error.is_some();
                view! {
                    <div class="meter" role="progressbar" aria-valuemin="0" aria-valuemax="100"
                        aria-valuenow=move || format!("{:.0}", percent()) data-testid="verify-progress">
                        <div class="meter-bar" class:bad=failed style:width=move || format!("{:.1}%", percent())></div>
                    </div>
                    <p data-testid="verify-percent" class="muted small">{move || format!("{:.0} %", percent())}</p>
                    <p data-testid="verify-result" class:error=failed class:ok=!failed && j.state == custos_model::JobState::Done>{result}</p>
                }
            })}
        </section>
    }
}

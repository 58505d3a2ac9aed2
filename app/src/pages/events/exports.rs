//! Exports: a background export per click, its progress, then the file
//! and its signed manifest.

use super::*;
use custos_model::JobState;

/// Export buttons: a background export per click, its progress, then the
/// download and its signed manifest.
#[component]
pub(super) fn Exports(resolved: RwSignal<String>) -> impl IntoView {
    let job = RwSignal::new(None::<ExportJob>);
    let error = RwSignal::new(None::<ClientError>);
    let poll = move |id: String| {
        leptos::task::spawn_local(async move {
            loop {
                match get_json::<ExportJob>(&format!("/api/audit/exports/{id}")).await {
                    Ok(j) => {
                        let running = j.state == JobState::Running;
                        job.set(Some(j));
                        if !running {
                            break;
                        }
                    }
                    Err(e) => {
                        error.set(Some(e));
                        break;
                    }
                }
                sleep_ms(400).await;
            }
        });
    };
    let start = move |format: &'static str| {
        let api = resolved.get_untracked();
        error.set(None);
        leptos::task::spawn_local(async move {
            match send_json::<ExportJob>("POST", &format!("/api/audit/exports?format={format}&{api}"), None).await {
                Ok(j) => {
                    let id = j.id.to_string();
                    job.set(Some(j));
                    poll(id);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <div class="exports" data-testid="exports">
            <span class="muted">"Export"</span>
            {[("csv", "CSV"), ("json", "JSON"), ("ndjson", "NDJSON"), ("xlsx", "Excel"), ("pdf", "PDF")].into_iter().map(|(f, label)| view! {
                <button type="button" data-testid=format!("export-{f}") on:click=move |_| start(f)
                    disabled=move || job.with(|j| j.as_ref().is_some_and(|j| j.state == JobState::Running))>{label}</button>
            }).collect_view()}
            {move || job.get().map(|j| {
                let pct = j.total.filter(|t| *t > 0).map(|t| (j.rows as f64 * 100.0 / t as f64).min(100.0));
                let id = j.id.to_string();
                match j.state.as_str() {
                    "running" => view! {
                        <span class="progress" data-testid="export-progress">
                            <progress max="100" value=pct.unwrap_or(0.0).to_string()></progress>
                            {match j.total { Some(t) => format!("{} / {t} rows", j.rows), None => format!("{} rows", j.rows) }}
                        </span>
                    }.into_any(),
                    "done" => view! {
                        <span class="done" data-testid="export-done">
                            <a href=format!("/api/audit/exports/{id}/file") download=j.file_name.clone().unwrap_or_default() data-testid="export-download">
                                {format!("Download {} ({} rows)", j.format.to_uppercase(), j.rows)}
                            </a>
                            " · "
                            <a href=format!("/api/audit/exports/{id}/manifest") download="" data-testid="export-manifest">"Manifest"</a>
                        </span>
                    }.into_any(),
                    _ => view! { <span class="error" role="alert" data-testid="export-error">{j.error.unwrap_or_default()}</span> }.into_any(),
                }
            })}
            {move || error.get().map(|e| view! { <span class="error" role="alert" data-testid="export-error">{e.to_string()}</span> })}
        </div>
    }
}

use crate::client::sleep_ms;

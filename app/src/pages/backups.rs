//! Backups: the schedule and the last success, take one now with
//! progress, the list with downloads, and how to restore.

use leptos::prelude::*;
use leptos_meta::Title;

use super::policies::when;
use crate::client::{ClientError, get_json, send_json};
use crate::event::{BackupInfo, BackupStatus};

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct BackupsView {
    status: BackupStatus,
    backups: Vec<BackupInfo>,
}

fn size(bytes: u64) -> String {
    if bytes >= 10 << 20 { format!("{} MiB", bytes >> 20) } else { format!("{} KiB", bytes.div_ceil(1024)) }
}

/// The page.
#[component]
pub fn BackupsPage() -> impl IntoView {
    let me = expect_context::<crate::MeResource>();
    let can_manage = move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|m| m.can("retention:manage"));
    let view_ = RwSignal::new(None::<Result<BackupsView, ClientError>>);
    let load = move || {
        leptos::task::spawn_local(async move {
            view_.set(Some(get_json::<BackupsView>("/api/backups?limit=30").await));
        });
    };
    Effect::new(move |_| load());
    let taking = RwSignal::new(None::<BackupInfo>);
    let error = RwSignal::new(None::<String>);
    let take = move |_| {
        error.set(None);
        leptos::task::spawn_local(async move {
            match send_json::<BackupInfo>("POST", "/api/backups", None).await {
                Err(e) => error.set(Some(e.to_string())),
                Ok(mut b) => {
                    taking.set(Some(b.clone()));
                    while b.state == "running" {
                        crate::client::sleep_ms(500).await;
                        match get_json::<BackupInfo>(&format!("/api/backups/{}", b.name)).await {
                            Ok(x) => b = x,
                            Err(e) => {
                                error.set(Some(e.to_string()));
                                break;
                            }
                        }
                        taking.set(Some(b.clone()));
                    }
                    load();
                }
            }
        });
    };
    view! {
        <Title text="Backups"/>
        <h1>"Backups"</h1>
        <p class="muted">"A backup is a consistent copy of the database taken while events keep coming in, with a signed checkpoint, encrypted and authenticated under a key derived from the KEK: it opens only with that KEK, so keep the KEK apart from the backups."</p>
        {move || match view_.get() {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(v)) => {
                let s = v.status.clone();
                view! {
                    <section class="panel" data-testid="backup-status">
                        <h2>"Now"</h2>
                        {if s.supported {
                            view! {
                                <dl class="facts">
                                    <dt>"Last success"</dt><dd data-testid="last-backup">{s.last_success.as_ref().map_or("none yet".into(), |b| format!("{} — {}, head seq {}", when(&b.started_at), size(b.bytes), b.head_seq.unwrap_or_default()))}</dd>
                                    <dt>"Schedule"</dt><dd>{match (s.interval_hours, &s.next_due) {
                                        (Some(h), Some(next)) => format!("every {h} hour(s); next due {}; the newest {} kept", when(next), s.keep),
                                        _ => format!("on demand only (backup.interval_hours = 0); the newest {} kept", s.keep),
                                    }}</dd>
                                    <dt>"Written to"</dt><dd class="small" data-testid="backup-where">{match &s.object_store {
                                        Some(o) => format!("{}, then uploaded to {o} (kept here, with a warning, if the store refuses it)", s.dir),
                                        None => format!("{} only: put it on another disk, or configure [object_store]", s.dir),
                                    }}</dd>
                                </dl>
                            }.into_any()
                        } else {
                            view! { <p data-testid="backups-postgres">"This Custos runs on PostgreSQL: back it up with the database's own tools (pg_basebackup and WAL archiving for point-in-time recovery), then check every restored copy with "<code>"custos verify --with-kek"</code>". The README has the steps."</p> }.into_any()
                        }}
                        {(s.supported && can_manage()).then(|| view! {
                            <button type="button" class="primary" data-testid="backup-now" on:click=take
                                disabled=move || taking.get().is_some_and(|b| b.state == "running")>"Take a backup now"</button>
                        })}
                        {move || taking.get().map(|b| view! {
                            <p class="small" data-testid="backup-progress">{format!("{}: {}{}", b.name, b.state, b.error.map(|e| format!(": {e}")).unwrap_or_default())}</p>
                        })}
                        {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    </section>
                    <section class="panel" data-testid="backup-list">
                        <h2>"Backups"</h2>
                        {if v.backups.is_empty() {
                            view! { <p class="muted">"No backup yet."</p> }.into_any()
                        } else {
                            view! {
                                <table class="data small" data-testid="backups-table">
                                    <thead><tr><th>"Taken"</th><th>"By"</th><th>"State"</th><th>"Size"</th><th>"Head"</th><th>"SHA-256"</th><th></th></tr></thead>
                                    <tbody>{v.backups.into_iter().map(|b| {
                                        let href = format!("/api/backups/{}/download", b.name);
                                        let available = b.state == "done" && b.removed_at.is_none();
                                        view! {
                                            <tr data-state=b.state.clone()>
                                                <td>{when(&b.started_at)}<br/><span class="muted">{if b.location == "object_store" { b.uri.clone() } else { "local directory".into() }}</span></td><td>{format!("{} ({})", b.requested_by, b.trigger)}</td>
                                                <td>{if b.removed_at.is_some() { "deleted (beyond the newest kept)".into() } else { b.state.clone() }}{b.error.map(|e| format!(": {e}"))}</td>
                                                <td>{size(b.bytes)}</td><td>{b.head_seq.map(|h| format!("#{h}")).unwrap_or_default()}</td>
                                                <td class="mono small">{b.sha256.map(|h| format!("{}…", &h[..16.min(h.len())])).unwrap_or_default()}</td>
                                                <td>{(available && can_manage()).then(|| view! { <a href=href download="">"Download"</a> })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}</tbody>
                                </table>
                            }.into_any()
                        }}
                    </section>
                }.into_any()
            }
        }}
        <section class="panel">
            <h2>"Restoring"</h2>
            <ol class="small">
                <li>"A backup in the object store: download it here, or with any S3 client (aws s3 cp, mc cp, rclone) from the address in the list."</li>
                <li>"On the machine that will run Custos, with the same KEK (the key file, or CUSTOS_KEK): "<code>"custos backup restore FILE --to NEW_DIR --trusted-checkpoint CHECKPOINT"</code>". Every chunk is authenticated, the database's integrity checked, the whole ledger verified with the KEK, and you are told how many events the backup is behind a checkpoint you kept (from a SIEM, an export, an auditor)."</li>
                <li>"Copy the KEK file next to it (or point ledger.kek_file at it) and start Custos on it: "<code>"CUSTOS_DATA_DIR=NEW_DIR custos serve"</code>"."</li>
                <li>"Events recorded after the backup are not in it: replay them from their source, or from a SIEM that received them."</li>
            </ol>
        </section>
    }
}

//! The overview page: what this Custos is and how its ledger stands.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::get_status;
use crate::models::SystemStatus;

/// Overview of the running server, refreshed every few seconds.
#[component]
pub fn HomePage() -> impl IntoView {
    let status = Resource::new(|| (), |_| get_status());
    // Keep the numbers live once the page is interactive.
    Effect::new(move |_| {
        let handle = set_interval_with_handle(move || status.refetch(), std::time::Duration::from_secs(5));
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
    view! {
        <Title text="Overview"/>
        <h1>"Overview"</h1>
        <p class="lead">
            "Custos seals every audit event into an encrypted, hash-chained, signed ledger. "
            "This page shows the running server and its ledger."
        </p>
        <Transition fallback=|| view! { <p class="muted" data-testid="status-loading">"Loading status…"</p> }>
            {move || status.get().map(|r| match r {
                Ok(s) => view! { <StatusCards status=s/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}

fn format_uptime(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

#[component]
fn StatusCards(status: SystemStatus) -> impl IntoView {
    let checkpoint = match (status.checkpoint_tree_size, status.checkpoint_signed_at.clone()) {
        (Some(size), Some(at)) => format!("{size} entries, signed {at}"),
        _ => "none yet".to_owned(),
    };
    view! {
        <div class="cards" data-testid="status">
            <div class="card">
                <div class="card-label">"Ledger entries"</div>
                <div class="card-value" data-testid="ledger-entries">{status.ledger_entries}</div>
            </div>
            <div class="card">
                <div class="card-label">"Latest signed checkpoint"</div>
                <div class="card-value small" data-testid="checkpoint">{checkpoint}</div>
            </div>
            <div class="card">
                <div class="card-label">"Database"</div>
                <div class="card-value" data-testid="database">{status.database}</div>
            </div>
            <div class="card">
                <div class="card-label">"Uptime"</div>
                <div class="card-value" data-testid="uptime">{format_uptime(status.uptime_seconds)}</div>
            </div>
        </div>
        <dl class="facts">
            <dt>"Version"</dt><dd data-testid="version">{status.version}</dd>
            <dt>"Ledger origin"</dt><dd><code>{status.origin}</code></dd>
            <dt>"Current data key"</dt><dd>{format!("key {}", status.current_key_id)}</dd>
        </dl>
    }
}

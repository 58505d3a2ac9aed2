//! Saved searches: pick one, save the current one, delete your own.

use super::*;

/// Saved searches: pick one, save the current one, delete your own.
#[component]
pub(super) fn SavedSearches(
    filters: Memo<Filters>,
    go: impl Fn(Filters) + Clone + Send + Sync + 'static,
) -> impl IntoView {
    let list = RwSignal::new(Vec::<SavedSearch>::new());
    let error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let shared = RwSignal::new(false);
    let navigate = use_navigate();
    let refresh = move || {
        leptos::task::spawn_local(async move {
            match get_json::<Vec<SavedSearch>>("/api/searches").await {
                Ok(v) => list.set(v),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    Effect::new(move |_| refresh());
    let _ = go;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = serde_json::json!({ "name": name.get_untracked(), "query": filters.get_untracked().to_query(), "shared": shared.get_untracked() });
        leptos::task::spawn_local(async move {
            match send_json::<SavedSearch>("POST", "/api/searches", Some(body.to_string())).await {
                Ok(_) => {
                    saving.set(false);
                    name.set(String::new());
                    error.set(None);
                    refresh();
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let current = move || {
        let q = filters.with(Filters::to_query);
        list.with(|l| l.iter().find(|s| s.query == q).cloned())
    };
    view! {
        <div class="saved" data-testid="saved-searches">
            <select data-testid="saved-select" aria-label="Saved searches"
                prop:value=move || current().map(|s| s.id).unwrap_or_default()
                on:change=move |ev| {
                    let id = event_target_value(&ev);
                    if let Some(s) = list.get_untracked().into_iter().find(|s| s.id == id) {
                        navigate(&format!("/events?{}", s.query), NavigateOptions::default());
                    }
                }>
                <option value="">"Saved searches…"</option>
                {move || list.get().into_iter().map(|s| {
                    let label = if s.mine { s.name.clone() } else { format!("{} (shared by {})", s.name, s.owner) };
                    view! { <option value=s.id.clone()>{label}</option> }
                }).collect_view()}
            </select>
            {move || current().filter(|s| s.mine).map(|s| {
                let id = s.id.clone();
                view! {
                    <button type="button" class="link" data-testid="saved-delete" on:click=move |_| {
                        let id = id.clone();
                        leptos::task::spawn_local(async move {
                            let _ = send_json::<serde_json::Value>("DELETE", &format!("/api/searches/{}", encode(&id)), None).await;
                            refresh();
                        });
                    }>"Delete"</button>
                }
            })}
            <Show when=move || !saving.get() fallback=move || view! {
                <form class="save-form" on:submit=save>
                    <input type="text" placeholder="Name" data-testid="saved-name" required
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    <label class="check">
                        <input type="checkbox" prop:checked=move || shared.get() on:change=move |ev| shared.set(event_target_checked(&ev))/>
                        "Shared"
                    </label>
                    <button type="submit" class="primary" data-testid="saved-confirm">"Save"</button>
                    <button type="button" on:click=move |_| saving.set(false)>"Cancel"</button>
                </form>
            }>
                <button type="button" data-testid="saved-save" on:click=move |_| saving.set(true)>"Save search"</button>
            </Show>
            {move || error.get().map(|e| view! { <span class="error small" role="alert">{e}</span> })}
        </div>
    }
}

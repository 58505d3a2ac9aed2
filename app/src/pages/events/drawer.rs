//! The detail drawer of one event: its fields, integrity, related
//! events and unmasking with a reason.

use super::*;

/// The detail drawer of one event.
#[component]
pub(super) fn Drawer(
    selected: RwSignal<Option<EventView>>,
    utc: RwSignal<bool>,
    can_unmask: Signal<bool>,
) -> impl IntoView {
    let detail = RwSignal::new(None::<Result<serde_json::Value, ClientError>>);
    let related = RwSignal::new(Vec::<EventView>::new());
    let reason = RwSignal::new(String::new());
    let unmask_error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let Some(e) = selected.get() else { return };
        detail.set(None);
        related.set(Vec::new());
        unmask_error.set(None);
        reason.set(String::new());
        let id = e.id.to_string();
        leptos::task::spawn_local(async move {
            detail.set(Some(get_json(&format!("/api/audit/{id}")).await));
        });
        // Related: the same request or trace id, a day either side.
        let key = e.correlation.request_id.clone().or(e.correlation.trace_id.clone());
        if let Some(key) = key {
            let t = parse_ms(&e.occurred_at);
            let url = format!(
                "/api/audit?q={}&from={}&to={}&limit=20",
                encode(&key),
                encode(&iso(t - 86_400_000.0)),
                encode(&iso(t + 86_400_000.0))
            );
            let seq = e.seq;
            leptos::task::spawn_local(async move {
                if let Ok(p) = get_json::<SearchPage>(&url).await {
                    related.set(p.items.into_iter().filter(|r| r.seq != seq).collect());
                }
            });
        }
    });
    let unmask = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(e) = selected.get_untracked() else { return };
        let url = format!("/api/audit/{}?unmask=true&reason={}", e.id, encode(reason.get_untracked().trim()));
        leptos::task::spawn_local(async move {
            match get_json::<serde_json::Value>(&url).await {
                Ok(v) => {
                    unmask_error.set(None);
                    detail.set(Some(Ok(v)));
                }
                Err(e) => unmask_error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        <Show when=move || selected.with(Option::is_some)>
            <aside class="drawer" role="dialog" aria-label="Event detail" data-testid="drawer">
                <div class="drawer-head">
                    <h2>{move || selected.with(|s| s.as_ref().map(|e| format!("{} · seq {}", e.action, e.seq)).unwrap_or_default())}</h2>
                    <button type="button" class="link" data-testid="drawer-close" on:click=move |_| selected.set(None)>"Close"</button>
                </div>
                {move || match detail.get() {
                    None => view! { <p class="muted">"Loading the event and its proof…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    Some(Ok(v)) => {
                        let ev = v["event"].clone();
                        let utc = utc.get();
                        view! {
                            <EventFields ev=ev.clone() utc=utc/>
                            {ev.get("unmasked").and_then(|u| u.as_object()).map(|u| view! {
                                <section class="unmasked" data-testid="unmasked">
                                    <h3>"Original values"</h3>
                                    {if u.is_empty() {
                                        view! { <p class="muted">"The masking rules kept no original of this event."</p> }.into_any()
                                    } else {
                                        view! { <dl>{u.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt><dd>{v.as_str().unwrap_or_default().to_owned()}</dd> }).collect_view()}</dl> }.into_any()
                                    }}
                                </section>
                            })}
                            <Integrity v=v.clone()/>
                        }.into_any()
                    }
                }}
                <Show when=move || can_unmask.get()>
                    <form class="unmask" on:submit=unmask data-testid="unmask-form">
                        <h3>"Unmask"</h3>
                        <p class="muted small">"Shows the original values the masking rules kept. Your reason is recorded in the ledger."</p>
                        <input type="text" placeholder="Reason (e.g. incident INC-1234)" data-testid="unmask-reason" required minlength="5"
                            prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                        <button type="submit" data-testid="unmask-submit">"Unmask"</button>
                        {move || unmask_error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    </form>
                </Show>
                <section class="related" data-testid="related">
                    <h3>"Related events"</h3>
                    {move || {
                        let list = related.get();
                        if list.is_empty() {
                            view! { <p class="muted">"No other event with this request or trace id."</p> }.into_any()
                        } else {
                            view! {
                                <ul>
                                    {list.into_iter().map(|r| {
                                        let r2 = r.clone();
                                        view! { <li><button type="button" class="link" on:click=move |_| selected.set(Some(r2.clone()))>
                                            {format!("seq {} · {} · {}", r.seq, r.action, r.outcome)}
                                        </button></li> }
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                    }}
                </section>
            </aside>
        </Show>
    }
}

#[component]
pub(super) fn EventFields(ev: serde_json::Value, utc: bool) -> impl IntoView {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(obj) = ev.as_object() {
        for (k, v) in obj {
            match k.as_str() {
                "details" | "unmasked" => {}
                "occurred_at" | "recorded_at" => rows.push((k.clone(), show_time(v.as_str().unwrap_or_default(), utc))),
                _ => match v.as_object() {
                    Some(inner) => {
                        for (ik, iv) in inner {
                            if !iv.is_null() {
                                rows.push((format!("{k}.{ik}"), s(iv)));
                            }
                        }
                    }
                    None => rows.push((k.clone(), s(v))),
                },
            }
        }
    }
    let details =
        ev.get("details").filter(|d| !d.is_null()).map(|d| serde_json::to_string_pretty(d).unwrap_or_default());
    view! {
        <section class="fields" data-testid="event-fields">
            <dl>{rows.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}</dl>
            {details.map(|d| view! { <h3>"Details"</h3><pre class="json" data-testid="event-details">{d}</pre> })}
        </section>
    }
}

#[component]
pub(crate) fn Integrity(v: serde_json::Value) -> impl IntoView {
    let ver = &v["verification"];
    let inc = &ver["inclusion"];
    let ok = |b: &serde_json::Value| match b.as_bool() {
        Some(true) => "✓ yes",
        Some(false) => "✗ NO",
        None => "not checked",
    };
    let verified = inc["verified"].as_bool() == Some(true)
        && ver["leaf_matches"].as_bool() == Some(true)
        && ver["mac_valid"].as_bool() != Some(false);
    view! {
        <section class=if verified { "integrity ok" } else { "integrity bad" } data-testid="integrity">
            <h3>{if verified { "Integrity: verified" } else { "Integrity: NOT verified" }}</h3>
            <dl>
                <dt>"Leaf hash matches the stored fields"</dt><dd>{ok(&ver["leaf_matches"])}</dd>
                <dt>"MAC valid"</dt><dd>{ok(&ver["mac_valid"])}</dd>
                <dt>"Decrypts"</dt><dd>{ok(&ver["decrypts"])}</dd>
                <dt>"Inclusion proof against the signed checkpoint"</dt><dd data-testid="inclusion">{ok(&inc["verified"])}</dd>
                <dt>"Checkpoint tree size"</dt><dd>{inc["tree_size"].to_string()}</dd>
                <dt>"Checkpoint root"</dt><dd><code>{inc["root_hash"].as_str().unwrap_or_default().to_owned()}</code></dd>
                <dt>"Leaf hash"</dt><dd><code>{v["leaf_hash"].as_str().unwrap_or_default().to_owned()}</code></dd>
                <dt>"Proof hashes"</dt><dd>{inc["hashes"].as_array().map_or(0, Vec::len).to_string()}</dd>
                <dt>"Public key"</dt><dd><code class="wrap">{v["public_key"].as_str().unwrap_or_default().to_owned()}</code></dd>
            </dl>
        </section>
    }
}

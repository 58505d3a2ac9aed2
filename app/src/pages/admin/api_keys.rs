//! API keys: created here (the secret is shown once), scoped, revocable.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{CreateApiKey, RevokeApiKey, list_api_keys};

/// The API keys page.
#[component]
pub fn ApiKeysPage() -> impl IntoView {
    let create = ServerAction::<CreateApiKey>::new();
    let revoke = ServerAction::<RevokeApiKey>::new();
    let keys = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_api_keys());
    let errors = move || [failure(create.value()), failure(revoke.value())].into_iter().flatten().collect::<Vec<_>>();
    view! {
        <Title text="API keys"/>
        <h1>"API keys"</h1>
        <p class="lead">"Applications send events with a key that has the "<code>"ingest"</code>" scope, and read them with "<code>"read"</code>". Send it as "<code>"Authorization: Bearer <key>"</code>"."</p>
        {move || errors().into_iter().map(|e| view! { <p class="error" role="alert">{e}</p> }).collect_view()}
        {move || match create.value().get() {
            Some(Ok(new)) => view! {
                <div class="secret-box" data-testid="new-key">
                    <p><strong>{format!("Key “{}” created.", new.key.name)}</strong>" Copy it now: it is shown only once."</p>
                    <p><code data-testid="new-key-token">{new.token}</code></p>
                </div>
            }.into_any(),
            _ => ().into_any(),
        }}
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || keys.get().map(|r| match r {
                Ok(list) => view! {
                    <table class="data" data-testid="api-keys">
                        <thead><tr><th>"Key"</th><th>"Scopes"</th><th>"Status"</th><th>"Created"</th><th>"Expires"</th><th>"Last used"</th><th></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|k| {
                                let active = k.status == "active";
                                let prefix = k.prefix.clone();
                                view! {
                                    <tr data-key=k.prefix.clone()>
                                        <td><strong>{k.name.clone()}</strong><br/><code class="muted">{format!("cst_{}_…", k.prefix)}</code></td>
                                        <td>{k.scopes.join(", ")}</td>
                                        <td class=format!("status {}", k.status)>{k.status.clone()}</td>
                                        <td>{k.created.clone()}</td>
                                        <td>{k.expires.clone().unwrap_or_else(|| "never".into())}</td>
                                        <td>{k.last_used.clone().unwrap_or_else(|| "never".into())}</td>
                                        <td>{active.then(|| view! {
                                            <ActionForm action=revoke attr:class="inline">
                                                <input type="hidden" name="prefix" value=prefix/>
                                                <button type="submit" class="danger">"Revoke"</button>
                                            </ActionForm>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <section class="panel">
            <h2>"Create a key"</h2>
            <ActionForm action=create attr:class="grid-form" attr:data-testid="create-key">
                <label>"Name"<input name="name" required placeholder="billing-service"/></label>
                <label>"Scopes (ingest, read)"<input name="scopes" value="ingest" required/></label>
                <label>"Expires in days (empty: never)"<input name="expires_in_days" inputmode="numeric"/></label>
                <button type="submit" class="primary">"Create key"</button>
            </ActionForm>
        </section>
    }
}

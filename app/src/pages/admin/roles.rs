//! Roles: the built-in ones, custom ones built from the permission list.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{CreateRole, DeleteRole, UpdateRole, list_roles};
use crate::models::{PermissionView, RoleView};

/// The roles page.
#[component]
pub fn RolesPage() -> impl IntoView {
    let create = ServerAction::<CreateRole>::new();
    let update = ServerAction::<UpdateRole>::new();
    let delete = ServerAction::<DeleteRole>::new();
    let roles = Resource::new(
        move || (create.version().get(), update.version().get(), delete.version().get()),
        |_| list_roles(),
    );
    let errors = move || {
        [failure(create.value()), failure(update.value()), failure(delete.value())]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };
    view! {
        <Title text="Roles"/>
        <h1>"Roles"</h1>
        {move || errors().into_iter().map(|e| view! { <p class="error" role="alert">{e}</p> }).collect_view()}
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || roles.get().map(|r| match r {
                Ok((list, perms)) => view! { <RoleTable list perms update delete/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <section class="panel">
            <h2>"Add a custom role"</h2>
            <ActionForm action=create attr:class="grid-form" attr:data-testid="create-role">
                <label>"Name"<input name="name" required placeholder="external_auditor"/></label>
                <label>"Description"<input name="description"/></label>
                <label>"Permissions (comma-separated)"<input name="permissions" required placeholder="audit:read, audit:verify"/></label>
                <label class="check"><input type="checkbox" name="require_mfa"/>"Members must use MFA"</label>
                <button type="submit" class="primary">"Add role"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn RoleTable(
    list: Vec<RoleView>,
    perms: Vec<PermissionView>,
    update: ServerAction<UpdateRole>,
    delete: ServerAction<DeleteRole>,
) -> impl IntoView {
    view! {
        <table class="data" data-testid="roles">
            <thead><tr><th>"Role"</th><th>"Permissions"</th><th>"Members"</th><th>"Requires MFA"</th><th>"Actions"</th></tr></thead>
            <tbody>
                {list.into_iter().map(|r| {
                    let name = r.name.clone();
                    let (n1, n2) = (name.clone(), name.clone());
                    let builtin = r.builtin;
                    let require = r.require_mfa;
                    view! {
                        <tr data-role=name.clone()>
                            <td><strong>{r.name.clone()}</strong>{builtin.then(|| view! { " " <span class="tag">"built-in"</span> })}<br/><span class="muted">{r.description.clone()}</span></td>
                            <td><code>{r.permissions.join(", ")}</code></td>
                            <td>{r.members}</td>
                            <td>{if require { "yes" } else { "no" }}</td>
                            <td class="actions">
                                <ActionForm action=update attr:class="inline">
                                    <input type="hidden" name="name" value=n1/>
                                    <input type="hidden" name="require_mfa" value=(!require).to_string()/>
                                    <button type="submit">{if require { "Stop requiring MFA" } else { "Require MFA" }}</button>
                                </ActionForm>
                                {(!builtin).then(|| view! {
                                    <ActionForm action=delete attr:class="inline">
                                        <input type="hidden" name="name" value=n2/>
                                        <button type="submit" class="danger">"Delete"</button>
                                    </ActionForm>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <details class="panel">
            <summary>"Permissions a role can grant"</summary>
            <dl class="facts">
                {perms.into_iter().map(|p| view! { <dt><code>{p.name}</code></dt><dd>{p.description}</dd> }).collect_view()}
            </dl>
        </details>
    }
}

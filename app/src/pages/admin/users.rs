//! Users: create, roles, disable, password and MFA resets.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{CreateUser, ResetUserMfa, ResetUserPassword, SetUserDisabled, SetUserRoles, list_users};
use crate::models::UserView;

/// The users page.
#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let roles = ServerAction::<SetUserRoles>::new();
    let disable = ServerAction::<SetUserDisabled>::new();
    let password = ServerAction::<ResetUserPassword>::new();
    let mfa = ServerAction::<ResetUserMfa>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                roles.version().get(),
                disable.version().get(),
                password.version().get(),
                mfa.version().get(),
            )
        },
        |_| list_users(),
    );
    let errors = move || {
        [
            failure(create.value()),
            failure(roles.value()),
            failure(disable.value()),
            failure(password.value()),
            failure(mfa.value()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
    };
    view! {
        <Title text="Users"/>
        <h1>"Users"</h1>
        {move || errors().into_iter().map(|e| view! { <p class="error" role="alert">{e}</p> }).collect_view()}
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || users.get().map(|r| match r {
                Ok(list) => view! { <UserTable list roles disable password mfa/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <section class="panel">
            <h2>"Add a user"</h2>
            <ActionForm action=create attr:class="grid-form" attr:data-testid="create-user">
                <label>"User name"<input name="username" required/></label>
                <label>"E-mail"<input name="email" type="email"/></label>
                <label>"Display name"<input name="display_name"/></label>
                <label>"Initial password"<input name="password" type="password" minlength="12" required autocomplete="new-password"/></label>
                <label>"Roles (comma-separated)"<input name="roles" placeholder="viewer"/></label>
                <button type="submit" class="primary">"Add user"</button>
            </ActionForm>
            <p class="muted">"New users must change their password at first sign-in."</p>
        </section>
    }
}

#[component]
fn UserTable(
    list: Vec<UserView>,
    roles: ServerAction<SetUserRoles>,
    disable: ServerAction<SetUserDisabled>,
    password: ServerAction<ResetUserPassword>,
    mfa: ServerAction<ResetUserMfa>,
) -> impl IntoView {
    view! {
        <table class="data" data-testid="users">
            <thead><tr>
                <th>"User"</th><th>"Roles"</th><th>"Status"</th><th>"MFA"</th><th>"Last sign-in"</th><th>"Actions"</th>
            </tr></thead>
            <tbody>
                {list.into_iter().map(|u| {
                    let status = if u.disabled { "disabled" } else if u.locked_until.is_some() { "locked" } else { "active" };
                    let name = u.username.clone();
                    let (n1, n2, n3, n4) = (name.clone(), name.clone(), name.clone(), name.clone());
                    let disabled = u.disabled;
                    view! {
                        <tr data-user=name.clone()>
                            <td><strong>{u.username.clone()}</strong><br/><span class="muted">{u.email.clone().unwrap_or_default()}</span></td>
                            <td>
                                <ActionForm action=roles attr:class="inline">
                                    <input type="hidden" name="username" value=n1/>
                                    <input name="roles" value=u.roles.join(", ") aria-label="Roles"/>
                                    <button type="submit">"Save"</button>
                                </ActionForm>
                            </td>
                            <td class=format!("status {status}")>{status}</td>
                            <td>{if u.mfa_enabled { "on" } else { "off" }}</td>
                            <td>{u.last_login.clone().unwrap_or_else(|| "never".into())}</td>
                            <td class="actions">
                                <ActionForm action=disable attr:class="inline">
                                    <input type="hidden" name="username" value=n2/>
                                    <input type="hidden" name="disabled" value=(!disabled).to_string()/>
                                    <button type="submit">{if disabled { "Enable" } else { "Disable" }}</button>
                                </ActionForm>
                                <ActionForm action=password attr:class="inline">
                                    <input type="hidden" name="username" value=n3/>
                                    <input name="password" type="password" minlength="12" placeholder="New password" aria-label="New password" autocomplete="new-password" required/>
                                    <button type="submit">"Reset password"</button>
                                </ActionForm>
                                {u.mfa_enabled.then(|| view! {
                                    <ActionForm action=mfa attr:class="inline">
                                        <input type="hidden" name="username" value=n4/>
                                        <button type="submit">"Reset MFA"</button>
                                    </ActionForm>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

//! The account page: password and multi-factor authentication.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{ChangePassword, MfaBegin, MfaConfirm};
use crate::models::Me;

/// The signed-in user's own settings.
#[component]
pub fn AccountPage() -> impl IntoView {
    let me = expect_context::<crate::MeResource>();
    let change = ServerAction::<ChangePassword>::new();
    let begin = ServerAction::<MfaBegin>::new();
    let confirm = ServerAction::<MfaConfirm>::new();
    // Once a change succeeds, what the rest of the UI knows about us is stale.
    Effect::new(move |_| {
        let changed = matches!(change.value().get(), Some(Ok(())));
        let enrolled = matches!(confirm.value().get(), Some(Ok(_)));
        if changed || enrolled {
            me.refetch();
        }
    });
    view! {
        <Title text="Account"/>
        <h1>"Account"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || me.get().map(|r| match r {
                Ok(Some(me)) => view! { <AccountDetails me change begin confirm/> }.into_any(),
                // Only people have accounts (an API key gets here only to be refused).
                Ok(None) => view! { <crate::pages::forbidden::ForbiddenPage/> }.into_any(),
                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn AccountDetails(
    me: Me,
    change: ServerAction<ChangePassword>,
    begin: ServerAction<MfaBegin>,
    confirm: ServerAction<MfaConfirm>,
) -> impl IntoView {
    let roles = if me.roles.is_empty() { "none".to_owned() } else { me.roles.join(", ") };
    let must_change = me.must_change_password;
    let mfa_owed = me.mfa_required && !me.mfa_enabled;
    let mfa_enabled = me.mfa_enabled;
    let changed = move || matches!(change.value().get(), Some(Ok(())));
    view! {
        {must_change.then(|| view! {
            <p class="banner" role="alert" data-testid="must-change">"You must choose a new password before you continue."</p>
        })}
        {mfa_owed.then(|| view! {
            <p class="banner" role="alert" data-testid="mfa-owed">"Your role requires multi-factor authentication. Set it up below to continue."</p>
        })}
        <dl class="facts">
            <dt>"User name"</dt><dd data-testid="account-username">{me.username.clone()}</dd>
            <dt>"E-mail"</dt><dd>{me.email.clone().unwrap_or_else(|| "—".into())}</dd>
            <dt>"Roles"</dt><dd data-testid="account-roles">{roles}</dd>
        </dl>

        <section class="panel">
            <h2>"Password"</h2>
            <ActionForm action=change attr:class="stack narrow">
                <label>"Current password"<input type="password" name="current_password" autocomplete="current-password" required/></label>
                <label>"New password (at least 12 characters)"<input type="password" name="new_password" autocomplete="new-password" minlength="12" required/></label>
                <button type="submit">"Change password"</button>
            </ActionForm>
            {move || changed().then(|| view! { <p class="notice" role="status" data-testid="password-changed">"Password changed."</p> })}
            {move || crate::pages::admin::failure(change.value()).map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>

        <section class="panel">
            <h2>"Multi-factor authentication"</h2>
            {move || {
                if mfa_enabled || matches!(confirm.value().get(), Some(Ok(_))) {
                    view! {
                        <p data-testid="mfa-status">"On: signing in asks for a code from your authenticator app."</p>
                        {move || match confirm.value().get() {
                            Some(Ok(codes)) => view! {
                                <div class="secret-box">
                                    <p><strong>"Your recovery codes."</strong>" Each works once if you lose your device. They are shown only now: store them safely."</p>
                                    <ul class="codes" data-testid="recovery-codes">
                                        {codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
                                    </ul>
                                </div>
                            }.into_any(),
                            _ => ().into_any(),
                        }}
                    }.into_any()
                } else {
                    view! {
                        <p data-testid="mfa-status">"Off."</p>
                        {move || match begin.value().get() {
                            Some(Ok(setup)) => view! {
                                <div class="mfa-setup">
                                    <div class="qr" inner_html=setup.qr_svg.clone()></div>
                                    <div class="stack">
                                        <p>"Scan the code with an authenticator app, or enter this key by hand:"</p>
                                        <p><code data-testid="mfa-secret">{setup.secret.clone()}</code></p>
                                        <ActionForm action=confirm attr:class="stack narrow">
                                            <label>"Code shown by the app"<input name="code" inputmode="numeric" autocomplete="one-time-code" required/></label>
                                            <button type="submit" class="primary">"Turn on"</button>
                                        </ActionForm>
                                        {move || crate::pages::admin::failure(confirm.value()).map(|e| view! { <p class="error" role="alert">{e}</p> })}
                                    </div>
                                </div>
                            }.into_any(),
                            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                            None => view! {
                                <button on:click=move |_| { begin.dispatch(MfaBegin {}); }>"Set up an authenticator app"</button>
                            }.into_any(),
                        }}
                    }.into_any()
                }
            }}
        </section>
    }
}

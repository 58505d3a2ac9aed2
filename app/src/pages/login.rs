//! Sign-in and the second factor: plain HTML forms posted to `/auth/*`, so
//! they work before (and without) the WASM bundle.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

fn message(code: &str) -> &'static str {
    match code {
        "invalid" => "Invalid user name or password.",
        "locked" => "Too many failed attempts. This sign-in is locked for a while; try again later.",
        "throttled" => "Too many attempts from your address. Try again later.",
        "expired" => "Your sign-in took too long. Please start again.",
        _ => "Sign-in is not available right now. Please try again.",
    }
}

/// The sign-in page.
#[component]
pub fn LoginPage() -> impl IntoView {
    let q = use_query_map();
    let error = move || q.read().get("error").map(|e| message(&e));
    let signed_out = move || q.read().get("signed_out").is_some();
    let next = move || q.read().get("next").unwrap_or_else(|| "/".into());
    view! {
        <Title text="Sign in"/>
        <section class="auth-card">
            <h1>"Sign in to Custos"</h1>
            {move || error().map(|m| view! { <p class="error" role="alert" data-testid="login-error">{m}</p> })}
            {move || signed_out().then(|| view! { <p class="notice" role="status">"You are signed out."</p> })}
            <form method="post" action="/auth/login" class="stack">
                <input type="hidden" name="next" prop:value=next/>
                <label>"User name"<input name="username" autocomplete="username" required autofocus/></label>
                <label>"Password"<input type="password" name="password" autocomplete="current-password" required/></label>
                <button type="submit" class="primary">"Sign in"</button>
            </form>
        </section>
    }
}

/// The second-factor page.
#[component]
pub fn MfaPage() -> impl IntoView {
    let q = use_query_map();
    let error = move || q.read().get("error").map(|_| "That code is not valid. Try the current one.");
    let next = move || q.read().get("next").unwrap_or_else(|| "/".into());
    view! {
        <Title text="Verification code"/>
        <section class="auth-card">
            <h1>"Verification code"</h1>
            <p class="muted">"Enter the 6-digit code from your authenticator app, or one of your recovery codes."</p>
            {move || error().map(|m| view! { <p class="error" role="alert" data-testid="mfa-error">{m}</p> })}
            <form method="post" action="/auth/mfa" class="stack">
                <input type="hidden" name="next" prop:value=next/>
                <label>"Code"<input name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus/></label>
                <button type="submit" class="primary">"Verify"</button>
            </form>
        </section>
    }
}

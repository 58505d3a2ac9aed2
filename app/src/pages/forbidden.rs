//! "Access denied": what a page shows to a user without its permission.

use leptos::prelude::*;
use leptos_meta::Title;

/// Shown, with status 403, instead of a page the signed-in user may not open.
#[component]
pub fn ForbiddenPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::FORBIDDEN);
    }
    view! {
        <Title text="Access denied"/>
        <section class="panel">
            <h1>"Access denied"</h1>
            <p>"You do not have permission to open this page. If you need it, ask an administrator for a role that grants it."</p>
            <p><a href="/">"Back to the overview"</a></p>
        </section>
    }
}

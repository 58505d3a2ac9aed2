//! The 404 page.

use leptos::prelude::*;
use leptos_meta::Title;

/// Shown for any URL that is not a page.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <section class="panel">
            <h1>"Page not found"</h1>
            <p>"There is no page at this address. "<a href="/">"Back to the overview"</a></p>
        </section>
    }
}

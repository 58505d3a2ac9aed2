//! The Custos web UI: Leptos pages and components, the shared models they
//! exchange with the server, and the server functions behind them.
//!
//! Built with `ssr` into the server and with `hydrate` into the browser
//! bundle; never both. Without `ssr` nothing server-side (database, crypto,
//! engine, tokio) is in this crate's dependency tree.

#[cfg(all(feature = "ssr", feature = "hydrate"))]
compile_error!("custos-app: the `ssr` and `hydrate` features are mutually exclusive");

pub mod api;
pub mod models;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The HTML document around the app (server-rendered only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.ico"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: layout and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Hydration marker: end-to-end tests wait for it instead of sleeping.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/custos.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Custos".to_owned() } else { format!("{page} · Custos") }/>
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">
                    <span class="brand-mark" aria-hidden="true">"◆"</span>
                    " Custos"
                </A>
                <nav aria-label="Main">
                    <A href="/" exact=true>"Overview"</A>
                </nav>
            </header>
            <main>
                <Routes fallback=pages::not_found::NotFound>
                    <Route path=path!("/") view=pages::home::HomePage/>
                </Routes>
            </main>
        </Router>
    }
}

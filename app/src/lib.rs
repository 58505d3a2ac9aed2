//! The Custos web UI: Leptos pages and components, the shared models they
//! exchange with the server, and the server functions behind them.
//!
//! Built with `ssr` into the server and with `hydrate` into the browser
//! bundle; never both. Without `ssr` nothing server-side (database, crypto,
//! engine, tokio) is in this crate's dependency tree.

#[cfg(all(feature = "ssr", feature = "hydrate"))]
compile_error!("custos-app: the `ssr` and `hydrate` features are mutually exclusive");

pub mod api;
pub mod charts;
pub mod client;
pub mod error;
pub mod live;
pub mod models;
/// The audit event and the API shapes, shared with the engine.
pub use custos_model as event;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The HTML document around the app (server-rendered only). It also sets
/// the page's content security policy, with the nonce of its inline script.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(resp)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
        && let Ok(v) = http::HeaderValue::from_str(&server::page_csp(&nonce.to_string()))
    {
        resp.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.ico"/>
                // The charts' renderer (charming draws through it); before
                // hydration, so it is there when a chart first renders.
                <script src="/vendor/echarts.min.js"></script>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The signed-in user, for every page (None when nobody is).
pub type MeResource = Resource<Result<Option<models::Me>, error::AppError>>;

/// The application: layout and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let me: MeResource = Resource::new(|| (), |_| api::whoami());
    provide_context(me);
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
                <Suspense fallback=|| ()>
                    {move || me.get().map(|r| view! { <Navigation me=r.ok().flatten()/> })}
                </Suspense>
            </header>
            <main>
                <Routes fallback=pages::not_found::NotFound>
                    <Route path=path!("/") view=pages::home::HomePage/>
                    <Route path=path!("/login") view=pages::login::LoginPage/>
                    <Route path=path!("/login/mfa") view=pages::login::MfaPage/>
                    <Route path=path!("/account") view=pages::account::AccountPage/>
                    <Route path=path!("/events") view=|| view! { <Guard permission="audit:read"><pages::events::EventsPage/></Guard> }/>
                    <Route path=path!("/alerts") view=|| view! { <Guard permission="audit:read"><pages::alerts::AlertsPage/></Guard> }/>
                    <Route path=path!("/forwarding") view=|| view! { <Guard permission="siem:manage"><pages::forwarding::ForwardingPage/></Guard> }/>
                    <Route path=path!("/retention") view=|| view! { <Guard permission="policy:read"><pages::retention::RetentionPage/></Guard> }/>
                    <Route path=path!("/backups") view=|| view! { <Guard permission="policy:read"><pages::backups::BackupsPage/></Guard> }/>
                    <Route path=path!("/notifications") view=|| view! { <Guard permission="notification:manage"><pages::notifications::NotificationsPage/></Guard> }/>
                    <Route path=path!("/analytics") view=|| view! { <Guard permission="audit:read"><pages::analytics::AnalyticsPage/></Guard> }/>
                    <Route path=path!("/compliance") view=|| view! { <Guard permission="report:generate"><pages::compliance::CompliancePage/></Guard> }/>
                    <Route path=path!("/reports") view=|| view! { <Guard permission="report:generate"><pages::reports::ReportsPage/></Guard> }/>
                    <Route path=path!("/integrity") view=|| view! { <Guard permission="audit:verify"><pages::integrity::IntegrityPage/></Guard> }/>
                    <Route path=path!("/policies") view=|| view! { <Guard permission="policy:read"><pages::policies::PoliciesPage/></Guard> }/>
                    <Route path=path!("/policies/trail") view=|| view! { <Guard permission="policy:read"><pages::policies::trail::TrailPage/></Guard> }/>
                    <Route path=path!("/policies/alert_rules/edit") view=|| view! { <Guard permission="alert:manage"><pages::policies::alert_rules::AlertRulesEditorPage/></Guard> }/>
                    <Route path=path!("/policies/masking/edit") view=|| view! { <Guard permission="policy:manage"><pages::policies::masking::MaskingEditorPage/></Guard> }/>
                    <Route path=path!("/policies/proposals/:id") view=|| view! { <Guard permission="policy:read"><pages::policies::review::ReviewPage/></Guard> }/>
                    <Route path=path!("/admin/users") view=|| view! { <Guard permission="user:manage"><pages::admin::users::UsersPage/></Guard> }/>
                    <Route path=path!("/admin/roles") view=|| view! { <Guard permission="user:manage"><pages::admin::roles::RolesPage/></Guard> }/>
                    <Route path=path!("/admin/api-keys") view=|| view! { <Guard permission="user:manage"><pages::admin::api_keys::ApiKeysPage/></Guard> }/>
                </Routes>
            </main>
        </Router>
    }
}

/// Renders its children only for a user holding `permission`, else the
/// "Access denied" page. The server has already answered 403 and refuses the
/// page's data; this keeps the server-rendered and hydrated pages identical.
#[component]
fn Guard(permission: &'static str, children: ChildrenFn) -> impl IntoView {
    let me = expect_context::<MeResource>();
    view! {
        <Suspense fallback=|| ()>
            {move || me.get().map(|r| {
                if r.ok().flatten().is_some_and(|me| me.can(permission)) {
                    children().into_any()
                } else {
                    view! { <pages::forbidden::ForbiddenPage/> }.into_any()
                }
            })}
        </Suspense>
    }
}

/// The main navigation: only the pages the user may open (the server
/// enforces it regardless), and sign-out.
#[component]
fn Navigation(me: Option<models::Me>) -> impl IntoView {
    let Some(me) = me else { return ().into_any() };
    let admin = me.can("user:manage");
    let notify = me.can("notification:manage");
    let siem = me.can("siem:manage");
    let retention = me.can("retention:manage");
    let who = me.display_name.clone().unwrap_or_else(|| me.username.clone());
    view! {
        <nav aria-label="Main">
            <A href="/" exact=true>"Overview"</A>
            {me.can("audit:read").then(|| view! {
                <A href="/events">"Events"</A>
                <A href="/analytics">"Analytics"</A>
                <A href="/alerts">"Alerts"<AlertBadge/></A>
                <pages::alerts::AlertToast/>
            })}
            {me.can("report:generate").then(|| view! { <A href="/compliance">"Compliance"</A> <A href="/reports">"Reports"</A> })}
            {me.can("audit:verify").then(|| view! { <A href="/integrity">"Integrity"</A> })}
            {me.can("policy:read").then(|| view! { <A href="/policies">"Policies"<PolicyBadge me=me.clone()/></A> })}
            {notify.then(|| view! { <A href="/notifications">"Notifications"</A> })}
            {siem.then(|| view! { <A href="/forwarding">"Forwarding"</A> })}
            {retention.then(|| view! { <A href="/retention">"Retention"</A> <A href="/backups">"Backups"</A> })}
            {admin.then(|| view! {
                <A href="/admin/users">"Users"</A>
                <A href="/admin/roles">"Roles"</A>
                <A href="/admin/api-keys">"API keys"</A>
            })}
        </nav>
        <div class="session">
            <A href="/account" attr:class="account" attr:data-testid="account-link">{who}</A>
            <form method="post" action="/auth/logout">
                <button type="submit" class="link">"Sign out"</button>
            </form>
        </div>
    }
    .into_any()
}

/// The number of open alerts, beside "Alerts" (fetched once in the
/// browser; the inbox itself is live).
#[component]
fn AlertBadge() -> impl IntoView {
    let open = RwSignal::new(0u64);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            if let Ok(p) = client::get_json::<event::AlertPage>("/api/alerts?status=open&limit=1").await {
                open.set(p.counts.get("open").copied().unwrap_or(0));
            }
        });
    });
    view! {
        {move || (open.get() > 0).then(|| view! {
            " "<span class="badge" data-testid="alert-badge" title="Open alerts">{open.get()}</span>
        })}
    }
}

/// The number of proposals waiting for this approver, beside "Policies"
/// (only for holders of `policy:approve`; fetched once in the browser).
#[component]
fn PolicyBadge(me: models::Me) -> impl IntoView {
    let waiting = RwSignal::new(0usize);
    if me.can("policy:approve") {
        let principal = me.principal.clone();
        Effect::new(move |_| {
            let principal = principal.clone();
            leptos::task::spawn_local(async move {
                if let Ok(o) = client::get_json::<event::PolicyOverview>("/api/policies").await {
                    let n = o
                        .kinds
                        .iter()
                        .flat_map(|k| &k.pending)
                        .filter(|p| p.author != principal && !p.decisions.iter().any(|d| d.principal == principal))
                        .count();
                    waiting.set(n);
                }
            });
        });
    }
    view! {
        {move || (waiting.get() > 0).then(|| view! {
            " "<span class="badge" data-testid="policy-badge" title="Proposals waiting for your review">{waiting.get()}</span>
        })}
    }
}

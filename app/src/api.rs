//! Server functions: thin, each authorises itself (when identity exists) and
//! calls the engine through the server context.

use leptos::prelude::*;

use crate::models::SystemStatus;

/// The running server's status.
#[server(prefix = "/rpc", endpoint = "status")]
pub async fn get_status() -> Result<SystemStatus, ServerFnError> {
    let ctx = expect_context::<crate::server::ServerContext>();
    ctx.status().await.map_err(|e| ServerFnError::new(e.to_string()))
}

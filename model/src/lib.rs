//! Shared typed models: the audit event (docs/ARCHITECTURE.md §2) as accepted and
//! stored, and the shapes the API takes and returns. Plain serde, so the
//! browser (wasm32) and the server use the same types.

mod alerts;
mod api;
pub mod cron;
mod dashboards;
mod event;
mod forwarding;
mod masking;
mod notifications;
mod policies;
mod reports;
mod retention;
pub mod time;
pub mod url;
mod vocab;

pub use alerts::*;
pub use api::*;
pub use dashboards::*;
pub use event::*;
pub use forwarding::*;
pub use masking::*;
pub use notifications::*;
pub use policies::*;
pub use reports::*;
pub use retention::*;
pub use vocab::*;

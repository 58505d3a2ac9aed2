//! The engine's one integration-test binary (each extra binary costs a link on
//! two cores). Modules are grouped by what they try to break.

// Tests may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod alerts;
mod backup;
mod dashboards;
mod forward;
mod identity;
mod jobs;
mod keys;
mod known_answer;
mod ledger;
mod notify;
mod own_events;
mod policies;
mod properties;
mod purge;
mod retention;
mod search;
mod tamper;
mod trust;
#[macro_use]
mod support;

//! Administration: users, roles, API keys. Every change is recorded in the
//! ledger by the engine; the server refuses callers without `user:manage`.

pub mod api_keys;
pub mod roles;
pub mod users;

use leptos::prelude::*;

/// The error of the last run of an action, if it failed.
pub fn failure<T>(v: impl Get<Value = Option<Result<T, crate::error::AppError>>>) -> Option<String> {
    match v.get() {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

//! Pages.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod backups;
pub mod compliance;
pub mod events;
pub mod forbidden;
pub mod forwarding;
pub mod home;
pub mod integrity;
pub mod login;
pub mod not_found;
pub mod notifications;
pub mod policies;
pub mod reports;
pub mod retention;

//! Pages.

pub mod account;
pub mod admin;
pub mod events;
pub mod forbidden;
pub mod home;
pub mod login;
pub mod not_found;

//! Identity and access: users, roles and permissions, passwords, TOTP,
//! API keys, brute-force throttling, and the security events they record.

pub mod apikey;
pub mod names;
pub mod noise;
pub mod password;
pub mod permission;
pub mod service;
pub mod throttle;
pub mod totp;

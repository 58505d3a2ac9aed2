//! The server's one integration-test binary: real servers on port 0 over
//! HTTP, and the real `custos` binary for crash and multi-process tests.

mod access;
mod alerts;
mod boundary;
mod crash;
mod events;
mod health;
mod replicas;
mod reports;
mod support;
mod tls;
mod verify_cli;
mod web;

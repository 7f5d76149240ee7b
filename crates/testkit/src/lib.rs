//! Test harness for Warden's black-box suite: [`TestApp::spawn`] starts a real Warden in-process
//! on port 0 with its own temporary data directory; [`postgres::Cluster`] runs a throwaway
//! PostgreSQL server; [`warden_binary`] builds the real `warden` program for tests that need a
//! separate process (signals, `kill -9`, exit codes).
//!
//! Test support code may panic: a broken fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod app;
pub mod mosquitto;
pub mod postgres;
mod process;
pub mod simulation;

pub use app::{TestApp, browser, csrf_field, log_in};
pub use process::{WardenProcess, warden_binary, warden_command};

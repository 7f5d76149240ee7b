//! Warden's black-box suite: one test binary that drives real servers through their public
//! interfaces (HTTPS, the command line, the database) and asserts what a user would notice.
// Helpers here are test code too: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod audit_trail;
mod breach;
mod cli_client;
mod config;
mod conformance;
mod console;
mod crash;
mod demo;
mod deploy;
mod devices;
mod events;
mod external;
mod faults;
mod firmware;
mod gateway;
mod hooks;
mod http;
mod mqtt;
mod oauth;
mod oidc;
mod openapi;
mod pki;
mod readiness;
mod replicas;
mod simulator;
mod storage;
mod tls;

//! The command-line client (docs/cli.md): `warden login` and `warden logout`, then
//! `warden devices …`, `warden grants …` and `warden audit log` as the person who logged in,
//! through Warden's public HTTPS API and its gateway, like any other client.

mod commands;
mod login;
mod session;
mod table;

pub(crate) use commands::{audit_log, devices, grants};
pub(crate) use login::{login, logout};

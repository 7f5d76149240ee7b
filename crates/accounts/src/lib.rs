//! User accounts: who can log in, how passwords are kept, and when to stop guessing.
//!
//! This crate decides; it does not store and does no IO. Callers hand it input and the rows they
//! read, and get back validated values and decisions to persist through the `store` crate:
//! password hashes ([`password`]), whether a new password is acceptable ([`rules`], with
//! [`breached`]), whether a login may be tried now ([`throttle`]), session tokens ([`session`]),
//! and the bulk import format ([`import`]).

pub mod breached;
pub mod import;
pub mod password;
pub mod rules;
pub mod session;
pub mod throttle;
pub mod totp;

//! User accounts: who can log in, with which password hash and role.
//!
//! This crate decides; it does not store. Callers hand it input and get back validated values to
//! persist through the `store` crate. So far it holds the bulk import of accounts from an older
//! system (whose bcrypt hashes Warden accepts and upgrades at the next login).

pub mod import;

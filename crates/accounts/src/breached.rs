//! Whether a password is known to attackers: the interface the breached-password filter serves,
//! and the small built-in list that stands in until an operator installs the full one.
//!
//! Passwords are looked up by their SHA-1, the form HaveIBeenPwned publishes, so a filter built
//! from that data never needs the passwords themselves.

use std::collections::HashSet;
use std::fmt;

use sha1::{Digest, Sha1};

use crate::password::Password;

/// A set of leaked-password SHA-1 hashes.
pub trait BreachedPasswords: Send + Sync + fmt::Debug {
    fn contains_sha1(&self, sha1: &[u8; 20]) -> bool;

    fn contains(&self, password: &Password) -> bool {
        self.contains_sha1(&sha1_of(password.as_str()))
    }
}

pub fn sha1_of(text: &str) -> [u8; 20] {
    Sha1::digest(text.as_bytes()).into()
}

/// The most common passwords, kept in `crates/accounts/data/common-passwords.txt`.
#[derive(Debug)]
pub struct CommonPasswords {
    hashes: HashSet<[u8; 20]>,
}

impl CommonPasswords {
    pub fn builtin() -> Self {
        let hashes = include_str!("../data/common-passwords.txt")
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(sha1_of)
            .collect();
        Self { hashes }
    }
}

impl BreachedPasswords for CommonPasswords {
    fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        self.hashes.contains(sha1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_found_by_their_sha1() {
        let list = CommonPasswords::builtin();
        assert!(list.contains(&Password::new("password123")));
        assert!(list.contains(&Password::new("qwerty")));
        assert!(
            !list.contains(&Password::new("Password123")),
            "lookups are exact"
        );
        assert!(
            !list.contains(&Password::new("# The most common passwords")),
            "comments are not entries"
        );
        // The SHA-1 form HaveIBeenPwned publishes: 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8 is "password".
        let mut sha1 = [0u8; 20];
        hex::decode_to_slice("5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8", &mut sha1).unwrap();
        assert!(list.contains_sha1(&sha1));
    }
}

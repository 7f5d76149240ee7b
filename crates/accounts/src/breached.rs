//! Whether a password is known to attackers: the interface the breached-password filter serves,
//! and the built-in list of common passwords that answers until an operator installs the full
//! HaveIBeenPwned filter.
//!
//! Passwords are looked up by their SHA-1, the form HaveIBeenPwned publishes, so a filter built
//! from that data never needs the passwords themselves. The built-in list goes through the same
//! filter code as the full set (built in memory at start), so both behave alike: no false
//! negatives, a false-positive rate of about 2^-16.

use std::fmt;

use breach::{BreachFilter, BuildError, FingerprintBits, OpenError};
use sha1::{Digest, Sha1};

use crate::password::Password;

/// A set of leaked-password SHA-1 hashes.
pub trait BreachedPasswords: Send + Sync + fmt::Debug {
    fn contains_sha1(&self, sha1: &[u8; 20]) -> bool;

    /// Whether each of `sha1s` is in the set, in order. A large filter answers a list several
    /// times faster than one hash at a time (see `BreachFilter::contains_sha1_many`).
    fn contains_each_sha1(&self, sha1s: &[[u8; 20]]) -> Vec<bool> {
        sha1s.iter().map(|sha1| self.contains_sha1(sha1)).collect()
    }

    fn contains(&self, password: &Password) -> bool {
        self.contains_sha1(&sha1_of(password.as_str()))
    }
}

pub fn sha1_of(text: &str) -> [u8; 20] {
    Sha1::digest(text.as_bytes()).into()
}

impl BreachedPasswords for BreachFilter {
    fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        BreachFilter::contains_sha1(self, sha1)
    }

    fn contains_each_sha1(&self, sha1s: &[[u8; 20]]) -> Vec<bool> {
        self.contains_sha1_many(sha1s).collect()
    }
}

/// Why the built-in filter could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("cannot build the built-in breached-password filter: {0}")]
    Build(#[from] BuildError),
    #[error("the built-in breached-password filter is unreadable: {0}")]
    Open(#[from] OpenError),
}

/// The most common passwords, kept in `crates/accounts/data/common-passwords.txt`, as a filter.
pub fn common_passwords() -> Result<BreachFilter, BuiltinError> {
    let hashes = include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(sha1_of);
    let image = breach::build_in_memory(hashes, FingerprintBits::Sixteen, 0)?;
    Ok(BreachFilter::from_image(&image)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_found_by_their_sha1() {
        let list = common_passwords().unwrap();
        assert!(list.contains(&Password::new("password123")));
        assert!(list.contains(&Password::new("qwerty")));
        // These two could be false positives (2^-16 each); the filter's seeds are fixed, so
        // the answer is the same on every run.
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
        assert_eq!(
            list.contains_each_sha1(&[sha1, sha1_of("Password123"), sha1]),
            [true, false, true]
        );
    }

    #[test]
    fn every_listed_password_is_refused() {
        let list = common_passwords().unwrap();
        for line in include_str!("../data/common-passwords.txt").lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                assert!(list.contains(&Password::new(line)), "{line}");
            }
        }
    }
}

//! Keyed hashes of high-entropy secrets: OAuth client secrets, device passwords, claim codes.
//!
//! These secrets are random and long, so a slow password hash would buy nothing and cost a lot (a
//! device connects far more often than a person logs in). HMAC-SHA-256 under a server key instead:
//! a stolen table is useless without the key, and equal secrets hash equally, so a secret can also
//! be looked up by its hash.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A secret Warden makes and hands over once (a client secret, a device password): 32 random
/// bytes, base64url. Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RandomSecret(String);

impl RandomSecret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret as a client presents it, to be checked against a stored hash.
    pub fn from_presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RandomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomSecret(<redacted>)")
    }
}

/// Hashes secrets under one server key. [`SecretHasher::for_purpose`] derives independent keys,
/// so a hash made for one kind of secret never matches another kind.
#[derive(Clone)]
pub struct SecretHasher {
    key: Vec<u8>,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(<key redacted>)")
    }
}

impl SecretHasher {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// A hasher under a key derived from this one and `purpose`.
    pub fn for_purpose(&self, purpose: &str) -> Self {
        let mut mac = self.mac();
        mac.update(b"warden keyed-hash purpose: ");
        mac.update(purpose.as_bytes());
        Self::new(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The hash to store, in lower-case hex.
    pub fn hash(&self, secret: &str) -> String {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time comparison of a presented secret with a stored hash.
    pub fn matches(&self, secret: &str, stored_hash: &str) -> bool {
        let Ok(expected) = hex::decode(stored_hash) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_only_their_secret_key_and_purpose() {
        let hasher = SecretHasher::new(vec![7; 32]);
        let hash = hasher.hash("secret");
        assert!(hasher.matches("secret", &hash));
        assert!(!hasher.matches("secreT", &hash));
        assert!(!SecretHasher::new(vec![8; 32]).matches("secret", &hash));
        assert!(!hasher.matches("secret", "not hex"));
        let passwords = hasher.for_purpose("device-password");
        assert!(!passwords.matches("secret", &hash));
        assert_ne!(
            passwords.hash("x"),
            hasher.for_purpose("claim-code").hash("x")
        );
        assert_eq!(
            passwords.hash("x"),
            hasher.for_purpose("device-password").hash("x")
        );
    }
}

//! A device's MQTT password, and the keyed hashes its secrets are stored as.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokens::keyed::SecretHasher;

use crate::ClaimCode;

/// A device's MQTT password: 32 random bytes, base64url. Shown once, in the factory bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePassword(String);

impl DevicePassword {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DevicePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevicePassword(<redacted>)")
    }
}

/// The keyed hashes of device secrets, each under its own key derived from the server key.
#[derive(Clone, Debug)]
pub struct DeviceHashers {
    passwords: SecretHasher,
    claim_codes: SecretHasher,
}

impl DeviceHashers {
    pub fn new(server_key: &SecretHasher) -> Self {
        Self {
            passwords: server_key.for_purpose("device-password"),
            claim_codes: server_key.for_purpose("claim-code"),
        }
    }

    pub fn password_hash(&self, password: &DevicePassword) -> String {
        self.passwords.hash(password.as_str())
    }

    pub fn password_matches(&self, password: &DevicePassword, stored_hash: &str) -> bool {
        self.passwords.matches(password.as_str(), stored_hash)
    }

    pub fn claim_code_hash(&self, code: &ClaimCode) -> String {
        self.claim_codes.hash(code.as_str())
    }

    pub fn claim_code_matches(&self, code: &ClaimCode, stored_hash: &str) -> bool {
        self.claim_codes.matches(code.as_str(), stored_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_claim_codes_hash_apart() {
        let hashers = DeviceHashers::new(&SecretHasher::new(vec![3; 32]));
        let password = DevicePassword::generate();
        let hash = hashers.password_hash(&password);
        assert!(hashers.password_matches(&password, &hash));
        assert!(!hashers.password_matches(&DevicePassword::generate(), &hash));
        let code = ClaimCode::generate();
        // The same text hashed as a password and as a claim code gives unrelated hashes.
        let as_password = DevicePassword::from_presented(code.as_str());
        assert_ne!(
            hashers.claim_code_hash(&code),
            hashers.password_hash(&as_password)
        );
        assert!(hashers.claim_code_matches(&code, &hashers.claim_code_hash(&code)));
    }
}

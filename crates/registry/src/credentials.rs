//! A device's MQTT password, and the keyed hashes its secrets are stored as.

use tokens::keyed::{RandomSecret, SecretHasher};

use crate::ClaimCode;

/// A device's MQTT password: shown once, in the factory bundle.
pub type DevicePassword = RandomSecret;

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

//! Password hashing: Argon2id at OWASP's recommended parameters for every hash Warden writes, and
//! verification of the bcrypt hashes imported from the reference system, which are replaced at the
//! next successful login.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use model::{HashScheme, PasswordHash};

/// A password as typed. Never shown in `Debug` output, so it cannot reach a log line by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The cost of one Argon2id hash. OWASP's Password Storage Cheat Sheet recommends, as equivalent
/// choices, m=19 MiB/t=2/p=1 or m=46 MiB/t=1/p=1; Warden takes the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    pub const OWASP: HashCost = HashCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters: {0}")]
    Parameters(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// What checking a password against a stored hash found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The password is right. `rehash` says the stored hash is weaker than what Warden writes now
    /// (bcrypt, or Argon2id at older parameters) and should be replaced.
    Match {
        rehash: bool,
    },
    Mismatch,
}

/// Hashes and verifies passwords. Each call costs tens of milliseconds of CPU on purpose: run it
/// on a blocking thread, never on the async executor.
#[derive(Clone, Debug)]
pub struct Hasher {
    cost: HashCost,
    /// A hash of a random password, checked when the account does not exist, so that an unknown
    /// e-mail address takes as long as a wrong password.
    decoy: PasswordHash,
}

impl Hasher {
    pub fn new(cost: HashCost) -> Result<Self, HashError> {
        let random: [u8; 16] = rand::random();
        let decoy = hash_at(cost, &Password::new(hex::encode(random)))?;
        Ok(Self { cost, decoy })
    }

    /// A new Argon2id hash with a random salt, in PHC string format.
    pub fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        hash_at(self.cost, password)
    }

    /// Checks `password` against `stored`. A malformed stored hash counts as a mismatch.
    pub fn verify(&self, password: &Password, stored: &PasswordHash) -> Verification {
        match stored.scheme() {
            HashScheme::Argon2id => {
                let Ok(parsed) = argon2::PasswordHash::new(stored.as_str()) else {
                    return Verification::Mismatch;
                };
                let Ok(argon2) = argon2_at(self.cost) else {
                    return Verification::Mismatch;
                };
                if argon2
                    .verify_password(password.as_str().as_bytes(), &parsed)
                    .is_err()
                {
                    return Verification::Mismatch;
                }
                let current = Params::try_from(&parsed).is_ok_and(|params| {
                    params.m_cost() >= self.cost.memory_kib
                        && params.t_cost() >= self.cost.iterations
                        && params.p_cost() >= self.cost.parallelism
                });
                Verification::Match { rehash: !current }
            }
            HashScheme::Bcrypt => match bcrypt::verify(password.as_str(), stored.as_str()) {
                Ok(true) => Verification::Match { rehash: true },
                _ => Verification::Mismatch,
            },
        }
    }

    /// Spends the time of one verification and always answers mismatch: used when there is no
    /// account, so the answer comes no faster than for a wrong password.
    pub fn verify_decoy(&self, password: &Password) -> Verification {
        let _ = self.verify(password, &self.decoy);
        Verification::Mismatch
    }
}

fn argon2_at(cost: HashCost) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError::Parameters(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_at(cost: HashCost, password: &Password) -> Result<PasswordHash, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let encoded = argon2_at(cost)?
        .hash_password(password.as_str().as_bytes(), &salt)
        .map_err(|e| HashError::Hashing(e.to_string()))?
        .to_string();
    PasswordHash::parse(&encoded).map_err(|e| HashError::Hashing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests are about behaviour, not cost.
    const TEST_COST: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn argon2id_hashes_verify_and_are_salted() {
        let hasher = Hasher::new(TEST_COST).unwrap();
        let password = Password::new("correct horse battery staple");
        let first = hasher.hash(&password).unwrap();
        let second = hasher.hash(&password).unwrap();
        assert_eq!(first.scheme(), HashScheme::Argon2id);
        assert!(first.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_ne!(first, second, "every hash has its own salt");
        assert_eq!(
            hasher.verify(&password, &first),
            Verification::Match { rehash: false }
        );
        assert_eq!(
            hasher.verify(&Password::new("wrong"), &first),
            Verification::Mismatch
        );
    }

    #[test]
    fn weaker_hashes_verify_and_ask_to_be_replaced() {
        let weak = Hasher::new(TEST_COST).unwrap();
        let strong = Hasher::new(HashCost {
            memory_kib: 128,
            ..TEST_COST
        })
        .unwrap();
        let password = Password::new("correct horse battery staple");
        let old = weak.hash(&password).unwrap();
        assert_eq!(
            strong.verify(&password, &old),
            Verification::Match { rehash: true }
        );

        let bcrypt_hash =
            PasswordHash::parse(&bcrypt::hash("hunter2-but-longer", 4).unwrap()).unwrap();
        assert_eq!(
            strong.verify(&Password::new("hunter2-but-longer"), &bcrypt_hash),
            Verification::Match { rehash: true }
        );
        assert_eq!(
            strong.verify(&Password::new("hunter3"), &bcrypt_hash),
            Verification::Mismatch
        );
    }

    #[test]
    fn the_owasp_cost_is_what_production_uses() {
        let hasher = Hasher::new(HashCost::OWASP).unwrap();
        let hash = hasher.hash(&Password::new("x")).unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert_eq!(
            hasher.verify_decoy(&Password::new("x")),
            Verification::Mismatch
        );
    }

    #[test]
    fn passwords_are_redacted_in_debug_output() {
        assert_eq!(
            format!("{:?}", Password::new("s3cret")),
            "Password(<redacted>)"
        );
    }
}

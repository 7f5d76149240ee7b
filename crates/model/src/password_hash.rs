//! Stored password hashes: an Argon2id PHC string, or a bcrypt hash carried over from an older system.

use std::fmt;

/// A password hash as it is stored, in one of the two formats Warden accepts.
///
/// Argon2id (PHC string format) is what Warden writes. bcrypt (`$2a$`, `$2b$`, `$2y$`) is accepted
/// so that users imported from the reference system can still log in; their hash is replaced by an
/// Argon2id one at their next login. The hash is never shown in `Debug` output, so it cannot end up
/// in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    scheme: HashScheme,
    encoded: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashScheme {
    Argon2id,
    Bcrypt,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error(
        "not a password hash Warden accepts: expected an Argon2id PHC string ($argon2id$...) or a bcrypt hash ($2b$...)"
    )]
    UnknownScheme,
    #[error(
        "malformed bcrypt hash: expected $2a$, $2b$ or $2y$, a cost from 04 to 31, and 53 characters of salt and hash"
    )]
    MalformedBcrypt,
    #[error("malformed Argon2id hash: expected $argon2id$v=19$m=…,t=…,p=…$SALT$HASH")]
    MalformedArgon2id,
}

const BCRYPT_ALPHABET: &str = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl PasswordHash {
    pub fn parse(encoded: &str) -> Result<Self, PasswordHashError> {
        let scheme = if encoded.starts_with("$argon2id$") {
            check_argon2id(encoded)?;
            HashScheme::Argon2id
        } else if encoded.starts_with("$2") {
            check_bcrypt(encoded)?;
            HashScheme::Bcrypt
        } else {
            return Err(PasswordHashError::UnknownScheme);
        };
        Ok(Self {
            scheme,
            encoded: encoded.to_owned(),
        })
    }

    pub fn scheme(&self) -> HashScheme {
        self.scheme
    }

    pub fn as_str(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({:?}, <redacted>)", self.scheme)
    }
}

fn check_bcrypt(encoded: &str) -> Result<(), PasswordHashError> {
    // $2b$12$ + 22 characters of salt + 31 characters of hash = 60 characters.
    let mut parts = encoded.split('$');
    let well_formed = parts.next() == Some("")
        && matches!(parts.next(), Some("2a" | "2b" | "2y"))
        && parts
            .next()
            .and_then(|cost| (cost.len() == 2).then(|| cost.parse::<u8>().ok()).flatten())
            .is_some_and(|cost| (4..=31).contains(&cost))
        && parts.next().is_some_and(|rest| {
            rest.len() == 53 && rest.chars().all(|c| BCRYPT_ALPHABET.contains(c))
        })
        && parts.next().is_none();
    well_formed
        .then_some(())
        .ok_or(PasswordHashError::MalformedBcrypt)
}

fn check_argon2id(encoded: &str) -> Result<(), PasswordHashError> {
    let is_b64 = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    };
    let parts: Vec<&str> = encoded.split('$').collect();
    let well_formed = matches!(
        parts.as_slice(),
        ["", "argon2id", version, params, salt, hash]
            if version.starts_with("v=")
                && params.split(',').count() == 3
                && params.split(',').all(|p| p.split_once('=').is_some_and(|(k, v)| {
                    matches!(k, "m" | "t" | "p") && v.parse::<u32>().is_ok()
                }))
                && is_b64(salt)
                && is_b64(hash)
    );
    well_formed
        .then_some(())
        .ok_or(PasswordHashError::MalformedArgon2id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<HashScheme, PasswordHashError>) {
        assert_eq!(
            PasswordHash::parse(input).map(|hash| hash.scheme()),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn accepts_argon2id_and_bcrypt_and_nothing_else() {
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        check(bcrypt, Ok(HashScheme::Bcrypt));
        check(&bcrypt.replace("$2b$", "$2y$"), Ok(HashScheme::Bcrypt));
        check(
            &bcrypt.replace("$12$", "$03$"),
            Err(PasswordHashError::MalformedBcrypt),
        );
        check(
            &bcrypt.replace("$12$", "$32$"),
            Err(PasswordHashError::MalformedBcrypt),
        );
        check(
            &bcrypt.replace("$2b$", "$2x$"),
            Err(PasswordHashError::MalformedBcrypt),
        );
        check(&bcrypt[..59], Err(PasswordHashError::MalformedBcrypt));
        check(
            &bcrypt.replace('R', "!"),
            Err(PasswordHashError::MalformedBcrypt),
        );
        check(
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
            Ok(HashScheme::Argon2id),
        );
        check(
            "$argon2id$v=19$m=19456,t=2$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
            Err(PasswordHashError::MalformedArgon2id),
        );
        check(
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            Err(PasswordHashError::UnknownScheme),
        );
        check("hunter2", Err(PasswordHashError::UnknownScheme));
        check("", Err(PasswordHashError::UnknownScheme));
    }

    #[test]
    fn debug_output_never_shows_the_hash() {
        let hash =
            PasswordHash::parse("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW")
                .expect("valid bcrypt hash");
        assert!(!format!("{hash:?}").contains("R9h"));
    }
}

//! What a new password must be: long enough, not absurdly long, not the account's own name, and
//! not known from a breach. Following NIST SP 800-63B: length and breach checks, no composition
//! rules.

use model::Email;

use crate::breached::BreachedPasswords;
use crate::password::Password;

pub const MIN_LENGTH: usize = 12;
/// Argon2 takes any length, but a bound keeps requests cheap to parse and to refuse.
pub const MAX_LENGTH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("the password must have at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("the password must have at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("the password must not be your e-mail address")]
    SameAsEmail,
    #[error("this password appears in known data breaches; choose another one")]
    Breached,
}

/// Checks a password someone wants to set for the account `email`.
pub fn check_new_password(
    password: &Password,
    email: &Email,
    breached: &dyn BreachedPasswords,
) -> Result<(), PasswordRejection> {
    let text = password.as_str();
    let length = text.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordRejection::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PasswordRejection::TooLong);
    }
    let lowered = text.trim().to_lowercase();
    let local_part = email.as_str().split('@').next().unwrap_or_default();
    if lowered == email.as_str() || lowered == local_part {
        return Err(PasswordRejection::SameAsEmail);
    }
    if breached.contains(password) {
        return Err(PasswordRejection::Breached);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breached::common_passwords;

    fn check(password: &str, expected: Result<(), PasswordRejection>) {
        let email = Email::parse("longusername@example.com").unwrap();
        let actual = check_new_password(
            &Password::new(password),
            &email,
            &common_passwords().unwrap(),
        );
        assert_eq!(actual, expected, "password {password:?}");
    }

    #[test]
    fn new_passwords_are_checked_for_length_identity_and_breaches() {
        check("correct horse battery", Ok(()));
        check("short", Err(PasswordRejection::TooShort));
        check("ëëëëëëëëëëë", Err(PasswordRejection::TooShort));
        check(&"x".repeat(MAX_LENGTH + 1), Err(PasswordRejection::TooLong));
        check(
            "LongUserName@Example.com",
            Err(PasswordRejection::SameAsEmail),
        );
        check("longusername", Err(PasswordRejection::SameAsEmail));
        check("washingmachine", Err(PasswordRejection::Breached));
        check("password1234", Err(PasswordRejection::Breached));
    }
}

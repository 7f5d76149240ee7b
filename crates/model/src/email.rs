//! E-mail addresses as account names: trimmed, lower-cased, bounded, and plausibly deliverable.

use std::fmt;

/// An e-mail address used as a login name. Stored lower-cased so that lookups are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the e-mail address is empty")]
    Empty,
    #[error("the e-mail address is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the e-mail address must have the form name@domain.example")]
    Malformed,
}

impl Email {
    /// RFC 5321 limits a forward path to 256 octets including the angle brackets.
    pub const MAX_LEN: usize = 254;

    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong { max: Self::MAX_LEN });
        }
        // Checked in its stored, lowercase form: some capitals lowercase to more than one
        // character (`İ` to `i` and a combining dot), which must not slip past the checks.
        let normal = trimmed.to_lowercase();
        if normal.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong { max: Self::MAX_LEN });
        }
        let (local, domain) = normal.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '@');
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(EmailError::Malformed);
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, EmailError>) {
        let actual = Email::parse(input);
        assert_eq!(
            actual.as_ref().map(Email::as_str),
            expected.as_ref().map(|s| *s),
            "input {input:?}"
        );
    }

    #[test]
    fn parses_and_normalises_addresses() {
        check("Alice@Example.COM", Ok("alice@example.com"));
        check(
            "  bob+wash@laundry.example \n",
            Ok("bob+wash@laundry.example"),
        );
        check("", Err(EmailError::Empty));
        check("   ", Err(EmailError::Empty));
        check("no-at-sign.example", Err(EmailError::Malformed));
        check("@example.com", Err(EmailError::Malformed));
        check("alice@localhost", Err(EmailError::Malformed));
        check("alice@-bad.example", Err(EmailError::Malformed));
        // Found by fuzzing: `İ` lowercases to `i` and a combining dot, which no domain label
        // takes, so the stored form would not parse again.
        check("a@\u{130}.example", Err(EmailError::Malformed));
        check("al ice@example.com", Err(EmailError::Malformed));
        check("alice@exa..mple.com", Err(EmailError::Malformed));
        let long = format!("{}@example.com", "a".repeat(250));
        check(
            &long,
            Err(EmailError::TooLong {
                max: Email::MAX_LEN,
            }),
        );
    }
}

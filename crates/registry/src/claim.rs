//! Claim codes: the secret printed on a device's label that lets its buyer become its owner.

use std::fmt;

/// Crockford's base-32 alphabet: no I, L, O or U, so a code read off a label is not misread.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 20 characters of 5 bits: 100 random bits, far beyond guessing even without the throttle.
const LENGTH: usize = 20;

/// `length` random characters of Crockford's alphabet (5 bits each; 32 divides 256, so taking a
/// random byte modulo 32 is uniform).
pub(crate) fn random_base32(length: usize) -> String {
    (0..length)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>() % 32)]))
        .collect()
}

/// A claim code in its canonical form (20 upper-case Crockford characters, no separators). It is
/// shown once, grouped for reading (`ABCD-EFGH-…`), and stored only as a keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimCodeError {
    #[error("a claim code has {LENGTH} letters and digits (dashes and spaces are ignored)")]
    WrongLength,
    #[error("a claim code contains only letters and digits")]
    Malformed,
}

impl ClaimCode {
    pub fn generate() -> Self {
        Self(random_base32(LENGTH))
    }

    /// Reads a code as a person types it: any case, with dashes or spaces, and the letters that
    /// look like digits (O, I, L) taken as the digits.
    pub fn parse(input: &str) -> Result<Self, ClaimCodeError> {
        let mut code = String::with_capacity(LENGTH);
        for c in input.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(ClaimCodeError::Malformed);
            }
            if code.len() == LENGTH {
                return Err(ClaimCodeError::WrongLength);
            }
            code.push(c);
        }
        if code.len() != LENGTH {
            return Err(ClaimCodeError::WrongLength);
        }
        Ok(Self(code))
    }

    /// The canonical form: what is hashed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Grouped by four for a label: `ABCD-EFGH-JKMN-PQRS-TVWX`.
    pub fn grouped(&self) -> String {
        let groups: Vec<&str> = self
            .0
            .as_bytes()
            .chunks(4)
            .filter_map(|chunk| std::str::from_utf8(chunk).ok())
            .collect();
        groups.join("-")
    }

    /// What a label's QR code holds: a URI naming the device and its code, which the console's
    /// claim page (or any scanner app) can read without a separate field for the id.
    pub fn label_uri(&self, device_id: &model::DeviceId) -> String {
        format!("warden-claim:{device_id}?code={}", self.grouped())
    }
}

impl fmt::Debug for ClaimCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimCode(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, ClaimCodeError>) {
        assert_eq!(
            ClaimCode::parse(input).map(|code| code.as_str().to_owned()),
            expected.map(str::to_owned),
            "{input:?}"
        );
    }

    #[test]
    fn codes_are_read_the_way_people_type_them() {
        check("ABCD-EFGH-JKMN-PQRS-TVWX", Ok("ABCDEFGHJKMNPQRSTVWX"));
        check("abcd efgh jkmn pqrs tvwx", Ok("ABCDEFGHJKMNPQRSTVWX"));
        check("oooo-iiii-llll-0000-1111", Ok("00001111111100001111"));
        check("ABCD-EFGH-JKMN-PQRS-TVW", Err(ClaimCodeError::WrongLength));
        check(
            "ABCD-EFGH-JKMN-PQRS-TVWXY",
            Err(ClaimCodeError::WrongLength),
        );
        check("", Err(ClaimCodeError::WrongLength));
        check("ABCD-EFGH-JKMN-PQRS-TVWU", Err(ClaimCodeError::Malformed));
        check("ABCD/EFGH", Err(ClaimCodeError::Malformed));
        check("ÄBCD-EFGH-JKMN-PQRS-TVWX", Err(ClaimCodeError::Malformed));
    }

    #[test]
    fn generated_codes_parse_back_from_their_label_form() {
        let code = ClaimCode::generate();
        assert_eq!(code.grouped().len(), LENGTH + 4);
        assert_eq!(ClaimCode::parse(&code.grouped()), Ok(code.clone()));
        assert_ne!(ClaimCode::generate(), code);
        let device = model::DeviceId::parse("washer-1").unwrap();
        assert!(
            code.label_uri(&device)
                .starts_with("warden-claim:washer-1?code=")
        );
        assert!(!format!("{code:?}").contains(code.as_str()));
    }
}

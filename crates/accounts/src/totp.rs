//! The second factor: time-based one-time passwords (RFC 6238, HMAC-SHA1, 6 digits, 30-second
//! steps), as every authenticator app makes them, and single-use recovery codes.
//!
//! Written here rather than taken from a crate because it is twenty lines of RFC 4226 and Warden
//! needs the matched time step back, to refuse a code seen before (a replay within its window).

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use model::Timestamp;
use sha1::Sha1;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted on either side of now, for clock drift and slow typing.
const DRIFT_STEPS: i64 = 1;

/// A shared TOTP secret: 160 random bits (RFC 4226's recommended length).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let bytes: [u8; 20] = rand::random();
        Self(bytes.to_vec())
    }

    /// From the base32 form authenticator apps use (spaces and case ignored).
    pub fn from_base32(text: &str) -> Option<Self> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .ok()
            .filter(|bytes| bytes.len() >= 10)
            .map(Self)
    }

    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    /// The `otpauth://` URI an authenticator app imports (Key Uri Format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let encode = |text: &str| {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            encode(issuer),
            encode(account),
            self.to_base32(),
            encode(issuer)
        )
    }

    /// The code for time step `step` (RFC 4226 HOTP with the step as counter).
    pub fn code_at_step(&self, step: i64) -> String {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[19] & 0x0f);
        let binary = u32::from_be_bytes([
            digest[offset] & 0x7f,
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]);
        format!(
            "{:0width$}",
            binary % 10u32.pow(DIGITS),
            width = DIGITS as usize
        )
    }

    /// The time step a correct `code` was made for, if any, among now and its neighbours.
    /// Steps at or before `last_used` are refused, so each code works once.
    pub fn verify(&self, code: &str, now: Timestamp, last_used: Option<i64>) -> Option<i64> {
        let code = code.trim().replace(' ', "");
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = step_at(now);
        (current - DRIFT_STEPS..=current + DRIFT_STEPS)
            .filter(|step| last_used.is_none_or(|last| *step > last))
            .find(|step| tokens::opaque::constant_time_eq(&self.code_at_step(*step), &code))
    }
}

pub fn step_at(now: Timestamp) -> i64 {
    now.unix_millis().div_euclid(1000).div_euclid(STEP_SECONDS)
}

/// Ten recovery codes, shown once: 80 random bits each, as `xxxx-xxxx-xxxx-xxxx`.
pub fn generate_recovery_codes() -> Vec<String> {
    (0..10)
        .map(|_| {
            let bytes: [u8; 10] = rand::random();
            let text = BASE32_NOPAD.encode(&bytes).to_lowercase();
            text.as_bytes()
                .chunks(4)
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// What the database keeps of a recovery code: the SHA-256 of its normalised form.
pub fn recovery_code_hash(code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    tokens::opaque::token_hash(&normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows, truncated to 6 digits.
    #[test]
    fn the_rfc_6238_test_vectors_hold() {
        let secret = TotpSecret(b"12345678901234567890".to_vec());
        for (time, expected) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            let step = step_at(Timestamp::from_unix_millis(time * 1000));
            assert_eq!(secret.code_at_step(step), expected, "time {time}");
        }
    }

    #[test]
    fn codes_work_near_now_and_only_once() {
        let secret = TotpSecret::generate();
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let step = step_at(now);
        let code = secret.code_at_step(step);
        assert_eq!(secret.verify(&code, now, None), Some(step));
        assert_eq!(
            secret.verify(&code, now, Some(step)),
            None,
            "replay refused"
        );
        assert_eq!(
            secret.verify(&secret.code_at_step(step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            secret.verify(&secret.code_at_step(step - 3), now, None),
            None
        );
        assert_eq!(secret.verify("12345", now, None), None);
        assert_eq!(secret.verify("abcdef", now, None), None);
        assert_eq!(
            TotpSecret::from_base32(&secret.to_base32().to_lowercase()),
            Some(secret.clone())
        );
        assert!(
            secret
                .otpauth_uri("Warden", "ada@example.com")
                .starts_with("otpauth://totp/Warden:ada@example.com?secret=")
        );
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_in_normal_form() {
        let codes = generate_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 19);
        assert_ne!(codes[0], codes[1]);
        assert_eq!(
            recovery_code_hash(&codes[0]),
            recovery_code_hash(&codes[0].to_uppercase().replace('-', " "))
        );
    }
}

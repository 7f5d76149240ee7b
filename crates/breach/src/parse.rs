//! One line of HaveIBeenPwned's download format: `SHA1HEX:COUNT`, hex in either case, an optional
//! carriage return before the newline.

/// A parsed line: the hash and how often it was seen in breaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub sha1: [u8; 20],
    pub count: u64,
}

/// What is wrong with a line, in words an operator can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected SHA1HEX:COUNT, found no ':' after 40 hex digits")]
    Shape,
    #[error("the hash is not 40 hex digits")]
    Hash,
    #[error("the count is not a whole number")]
    Count,
}

/// Parses `line` (without its `\n`). `Ok(None)` for a blank line, which carries nothing.
pub fn line(line: &[u8]) -> Result<Option<Entry>, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Some((hash, rest)) = line.split_first_chunk::<40>() else {
        return Err(if line.contains(&b':') {
            LineError::Hash
        } else {
            LineError::Shape
        });
    };
    // Branch-free: hex digits of random hashes would mispredict a branch on every other digit,
    // which made this loop the build's bottleneck.
    let mut sha1 = [0u8; 20];
    let mut invalid = 0u8;
    for (byte, pair) in sha1.iter_mut().zip(hash.chunks_exact(2)) {
        let high = NIBBLES[usize::from(pair[0])];
        let low = NIBBLES[usize::from(pair[1])];
        invalid |= high | low;
        *byte = high << 4 | (low & 0x0f);
    }
    if invalid & INVALID != 0 {
        return Err(LineError::Hash);
    }
    let digits = match rest.split_first() {
        Some((b':', digits)) => digits,
        _ if rest.first().is_some_and(u8::is_ascii_hexdigit) => return Err(LineError::Hash),
        _ => return Err(LineError::Shape),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(LineError::Count);
    }
    let mut count = 0u64;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return Err(LineError::Count);
        }
        count = count * 10 + u64::from(digit - b'0');
    }
    Ok(Some(Entry { sha1, count }))
}

/// Marks a byte that is no hex digit in [`NIBBLES`].
const INVALID: u8 = 0x80;

/// The value of each hex digit, [`INVALID`] for every other byte.
static NIBBLES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        table[b'A' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8";

    fn check(input: &str, expected: Result<Option<u64>, LineError>) {
        let parsed = line(input.as_bytes()).map(|entry| entry.map(|entry| entry.count));
        assert_eq!(parsed, expected, "{input:?}");
    }

    #[test]
    fn lines_in_the_download_format_parse_and_others_say_what_is_wrong() {
        check(&format!("{PASSWORD}:52256179"), Ok(Some(52256179)));
        check(&format!("{PASSWORD}:3\r"), Ok(Some(3)));
        check(&format!("{}:1", PASSWORD.to_lowercase()), Ok(Some(1)));
        check("", Ok(None));
        check("\r", Ok(None));
        check(PASSWORD, Err(LineError::Shape));
        check(&format!("{PASSWORD}:"), Err(LineError::Count));
        check(&format!("{PASSWORD}:12x"), Err(LineError::Count));
        check(&format!("{PASSWORD}:-1"), Err(LineError::Count));
        check(
            &format!("{PASSWORD}:99999999999999999999"),
            Err(LineError::Count),
        );
        check(&format!("{PASSWORD}0:1"), Err(LineError::Hash));
        check(&format!("{}:1", &PASSWORD[1..]), Err(LineError::Hash));
        check(&format!("G{}:1", &PASSWORD[1..]), Err(LineError::Hash));
        check("hello world", Err(LineError::Shape));
    }

    #[test]
    fn the_hash_is_decoded_from_hex() {
        let entry = line(format!("{PASSWORD}:1").as_bytes()).unwrap().unwrap();
        assert_eq!(entry.sha1[0], 0x5B);
        assert_eq!(entry.sha1[19], 0xD8);
    }
}

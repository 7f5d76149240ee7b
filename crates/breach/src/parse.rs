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
    let blank = || line.iter().all(u8::is_ascii_whitespace);
    let Some((hash, rest)) = line.split_first_chunk::<40>() else {
        return if blank() {
            Ok(None)
        } else if line.contains(&b':') {
            Err(LineError::Hash)
        } else {
            Err(LineError::Shape)
        };
    };
    let Some(sha1) = decode_hex(hash) else {
        return if blank() {
            Ok(None)
        } else {
            Err(LineError::Hash)
        };
    };
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

/// The well-formed line at the start of `bytes`, ended by `\n` or `\r\n`, and the bytes it
/// takes with its line end; `None` for anything else, which [`line`] then parses (and explains).
/// Finding the line end while parsing spares a separate search for it, which cost half as much
/// again as the parse.
#[inline]
pub fn line_at(bytes: &[u8]) -> Option<(Entry, usize)> {
    let (hash, rest) = bytes.split_first_chunk::<40>()?;
    let sha1 = decode_hex(hash)?;
    let (b':', rest) = rest.split_first()? else {
        return None;
    };
    let mut count = 0u64;
    let mut digits = 0;
    for &digit in rest.iter().take(20) {
        if !digit.is_ascii_digit() {
            break;
        }
        // Wrapping: a twentieth digit may overflow, and makes the line no well-formed one.
        count = count.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
        digits += 1;
    }
    if digits == 0 || digits > 19 {
        return None;
    }
    let end = match rest.get(digits..)? {
        [b'\n', ..] => 1,
        [b'\r', b'\n', ..] => 2,
        _ => return None,
    };
    Some((Entry { sha1, count }, 41 + digits + end))
}

/// 40 hex digits, either case, as 20 bytes; `None` if any is no hex digit.
///
/// Eight digits at a time in one 64-bit word, without a branch or a table per digit: this is
/// the build's innermost loop (a digit-by-digit decode cost about half of the time per line),
/// and random hashes would mispredict any branch on the digits.
#[inline]
fn decode_hex(hash: &[u8; 40]) -> Option<[u8; 20]> {
    let mut sha1 = [0u8; 20];
    let mut valid = true;
    for (bytes, digits) in sha1.chunks_exact_mut(4).zip(hash.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(digits);
        let (value, ok) = decode_eight(u64::from_le_bytes(word));
        bytes.copy_from_slice(&value.to_le_bytes());
        valid &= ok;
    }
    valid.then_some(sha1)
}

/// Eight hex digits (the first in the lowest byte) as four bytes, and whether all were digits.
#[inline]
fn decode_eight(word: u64) -> (u32, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x80 * ONES;
    // Per byte, bit 7 of `(x + 0x80 - lo) & !(x + 0x7f - hi)` is set exactly when lo <= x <= hi,
    // as long as every byte is below 0x80 (bytes above make the word invalid anyway).
    let in_range = |x: u64, lo: u64, hi: u64| {
        x.wrapping_add((0x80 - lo) * ONES) & !x.wrapping_add((0x7f - hi) * ONES) & HIGH
    };
    let digit = in_range(word, u64::from(b'0'), u64::from(b'9'));
    // Setting bit 5 folds 'A'..='F' onto 'a'..='f' and moves no other byte into that range.
    let letter = in_range(word | (0x20 * ONES), u64::from(b'a'), u64::from(b'f'));
    let valid = word & HIGH == 0 && digit | letter == HIGH;
    // '0'..='9' is 0x30..=0x39 and the letters 0x41.. or 0x61..: the low nibble, plus 9 for a
    // letter (bit 6 set).
    let nibbles = (word & (0x0f * ONES)) + 9 * ((word >> 6) & ONES);
    // Byte 2k becomes nibble 2k << 4 | nibble 2k+1; then bytes 0, 2, 4, 6 are packed together.
    let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let packed = (pairs | (pairs >> 16)) & 0xffff_ffff;
    (packed as u32, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8";

    fn check(input: &str, expected: Result<Option<u64>, LineError>) {
        let parsed = line(input.as_bytes()).map(|entry| entry.map(|entry| entry.count));
        assert_eq!(parsed, expected, "{input:?}");
        // The fast path agrees wherever it answers, and answers every well-formed line.
        for end in ["\n", "\r\n"] {
            let terminated = format!("{}{end}next", input.strip_suffix('\r').unwrap_or(input));
            let fast = line_at(terminated.as_bytes());
            match (&parsed, fast) {
                (Ok(Some(count)), Some((entry, length))) => {
                    assert_eq!(entry.count, *count, "{input:?}");
                    assert_eq!(&terminated[length..], "next", "{input:?}");
                }
                (_, None) => assert!(!matches!(parsed, Ok(Some(_))), "{input:?}"),
                (_, Some(_)) => panic!("the fast path accepted {input:?}"),
            }
        }
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
    fn every_byte_is_decoded_as_a_hex_digit_or_refused_at_every_position() {
        for position in 0..40 {
            for byte in 0..=255u8 {
                let mut hash = [b'0'; 40];
                hash[position] = byte;
                let expected = char::from(byte).to_digit(16).map(|value| {
                    let mut sha1 = [0u8; 20];
                    sha1[position / 2] = if position % 2 == 0 {
                        (value as u8) << 4
                    } else {
                        value as u8
                    };
                    sha1
                });
                assert_eq!(decode_hex(&hash), expected, "{byte:#x} at {position}");
            }
        }
    }

    #[test]
    fn the_hash_is_decoded_from_hex() {
        let entry = line(format!("{PASSWORD}:1").as_bytes()).unwrap().unwrap();
        assert_eq!(entry.sha1[0], 0x5B);
        assert_eq!(entry.sha1[19], 0xD8);
    }
}

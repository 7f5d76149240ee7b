//! Lines of HaveIBeenPwned's download (`SHA1HEX:COUNT`), as `warden breach build` reads them:
//! `breach::parse::line` (the checked parse, which explains a bad line) and `breach::parse::line_at`
//! (the fast path the builder runs on a whole buffer).
//!
//! Input: bytes, read as a buffer of lines.
//!
//! Properties: neither parse panics; wherever the fast path accepts a line, the checked parse
//! accepts the same line with the same hash and count, and the fast path's length ends exactly
//! after the line's end; every line the checked parse accepts, the fast path accepts too when it
//! is followed by `\n`; and a filter built from the accepted hashes contains every one of them.

#![no_main]

use breach::FingerprintBits;
use breach::parse::{line, line_at};
use libfuzzer_sys::fuzz_target;
use warden_fuzz::check;

fuzz_target!(|data: &[u8]| {
    let mut accepted = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest.iter().position(|&byte| byte == b'\n');
        let this = &rest[..end.unwrap_or(rest.len())];
        let checked = line(this);

        if let Some((entry, length)) = line_at(rest) {
            let content = &rest[..length];
            let content = content.strip_suffix(b"\n").unwrap_or(content);
            check!(
                "breach-fast-path",
                Some(length) == end.map(|at| at + 1),
                "the fast path took {length} bytes of {rest:?}, the line ends at {end:?}"
            );
            check!(
                "breach-fast-path",
                line(content) == Ok(Some(entry)),
                "the fast path read {entry:?} from {content:?}, the checked parse {:?}",
                line(content)
            );
        }

        if let Ok(Some(entry)) = checked {
            let mut terminated = this.strip_suffix(b"\r").unwrap_or(this).to_vec();
            terminated.extend_from_slice(b"\n");
            check!(
                "breach-fast-path",
                line_at(&terminated) == Some((entry, terminated.len())),
                "the checked parse read {entry:?} from {this:?}, the fast path {:?}",
                line_at(&terminated)
            );
            accepted.push(entry.sha1);
        }

        rest = match end {
            Some(at) => &rest[at + 1..],
            None => &[],
        };
    }

    if !accepted.is_empty() && accepted.len() <= 256 {
        for (bits, shard_bits) in [(FingerprintBits::Eight, 0), (FingerprintBits::Sixteen, 2)] {
            let image = breach::build_in_memory(accepted.iter().copied(), bits, shard_bits);
            let image = match image {
                Ok(image) => image,
                Err(error) => {
                    check!(
                        "breach-build",
                        false,
                        "no filter from {accepted:?}: {error}"
                    );
                    return;
                }
            };
            match breach::BreachFilter::from_image(&image) {
                Ok(filter) => {
                    for sha1 in &accepted {
                        check!(
                            "breach-build",
                            filter.contains_sha1(sha1),
                            "a built filter lacks {sha1:02x?}"
                        );
                    }
                }
                Err(error) => {
                    check!(
                        "breach-build",
                        false,
                        "a built filter does not open: {error}"
                    );
                }
            }
        }
    }
});

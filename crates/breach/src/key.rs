//! How a SHA-1 becomes a shard number and a 64-bit filter key.
//!
//! The shard is the hash's first `shard_bits` bits; the key is the 64 bits right after them, read
//! big-endian. Both come from the hash in its natural order, so a download sorted by hash (as
//! HaveIBeenPwned publishes it) spills into shards whose keys are already sorted. SHA-1 output is
//! uniform, so no further mixing is needed before xorf's own, and the builder can split a shard's
//! keys into even buckets by their leading bits to remove repeats.

/// The largest shard prefix the format allows: 65,536 shards.
pub const MAX_SHARD_BITS: u8 = 16;

/// `(shard, key)` for `sha1` in a filter with `shard_bits` shard bits (at most [`MAX_SHARD_BITS`]).
#[inline]
pub fn split(sha1: &[u8; 20], shard_bits: u8) -> (usize, u64) {
    let mut leading = [0u8; 16];
    leading.copy_from_slice(&sha1[..16]);
    let prefix = u128::from_be_bytes(leading);
    let bits = u32::from(shard_bits.min(MAX_SHARD_BITS));
    let shard = prefix.checked_shr(128 - bits).unwrap_or(0);
    let key = (prefix << bits) >> 64;
    (shard as usize, key as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hex_hash: &str, shard_bits: u8, expected: (usize, u64)) {
        let mut sha1 = [0u8; 20];
        for (index, byte) in sha1.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex_hash[index * 2..index * 2 + 2], 16).unwrap();
        }
        assert_eq!(
            split(&sha1, shard_bits),
            expected,
            "{hex_hash} / {shard_bits}"
        );
    }

    #[test]
    fn the_shard_is_the_leading_bits_and_the_key_the_64_bits_after_them() {
        let hash = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8";
        check(hash, 0, (0, 0x5BAA61E4C9B93F3F));
        check(hash, 8, (0x5B, 0xAA61E4C9B93F3F06));
        check(hash, 4, (0x5, 0xBAA61E4C9B93F3F0));
        check(hash, 16, (0x5BAA, 0x61E4C9B93F3F0682));
        check(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            12,
            (0xFFF, u64::MAX),
        );
    }
}

//! A filter file opened for lookups: checked once when opened, then looked up in place.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use xorf::{BinaryFuse8Ref, BinaryFuse16Ref, Filter, FilterRef};

use crate::format::{self, DESCRIPTOR_LEN, FingerprintBits, OpenError};
use crate::key;
use crate::mapping;

/// A set of SHA-1 hashes with no false negatives and a false-positive rate of about
/// 2^-fingerprint_bits, looked up without allocating.
#[derive(Debug)]
pub struct BreachFilter {
    bytes: Mmap,
    fingerprint_bits: FingerprintBits,
    shard_bits: u8,
    key_count: u64,
    shards: Vec<Shard>,
}

/// Where one shard's filter is in the mapping.
#[derive(Debug)]
struct Shard {
    descriptor: [u8; DESCRIPTOR_LEN],
    start: usize,
    end: usize,
    /// The descriptor's fields, to find the fingerprints a key will read before reading them.
    seed: u64,
    segment_length: u32,
    segment_length_mask: u32,
    segment_count_length: u32,
}

/// How many lookups ahead [`BreachFilter::contains_sha1_many`] asks the memory for the
/// fingerprints of the next keys: enough to keep the core's dozen or so outstanding cache misses
/// busy, few enough that the prefetched lines are still in cache when their turn comes.
const PREFETCH_DISTANCE: usize = 16;

impl BreachFilter {
    /// Maps the filter at `path` and checks it whole (header, table, every shard's checksum)
    /// before answering anything; that reads the file once, which also warms the page cache.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let file = File::open(path)?;
        Self::from_mapping(mapping::map_file(&file)?)
    }

    /// A filter from a file image held in memory (as [`crate::build_in_memory`] makes), checked
    /// and looked up exactly like a file.
    pub fn from_image(image: &[u8]) -> Result<Self, OpenError> {
        if image.is_empty() {
            return Err(OpenError::TooShort { length: 0 });
        }
        Self::from_mapping(mapping::map_copy(image)?)
    }

    fn from_mapping(bytes: Mmap) -> Result<Self, OpenError> {
        // Huge pages where the kernel can: a lookup reads three random places of a mapping far
        // larger than what the TLB covers in 4 KiB pages, and each miss costs a page walk (two
        // nested walks in a virtual machine). File data gets huge pages when the page cache
        // holds it in 2 MiB folios: when it is read in through this mapping, or was written
        // in aligned 2 MiB pieces, as the builder does. A refusal only costs speed.
        #[cfg(target_os = "linux")]
        let _ = bytes.advise(memmap2::Advice::HugePage);
        let (header, entries) = format::parse(&bytes)?;
        let width = header.fingerprint_bits.bytes();
        let shards = entries
            .iter()
            .map(|entry| {
                let field = |at: usize| {
                    let mut bytes = [0u8; 4];
                    bytes.copy_from_slice(&entry.descriptor[at..at + 4]);
                    u32::from_le_bytes(bytes)
                };
                let mut seed = [0u8; 8];
                seed.copy_from_slice(&entry.descriptor[..8]);
                Shard {
                    descriptor: entry.descriptor,
                    start: entry.offset as usize,
                    end: (entry.offset + entry.fingerprint_count * width) as usize,
                    seed: u64::from_le_bytes(seed),
                    segment_length: field(8),
                    segment_length_mask: field(12),
                    segment_count_length: field(16),
                }
            })
            .collect();
        Ok(Self {
            bytes,
            fingerprint_bits: header.fingerprint_bits,
            shard_bits: header.shard_bits,
            key_count: header.key_count,
            shards,
        })
    }

    /// Whether `sha1` is (probably) in the set: always true for a member.
    #[inline]
    pub fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        let (shard, key) = key::split(sha1, self.shard_bits);
        let Some(shard) = self.shards.get(shard) else {
            return false;
        };
        // The bounds and alignment were checked when the file was opened, so xorf's own
        // alignment assertions hold and this `get` always succeeds.
        let Some(fingerprints) = self.bytes.get(shard.start..shard.end) else {
            return false;
        };
        match self.fingerprint_bits {
            FingerprintBits::Sixteen => {
                BinaryFuse16Ref::from_dma(&shard.descriptor, fingerprints).contains(&key)
            }
            FingerprintBits::Eight => {
                BinaryFuse8Ref::from_dma(&shard.descriptor, fingerprints).contains(&key)
            }
        }
    }

    /// Whether each of `sha1s` is (probably) in the set, in order, as [`Self::contains_sha1`]
    /// answers one.
    ///
    /// A lookup in a filter larger than the caches waits on three random memory reads. Here the
    /// reads of the lookups [`PREFETCH_DISTANCE`] places ahead are started before each answer is
    /// computed, so many wait at once instead of one after the other: several times the
    /// throughput of single lookups on a large filter, the same answers, no allocation.
    pub fn contains_sha1_many<'a>(
        &'a self,
        sha1s: &'a [[u8; 20]],
    ) -> impl ExactSizeIterator<Item = bool> + 'a {
        for sha1 in sha1s.iter().take(PREFETCH_DISTANCE) {
            self.prefetch(sha1);
        }
        sha1s.iter().enumerate().map(move |(index, sha1)| {
            if let Some(ahead) = sha1s.get(index + PREFETCH_DISTANCE) {
                self.prefetch(ahead);
            }
            self.contains_sha1(sha1)
        })
    }

    /// Asks for the cache lines `sha1`'s lookup will read; a hint, so a wrong guess costs time,
    /// never a wrong answer. It repeats xorf's hashing (`mix`, `hash_of_hash` in xorf 0.13's
    /// binary fuse code), which xorf does not export; a test checks the two agree.
    #[inline]
    fn prefetch(&self, sha1: &[u8; 20]) {
        for offset in self.fingerprint_offsets(sha1).into_iter().flatten() {
            mapping::prefetch(&self.bytes, offset);
        }
    }

    /// Byte offsets in the mapping of the three fingerprints `sha1`'s lookup reads.
    #[inline]
    fn fingerprint_offsets(&self, sha1: &[u8; 20]) -> Option<[usize; 3]> {
        let (shard, key) = key::split(sha1, self.shard_bits);
        let shard = self.shards.get(shard)?;
        let hash = mix64(key.wrapping_add(shard.seed));
        let h0 = ((u128::from(hash) * u128::from(shard.segment_count_length)) >> 64) as u32;
        let h1 = (h0.wrapping_add(shard.segment_length))
            ^ ((hash >> 18) as u32 & shard.segment_length_mask);
        let h2 = (h0
            .wrapping_add(shard.segment_length)
            .wrapping_add(shard.segment_length))
            ^ (hash as u32 & shard.segment_length_mask);
        let width = self.fingerprint_bits.bytes() as usize;
        Some([h0, h1, h2].map(|position| shard.start + position as usize * width))
    }

    /// Distinct keys the filter was built from.
    pub fn key_count(&self) -> u64 {
        self.key_count
    }

    pub fn fingerprint_bits(&self) -> FingerprintBits {
        self.fingerprint_bits
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The whole file's size, header and padding included.
    pub fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// MurmurHash3's 64-bit finalizer, as xorf mixes a key with the filter's seed.
#[inline]
fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build_in_memory;

    fn sha1s(count: u32, salt: u32) -> Vec<[u8; 20]> {
        (0..count)
            .map(|index| {
                let mut sha1 = [0u8; 20];
                let mixed = mix64(u64::from(index) << 32 | u64::from(salt));
                sha1[..8].copy_from_slice(&mixed.to_be_bytes());
                sha1[8..16].copy_from_slice(&mix64(mixed).to_be_bytes());
                sha1
            })
            .collect()
    }

    #[test]
    fn the_prefetched_fingerprints_are_the_ones_a_lookup_reads() {
        for bits in [FingerprintBits::Sixteen, FingerprintBits::Eight] {
            let members = sha1s(50_000, 1);
            let image = build_in_memory(members.clone(), bits, 2).unwrap();
            let filter = BreachFilter::from_image(&image).unwrap();
            for sha1 in &members {
                // A member's three fingerprints XOR to its own fingerprint; at any other three
                // places they would do so once in 2^bits.
                let offsets = filter.fingerprint_offsets(sha1).unwrap();
                let (shard, key) = key::split(sha1, filter.shard_bits);
                let hash = mix64(key.wrapping_add(filter.shards[shard].seed));
                let fingerprint = hash ^ (hash >> 32);
                let read = |offset: usize| match bits {
                    FingerprintBits::Sixteen => u64::from(u16::from_le_bytes([
                        filter.bytes[offset],
                        filter.bytes[offset + 1],
                    ])),
                    FingerprintBits::Eight => u64::from(filter.bytes[offset]),
                };
                let mask = (1u64 << bits.bits()) - 1;
                let xor = offsets
                    .iter()
                    .fold(fingerprint & mask, |acc, &offset| acc ^ read(offset));
                assert_eq!(xor, 0, "{bits:?}");
            }
        }
    }

    #[test]
    fn many_lookups_answer_as_single_ones() {
        let members = sha1s(20_000, 1);
        let image = build_in_memory(members.clone(), FingerprintBits::Sixteen, 3).unwrap();
        let filter = BreachFilter::from_image(&image).unwrap();
        let mut probes = sha1s(20_000, 2);
        probes.extend_from_slice(&members);
        let single: Vec<bool> = probes
            .iter()
            .map(|sha1| filter.contains_sha1(sha1))
            .collect();
        let many: Vec<bool> = filter.contains_sha1_many(&probes).collect();
        assert_eq!(many, single);
        assert!(
            many[20_000..].iter().all(|&found| found),
            "no false negatives"
        );
        for short in [0, 1, PREFETCH_DISTANCE, PREFETCH_DISTANCE + 1] {
            assert_eq!(filter.contains_sha1_many(&probes[..short]).count(), short);
        }
    }
}

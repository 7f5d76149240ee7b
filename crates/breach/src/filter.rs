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
}

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
        let (header, entries) = format::parse(&bytes)?;
        let width = header.fingerprint_bits.bytes();
        let shards = entries
            .iter()
            .map(|entry| Shard {
                descriptor: entry.descriptor,
                start: entry.offset as usize,
                end: (entry.offset + entry.fingerprint_count * width) as usize,
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

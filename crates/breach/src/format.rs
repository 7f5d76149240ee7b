//! The filter file's layout, version 1. All integers are little-endian.
//!
//! ```text
//! offset  size  header (64 bytes)
//!      0     8  magic "WBREACH\x1a"
//!      8     4  version (1)
//!     12     1  fingerprint bits: 8 or 16
//!     13     1  shard bits: 0..=16; there are 2^shard_bits shards
//!     14     2  zero
//!     16     8  key count (distinct keys over all shards)
//!     24     8  file length in bytes
//!     32     4  CRC-32 (IEEE) of bytes 0..32 followed by the whole shard table
//!     36    28  zero
//!     64  48*n  shard table, one entry per shard:
//!                 0  8  fingerprints offset (a multiple of 64)
//!                 8  8  fingerprint count
//!                16  8  key count
//!                24  8  seed                  ┐
//!                32  4  segment length        │ xorf's binary fuse descriptor,
//!                36  4  segment length mask   │ in xorf's own DMA order
//!                40  4  segment count length  ┘
//!                44  4  CRC-32 of the shard's fingerprint bytes
//!      …            fingerprint arrays, each starting at its offset, padding between them zero
//! ```
//!
//! CRC-32 detects the damage this format has to expect (a truncated copy, a flipped block) at
//! gigabytes per second; it is no defence against a forged file, and none is needed: the operator
//! chooses the file. Every entry is also checked for consistency (descriptor against fingerprint
//! count, offsets inside the file), so even a file with valid checksums cannot make a lookup read
//! out of bounds.

use std::io;

use crate::key::MAX_SHARD_BITS;

pub const MAGIC: [u8; 8] = *b"WBREACH\x1a";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
pub const SHARD_ENTRY_LEN: usize = 48;
/// Fingerprint arrays start on a cache line, which also satisfies the alignment xorf's
/// zero-copy filters require.
pub const DATA_ALIGN: u64 = 64;
/// Bytes of xorf's binary fuse descriptor: seed, segment length, mask, segment count length.
pub const DESCRIPTOR_LEN: usize = 20;

/// How many bits each fingerprint has: the false-positive rate is about 2^-bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FingerprintBits {
    Eight,
    Sixteen,
}

impl FingerprintBits {
    pub fn bits(self) -> u8 {
        match self {
            Self::Eight => 8,
            Self::Sixteen => 16,
        }
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.bits() / 8)
    }

    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            8 => Some(Self::Eight),
            16 => Some(Self::Sixteen),
            _ => None,
        }
    }
}

/// Why a filter file was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("it is {length} bytes long, too short for a filter header: truncated, or not a filter")]
    TooShort { length: u64 },
    #[error("it is not a Warden breached-password filter (wrong magic bytes)")]
    BadMagic,
    #[error(
        "it has format version {found}, this Warden reads version {supported}: rebuild it with `warden breach build`"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("its header is malformed: {0}")]
    BadHeader(&'static str),
    #[error(
        "it is {actual} bytes long but its header says {expected}: the file is truncated or was appended to"
    )]
    WrongLength { expected: u64, actual: u64 },
    #[error("its header or shard table does not match its checksum: the file is corrupt")]
    HeaderChecksum,
    #[error("shard {shard} is malformed: {why}")]
    BadShard { shard: usize, why: &'static str },
    #[error("shard {shard} does not match its checksum: the file is corrupt")]
    ShardChecksum { shard: usize },
}

/// The fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fingerprint_bits: FingerprintBits,
    pub shard_bits: u8,
    pub key_count: u64,
    pub file_length: u64,
}

/// One shard table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardEntry {
    pub offset: u64,
    pub fingerprint_count: u64,
    pub key_count: u64,
    /// xorf's descriptor bytes, kept as xorf serializes them.
    pub descriptor: [u8; DESCRIPTOR_LEN],
    pub checksum: u32,
}

impl ShardEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.fingerprint_count.to_le_bytes());
        out.extend_from_slice(&self.key_count.to_le_bytes());
        out.extend_from_slice(&self.descriptor);
        out.extend_from_slice(&self.checksum.to_le_bytes());
    }

    fn decode(bytes: &[u8; SHARD_ENTRY_LEN]) -> Self {
        let mut descriptor = [0u8; DESCRIPTOR_LEN];
        descriptor.copy_from_slice(&bytes[24..44]);
        Self {
            offset: u64_at(bytes, 0),
            fingerprint_count: u64_at(bytes, 8),
            key_count: u64_at(bytes, 16),
            descriptor,
            checksum: u32_at(bytes, 44),
        }
    }

    /// Checks that xorf's lookup over `fingerprint_count` fingerprints with this descriptor stays
    /// in bounds: its three indexes are below `segment_count_length + 2 * segment_length`.
    pub fn check_descriptor(&self) -> Result<(), &'static str> {
        let segment_length = u64::from(u32_at(&self.descriptor, 8));
        let mask = u64::from(u32_at(&self.descriptor, 12));
        let segment_count_length = u64::from(u32_at(&self.descriptor, 16));
        if !segment_length.is_power_of_two() || mask != segment_length - 1 {
            return Err("segment length is not a power of two with its mask");
        }
        if !segment_count_length.is_multiple_of(segment_length) {
            return Err("segment count length is not a whole number of segments");
        }
        if segment_count_length + 2 * segment_length != self.fingerprint_count {
            return Err("fingerprint count does not match the segment layout");
        }
        Ok(())
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buffer)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut buffer = [0u8; 4];
    buffer.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buffer)
}

/// Where each shard's fingerprints go, and the header and table bytes that describe them.
#[derive(Debug)]
pub struct Layout {
    /// Header followed by the shard table, ready to write at offset 0.
    pub head: Vec<u8>,
    pub entries: Vec<ShardEntry>,
    pub file_length: u64,
}

/// What a built shard contributes to the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSummary {
    pub fingerprint_count: u64,
    pub key_count: u64,
    pub descriptor: [u8; DESCRIPTOR_LEN],
    pub checksum: u32,
}

/// Lays out a file of `shards` (one per shard, in shard order) with `bits`-bit fingerprints.
pub fn layout(bits: FingerprintBits, shard_bits: u8, shards: &[ShardSummary]) -> Layout {
    let table_end = (HEADER_LEN + SHARD_ENTRY_LEN * shards.len()) as u64;
    let mut offset = table_end.next_multiple_of(DATA_ALIGN);
    let mut entries = Vec::with_capacity(shards.len());
    for shard in shards {
        entries.push(ShardEntry {
            offset,
            fingerprint_count: shard.fingerprint_count,
            key_count: shard.key_count,
            descriptor: shard.descriptor,
            checksum: shard.checksum,
        });
        offset = (offset + shard.fingerprint_count * bits.bytes()).next_multiple_of(DATA_ALIGN);
    }
    // The last array needs no padding after it.
    let file_length = entries
        .last()
        .map_or(table_end, |last| {
            last.offset + last.fingerprint_count * bits.bytes()
        })
        .max(table_end);
    let key_count = shards.iter().map(|shard| shard.key_count).sum::<u64>();

    let mut head = Vec::with_capacity(table_end as usize);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.push(bits.bits());
    head.push(shard_bits);
    head.extend_from_slice(&[0, 0]);
    head.extend_from_slice(&key_count.to_le_bytes());
    head.extend_from_slice(&file_length.to_le_bytes());
    let mut table = Vec::with_capacity(SHARD_ENTRY_LEN * entries.len());
    for entry in &entries {
        entry.encode(&mut table);
    }
    let checksum = head_checksum(&head[..32], &table);
    head.extend_from_slice(&checksum.to_le_bytes());
    head.resize(HEADER_LEN, 0);
    head.extend_from_slice(&table);
    Layout {
        head,
        entries,
        file_length,
    }
}

fn head_checksum(header_start: &[u8], table: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_start);
    hasher.update(table);
    hasher.finalize()
}

/// Reads and checks the header and the shard table of a whole file image, and each shard's
/// bounds, descriptor and checksum.
pub fn parse(file: &[u8]) -> Result<(Header, Vec<ShardEntry>), OpenError> {
    let actual = file.len() as u64;
    let Some(header) = file.first_chunk::<HEADER_LEN>() else {
        return Err(OpenError::TooShort { length: actual });
    };
    if header[..8] != MAGIC {
        return Err(OpenError::BadMagic);
    }
    let version = u32_at(header, 8);
    if version != VERSION {
        return Err(OpenError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let fingerprint_bits = FingerprintBits::from_bits(header[12])
        .ok_or(OpenError::BadHeader("fingerprint bits must be 8 or 16"))?;
    let shard_bits = header[13];
    if shard_bits > MAX_SHARD_BITS {
        return Err(OpenError::BadHeader("more than 16 shard bits"));
    }
    let key_count = u64_at(header, 16);
    let file_length = u64_at(header, 24);
    if file_length != actual {
        return Err(OpenError::WrongLength {
            expected: file_length,
            actual,
        });
    }
    let shard_count = 1usize << shard_bits;
    let table_end = HEADER_LEN + SHARD_ENTRY_LEN * shard_count;
    let table = file.get(HEADER_LEN..table_end).ok_or(OpenError::BadHeader(
        "the shard table does not fit in the file",
    ))?;
    if head_checksum(&header[..32], table) != u32_at(header, 32) {
        return Err(OpenError::HeaderChecksum);
    }

    let mut entries = Vec::with_capacity(shard_count);
    let mut keys = 0u64;
    for (shard, raw) in table.chunks_exact(SHARD_ENTRY_LEN).enumerate() {
        let mut bytes = [0u8; SHARD_ENTRY_LEN];
        bytes.copy_from_slice(raw);
        let entry = ShardEntry::decode(&bytes);
        let bad = |why| OpenError::BadShard { shard, why };
        entry.check_descriptor().map_err(bad)?;
        if !entry.offset.is_multiple_of(DATA_ALIGN) || entry.offset < table_end as u64 {
            return Err(bad("its fingerprints are not where the format puts them"));
        }
        let length = entry
            .fingerprint_count
            .checked_mul(fingerprint_bits.bytes())
            .ok_or(bad("fingerprint count overflows"))?;
        let fingerprints = entry
            .offset
            .checked_add(length)
            .and_then(|end| file.get(entry.offset as usize..end as usize))
            .ok_or(bad("its fingerprints run past the end of the file"))?;
        if crc32fast::hash(fingerprints) != entry.checksum {
            return Err(OpenError::ShardChecksum { shard });
        }
        keys = keys.saturating_add(entry.key_count);
        entries.push(entry);
    }
    if keys != key_count {
        return Err(OpenError::BadHeader(
            "the key count differs from the sum of the shards' key counts",
        ));
    }
    Ok((
        Header {
            fingerprint_bits,
            shard_bits,
            key_count,
            file_length,
        },
        entries,
    ))
}

//! The breached-password filter file, as `warden serve` opens `accounts.breached_filter`
//! (`breach::BreachFilter::open`, here `from_image` over the same bytes) and looks passwords up
//! in it. Lookups index the file with offsets taken from it, so a damaged or forged file must be
//! refused when it is opened, never read out of bounds later.
//!
//! Input, first byte:
//! - even: the rest is a file image. Bit 1 of the first byte rewrites the header's length to the
//!   image's and bit 2 recomputes every checksum, so that the fuzzer reaches the checks behind
//!   them; without those bits the bytes are taken as they are.
//! - odd: a filter is built from hashes and then damaged. Second byte: bit 0 chooses 16-bit
//!   fingerprints, bits 1-3 the shard bits (0-7), bit 4 recomputes the checksums after the damage.
//!   Third byte: how many 20-byte SHA-1 hashes follow. The bytes after them are edits of three
//!   bytes each: an offset (16 bits, little-endian) into the image and a byte to XOR there.
//!
//! Properties: opening never panics; a filter that opens answers every lookup without panicking,
//! one at a time and many at once alike; a filter built and left undamaged contains every hash
//! it was built from.

#![no_main]

use breach::format::{HEADER_LEN, SHARD_ENTRY_LEN};
use breach::{BreachFilter, FingerprintBits};
use libfuzzer_sys::fuzz_target;
use warden_fuzz::check;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut image = rest.to_vec();
        if mode & 2 != 0 && image.len() >= HEADER_LEN {
            let length = image.len() as u64;
            image[24..32].copy_from_slice(&length.to_le_bytes());
        }
        if mode & 4 != 0 {
            reseal(&mut image);
        }
        open_and_look_up(&image, rest, &[]);
    } else {
        built_and_damaged(rest);
    }
});

fn built_and_damaged(data: &[u8]) {
    let [params, count, rest @ ..] = data else {
        return;
    };
    let bits = if params & 1 != 0 {
        FingerprintBits::Sixteen
    } else {
        FingerprintBits::Eight
    };
    let shard_bits = (params >> 1) & 7;
    let wanted = usize::from(*count).min(rest.len() / 20);
    let (hashes, edits) = rest.split_at(wanted * 20);
    let members: Vec<[u8; 20]> = hashes
        .chunks_exact(20)
        .filter_map(|chunk| chunk.try_into().ok())
        .collect();
    let mut image = match breach::build_in_memory(members.iter().copied(), bits, shard_bits) {
        Ok(image) => image,
        Err(error) => {
            check!(
                "breach-build",
                false,
                "no filter from {} hashes: {error}",
                members.len()
            );
            return;
        }
    };
    let mut damaged = false;
    for edit in edits.chunks_exact(3) {
        let offset = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % image.len().max(1);
        if let Some(byte) = image.get_mut(offset)
            && edit[2] != 0
        {
            *byte ^= edit[2];
            damaged = true;
        }
    }
    if params & 16 != 0 {
        reseal(&mut image);
    }
    let members_if_intact: &[[u8; 20]] = if damaged { &[] } else { &members };
    open_and_look_up(&image, hashes, members_if_intact);
}

/// Opens `image`, looks up every 20-byte window of `probes` and every member, and checks that
/// each member is found.
fn open_and_look_up(image: &[u8], probes: &[u8], members: &[[u8; 20]]) {
    let filter = match BreachFilter::from_image(image) {
        Ok(filter) => filter,
        Err(error) => {
            check!(
                "breach-build",
                members.is_empty(),
                "a filter built from {} hashes does not open: {error}",
                members.len()
            );
            return;
        }
    };
    let _ = (
        filter.key_count(),
        filter.shard_count(),
        filter.size_bytes(),
        filter.fingerprint_bits(),
    );
    let mut lookups: Vec<[u8; 20]> = probes
        .windows(20)
        .step_by(7)
        .take(64)
        .filter_map(|window| window.try_into().ok())
        .collect();
    lookups.extend_from_slice(members);
    lookups.push([0; 20]);
    lookups.push([0xff; 20]);
    let one_by_one: Vec<bool> = lookups
        .iter()
        .map(|sha1| filter.contains_sha1(sha1))
        .collect();
    let many: Vec<bool> = filter.contains_sha1_many(&lookups).collect();
    check!(
        "breach-lookup-agree",
        one_by_one == many,
        "lookups one by one {one_by_one:?} and many at once {many:?} differ"
    );
    for sha1 in members {
        check!(
            "breach-build",
            filter.contains_sha1(sha1),
            "a built filter lacks {sha1:02x?}"
        );
    }
}

/// Recomputes every checksum the header and the shard table carry, where the table can be read.
fn reseal(image: &mut [u8]) {
    if image.len() < HEADER_LEN {
        return;
    }
    let shard_bits = image[13];
    if shard_bits > 16 {
        return;
    }
    let shards = 1usize << shard_bits;
    let table_end = HEADER_LEN + SHARD_ENTRY_LEN * shards;
    if image.len() < table_end {
        return;
    }
    let width: u64 = if image[12] == 16 { 2 } else { 1 };
    for shard in 0..shards {
        let entry = HEADER_LEN + SHARD_ENTRY_LEN * shard;
        let read = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&image[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let offset = read(entry);
        let count = read(entry + 8);
        let end = count
            .checked_mul(width)
            .and_then(|length| offset.checked_add(length));
        if let Some(end) = end
            && end <= image.len() as u64
        {
            let checksum = crc32fast::hash(&image[offset as usize..end as usize]);
            image[entry + 44..entry + 48].copy_from_slice(&checksum.to_le_bytes());
        }
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&image[..32]);
    hasher.update(&image[HEADER_LEN..table_end]);
    let checksum = hasher.finalize();
    image[32..36].copy_from_slice(&checksum.to_le_bytes());
}

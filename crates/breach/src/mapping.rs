//! The one place this crate uses `unsafe`: memory-mapping a filter file read-only, and asking
//! the processor to prefetch from the mapping.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Mmap, MmapMut};

/// Maps `file` read-only.
pub(crate) fn map_file(file: &File) -> io::Result<Mmap> {
    // SAFETY: memmap2 marks mapping a file unsafe because another process could change or truncate
    // it while it is mapped, changing bytes behind a `&[u8]`. The file is opened read-only, its
    // contents are checked (checksums, bounds) before any lookup, and every index a lookup computes
    // is bounded by the checked shard layout; the one remaining hazard is an operator rewriting the
    // file in place while Warden runs, which the documentation forbids (build a new file and
    // rename it over the old one, which leaves the mapped file intact).
    unsafe { Mmap::map(file) }
}

/// An anonymous read-only mapping holding a copy of `bytes`: page-aligned like a file mapping, so a
/// filter built in memory is looked up exactly like one read from disk.
pub(crate) fn map_copy(bytes: &[u8]) -> io::Result<Mmap> {
    let mut mapping = MmapMut::map_anon(bytes.len().max(1))?;
    mapping[..bytes.len()].copy_from_slice(bytes);
    mapping.make_read_only()
}

/// Starts loading the cache line holding `bytes[offset]` without waiting for it; nothing when
/// `offset` is out of bounds.
#[inline]
pub(crate) fn prefetch(bytes: &[u8], offset: usize) {
    let Some(byte) = bytes.get(offset) else {
        return;
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` is unsafe only because it needs SSE, which every x86_64
        // processor has; it is a hint that never faults and changes no memory, and the address
        // is a byte of a live slice anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>()) }
    }
    // Elsewhere a plain read: the processor overlaps independent reads by itself, if less far.
    #[cfg(not(target_arch = "x86_64"))]
    std::hint::black_box(*byte);
}

//! The one place this crate uses `unsafe`: memory-mapping a filter file read-only.
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

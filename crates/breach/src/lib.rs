//! The breached-password filter: HaveIBeenPwned's SHA-1 hashes held as binary fuse filters in one
//! versioned, memory-mapped file, the lookup over it, and the builder that makes it from the
//! download format.
//!
//! A SHA-1 picks its shard by its first `shard_bits` bits and is looked up in that shard's binary
//! fuse filter by the 64 bits that follow ([`key`]). The filters are built with the `xorf` crate
//! and looked up through its zero-copy `BinaryFuse16Ref`/`BinaryFuse8Ref` over the mapped bytes, so
//! a lookup neither allocates nor copies. The file layout is in [`format`]; the builder streams its
//! input into shard files on disk and builds one shard at a time, so memory stays bounded whatever
//! the input size ([`builder`]).
//!
//! This crate opens the files it is handed (the filter, the build's inputs and work directory); it
//! never decides a path: that is for `server` and `cli`.

// The fingerprints are read in place as little-endian integers; a big-endian machine would need a
// byte-swapping lookup that nobody runs yet.
#[cfg(target_endian = "big")]
compile_error!(
    "the breached-password filter format is read in place on little-endian machines only"
);

pub mod builder;
mod filter;
pub mod format;
pub mod key;
mod mapping;
pub mod parse;

pub use builder::{
    BadLine, BadLinePolicy, BuildError, BuildOptions, BuildReport, NoProgress, Progress, build,
    build_in_memory,
};
pub use filter::BreachFilter;
pub use format::{FingerprintBits, OpenError};

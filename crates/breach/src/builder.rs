//! Building a filter file from HaveIBeenPwned's download format, in three resumable phases:
//!
//! 1. **Spill**: the inputs are read once, streaming (gzip detected by its magic bytes), parsed
//!    on every build thread, and each hash's 64-bit key is appended to its shard's file in the
//!    work directory, in input order. Memory: one small buffer per shard and a few 4 MiB blocks
//!    of input. When the spill files are on disk, `spill.done` records the counts (the shard
//!    builds start meanwhile).
//! 2. **Build**: each shard's keys are read, deduplicated and built into a binary fuse
//!    filter with xorf, one shard per thread at a time, and written to `shard-N.fuse` (through a
//!    temporary name and a rename); its spill file is then removed. Memory: about 34 bytes per key
//!    of the shards being built, which is why shards are sized to a few million keys.
//! 3. **Write**: the shards are copied into the output under a temporary name (`OUTPUT.partial`),
//!    checksums checked on the way, synced and renamed over the output.
//!
//! Run again after an interruption, the build skips a finished spill and finished shards. The work
//! directory records its job (inputs with their sizes and modification times, and the options);
//! a different job starts afresh. Only files this builder names are ever deleted there.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::UNIX_EPOCH;

use flate2::read::MultiGzDecoder;
use xorf::{BinaryFuse8, BinaryFuse16, DmaSerializable};

use crate::format::{self, DESCRIPTOR_LEN, FingerprintBits, ShardSummary};
use crate::key::{self, MAX_SHARD_BITS};
use crate::parse::{self, LineError};

/// Bad lines reported one by one before the rest are only counted.
pub const REPORTED_BAD_LINES: usize = 10;
/// Keys a shard is sized for when the shard count is chosen from the input size: large enough
/// that xorf's layout is near its 1.125 × 16 = 18 bits per key, small enough that two shards
/// build at once in a few hundred megabytes.
pub const TARGET_KEYS_PER_SHARD: u64 = 8_000_000;
/// Shard count chosen from the input size stays at or below 2^12 so spill buffers stay small.
const MAX_AUTO_SHARD_BITS: u8 = 12;
/// Bytes a line of the download format takes on average (40 hex digits, ':', a count, CRLF).
const BYTES_PER_LINE: u64 = 44;
/// How much a gzip-compressed download shrinks, for the estimate only.
const GZIP_RATIO: u64 = 2;
const SPILL_BUFFERS_TOTAL: usize = 64 << 20;
const SHARD_FILE_MAGIC: [u8; 8] = *b"WBSHARD1";
const SHARD_FILE_HEADER_LEN: usize = 48;
const JOB_FILE: &str = "job.txt";
const SPILL_DONE_FILE: &str = "spill.done";

/// What to do with a line that is not `SHA1HEX:COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadLinePolicy {
    /// Count it, report the first few, go on.
    Skip,
    /// Stop the build at the first one.
    Fail,
}

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub fingerprint_bits: FingerprintBits,
    /// Hashes seen fewer times than this are left out (1 keeps every one).
    pub min_count: u64,
    pub bad_lines: BadLinePolicy,
    /// `None`: chosen from the input size so shards hold about [`TARGET_KEYS_PER_SHARD`] keys.
    pub shard_bits: Option<u8>,
    /// Shards built at once; each needs about 34 bytes per key of its shard.
    pub threads: usize,
    /// Where the spill and shard files go: on the same disk as the output, with room for
    /// 8 bytes per input hash.
    pub work_dir: PathBuf,
}

impl BuildOptions {
    /// 16-bit fingerprints, every hash, bad lines fatal, one thread per core.
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            fingerprint_bits: FingerprintBits::Sixteen,
            min_count: 1,
            bad_lines: BadLinePolicy::Fail,
            shard_bits: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            work_dir,
        }
    }
}

/// The phases a build goes through, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the inputs; counted in input bytes.
    Read,
    /// Building shards; counted in shards.
    Build,
    /// Writing the output; counted in bytes.
    Write,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "reading",
            Self::Build => "building shards",
            Self::Write => "writing",
        })
    }
}

/// Where a build reports how far it is; the command line draws a progress bar from it.
pub trait Progress: Sync {
    fn start(&self, phase: Phase, total: u64);
    fn advance(&self, done: u64);
    fn finish(&self, phase: Phase);
    /// A skipped bad line (only the first [`REPORTED_BAD_LINES`]).
    fn bad_line(&self, bad: &BadLine);
    /// A note for the operator, such as reused work.
    fn note(&self, message: &str);
    /// Whether the operator asked to stop (Ctrl-C): the build stops at the next shard or batch of
    /// lines, keeping what is finished for the next run.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: Phase, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self, _: Phase) {}
    fn bad_line(&self, _: &BadLine) {}
    fn note(&self, _: &str) {}
}

/// A line that is not in the download format, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub file: PathBuf,
    /// Counted from 1.
    pub line: u64,
    pub error: LineError,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.error)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("bad line {0}")]
    BadLine(BadLine),
    #[error("{0}")]
    Option(&'static str),
    #[error(
        "the filter of shard {shard} could not be constructed ({why}); this should not happen with distinct keys"
    )]
    Construction { shard: usize, why: &'static str },
    #[error("interrupted; finished work is kept in {0} and reused by the next run")]
    Interrupted(PathBuf),
    #[error(
        "the work directory {0} holds damaged files from an earlier build; delete it and build again"
    )]
    DamagedWork(PathBuf),
}

fn io_error(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> BuildError {
    move |source| BuildError::Io {
        what: what(),
        source,
    }
}

/// What a build did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Well-formed lines read.
    pub lines: u64,
    /// Lines left out by the minimum count.
    pub below_min_count: u64,
    pub bad_lines: u64,
    /// The first [`REPORTED_BAD_LINES`] bad lines (none when the spill was reused).
    pub first_bad_lines: Vec<BadLine>,
    /// Distinct keys in the filter.
    pub keys: u64,
    pub shard_count: usize,
    pub file_bytes: u64,
    /// Whether a finished spill from an earlier run was reused.
    pub reused_spill: bool,
    /// Shards built by an earlier run and reused.
    pub reused_shards: usize,
}

/// Builds the filter file `output` from `inputs` in the download format.
pub fn build(
    inputs: &[PathBuf],
    output: &Path,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    if inputs.is_empty() {
        return Err(BuildError::Option("no input files"));
    }
    if options.threads == 0 {
        return Err(BuildError::Option("threads must be at least 1"));
    }
    if options.shard_bits.is_some_and(|bits| bits > MAX_SHARD_BITS) {
        return Err(BuildError::Option("shard bits must be at most 16"));
    }
    let work = options.work_dir.as_path();
    let job = describe_job(inputs, options)?;
    let shard_bits = match options.shard_bits {
        Some(bits) => bits,
        None => auto_shard_bits(&job.estimated_keys),
    };
    let shard_count = 1usize << shard_bits;
    fs::create_dir_all(work).map_err(io_error(|| {
        format!("create the work directory {}", work.display())
    }))?;
    let identity = format!("{}shard_bits={shard_bits}\n", job.identity);
    let job_file = work.join(JOB_FILE);
    match fs::read_to_string(&job_file) {
        Ok(previous) if previous == identity => {}
        Ok(_) => {
            progress.note("the inputs or options changed since the last run: starting afresh");
            clean_work_dir(work)?;
        }
        Err(_) => clean_work_dir(work)?,
    }
    write_atomically(&job_file, identity.as_bytes())?;

    let mut report = BuildReport {
        shard_count,
        ..BuildReport::default()
    };
    // Spill files written by this run, not yet on disk.
    let mut unsynced = Vec::new();
    match read_spill_done(work) {
        Some(done) => {
            progress.note("reusing the finished read of the inputs from an earlier run");
            report.reused_spill = true;
            report.lines = done.lines;
            report.below_min_count = done.below_min_count;
            report.bad_lines = done.bad_lines;
        }
        None => {
            unsynced = spill(
                inputs,
                shard_bits,
                options,
                job.total_bytes,
                progress,
                &mut report,
            )?;
        }
    }
    let spill_done = (!report.reused_spill).then(|| {
        format!(
            "lines={}\nbelow_min_count={}\nbad_lines={}\n",
            report.lines, report.below_min_count, report.bad_lines
        )
    });

    report.reused_shards = std::thread::scope(|scope| {
        // Writing the spill (8 bytes per hash) to disk takes seconds, which overlap the shard
        // builds: they read the spill from the page cache. `spill.done` is written once it is
        // on disk; a crash before then makes the next run read the inputs again, keeping the
        // shards already built from them. An interrupted build still waits for it, so the next
        // run reuses the read.
        let durable = scope.spawn(|| -> Result<(), BuildError> {
            for (shard, file) in unsynced.into_iter().enumerate() {
                file.sync_all().map_err(io_error(|| {
                    format!("write {}", spill_path(work, shard).display())
                }))?;
            }
            match &spill_done {
                Some(done) => write_atomically(&work.join(SPILL_DONE_FILE), done.as_bytes()),
                None => Ok(()),
            }
        });
        let built = build_shards(work, shard_count, options, progress);
        let durable = durable
            .join()
            .unwrap_or(Err(BuildError::Option("syncing the spill files failed")));
        let reused = built?;
        durable.map(|()| reused)
    })?;
    let (keys, file_bytes) =
        write_output(work, shard_count, shard_bits, options, output, progress)?;
    report.keys = keys;
    report.file_bytes = file_bytes;
    clean_work_dir(work)?;
    // Only removes the directory if nothing else is in it.
    let _ = fs::remove_dir(work);
    Ok(report)
}

/// Builds a filter image in memory from SHA-1 hashes, through the same shard build and layout as
/// [`build`]; [`crate::BreachFilter::from_image`] opens it.
pub fn build_in_memory(
    sha1s: impl IntoIterator<Item = [u8; 20]>,
    bits: FingerprintBits,
    shard_bits: u8,
) -> Result<Vec<u8>, BuildError> {
    if shard_bits > MAX_SHARD_BITS {
        return Err(BuildError::Option("shard bits must be at most 16"));
    }
    let mut shards: Vec<Vec<u64>> = vec![Vec::new(); 1 << shard_bits];
    for sha1 in sha1s {
        let (shard, key) = key::split(&sha1, shard_bits);
        if let Some(keys) = shards.get_mut(shard) {
            keys.push(key);
        }
    }
    let built = shards
        .into_iter()
        .enumerate()
        .map(|(shard, keys)| build_shard(keys, bits, shard))
        .collect::<Result<Vec<_>, _>>()?;
    let summaries: Vec<ShardSummary> = built.iter().map(|shard| shard.summary).collect();
    let layout = format::layout(bits, shard_bits, &summaries);
    let mut image = layout.head;
    for (entry, shard) in layout.entries.iter().zip(&built) {
        image.resize(entry.offset as usize, 0);
        image.extend_from_slice(shard.filter.fingerprints());
    }
    Ok(image)
}

struct Job {
    identity: String,
    total_bytes: u64,
    estimated_keys: u64,
}

/// The job's identity (what a finished spill depends on) and the input size.
fn describe_job(inputs: &[PathBuf], options: &BuildOptions) -> Result<Job, BuildError> {
    let mut identity = format!(
        "warden breach build, work format 1\nmin_count={}\nbad_lines={:?}\nfingerprint_bits={}\n",
        options.min_count,
        options.bad_lines,
        options.fingerprint_bits.bits()
    );
    let mut total_bytes = 0u64;
    let mut estimated_keys = 0u64;
    for input in inputs {
        let cannot = || format!("read the input {}", input.display());
        let metadata = fs::metadata(input).map_err(io_error(cannot))?;
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos());
        let absolute = fs::canonicalize(input).map_err(io_error(cannot))?;
        identity.push_str(&format!(
            "input={} size={} modified={modified}\n",
            absolute.display(),
            metadata.len()
        ));
        total_bytes += metadata.len();
        let mut magic = [0u8; 2];
        let gzip = File::open(input)
            .and_then(|mut file| file.read_exact(&mut magic))
            .is_ok()
            && is_gzip(&magic);
        let ratio = if gzip { GZIP_RATIO } else { 1 };
        estimated_keys += metadata.len() * ratio / BYTES_PER_LINE;
    }
    Ok(Job {
        identity,
        total_bytes,
        estimated_keys,
    })
}

fn auto_shard_bits(estimated_keys: &u64) -> u8 {
    let mut bits = 0u8;
    while bits < MAX_AUTO_SHARD_BITS && (*estimated_keys >> bits) > TARGET_KEYS_PER_SHARD {
        bits += 1;
    }
    bits
}

fn is_gzip(start: &[u8]) -> bool {
    start.starts_with(&[0x1f, 0x8b])
}

fn spill_path(work: &Path, shard: usize) -> PathBuf {
    work.join(format!("spill-{shard:05}.keys"))
}

fn shard_path(work: &Path, shard: usize) -> PathBuf {
    work.join(format!("shard-{shard:05}.fuse"))
}

/// Deletes the files a build makes in `work`, and nothing else.
fn clean_work_dir(work: &Path) -> Result<(), BuildError> {
    let entries = fs::read_dir(work).map_err(io_error(|| {
        format!("list the work directory {}", work.display())
    }))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name == JOB_FILE
            || name.starts_with(SPILL_DONE_FILE)
            || (name.starts_with("spill-") && name.ends_with(".keys"))
            || (name.starts_with("shard-") && (name.ends_with(".fuse") || name.ends_with(".tmp")))
            || (name.starts_with(JOB_FILE) && name.ends_with(".tmp"));
        if ours {
            fs::remove_file(entry.path())
                .map_err(io_error(|| format!("remove {}", entry.path().display())))?;
        }
    }
    Ok(())
}

struct SpillDone {
    lines: u64,
    below_min_count: u64,
    bad_lines: u64,
}

fn read_spill_done(work: &Path) -> Option<SpillDone> {
    let text = fs::read_to_string(work.join(SPILL_DONE_FILE)).ok()?;
    let value = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(SpillDone {
        lines: value("lines")?,
        below_min_count: value("below_min_count")?,
        bad_lines: value("bad_lines")?,
    })
}

/// Writes `bytes` to `path` through a temporary file, synced, and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let temporary = path.with_extension("tmp");
    let cannot = || format!("write {}", path.display());
    let mut file = File::create(&temporary).map_err(io_error(cannot))?;
    file.write_all(bytes).map_err(io_error(cannot))?;
    file.sync_all().map_err(io_error(cannot))?;
    fs::rename(&temporary, path).map_err(io_error(cannot))
}

/// Counts the bytes read from an input file for the progress bar (before decompression, so the
/// total is known in advance).
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.progress.advance(read as u64);
        Ok(read)
    }
}

/// Bytes of input the reader hands a parsing thread at a time: large enough that handing over
/// and committing cost nothing next to parsing (about 95,000 lines), small enough that a few in
/// flight per thread stay within a few tens of megabytes.
const BLOCK_BYTES: usize = 4 << 20;

/// A run of whole lines of one input, in input order (`sequence` counts over all inputs).
struct Block {
    sequence: u64,
    input: usize,
    bytes: Vec<u8>,
}

/// What a parsing thread made of a block, waiting for its turn to be written.
struct ParsedBlock {
    /// Each shard's keys, as the little-endian bytes the spill files hold.
    shard_bytes: Vec<Vec<u8>>,
    lines: u64,
    entries: u64,
    below_min_count: u64,
    bad_lines: u64,
    /// The block's first bad lines, numbered from 1 within the block.
    first_bad: Vec<(u64, LineError)>,
}

impl ParsedBlock {
    fn new(shard_count: usize) -> Self {
        Self {
            shard_bytes: vec![Vec::new(); shard_count],
            lines: 0,
            entries: 0,
            below_min_count: 0,
            bad_lines: 0,
            first_bad: Vec::new(),
        }
    }

    /// Parses every line of `bytes` (the last may lack its newline).
    fn parse(&mut self, bytes: &[u8], shard_bits: u8, options: &BuildOptions) {
        for shard in &mut self.shard_bytes {
            shard.clear();
        }
        self.lines = 0;
        self.entries = 0;
        self.below_min_count = 0;
        self.bad_lines = 0;
        self.first_bad.clear();
        let mut start = 0;
        while start < bytes.len() {
            self.lines += 1;
            let rest = &bytes[start..];
            let parsed = if let Some((entry, length)) = parse::line_at(rest) {
                start += length;
                Ok(Some(entry))
            } else {
                // Anything but a well-formed line; the last line of an input may lack its `\n`.
                let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                start += end + 1;
                parse::line(&rest[..end])
            };
            match parsed {
                Ok(Some(entry)) => {
                    self.entries += 1;
                    if entry.count < options.min_count {
                        self.below_min_count += 1;
                        continue;
                    }
                    let (shard, key) = key::split(&entry.sha1, shard_bits);
                    if let Some(shard) = self.shard_bytes.get_mut(shard) {
                        shard.extend_from_slice(&key.to_le_bytes());
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    self.bad_lines += 1;
                    if self.first_bad.len() < REPORTED_BAD_LINES {
                        self.first_bad.push((self.lines, error));
                    }
                    // Nothing after the first bad line counts when bad lines are fatal.
                    if options.bad_lines == BadLinePolicy::Fail {
                        return;
                    }
                }
            }
        }
    }
}

/// The writing side of the spill, which takes parsed blocks strictly in input order, so the
/// spill files, the counts and the line numbers are exactly those of a single-threaded read.
struct Commit {
    next_sequence: u64,
    input: usize,
    /// Lines of the current input before the next block.
    lines_before: u64,
    writers: Vec<BufWriter<File>>,
    lines: u64,
    below_min_count: u64,
    bad_lines: u64,
    first_bad_lines: Vec<BadLine>,
    failure: Option<BuildError>,
}

/// What the parsing threads share.
struct SpillShared<'a> {
    inputs: &'a [PathBuf],
    options: &'a BuildOptions,
    progress: &'a dyn Progress,
    commit: Mutex<Commit>,
    /// Signalled when `next_sequence` moves on or the spill fails.
    turn: Condvar,
    /// Set when the spill failed: the reader stops and the parsers drain what is left.
    stop: AtomicBool,
}

impl SpillShared<'_> {
    /// Waits for `block`'s turn, then appends its keys and counts it.
    fn commit(&self, block: &Block, parsed: &ParsedBlock) {
        let Ok(mut commit) = self.commit.lock() else {
            self.stop.store(true, Ordering::SeqCst);
            return;
        };
        while commit.failure.is_none() && commit.next_sequence != block.sequence {
            commit = match self.turn.wait(commit) {
                Ok(commit) => commit,
                Err(_) => {
                    self.stop.store(true, Ordering::SeqCst);
                    return;
                }
            };
        }
        if commit.failure.is_some() {
            return;
        }
        if let Err(failure) = self.append(&mut commit, block, parsed) {
            commit.failure = Some(failure);
            self.stop.store(true, Ordering::SeqCst);
        }
        commit.next_sequence += 1;
        self.turn.notify_all();
    }

    fn append(
        &self,
        commit: &mut Commit,
        block: &Block,
        parsed: &ParsedBlock,
    ) -> Result<(), BuildError> {
        if commit.input != block.input {
            commit.input = block.input;
            commit.lines_before = 0;
        }
        let file = self.inputs.get(block.input).cloned().unwrap_or_default();
        for &(line, error) in &parsed.first_bad {
            let bad = BadLine {
                file: file.clone(),
                line: commit.lines_before + line,
                error,
            };
            if self.options.bad_lines == BadLinePolicy::Fail {
                return Err(BuildError::BadLine(bad));
            }
            if commit.first_bad_lines.len() < REPORTED_BAD_LINES {
                self.progress.bad_line(&bad);
                commit.first_bad_lines.push(bad);
            }
        }
        let work = self.options.work_dir.as_path();
        for (writer, bytes) in commit.writers.iter_mut().zip(&parsed.shard_bytes) {
            writer
                .write_all(bytes)
                .map_err(io_error(|| format!("write {}", work.display())))?;
        }
        commit.lines += parsed.entries;
        commit.below_min_count += parsed.below_min_count;
        commit.bad_lines += parsed.bad_lines;
        commit.lines_before += parsed.lines;
        Ok(())
    }
}

/// Phase 1: every input line to its shard's spill file. The calling thread reads (and
/// decompresses) the inputs in blocks of whole lines; `options.threads` threads parse them and
/// append their keys to the spill files in input order. Returns the spill files, written but
/// not yet synced.
fn spill(
    inputs: &[PathBuf],
    shard_bits: u8,
    options: &BuildOptions,
    total_bytes: u64,
    progress: &dyn Progress,
    report: &mut BuildReport,
) -> Result<Vec<File>, BuildError> {
    let work = options.work_dir.as_path();
    let shard_count = 1usize << shard_bits;
    let buffer = (SPILL_BUFFERS_TOTAL / shard_count).clamp(4096, 1 << 20);
    let writers = (0..shard_count)
        .map(|shard| {
            let path = spill_path(work, shard);
            File::create(&path)
                .map(|file| BufWriter::with_capacity(buffer, file))
                .map_err(io_error(|| format!("create {}", path.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = SpillShared {
        inputs,
        options,
        progress,
        commit: Mutex::new(Commit {
            next_sequence: 0,
            input: 0,
            lines_before: 0,
            writers,
            lines: 0,
            below_min_count: 0,
            bad_lines: 0,
            first_bad_lines: Vec::new(),
            failure: None,
        }),
        turn: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    let threads = options.threads.max(1);
    // Buffers in flight: per thread one being parsed and one queued, and one being read.
    let (free_sender, free_receiver) = mpsc::channel::<Vec<u8>>();
    for _ in 0..threads * 2 + 1 {
        let _ = free_sender.send(Vec::with_capacity(BLOCK_BYTES + READ_BYTES));
    }
    let (block_sender, block_receiver) = mpsc::sync_channel::<Block>(threads);
    let block_receiver = Mutex::new(block_receiver);

    progress.start(Phase::Read, total_bytes);
    let read = std::thread::scope(|scope| {
        for _ in 0..threads {
            let free_sender = free_sender.clone();
            let (shared, block_receiver) = (&shared, &block_receiver);
            scope.spawn(move || {
                let mut parsed = ParsedBlock::new(shard_count);
                loop {
                    let Ok(Ok(block)) = block_receiver.lock().map(|receiver| receiver.recv())
                    else {
                        break;
                    };
                    if !shared.stop.load(Ordering::SeqCst) {
                        parsed.parse(&block.bytes, shard_bits, options);
                        shared.commit(&block, &parsed);
                    }
                    let _ = free_sender.send(block.bytes);
                }
            });
        }
        drop(free_sender);
        let read = read_blocks(
            inputs,
            work,
            progress,
            &free_receiver,
            &block_sender,
            &shared.stop,
        );
        drop(block_sender);
        read
    });
    let commit = shared
        .commit
        .into_inner()
        .map_err(|_| BuildError::Option("a parsing thread failed"))?;
    if let Some(failure) = commit.failure {
        return Err(failure);
    }
    read?;
    report.lines += commit.lines;
    report.below_min_count += commit.below_min_count;
    report.bad_lines += commit.bad_lines;
    report.first_bad_lines = commit.first_bad_lines;
    let files = commit
        .writers
        .into_iter()
        .enumerate()
        .map(|(shard, writer)| {
            let cannot = || format!("write {}", spill_path(work, shard).display());
            writer
                .into_inner()
                .map_err(|error| io_error(cannot)(error.into_error()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    progress.finish(Phase::Read);
    Ok(files)
}

/// Bytes asked of an input per read.
const READ_BYTES: usize = 1 << 20;

/// Reads every input into blocks of whole lines and sends them, numbered in order, until done,
/// stopped or cancelled.
fn read_blocks(
    inputs: &[PathBuf],
    work: &Path,
    progress: &dyn Progress,
    free: &mpsc::Receiver<Vec<u8>>,
    blocks: &mpsc::SyncSender<Block>,
    stop: &AtomicBool,
) -> Result<(), BuildError> {
    let mut sequence = 0u64;
    let mut carry = Vec::new();
    // A buffer that came back empty (an empty input), used before asking for another.
    let mut spare: Option<Vec<u8>> = None;
    for (input_index, input) in inputs.iter().enumerate() {
        let cannot = || format!("read the input {}", input.display());
        let file = File::open(input).map_err(io_error(cannot))?;
        let mut raw = BufReader::with_capacity(
            READ_BYTES,
            Counting {
                inner: file,
                progress,
            },
        );
        let gzip = is_gzip(raw.fill_buf().map_err(io_error(cannot))?);
        let mut reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        carry.clear();
        let mut end_of_input = false;
        while !end_of_input {
            if progress.cancelled() {
                return Err(BuildError::Interrupted(work.to_path_buf()));
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Every buffer in flight comes back here, so this only fails if the parsers are gone.
            let Some(mut bytes) = spare.take().or_else(|| free.recv().ok()) else {
                return Ok(());
            };
            bytes.clear();
            bytes.append(&mut carry);
            // Read until the block is full and holds a line end, or the input ends.
            loop {
                let full = bytes.len() >= BLOCK_BYTES;
                if full && memchr::memchr(b'\n', &bytes).is_some() {
                    break;
                }
                let want = if full {
                    READ_BYTES
                } else {
                    BLOCK_BYTES - bytes.len()
                };
                let read = reader
                    .by_ref()
                    .take(want as u64)
                    .read_to_end(&mut bytes)
                    .map_err(io_error(cannot))?;
                if read == 0 {
                    end_of_input = true;
                    break;
                }
            }
            if !end_of_input && let Some(last) = memchr::memrchr(b'\n', &bytes) {
                carry.extend_from_slice(&bytes[last + 1..]);
                bytes.truncate(last + 1);
            }
            if bytes.is_empty() {
                spare = Some(bytes);
                continue;
            }
            let block = Block {
                sequence,
                input: input_index,
                bytes,
            };
            sequence += 1;
            if blocks.send(block).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A built shard's filter.
enum BuiltFilter {
    Sixteen(BinaryFuse16),
    Eight(BinaryFuse8),
}

impl BuiltFilter {
    fn fingerprints(&self) -> &[u8] {
        match self {
            Self::Sixteen(filter) => filter.dma_fingerprints(),
            Self::Eight(filter) => filter.dma_fingerprints(),
        }
    }
}

struct BuiltShard {
    summary: ShardSummary,
    filter: BuiltFilter,
}

/// Builds one shard's filter from its keys (in any order, duplicates allowed).
fn build_shard(
    keys: Vec<u64>,
    bits: FingerprintBits,
    shard: usize,
) -> Result<BuiltShard, BuildError> {
    // Duplicates (the same hash in two inputs, or twice in one) must go: xorf wants distinct
    // keys.
    let keys = distinct_keys(keys);
    let key_count = keys.len() as u64;
    let failed = |why| BuildError::Construction { shard, why };
    let mut descriptor = [0u8; DESCRIPTOR_LEN];
    let filter = match bits {
        FingerprintBits::Sixteen => {
            let filter = BinaryFuse16::try_from(keys.as_slice()).map_err(failed)?;
            filter.dma_copy_descriptor_to(&mut descriptor);
            BuiltFilter::Sixteen(filter)
        }
        FingerprintBits::Eight => {
            let filter = BinaryFuse8::try_from(keys.as_slice()).map_err(failed)?;
            filter.dma_copy_descriptor_to(&mut descriptor);
            BuiltFilter::Eight(filter)
        }
    };
    drop(keys);
    let fingerprints = filter.fingerprints();
    Ok(BuiltShard {
        summary: ShardSummary {
            fingerprint_count: fingerprints.len() as u64 / bits.bytes(),
            key_count,
            descriptor,
            checksum: crc32fast::hash(fingerprints),
        },
        filter,
    })
}

/// Keys per bucket [`distinct_keys`] aims at: a bucket and its table fit the core's L2 cache.
const DEDUP_BUCKET_KEYS: usize = 4096;

/// `keys` without repeats, in an order that depends only on the order given.
///
/// Sorting and deduplicating a shard's millions of keys cost about a third of the time of
/// xorf's construction on the development machine (the sort reads and writes the whole array
/// some twenty times). Keys are uniform (bits of SHA-1 output), so instead they are split into
/// small buckets by their leading bits in one pass, and each bucket is deduplicated in a small
/// hash table that stays in cache: two passes over memory instead of twenty. xorf needs distinct
/// keys, not sorted ones, and builds the same filter from them in any order.
fn distinct_keys(mut keys: Vec<u64>) -> Vec<u64> {
    if keys.len() <= DEDUP_BUCKET_KEYS {
        keys.sort_unstable();
        keys.dedup();
        return keys;
    }
    let bucket_bits = (keys.len() / DEDUP_BUCKET_KEYS)
        .next_power_of_two()
        .trailing_zeros()
        .min(16);
    let shift = 64 - bucket_bits;
    let bucket_of = |key: u64| key.checked_shr(shift).unwrap_or(0) as usize;
    let mut starts = vec![0usize; (1 << bucket_bits) + 1];
    for &key in &keys {
        starts[bucket_of(key) + 1] += 1;
    }
    for bucket in 1..starts.len() {
        starts[bucket] += starts[bucket - 1];
    }
    let mut next = starts.clone();
    let mut scattered = vec![0u64; keys.len()];
    for &key in &keys {
        let slot = &mut next[bucket_of(key)];
        scattered[*slot] = key;
        *slot += 1;
    }
    // The bucket's keys share their leading bits, so the table is indexed by the trailing ones.
    // Zero marks an empty slot; the key zero is tracked apart.
    let mut table: Vec<u64> = Vec::new();
    let mut distinct = 0;
    for bounds in starts.windows(2) {
        let bucket = &scattered[bounds[0]..bounds[1]];
        let mask = (bucket.len() * 2).next_power_of_two() - 1;
        table.clear();
        table.resize(mask + 1, 0);
        let mut zero_seen = false;
        for &key in bucket {
            if key == 0 {
                if !zero_seen {
                    zero_seen = true;
                    keys[distinct] = key;
                    distinct += 1;
                }
                continue;
            }
            let mut slot = key as usize & mask;
            loop {
                match table[slot] {
                    0 => {
                        table[slot] = key;
                        keys[distinct] = key;
                        distinct += 1;
                        break;
                    }
                    present if present == key => break,
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
    }
    keys.truncate(distinct);
    keys
}

/// Phase 2: builds every shard without a finished `shard-N.fuse`; returns how many were reused.
fn build_shards(
    work: &Path,
    shard_count: usize,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<usize, BuildError> {
    let mut pending = Vec::new();
    for shard in 0..shard_count {
        if read_shard_summary(work, shard, options.fingerprint_bits).is_ok() {
            continue;
        }
        if !spill_path(work, shard).exists() {
            return Err(BuildError::DamagedWork(work.to_path_buf()));
        }
        pending.push(shard);
    }
    let reused = shard_count - pending.len();
    if reused > 0 {
        progress.note(&format!(
            "reusing {reused} of {shard_count} shards built by an earlier run"
        ));
    }
    progress.start(Phase::Build, shard_count as u64);
    progress.advance(reused as u64);
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<BuildError>> = Mutex::new(None);
    let workers = options.threads.min(pending.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let failed = failure.lock().map_or(true, |failure| failure.is_some());
                    let Some(&shard) = pending.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if failed {
                        break;
                    }
                    if progress.cancelled() {
                        if let Ok(mut failure) = failure.lock() {
                            failure.get_or_insert(BuildError::Interrupted(work.to_path_buf()));
                        }
                        break;
                    }
                    if let Err(error) = build_one(work, shard, options.fingerprint_bits) {
                        if let Ok(mut failure) = failure.lock() {
                            failure.get_or_insert(error);
                        }
                        break;
                    }
                    progress.advance(1);
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    progress.finish(Phase::Build);
    Ok(reused)
}

/// Reads a shard's spilled keys, builds it, writes `shard-N.fuse` and removes the spill file.
fn build_one(work: &Path, shard: usize, bits: FingerprintBits) -> Result<(), BuildError> {
    let spill = spill_path(work, shard);
    let cannot = || format!("read {}", spill.display());
    let file = File::open(&spill).map_err(io_error(cannot))?;
    let length = file.metadata().map_err(io_error(cannot))?.len();
    let mut keys = Vec::with_capacity((length / 8) as usize);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    loop {
        let chunk = reader.fill_buf().map_err(io_error(cannot))?;
        if chunk.is_empty() {
            break;
        }
        let whole = chunk.len() - chunk.len() % 8;
        if whole == 0 {
            // A torn last key: the spill was finished, so the file is damaged.
            return Err(BuildError::DamagedWork(work.to_path_buf()));
        }
        keys.extend(chunk[..whole].chunks_exact(8).map(|bytes| {
            let mut key = [0u8; 8];
            key.copy_from_slice(bytes);
            u64::from_le_bytes(key)
        }));
        reader.consume(whole);
    }
    let built = build_shard(keys, bits, shard)?;

    let path = shard_path(work, shard);
    let temporary = path.with_extension("tmp");
    let cannot = || format!("write {}", temporary.display());
    let mut out = BufWriter::new(File::create(&temporary).map_err(io_error(cannot))?);
    let mut header = Vec::with_capacity(SHARD_FILE_HEADER_LEN);
    header.extend_from_slice(&SHARD_FILE_MAGIC);
    header.extend_from_slice(&built.summary.descriptor);
    header.extend_from_slice(&built.summary.key_count.to_le_bytes());
    header.extend_from_slice(&built.summary.fingerprint_count.to_le_bytes());
    header.extend_from_slice(&built.summary.checksum.to_le_bytes());
    out.write_all(&header).map_err(io_error(cannot))?;
    out.write_all(built.filter.fingerprints())
        .map_err(io_error(cannot))?;
    let file = out
        .into_inner()
        .map_err(|error| io_error(cannot)(error.into_error()))?;
    file.sync_all().map_err(io_error(cannot))?;
    fs::rename(&temporary, &path).map_err(io_error(cannot))?;
    fs::remove_file(&spill).map_err(io_error(|| format!("remove {}", spill.display())))
}

/// The summary in a finished shard file's header, if the file is whole.
fn read_shard_summary(
    work: &Path,
    shard: usize,
    bits: FingerprintBits,
) -> Result<ShardSummary, BuildError> {
    let path = shard_path(work, shard);
    let cannot = || format!("read {}", path.display());
    let mut file = File::open(&path).map_err(io_error(cannot))?;
    let mut header = [0u8; SHARD_FILE_HEADER_LEN];
    file.read_exact(&mut header).map_err(io_error(cannot))?;
    let length = file.metadata().map_err(io_error(cannot))?.len();
    let number = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let mut descriptor = [0u8; DESCRIPTOR_LEN];
    descriptor.copy_from_slice(&header[8..28]);
    let mut checksum = [0u8; 4];
    checksum.copy_from_slice(&header[44..48]);
    let summary = ShardSummary {
        descriptor,
        key_count: number(28),
        fingerprint_count: number(36),
        checksum: u32::from_le_bytes(checksum),
    };
    if header[..8] != SHARD_FILE_MAGIC
        || length != SHARD_FILE_HEADER_LEN as u64 + summary.fingerprint_count * bits.bytes()
    {
        return Err(BuildError::DamagedWork(work.to_path_buf()));
    }
    Ok(summary)
}

/// Phase 3: the output file, written under a temporary name and renamed into place.
fn write_output(
    work: &Path,
    shard_count: usize,
    shard_bits: u8,
    options: &BuildOptions,
    output: &Path,
    progress: &dyn Progress,
) -> Result<(u64, u64), BuildError> {
    let bits = options.fingerprint_bits;
    let summaries = (0..shard_count)
        .map(|shard| read_shard_summary(work, shard, bits))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = format::layout(bits, shard_bits, &summaries);
    let mut partial_name = output.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let cannot = || format!("write {}", partial.display());
    let mut out = HugePageWriter::new(File::create(&partial).map_err(io_error(cannot))?);
    progress.start(Phase::Write, layout.file_length);
    out.write_all(&layout.head).map_err(io_error(cannot))?;
    let mut written = layout.head.len() as u64;
    let mut copy_buffer = vec![0u8; 1 << 20];
    for (shard, entry) in layout.entries.iter().enumerate() {
        if progress.cancelled() {
            return Err(BuildError::Interrupted(work.to_path_buf()));
        }
        let padding = entry.offset - written;
        out.write_all(&vec![0u8; padding as usize])
            .map_err(io_error(cannot))?;
        let path = shard_path(work, shard);
        let mut file =
            File::open(&path).map_err(io_error(|| format!("read {}", path.display())))?;
        let mut header = [0u8; SHARD_FILE_HEADER_LEN];
        file.read_exact(&mut header)
            .map_err(io_error(|| format!("read {}", path.display())))?;
        let mut remaining = entry.fingerprint_count * bits.bytes();
        let mut checksum = crc32fast::Hasher::new();
        while remaining > 0 {
            let take = remaining.min(copy_buffer.len() as u64) as usize;
            let chunk = &mut copy_buffer[..take];
            file.read_exact(chunk)
                .map_err(io_error(|| format!("read {}", path.display())))?;
            checksum.update(chunk);
            out.write_all(chunk).map_err(io_error(cannot))?;
            remaining -= take as u64;
        }
        if checksum.finalize() != entry.checksum {
            return Err(BuildError::DamagedWork(work.to_path_buf()));
        }
        written = entry.offset + entry.fingerprint_count * bits.bytes();
        progress.advance(padding + entry.fingerprint_count * bits.bytes());
    }
    let file = out.into_file().map_err(io_error(cannot))?;
    file.sync_all().map_err(io_error(cannot))?;
    drop(file);
    fs::rename(&partial, output).map_err(io_error(|| {
        format!("rename {} to {}", partial.display(), output.display())
    }))?;
    if let Some(directory) = output
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        // The rename is durable once the directory is synced; a failure here loses nothing.
        let _ = File::open(directory).and_then(|directory| directory.sync_all());
    }
    progress.finish(Phase::Write);
    let keys = summaries.iter().map(|summary| summary.key_count).sum();
    Ok((keys, layout.file_length))
}

/// Bytes of a huge page on x86_64 and of the largest folio Linux keeps file data in.
const HUGE_PAGE: usize = 2 << 20;

/// Writes a file in whole, aligned huge pages (the last write excepted). On Linux with large
/// folios (ext4 since 6.16, XFS), the page cache then keeps the output in 2 MiB folios, which a
/// mapping opened with `MADV_HUGEPAGE` maps as huge pages: a lookup's random reads then miss the
/// TLB far less (see `BreachFilter::open`). A `BufWriter` flushes at varying offsets, which
/// leaves the page cache in small folios.
struct HugePageWriter {
    file: File,
    buffer: Vec<u8>,
}

impl HugePageWriter {
    fn new(file: File) -> Self {
        Self {
            file,
            buffer: Vec::with_capacity(HUGE_PAGE),
        }
    }

    /// Writes what is buffered and hands back the file.
    fn into_file(mut self) -> io::Result<File> {
        self.file.write_all(&self.buffer)?;
        Ok(self.file)
    }
}

impl Write for HugePageWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = (HUGE_PAGE - self.buffer.len()).min(data.len());
        self.buffer.extend_from_slice(&data[..take]);
        if self.buffer.len() == HUGE_PAGE {
            self.file.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(take)
    }

    /// Writes nothing early: a partial huge page written now would break the alignment.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_keep_every_key_once() {
        let mut state = 1u64;
        let mut random = || {
            // SplitMix64: uniform like the keys of SHA-1 hashes.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for length in [0, 1, 100, DEDUP_BUCKET_KEYS + 1, 50_000, 300_000] {
            let mut keys: Vec<u64> = (0..length).map(|_| random()).collect();
            // Repeats, near and far, and the keys an empty slot could be confused with.
            let repeats: Vec<u64> = keys.iter().step_by(7).copied().collect();
            keys.extend(repeats);
            if length > 0 {
                keys.extend([0, 0, u64::MAX, 1, u64::MAX]);
            }
            let mut expected = keys.clone();
            expected.sort_unstable();
            expected.dedup();
            let mut distinct = distinct_keys(keys);
            assert_eq!(distinct.len(), expected.len(), "{length}");
            distinct.sort_unstable();
            assert_eq!(distinct, expected, "{length}");
        }
    }

    #[test]
    fn the_shard_count_follows_the_input_size() {
        assert_eq!(auto_shard_bits(&0), 0);
        assert_eq!(auto_shard_bits(&TARGET_KEYS_PER_SHARD), 0);
        assert_eq!(auto_shard_bits(&100_000_000), 4);
        assert_eq!(auto_shard_bits(&2_000_000_000), 8);
        assert_eq!(auto_shard_bits(&u64::MAX), MAX_AUTO_SHARD_BITS);
    }
}

//! The filter built from generated files in HaveIBeenPwned's download format (never the real
//! download): what goes in is found, what stays out is found at the rate theory predicts, bad
//! input is reported where it is, and a damaged file or an interrupted build is handled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use breach::builder::Phase;
use breach::format::OpenError;
use breach::parse::LineError;
use breach::{
    BadLine, BadLinePolicy, BreachFilter, BuildError, BuildOptions, FingerprintBits, NoProgress,
    Progress, build, build_in_memory,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xorf::Filter;

fn random_hashes(seed: u64, count: usize) -> Vec<[u8; 20]> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| rng.random()).collect()
}

fn hex(sha1: &[u8; 20]) -> String {
    sha1.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// Writes `hashes` in the download format with counts 1, 2, 3, … and the given line ending.
fn download_file(path: &Path, hashes: &[[u8; 20]], line_end: &str) {
    let mut text = String::new();
    for (index, sha1) in hashes.iter().enumerate() {
        text.push_str(&format!("{}:{}{line_end}", hex(sha1), index + 1));
    }
    fs::write(path, text).unwrap();
}

fn options(dir: &Path) -> BuildOptions {
    BuildOptions {
        shard_bits: Some(3),
        threads: 2,
        ..BuildOptions::new(dir.join("work"))
    }
}

/// The keys of shard `shard` exactly as the builder gives them to xorf.
fn shard_keys(hashes: &[[u8; 20]], shard_bits: u8, shard: usize) -> Vec<u64> {
    let mut keys: Vec<u64> = hashes
        .iter()
        .map(|sha1| breach::key::split(sha1, shard_bits))
        .filter(|(of, _)| *of == shard)
        .map(|(_, key)| key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A SHA-1 whose shard and key are the given ones.
fn hash_with(shard_bits: u8, shard: usize, key: u64, tail: u32) -> [u8; 20] {
    let prefix: u128 = if shard_bits == 0 {
        u128::from(key) << 64
    } else {
        ((shard as u128) << (128 - u32::from(shard_bits)))
            | (u128::from(key) << (64 - u32::from(shard_bits)))
    };
    let mut sha1 = [0u8; 20];
    sha1[..16].copy_from_slice(&prefix.to_be_bytes());
    sha1[16..].copy_from_slice(&tail.to_be_bytes());
    sha1
}

#[test]
fn the_mapped_lookup_answers_exactly_as_xorf_does_for_members_and_non_members() {
    let shard_bits = 2;
    let hashes = random_hashes(1, 40_000);
    for bits in [FingerprintBits::Sixteen, FingerprintBits::Eight] {
        let filter =
            BreachFilter::from_image(&build_in_memory(hashes.clone(), bits, shard_bits).unwrap())
                .unwrap();
        assert_eq!(filter.key_count(), 40_000);
        assert_eq!(filter.shard_count(), 4);
        let mut rng = StdRng::seed_from_u64(2);
        for shard in 0..4 {
            let keys = shard_keys(&hashes, shard_bits, shard);
            let reference: Box<dyn Filter<u64>> = match bits {
                FingerprintBits::Sixteen => Box::new(xorf::BinaryFuse16::try_from(&keys).unwrap()),
                FingerprintBits::Eight => Box::new(xorf::BinaryFuse8::try_from(&keys).unwrap()),
            };
            for &key in &keys {
                assert!(filter.contains_sha1(&hash_with(shard_bits, shard, key, 0)));
            }
            let mut positives = 0;
            for _ in 0..50_000 {
                let key: u64 = rng.random();
                let ours = filter.contains_sha1(&hash_with(shard_bits, shard, key, rng.random()));
                assert_eq!(
                    ours,
                    reference.contains(&key),
                    "{bits:?} shard {shard} key {key}"
                );
                positives += usize::from(ours);
            }
            assert!(positives > 0 || bits == FingerprintBits::Sixteen);
        }
    }
}

/// Counts positives among `samples` random non-member hashes and checks the count is within five
/// standard deviations of the binomial mean for rate 2^-bits.
fn check_false_positive_rate(filter: &BreachFilter, bits: u32, samples: u64) {
    let mut rng = StdRng::seed_from_u64(99);
    let mut positives = 0u64;
    for _ in 0..samples {
        positives += u64::from(filter.contains_sha1(&rng.random()));
    }
    let rate = 1.0 / f64::from(1u32 << bits);
    let mean = samples as f64 * rate;
    let deviation = (samples as f64 * rate * (1.0 - rate)).sqrt();
    assert!(
        (positives as f64 - mean).abs() <= 5.0 * deviation,
        "{positives} false positives in {samples} lookups; theory says {mean:.1} ± {deviation:.1}"
    );
}

#[test]
fn the_false_positive_rate_on_random_non_members_matches_theory() {
    let hashes = random_hashes(3, 200_000);
    let sixteen = BreachFilter::from_image(
        &build_in_memory(hashes.clone(), FingerprintBits::Sixteen, 2).unwrap(),
    )
    .unwrap();
    check_false_positive_rate(&sixteen, 16, 10_000_000);
    let eight =
        BreachFilter::from_image(&build_in_memory(hashes, FingerprintBits::Eight, 2).unwrap())
            .unwrap();
    check_false_positive_rate(&eight, 8, 1_000_000);
}

#[test]
fn every_hash_of_an_unsorted_crlf_file_is_found_after_a_build() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = random_hashes(4, 30_000);
    let input = dir.path().join("pwned.txt");
    download_file(&input, &hashes, "\r\n");
    let output = dir.path().join("breached.filter");
    let report = build(&[input], &output, &options(dir.path()), &NoProgress).unwrap();
    assert_eq!(report.lines, 30_000);
    assert_eq!(report.keys, 30_000);
    assert_eq!(report.shard_count, 8);
    assert_eq!(report.bad_lines, 0);
    let filter = BreachFilter::open(&output).unwrap();
    assert_eq!(filter.key_count(), 30_000);
    assert_eq!(filter.size_bytes(), fs::metadata(&output).unwrap().len());
    assert!(hashes.iter().all(|sha1| filter.contains_sha1(sha1)));
    assert!(
        !dir.path().join("work").exists(),
        "the work directory is removed after a finished build"
    );
    assert!(!dir.path().join("breached.filter.partial").exists());
}

#[test]
fn gzip_input_several_files_and_duplicates_build_the_same_set() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = random_hashes(5, 20_000);
    let plain = dir.path().join("first.txt");
    download_file(&plain, &hashes[..12_000], "\n");
    // The second file overlaps the first by 2,000 hashes and is compressed.
    let mut text = String::new();
    for sha1 in &hashes[10_000..] {
        text.push_str(&format!("{}:7\n", hex(sha1).to_lowercase()));
    }
    let compressed = dir.path().join("second.txt.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        fs::File::create(&compressed).unwrap(),
        flate2::Compression::fast(),
    );
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();

    let output = dir.path().join("out.filter");
    let report = build(
        &[plain, compressed],
        &output,
        &options(dir.path()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.lines, 22_000);
    assert_eq!(report.keys, 20_000, "duplicates across files count once");
    let filter = BreachFilter::open(&output).unwrap();
    assert!(hashes.iter().all(|sha1| filter.contains_sha1(sha1)));
}

#[test]
fn the_minimum_count_leaves_out_rarely_seen_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = random_hashes(6, 10_000);
    let input = dir.path().join("pwned.txt");
    download_file(&input, &hashes, "\n");
    let output = dir.path().join("out.filter");
    let report = build(
        &[input],
        &output,
        &BuildOptions {
            min_count: 5_001,
            ..options(dir.path())
        },
        &NoProgress,
    )
    .unwrap();
    // Counts run 1..=10000, so the first 5000 lines are below the minimum.
    assert_eq!(report.below_min_count, 5_000);
    assert_eq!(report.keys, 5_000);
    let filter = BreachFilter::open(&output).unwrap();
    assert!(
        hashes[5_000..]
            .iter()
            .all(|sha1| filter.contains_sha1(sha1))
    );
    let left_out = hashes[..5_000]
        .iter()
        .filter(|sha1| filter.contains_sha1(sha1))
        .count();
    assert!(
        left_out < 5,
        "{left_out} left-out hashes still answered present"
    );
}

#[derive(Default)]
struct Recorder {
    bad: Mutex<Vec<BadLine>>,
    notes: Mutex<Vec<String>>,
    shards_built: AtomicU64,
    phase: Mutex<Option<Phase>>,
    /// Ask to stop once this many shards are built.
    stop_after_shards: Option<u64>,
}

impl Progress for Recorder {
    fn start(&self, phase: Phase, _: u64) {
        *self.phase.lock().unwrap() = Some(phase);
    }
    fn advance(&self, done: u64) {
        if *self.phase.lock().unwrap() == Some(Phase::Build) {
            self.shards_built.fetch_add(done, Ordering::SeqCst);
        }
    }
    fn finish(&self, _: Phase) {}
    fn bad_line(&self, bad: &BadLine) {
        self.bad.lock().unwrap().push(bad.clone());
    }
    fn note(&self, message: &str) {
        self.notes.lock().unwrap().push(message.to_owned());
    }
    fn cancelled(&self) -> bool {
        self.stop_after_shards
            .is_some_and(|stop| self.shards_built.load(Ordering::SeqCst) >= stop)
    }
}

fn file_with_bad_lines(dir: &Path) -> (PathBuf, Vec<[u8; 20]>) {
    let hashes = random_hashes(7, 100);
    let mut text = String::new();
    for (index, sha1) in hashes.iter().enumerate() {
        text.push_str(&format!("{}:{}\n", hex(sha1), index + 1));
        match index {
            9 => text.push_str("not a hash at all\n"),
            19 => text.push_str(&format!("{}:many\n", hex(sha1))),
            29 => text.push('\n'),
            _ => {}
        }
    }
    let path = dir.join("damaged.txt");
    fs::write(&path, text).unwrap();
    (path, hashes)
}

#[test]
fn bad_lines_are_reported_with_their_line_number_and_skipped_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (input, hashes) = file_with_bad_lines(dir.path());
    let recorder = Recorder::default();
    let output = dir.path().join("out.filter");
    let report = build(
        std::slice::from_ref(&input),
        &output,
        &BuildOptions {
            bad_lines: BadLinePolicy::Skip,
            ..options(dir.path())
        },
        &recorder,
    )
    .unwrap();
    let expected = vec![
        BadLine {
            file: input.clone(),
            line: 11,
            error: LineError::Shape,
        },
        BadLine {
            file: input.clone(),
            line: 22,
            error: LineError::Count,
        },
    ];
    assert_eq!(report.bad_lines, 2);
    assert_eq!(report.first_bad_lines, expected);
    assert_eq!(*recorder.bad.lock().unwrap(), expected);
    assert_eq!(
        expected[0].to_string(),
        format!(
            "{}:11: expected SHA1HEX:COUNT, found no ':' after 40 hex digits",
            input.display()
        )
    );
    assert_eq!(report.keys, 100, "the blank line is no error and no entry");
    let filter = BreachFilter::open(&output).unwrap();
    assert!(hashes.iter().all(|sha1| filter.contains_sha1(sha1)));
}

#[test]
fn a_bad_line_stops_the_build_when_bad_lines_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = file_with_bad_lines(dir.path());
    let output = dir.path().join("out.filter");
    let error = build(
        std::slice::from_ref(&input),
        &output,
        &options(dir.path()),
        &NoProgress,
    )
    .unwrap_err();
    match error {
        BuildError::BadLine(bad) => {
            assert_eq!((bad.file, bad.line), (input, 11));
        }
        other => panic!("expected a bad line, got {other}"),
    }
    assert!(!output.exists());
}

#[test]
fn an_interrupted_build_resumes_with_the_work_already_done() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = random_hashes(8, 20_000);
    let input = dir.path().join("pwned.txt");
    download_file(&input, &hashes, "\n");
    let output = dir.path().join("out.filter");
    let options = BuildOptions {
        threads: 1,
        ..options(dir.path())
    };

    let stopping = Recorder {
        stop_after_shards: Some(3),
        ..Recorder::default()
    };
    let error = build(std::slice::from_ref(&input), &output, &options, &stopping).unwrap_err();
    assert!(matches!(error, BuildError::Interrupted(_)), "{error}");
    assert!(!output.exists());

    let resuming = Recorder::default();
    let report = build(std::slice::from_ref(&input), &output, &options, &resuming).unwrap();
    assert!(report.reused_spill);
    assert_eq!(report.reused_shards, 3);
    assert_eq!(report.lines, 20_000, "counts of the earlier read are kept");
    assert!(
        resuming
            .notes
            .lock()
            .unwrap()
            .iter()
            .any(|note| note.contains("reusing 3 of 8")),
        "{:?}",
        resuming.notes
    );
    let resumed = fs::read(&output).unwrap();

    // The same build in one go writes the same bytes.
    let fresh_output = dir.path().join("fresh.filter");
    build(&[input], &fresh_output, &options, &NoProgress).unwrap();
    assert_eq!(resumed, fs::read(&fresh_output).unwrap());
    let filter = BreachFilter::open(&output).unwrap();
    assert!(hashes.iter().all(|sha1| filter.contains_sha1(sha1)));
}

#[test]
fn a_changed_input_starts_the_build_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pwned.txt");
    download_file(&input, &random_hashes(9, 1_000), "\n");
    let output = dir.path().join("out.filter");
    let options = options(dir.path());
    let stopping = Recorder {
        stop_after_shards: Some(1),
        ..Recorder::default()
    };
    build(
        std::slice::from_ref(&input),
        &output,
        &BuildOptions {
            threads: 1,
            ..options.clone()
        },
        &stopping,
    )
    .unwrap_err();

    let changed = random_hashes(10, 2_000);
    download_file(&input, &changed, "\n");
    let report = build(&[input], &output, &options, &NoProgress).unwrap();
    assert!(!report.reused_spill);
    assert_eq!(report.keys, 2_000);
    let filter = BreachFilter::open(&output).unwrap();
    assert!(changed.iter().all(|sha1| filter.contains_sha1(sha1)));
}

fn built_file(dir: &Path) -> Vec<u8> {
    let image = build_in_memory(random_hashes(11, 5_000), FingerprintBits::Sixteen, 1).unwrap();
    let path = dir.join("good.filter");
    fs::write(&path, &image).unwrap();
    BreachFilter::open(&path).unwrap();
    image
}

fn open_changed(dir: &Path, change: impl FnOnce(&mut Vec<u8>)) -> OpenError {
    let mut image = built_file(dir);
    change(&mut image);
    let path = dir.join("changed.filter");
    fs::write(&path, &image).unwrap();
    BreachFilter::open(&path).unwrap_err()
}

#[test]
fn damaged_truncated_and_foreign_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let image = built_file(dir);
    let last = image.len() - 1;

    let error = open_changed(dir, |image| image.truncate(image.len() - 100));
    assert!(matches!(error, OpenError::WrongLength { .. }), "{error}");
    assert!(error.to_string().contains("truncated"));
    let error = open_changed(dir, |image| image.truncate(10));
    assert!(
        matches!(error, OpenError::TooShort { length: 10 }),
        "{error}"
    );
    let error = open_changed(dir, |image| image[0] = b'X');
    assert!(matches!(error, OpenError::BadMagic), "{error}");
    let error = open_changed(dir, |image| image[8] = 2);
    assert!(
        matches!(
            error,
            OpenError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("warden breach build"));
    let error = open_changed(dir, |image| image[12] = 12);
    assert!(matches!(error, OpenError::BadHeader(_)), "{error}");
    // A shard table byte (the first shard's key count).
    let error = open_changed(dir, |image| image[64 + 16] ^= 1);
    assert!(matches!(error, OpenError::HeaderChecksum), "{error}");
    // A fingerprint byte in the last shard.
    let error = open_changed(dir, |image| image[last] ^= 0x40);
    assert!(
        matches!(error, OpenError::ShardChecksum { shard: 1 }),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt"));
    let error = BreachFilter::open(&dir.join("missing.filter")).unwrap_err();
    assert!(matches!(error, OpenError::Io(_)), "{error}");
    let error = BreachFilter::from_image(b"").unwrap_err();
    assert!(
        matches!(error, OpenError::TooShort { length: 0 }),
        "{error}"
    );
}

#[test]
fn an_empty_input_builds_an_empty_filter() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.txt");
    fs::write(&input, "").unwrap();
    let output = dir.path().join("out.filter");
    let report = build(&[input], &output, &options(dir.path()), &NoProgress).unwrap();
    assert_eq!(report.keys, 0);
    let filter = BreachFilter::open(&output).unwrap();
    assert_eq!(filter.key_count(), 0);
    let positives = random_hashes(12, 10_000)
        .iter()
        .filter(|sha1| filter.contains_sha1(sha1))
        .count();
    assert!(positives < 5);
}

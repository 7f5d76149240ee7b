//! `warden breach build`: the filter builder with a progress bar, stopped cleanly by Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use breach::builder::Phase;
use breach::{BadLine, BadLinePolicy, BuildError, BuildOptions, FingerprintBits, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Failure;
use crate::args::{BreachBuildArgs, BreachCommand};

pub async fn run(command: BreachCommand) -> Result<(), Failure> {
    match command {
        BreachCommand::Build(args) => build(args).await,
    }
}

async fn build(args: BreachBuildArgs) -> Result<(), Failure> {
    let fingerprint_bits = FingerprintBits::from_bits(args.fingerprint_bits)
        .ok_or_else(|| Failure::Input(anyhow::anyhow!("--fingerprint-bits must be 8 or 16")))?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let mut name = args.output.as_os_str().to_owned();
        name.push(".work");
        PathBuf::from(name)
    });
    let mut options = BuildOptions::new(work_dir);
    options.fingerprint_bits = fingerprint_bits;
    options.min_count = args.min_count;
    options.bad_lines = if args.bad_lines == "skip" {
        BadLinePolicy::Skip
    } else {
        BadLinePolicy::Fail
    };
    if let Some(threads) = args.threads {
        options.threads = usize::from(threads);
    }

    let progress = Arc::new(Bar::new());
    let stop = progress.clone();
    // Ctrl-C asks the build to stop at its next step; finished work stays for the next run.
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancelled.store(true, Ordering::SeqCst);
        }
    });
    let inputs = args.inputs.clone();
    let output = args.output.clone();
    let bar = progress.clone();
    let result = tokio::task::spawn_blocking(move || {
        breach::build(&inputs, &output, &options, bar.as_ref())
    })
    .await
    .context("the build stopped unexpectedly")?;
    interrupt.abort();
    progress.bar.finish_and_clear();
    let report = result.map_err(|error| match error {
        BuildError::BadLine(_) | BuildError::Option(_) => Failure::Input(error.into()),
        other => Failure::Failed(anyhow::Error::new(other).context("the build failed")),
    })?;
    if report.bad_lines > 0 {
        eprintln!(
            "warning: skipped {} bad lines (the first {} are listed above)",
            report.bad_lines,
            report.first_bad_lines.len()
        );
    }
    println!(
        "{}: {} hashes ({} lines read, {} below --min-count), {} shards, {} bytes ({:.2} bits per hash)",
        args.output.display(),
        report.keys,
        report.lines,
        report.below_min_count,
        report.shard_count,
        report.file_bytes,
        if report.keys == 0 {
            0.0
        } else {
            report.file_bytes as f64 * 8.0 / report.keys as f64
        }
    );
    Ok(())
}

/// The build's progress as one bar on stderr, restyled per phase, with an ETA.
#[derive(Debug)]
struct Bar {
    bar: ProgressBar,
    cancelled: AtomicBool,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            cancelled: AtomicBool::new(false),
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: Phase, total: u64) {
        let template = match phase {
            Phase::Read | Phase::Write => {
                "{msg:16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta}"
            }
            Phase::Build => "{msg:16} [{bar:30}] {pos}/{len} shards, ETA {eta}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_message(phase.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }

    fn advance(&self, done: u64) {
        self.bar.inc(done);
    }

    fn finish(&self, _: Phase) {}

    fn bad_line(&self, bad: &BadLine) {
        // `println` would print nothing when stderr is no terminal (the bar is hidden there).
        self.bar
            .suspend(|| eprintln!("warning: skipped bad line {bad}"));
    }

    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("note: {message}"));
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

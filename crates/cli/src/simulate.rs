//! `warden device simulate`: simulated devices from factory bundles, or made on the spot.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use registry::ModelName;
use registry::factory::MAX_BATCH;
use simulator::{Bundle, Counters, Load};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::args::{GlobalArgs, SimulateArgs};

pub async fn run(args: SimulateArgs, global: &GlobalArgs) -> Result<(), Failure> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(Failure::Input(anyhow!("--rate must be 0 or more")));
    }
    // Bundles made here live as long as the simulation.
    let made = match args.count {
        Some(count) => Some(make_devices(global, &args.model, count).await?),
        None => None,
    };
    let directories = match &made {
        Some(dir) => vec![dir.path().to_path_buf()],
        None => args.bundles.clone(),
    };
    let bundles = read_bundles(&directories)?;
    server::raise_open_file_limit();
    let broker = match &args.broker {
        Some(address) => simulator::parse_address(address)
            .ok_or_else(|| Failure::Input(anyhow!("--broker {address:?} is not HOST:PORT")))?,
        None => bundles
            .iter()
            .find_map(|bundle| bundle.broker.clone())
            .filter(|(_, port)| *port != 0)
            .ok_or_else(|| {
                Failure::Input(anyhow!(
                    "the bundles name no MQTT broker; give --broker HOST:PORT"
                ))
            })?,
    };
    if !(0.0..=1.0).contains(&args.fail_installs) {
        return Err(Failure::Input(anyhow!(
            "--fail-installs must be from 0 to 1"
        )));
    }
    let device_listener = args
        .device_listener
        .as_deref()
        .map(|address| {
            simulator::parse_address(address).ok_or_else(|| {
                Failure::Input(anyhow!("--device-listener {address:?} is not HOST:PORT"))
            })
        })
        .transpose()?;
    let load = Load {
        events_per_second: args.rate,
        payload_bytes: args.payload_bytes,
        install_failure_share: args.fail_installs,
    };
    let counters = Arc::new(match &args.ledger {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create the ledger {}", path.display()))
                .map_err(Failure::Input)?;
            Counters::with_ledger(Box::new(std::io::BufWriter::new(file)))
        }
        None => Counters::default(),
    });
    let shutdown = CancellationToken::new();
    eprintln!(
        "simulating {} device(s) against {}:{}",
        bundles.len(),
        broker.0,
        broker.1
    );
    let fleet = tokio::spawn(simulator::run(
        bundles,
        broker,
        device_listener,
        load,
        counters.clone(),
        shutdown.clone(),
    ));
    let stop = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let progress = async {
        // Live on a terminal; every ten seconds in a log.
        let every = if std::io::stderr().is_terminal() {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        loop {
            tokio::time::sleep(every).await;
            eprintln!("{}", counters.summary());
        }
    };
    tokio::select! {
        () = stop => {}
        () = progress => {}
    }
    shutdown.cancel();
    fleet.await.context("the simulation failed")?;
    counters.flush_ledger().context("cannot write the ledger")?;
    let summary = counters.summary();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&summary).context("cannot encode the summary")?
        );
    } else {
        println!("{summary}");
    }
    Ok(())
}

/// Makes `count` devices in this Warden's registry, bundles in a temporary directory.
async fn make_devices(
    global: &GlobalArgs,
    model: &str,
    count: usize,
) -> Result<tempfile::TempDir, Failure> {
    let model = ModelName::parse(model).map_err(|e| Failure::Input(e.into()))?;
    if count == 0 {
        return Err(Failure::Input(anyhow!("--count must be at least 1")));
    }
    let settings = global.load(&[])?;
    let store = server::open_store(&settings).await?;
    let dir = tempfile::tempdir().context("cannot make a directory for the bundles")?;
    let mut left = count;
    while left > 0 {
        let batch = left.min(MAX_BATCH);
        crate::devices::make(&store, &settings, &model, batch, dir.path(), false).await?;
        left -= batch;
    }
    Ok(dir)
}

/// The bundles in `directories`: each is a bundle, or holds bundles one level down.
pub(crate) fn read_bundles(directories: &[PathBuf]) -> Result<Vec<Bundle>, Failure> {
    let mut bundles = Vec::new();
    for dir in directories {
        if dir.join("device.json").is_file() {
            bundles.push(read_bundle(dir)?);
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))
            .map_err(Failure::Input)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.join("device.json").is_file())
            .collect();
        if inner.is_empty() {
            return Err(Failure::Input(anyhow!(
                "{} is no bundle and holds none",
                dir.display()
            )));
        }
        inner.sort();
        for path in inner {
            bundles.push(read_bundle(&path)?);
        }
    }
    Ok(bundles)
}

fn read_bundle(dir: &Path) -> Result<Bundle, Failure> {
    Bundle::read(dir).map_err(|error| Failure::Input(error.into()))
}

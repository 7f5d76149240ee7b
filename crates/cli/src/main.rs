//! `warden`: the one command-line program. Parses the command line and hands over to the library
//! crates; everything it does is reachable from `server`, `store` and `accounts`.

mod admin;
mod args;
mod audit;
mod breach;
mod client;
mod demo;
mod devices;
mod pki;
mod simulate;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{
    AuditCommand, Cli, Command, ConfigCommand, DeviceToolCommand, GatewayCommand, WorkloadCommand,
};

/// How the process ends, so scripts can tell a usage mistake from a failure.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad configuration or input: exit code 2, like a usage error.
    #[error("{0:#}")]
    Input(anyhow::Error),
    /// Anything else that went wrong: exit code 1.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
    /// Not logged in, or the login no longer works: exit code 3.
    #[error("{0:#}")]
    Unauthenticated(anyhow::Error),
    /// The server says the thing does not exist or is not yours to do: exit code 4.
    #[error("{0:#}")]
    Refused(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            match failure {
                Failure::Input(_) => ExitCode::from(2),
                Failure::Failed(_) => ExitCode::FAILURE,
                Failure::Unauthenticated(_) => ExitCode::from(3),
                Failure::Refused(_) => ExitCode::from(4),
            }
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(serve) => {
            let settings = cli.global.load(&serve.flags())?;
            server::init_logging(&settings)?;
            if serve.demo {
                demo::run(&settings).await?;
            } else {
                server::run_until_signal(&settings).await?;
            }
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let settings =
                server::config::load(Some(&file), &[]).map_err(|e| Failure::Input(e.into()))?;
            println!(
                "{}: ok (database {}, https on {}, data in {})",
                file.display(),
                settings.database,
                settings.https_listen,
                settings.data_dir.display()
            );
        }
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", server::config::reference_markdown())
        }
        Command::Admin(command) => {
            let settings = cli.global.load(&[])?;
            admin::run(command, &settings).await?;
        }
        Command::Audit(AuditCommand::Log {
            device,
            limit,
            output,
        }) => client::audit_log(device, limit, output.json).await?,
        Command::Audit(AuditCommand::Journal(command)) => {
            let settings = cli.global.load(&[])?;
            audit::run(command, &settings).await?;
        }
        Command::Login(args) => {
            let data_dir = match &cli.global.data_dir {
                Some(dir) => dir.clone(),
                None => cli.global.load(&[])?.data_dir,
            };
            client::login(args, &data_dir).await?
        }
        Command::Logout => client::logout().await?,
        Command::Devices(command) => client::devices(command).await?,
        Command::Grants(command) => client::grants(command).await?,
        Command::Workload(command) => workload(command).await?,
        Command::Breach(command) => breach::run(command).await?,
        Command::Device(DeviceToolCommand::Simulate(args)) => {
            simulate::run(args, &cli.global).await?
        }
        Command::Gateway(GatewayCommand::CheckRules { file }) => check_rules(&file)?,
        Command::Gateway(GatewayCommand::ShippedRules) => print!("{}", gateway::SHIPPED_RULES),
    }
    Ok(())
}

/// `warden workload renew`: once, or until a signal.
async fn workload(command: WorkloadCommand) -> Result<(), Failure> {
    let WorkloadCommand::Renew {
        dir,
        part,
        server: renewer,
        renew_before,
        once,
    } = command;
    let part = ::pki::PartName::parse(&part)
        .map_err(|error| Failure::Input(anyhow::anyhow!("{error}")))?;
    let files = server::workload::WorkloadFiles { dir, part };
    let renew_before = renew_before.map(std::time::Duration::from_secs);
    if once {
        let now = model::Clock::now(&model::SystemClock);
        match server::workload::renew_if_due(&files, &renewer, renew_before, now).await? {
            server::workload::Renewal::Renewed { not_after } => {
                println!(
                    "renewed {}: valid until {}",
                    files.certificate().display(),
                    not_after.to_rfc3339()
                );
            }
            server::workload::Renewal::NotDue { due_at } => {
                println!(
                    "not due: {} renews at {}",
                    files.certificate().display(),
                    due_at.to_rfc3339()
                );
            }
        }
        return Ok(());
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    server::workload::keep_renewed(files, renewer, renew_before, &model::SystemClock, shutdown)
        .await;
    Ok(())
}

/// `warden gateway check-rules`: every problem on a line of its own, with where it is.
fn check_rules(file: &std::path::Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file).map_err(|error| {
        Failure::Input(anyhow::anyhow!("cannot read {}: {error}", file.display()))
    })?;
    match gateway::RuleSet::parse(&text, gateway::Format::of_path(file)) {
        Ok(rules) => {
            let ids: Vec<&str> = rules.rules.iter().map(|rule| rule.id.as_str()).collect();
            println!(
                "{}: ok, {} rules: {}",
                file.display(),
                ids.len(),
                ids.join(", ")
            );
            Ok(())
        }
        Err(error) => {
            for problem in &error.problems {
                println!("{}: {problem}", file.display());
            }
            Err(Failure::Input(anyhow::anyhow!(
                "{}: {} problem(s); the rules were not accepted",
                file.display(),
                error.problems.len()
            )))
        }
    }
}

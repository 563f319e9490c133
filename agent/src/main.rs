//! `gridlink-agent`: the site gateway's service and commissioning tool.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gridlink_agent::config::{self, AgentConfig};
use gridlink_agent::{check, keygen, service};
use tokio::sync::watch;

/// gridlink edge agent: polls meters over Modbus, keeps every reading in a
/// durable buffer and publishes it over mutually authenticated MQTT.
#[derive(Debug, Parser)]
#[command(name = "gridlink-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or Ctrl-C.
    Run {
        /// The agent's TOML configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Read every configured point once and print a table of values or
    /// errors; exit 1 if any point fails (commissioning).
    Check {
        /// The agent's TOML configuration.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Make this gateway's private key (ECDSA P-256, mode 0600) and a CSR
    /// with CN = the VEN id, for `gridlink-provision sign` or `aws
    /// register`. The key never leaves the gateway; an existing key is
    /// never overwritten.
    Keygen {
        /// The VEN id (AWS IoT thing name, MQTT client id, certificate CN).
        #[arg(long, value_name = "VEN_ID")]
        ven: gridlink_protocol::VenId,
        /// Where to write `key.pem` and `VEN_ID.csr` (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRIDLINK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Run { config } | Command::Check { config } => config.clone(),
        Command::Keygen { ven, out } => {
            return match keygen::keygen(ven, out) {
                Ok(files) => {
                    println!(
                        "wrote {} (private, mode 0600: it stays on this gateway) and {} (give this to the installer)",
                        files.key.display(),
                        files.csr.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // What the shadow reports as the config digest: the file as it was read.
    let digest = std::fs::read(&path)
        .map(|bytes| service::config_digest(&bytes))
        .unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { .. } => runtime.block_on(run_check(&config)),
        Command::Keygen { .. } => unreachable!("keygen returned above"),
        Command::Run { .. } => match runtime.block_on(run_service(config, digest)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run_check(config: &AgentConfig) -> ExitCode {
    let report = check::check(config).await;
    print!("{report}");
    if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_service(config: AgentConfig, digest: String) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    service::run_with(config, digest, stopped).await.map(|_| ())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

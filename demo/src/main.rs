//! `gridlink-demo`: the one-command demo (`cargo run --release -p
//! gridlink-demo`): the whole system on this machine, in one process.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use gridlink_demo::{DemoOptions, MAX_SITES, Ready};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Run the whole system on this machine: an embedded MQTT broker (TLS,
/// client certificates from a demo CA), the cloud on SQLite and N
/// simulated sites, each with its agent.
///
/// Prints the API address, an operator token and ready `curl` commands
/// once every site reports; runs until Ctrl-C or SIGTERM. The embedded
/// broker does not isolate VENs' topics: production uses AWS IoT Core
/// or Mosquitto with an ACL.
#[derive(Debug, Parser)]
#[command(name = "gridlink-demo", version, about, long_about)]
struct Cli {
    /// Number of simulated sites, each with its agent (1-50).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_SITES)))]
    sites: u16,
    /// Keep the demo's files (certificates, database, agent configs and buffers) in this directory; default: a temporary directory removed at exit.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Port of the cloud's HTTP API on 127.0.0.1; 0 for any free port.
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    http_port: u16,
    /// Seed of the first site; site i uses seed + i - 1.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // rumqttd logs every connection at info and every disconnection as an
    // error; the demo reports broker failures itself
    // (RUST_LOG=info,rumqttd=info shows the broker's log).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    run_demo(cli).await
}

/// Runs the demo until Ctrl-C or SIGTERM and prints its instructions on
/// stdout once it is up.
async fn run_demo(args: Cli) -> anyhow::Result<()> {
    let options = DemoOptions {
        sites: args.sites,
        dir: args.dir,
        http_port: args.http_port,
        seed: args.seed,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let stop = async move {
        tokio::select! {
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => info!("interrupted; stopping"),
                Err(error) => tracing::error!(%error, "cannot watch for Ctrl-C; stopping"),
            },
            _ = terminate.recv() => info!("terminated; stopping"),
        }
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Ready>();
    let printer = tokio::spawn(async move {
        if let Ok(ready) = ready_rx.await {
            println!("{}", ready.instructions());
        }
    });
    let result = gridlink_demo::run(options, ready_tx, stop).await;
    printer.abort();
    result
}

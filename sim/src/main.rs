//! `gridlink-sim`: serve a simulated site over Modbus TCP and RTU (the
//! one-command demo is `gridlink-demo`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use gridlink_sim::{Site, SiteConfig, serve_rtu, serve_tcp, test_pattern};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// gridlink site simulator: meters and controllable loads over Modbus.
#[derive(Debug, Parser)]
#[command(name = "gridlink-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one simulated site over Modbus TCP (and optionally RTU).
    ///
    /// Meters answer at unit ids 1..=N with the Eastron SDM630 input
    /// register map; unit 1 is the main meter and also carries the loads'
    /// coils and setpoints; unit 247 serves a fixed test pattern. Set
    /// `RUST_LOG=debug` to log every request.
    Site(SiteArgs),
}

#[derive(Debug, Args)]
struct SiteArgs {
    /// Address the Modbus TCP server listens on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5020")]
    listen: SocketAddr,
    /// Also serve Modbus RTU on this serial device (e.g. /dev/ttyUSB0 or one end of a socat pty pair).
    #[arg(long, value_name = "PATH")]
    rtu: Option<PathBuf>,
    /// Baud rate of the RTU serial line (8 data bits, no parity, 1 stop bit).
    #[arg(long, value_name = "BAUD", default_value_t = 9600, requires = "rtu")]
    baud: u32,
    /// Number of meters, at unit ids 1..=N (1-246); unit 1 is the site's main meter.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=246))]
    meters: u8,
    /// Number of controllable loads on unit 1 (0-128): coil k-1 is load k's relay, holding register k-1 its setpoint in %.
    #[arg(long, value_name = "M", default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=128))]
    loads: u16,
    /// Seed of all ratings, curves and noise: one seed gives the same values at the same wall-clock time.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Unit id that never answers, like a dead device on the bus (repeat for several).
    #[arg(long = "silent-unit", value_name = "UNIT")]
    silent_units: Vec<u8>,
    /// Send every answer this many milliseconds after its request.
    #[arg(long, value_name = "D", default_value_t = 0)]
    delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Site(args) => run_site(args).await,
    }
}

async fn run_site(args: SiteArgs) -> anyhow::Result<()> {
    let site = Site::new(SiteConfig {
        meters: args.meters,
        loads: args.loads,
        seed: args.seed,
        silent_units: args.silent_units,
        delay: Duration::from_millis(args.delay_ms),
        start: None,
    })
    .context("invalid site")?;
    describe(&site);

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(listen = %listener.local_addr()?, "serving Modbus TCP");
    let tcp = serve_tcp(site.clone(), listener);
    let rtu = async {
        match &args.rtu {
            Some(path) => serve_rtu(site.clone(), path, args.baud).await,
            None => std::future::pending().await,
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;

    tokio::select! {
        result = tcp => result.context("Modbus TCP server stopped")?,
        result = rtu => result.context("Modbus RTU server stopped")?,
        result = tokio::signal::ctrl_c() => {
            result.context("cannot watch for Ctrl-C")?;
            info!("interrupted; stopping");
        }
        _ = terminate.recv() => info!("terminated; stopping"),
    }
    info!(requests = site.requests_served(), "stopped");
    Ok(())
}

/// Logs what the site contains, so a user knows which units to poll.
fn describe(site: &Site) {
    let config = site.config();
    info!(
        meters = config.meters,
        loads = config.loads,
        seed = config.seed,
        silent_units = ?config.silent_units,
        delay_ms = config.delay.as_millis(),
        test_pattern_unit = test_pattern::UNIT,
        "simulated site"
    );
    for unit in 1..=config.meters {
        if let Some(kind) = site.meter_kind(unit) {
            info!(unit, ?kind, "meter");
        }
    }
    for k in 1..=config.loads {
        if let Some(load) = site.load(k) {
            info!(load = k, coil = k - 1, rated_w = load.rated_power_w, "load");
        }
    }
}

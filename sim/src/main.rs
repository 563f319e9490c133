//! `gridlink-sim`: serve a simulated site over Modbus TCP and RTU, or run
//! the one-command demo (`gridlink-sim demo`).

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
    /// Run the whole system on this machine: an embedded MQTT broker (TLS,
    /// client certificates from a demo CA), the cloud on SQLite and N
    /// simulated sites, each with its agent.
    ///
    /// Prints the API address, an operator token and ready `curl` commands
    /// once every site reports; runs until Ctrl-C or SIGTERM. The embedded
    /// broker does not isolate VENs' topics: production uses AWS IoT Core
    /// or Mosquitto with an ACL.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
struct DemoArgs {
    /// Number of simulated sites, each with its agent (1-50).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=i64::from(gridlink_sim::demo::MAX_SITES)))]
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
    // rumqttd logs every connection at info and every disconnection as an
    // error; the demo reports broker failures itself
    // (RUST_LOG=info,rumqttd=info shows the broker's log).
    let default_filter = match cli.command {
        Command::Site(_) => "info",
        #[cfg(feature = "demo")]
        Command::Demo(_) => "info,rumqttd=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Site(args) => run_site(args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => run_demo(args).await,
    }
}

/// Runs the demo until Ctrl-C or SIGTERM and prints its instructions on
/// stdout once it is up.
#[cfg(feature = "demo")]
async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    use gridlink_sim::demo::{self, DemoOptions};

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
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<demo::Ready>();
    let printer = tokio::spawn(async move {
        if let Ok(ready) = ready_rx.await {
            println!("{}", ready.instructions());
        }
    });
    let result = demo::run(options, ready_tx, stop).await;
    printer.abort();
    result
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

//! `gridlink-cloud`: the cloud service (MQTT ingest, storage, HTTP API) and
//! its admin commands.
//!
//! Exit status: 0 on success (and after a clean stop on SIGTERM or Ctrl-C),
//! 2 for an unusable command line or configuration, 1 for anything that
//! failed while running (database unreachable, port taken, certificates
//! unreadable).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::auth::{self, check_token_name};
use gridlink_cloud::config::{CloudConfig, RetentionConfig, redact_database_url};
use gridlink_cloud::ingest::{self, IngestSettings};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, Role, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often `serve` prepares partitions and deletes raw readings past
/// retention.
const RETENTION_INTERVAL: Duration = Duration::from_hours(1);
/// How long `serve` waits for its tasks to finish after a stop signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// gridlink cloud: consumes VEN telemetry over MQTT, stores it in
/// PostgreSQL or SQLite, and serves it over an HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "gridlink-cloud",
    version,
    about,
    after_help = "Every setting can also be given in the environment (GRIDLINK_DATABASE_URL, \
        GRIDLINK_HTTP_LISTEN, GRIDLINK_MQTT_HOST, ...; see cloud/README.md), which overrides the \
        file. GRIDLINK_LOG sets the log filter (default info)."
)]
struct Cli {
    /// The TOML configuration; optional when the environment gives what the
    /// command needs.
    #[arg(
        long,
        short,
        global = true,
        value_name = "FILE",
        env = "GRIDLINK_CONFIG"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations, then run MQTT ingest and the HTTP API
    /// until SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it once on stdout (only its SHA-256
    /// is stored).
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A name that says who or what uses it ("ops dashboard").
        #[arg(long, value_parser = token_name)]
        name: String,
    },
}

/// A token role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Reads VENs, loads and telemetry.
    Viewer,
    /// Reads, and dispatches DR events.
    Operator,
    /// Reads, and registers VENs.
    Installer,
    /// Everything, including creating tokens.
    Admin,
    /// An OpenADR VEN client.
    Ven,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => Self::Viewer,
            RoleArg::Operator => Self::Operator,
            RoleArg::Installer => Self::Installer,
            RoleArg::Admin => Self::Admin,
            RoleArg::Ven => Self::Ven,
        }
    }
}

/// What `main` runs, once the command line and config are checked.
enum Job {
    Serve(IngestSettings),
    Migrate,
    CreateToken { role: Role, name: String },
}

fn token_name(name: &str) -> Result<String, String> {
    check_token_name(name).map(|()| name.to_string())
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
    let config = match CloudConfig::load(cli.config.as_deref(), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // Everything `serve` needs from the config is checked before anything starts.
    let job = match cli.command {
        Command::Serve => match config.ingest_settings() {
            Ok(settings) => Job::Serve(settings),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        Command::Migrate => Job::Migrate,
        Command::Token {
            command: TokenCommand::Create { role, name },
        } => Job::CreateToken {
            role: role.into(),
            name,
        },
    };
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
    let result = runtime.block_on(async {
        match job {
            Job::Serve(settings) => serve(config, settings).await,
            Job::Migrate => migrate(&config).await,
            Job::CreateToken { role, name } => create_token(&config, role, &name).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(config: &CloudConfig) -> anyhow::Result<AnyStore> {
    let url = redact_database_url(&config.database_url);
    AnyStore::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

async fn migrate(config: &CloudConfig) -> anyhow::Result<()> {
    let store = connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    eprintln!(
        "migrations applied to {}",
        redact_database_url(&config.database_url)
    );
    Ok(())
}

async fn create_token(config: &CloudConfig, role: Role, name: &str) -> anyhow::Result<()> {
    let store = connect(config).await?;
    let issued = auth::issue_token()?;
    let record = store
        .create_token(name, role, &issued.hash)
        .await
        .context("storing the token (run `gridlink-cloud migrate` first if the database is new)")?;
    println!("{}", issued.secret);
    eprintln!(
        "created token {} {:?} with role {}; it is shown only this once",
        record.id,
        record.name,
        record.role.as_str()
    );
    Ok(())
}

/// Runs ingest, the HTTP API and retention until a stop signal, or until
/// one of them fails (then the others are stopped and the error returned).
async fn serve(config: CloudConfig, settings: IngestSettings) -> anyhow::Result<()> {
    let store = Arc::new(connect(&config).await?);
    store.migrate().await.context("applying migrations")?;
    store
        .prepare_partitions(now_ms())
        .await
        .context("preparing partitions")?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let metrics = Arc::new(Metrics::default());
    let state = AppState::new(Arc::clone(&store), Arc::clone(&metrics))
        .with_max_points(config.http.max_points);
    let app = api::router(state);
    let (stop, stopped) = watch::channel(false);

    tracing::info!(
        listen = %config.http.listen,
        database = %redact_database_url(&config.database_url),
        broker = format!("{}:{}", settings.host, settings.port),
        client_id = settings.client_id,
        "gridlink-cloud serving"
    );
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let mut http_stop = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|&stop| stop).await;
        };
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        ("http", result.context("HTTP server"))
    });
    let ingest = ingest::run(settings, Arc::clone(&store), metrics, stopped.clone());
    tasks.spawn(async move { ("ingest", ingest.await.map_err(anyhow::Error::from)) });
    tasks.spawn(retention(store, config.retention.clone(), stopped));

    let failure = tokio::select! {
        () = wait_for_signal() => {
            tracing::info!("stop signal received; stopping");
            None
        }
        Some(joined) = tasks.join_next() => Some(match joined {
            Ok((task, Ok(()))) => anyhow::anyhow!("{task} stopped unexpectedly"),
            Ok((task, Err(error))) => error.context(format!("{task} failed")),
            Err(error) => anyhow::Error::new(error).context("a task panicked"),
        }),
    };
    let _ = stop.send(true);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((task, Err(error))) => tracing::warn!(
                    task,
                    error = format!("{error:#}"),
                    "task failed while stopping"
                ),
                Ok((_, Ok(()))) => {}
                Err(error) => tracing::warn!(%error, "task panicked while stopping"),
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(timeout = ?SHUTDOWN_TIMEOUT, "tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    failure.map_or(Ok(()), Err)
}

/// Prepares partitions and deletes raw readings past retention now and
/// every hour, until `stop`. Failures are logged and retried next time.
async fn retention(
    store: Arc<AnyStore>,
    config: RetentionConfig,
    mut stop: watch::Receiver<bool>,
) -> (&'static str, anyhow::Result<()>) {
    loop {
        let now = now_ms();
        if let Err(error) = store.prepare_partitions(now).await {
            tracing::warn!(%error, "cannot prepare partitions; retrying in an hour");
        }
        if let Some(age) = config.raw_max_age() {
            let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            match store.enforce_retention(before).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    deleted,
                    raw_days = config.raw_days,
                    "raw readings past retention deleted"
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot enforce retention; retrying in an hour");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = stop.wait_for(|&stop| stop) => return ("retention", Ok(())),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

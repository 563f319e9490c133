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
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use gridlink_cloud::api::ApiKeySecret;
use gridlink_cloud::api::auth::{self, check_token_name};
use gridlink_cloud::config::{CloudConfig, redact_database_url};
use gridlink_cloud::ingest::IngestSettings;
use gridlink_cloud::model::clock::now_ms;
use gridlink_cloud::server;
use gridlink_cloud::store::{
    ApiKeyStore as _, MAX_CUSTOMER_LEN, NewApiKey, Role, Store, TokenStore as _,
};
use gridlink_protocol::VenId;

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
    /// Ask the running service's `/health` (on `http.listen`, or --url):
    /// exit 0 if it answers 200, 1 otherwise. For container health checks,
    /// where the image has no shell or curl.
    Health {
        /// The health URL, `http://HOST:PORT/health`; default: this
        /// configuration's `http.listen` on the loopback interface.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Export one UTC day of readings (one file per VEN and a manifest)
    /// to a directory or S3, replacing an earlier export of that day.
    /// Defaults come from `[export]`.
    Export {
        /// The UTC day: YYYY-MM-DD or `yesterday`.
        #[arg(long, value_name = "DAY", default_value = "yesterday", value_parser = export_day)]
        day: gridlink_cloud::export::ExportDay,
        /// `s3://BUCKET/PREFIX/`, `file:///dir` or a path; default
        /// `export.output`.
        #[arg(long, value_name = "URL", value_parser = export_output)]
        output: Option<gridlink_cloud::export::Output>,
        /// `parquet` or `csv.gz`; default `export.format`.
        #[arg(long, value_parser = export_format)]
        format: Option<gridlink_cloud::export::ExportFormat>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the API keys of HTTP ingest (`POST /api/v1/ingest`).
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// OAuth 2.0 clients of the OpenADR VTN (business logic or VEN).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
}

/// `gridlink-cloud client ...`.
#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Makes a client; prints `{"clientID", "clientSecret", "role", "name"}`
    /// as JSON on stdout (the secret is shown only this once).
    Create {
        /// `bl` (business logic: writes programs and events, reads
        /// everything) or `ven` (a VEN: reads what it is targeted by).
        #[arg(long, value_enum)]
        role: ClientRoleArg,
        /// A human name.
        #[arg(long, value_parser = token_name)]
        name: String,
    },
    /// Lists the clients (never a secret).
    List,
    /// Revokes a client: its access tokens stop working at once.
    Revoke {
        /// The client id.
        client_id: String,
    },
}

/// An OAuth client role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClientRoleArg {
    /// Business logic.
    Bl,
    /// A VEN.
    Ven,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key and print it once on stdout (only the SHA-256 of
    /// its secret is stored). Registers its VENs if unknown.
    Create {
        /// A name that says who or what uses it ("meter portal").
        #[arg(long, value_parser = token_name)]
        name: String,
        /// The customer it belongs to.
        #[arg(long, value_parser = customer_name)]
        customer: String,
        /// A VEN the key may write; repeat for several.
        #[arg(long = "ven", value_name = "VEN_ID", required = true, value_parser = ven_id)]
        vens: Vec<VenId>,
    },
    /// List every API key (revoked ones too), without secrets.
    List,
    /// Revoke an API key at once.
    Revoke {
        /// The key's id (as `list` shows it; the number in `gli_<id>_...`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
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
        /// How long it works: an ISO 8601 duration (`P30D`, `PT12H`) or
        /// seconds; default 90 days, at most 10 years.
        #[arg(long, value_name = "DURATION", value_parser = token_lifetime, conflicts_with = "no_expiry")]
        expires_in: Option<u64>,
        /// Never expires (for a bootstrap admin token kept in a vault).
        #[arg(long)]
        no_expiry: bool,
    },
    /// List every token (revoked and expired ones too), without secrets.
    List,
    /// Revoke a token at once (not the last active admin token: issue
    /// another admin token first).
    Revoke {
        /// The token's id (as `list` shows it).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
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
    CreateToken {
        role: Role,
        name: String,
        /// Seconds it lives; `None`: never expires.
        lifetime_s: Option<u64>,
    },
    Token(TokenCommand),
    ApiKey(ApiKeyCommand),
    Client(ClientCommand),
    Export(
        gridlink_cloud::export::ExportJob,
        gridlink_cloud::export::Output,
    ),
}

fn export_day(text: &str) -> anyhow::Result<gridlink_cloud::export::ExportDay> {
    Ok(gridlink_cloud::export::ExportDay::parse_now(text)?)
}

fn export_output(text: &str) -> anyhow::Result<gridlink_cloud::export::Output> {
    Ok(text.parse()?)
}

fn export_format(text: &str) -> anyhow::Result<gridlink_cloud::export::ExportFormat> {
    Ok(text.parse()?)
}

/// A token lifetime: an ISO 8601 duration or integer seconds, 1 s to
/// `api::MAX_TOKEN_LIFETIME_S`; the answer is in seconds.
fn token_lifetime(text: &str) -> anyhow::Result<u64> {
    use std::str::FromStr as _;
    let seconds = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()?
    } else {
        gridlink_protocol::IsoDuration::from_str(text)?
            .millis()
            .map_or(u64::MAX, |ms| ms / 1000)
    };
    if (1..=gridlink_cloud::api::MAX_TOKEN_LIFETIME_S).contains(&seconds) {
        Ok(seconds)
    } else {
        anyhow::bail!(
            "must be 1 second to {} seconds (10 years)",
            gridlink_cloud::api::MAX_TOKEN_LIFETIME_S
        )
    }
}

fn token_name(name: &str) -> anyhow::Result<String> {
    check_token_name(name)?;
    Ok(name.to_string())
}

fn customer_name(name: &str) -> anyhow::Result<String> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_CUSTOMER_LEN
        || name.chars().any(char::is_control)
    {
        anyhow::bail!("must be 1 to {MAX_CUSTOMER_LEN} characters without control characters")
    }
    Ok(name.to_string())
}

fn ven_id(id: &str) -> anyhow::Result<VenId> {
    Ok(VenId::new(id)?)
}

/// What `command` asks for, with everything it needs from the config
/// checked before anything starts; `Err` with the exit code when it is
/// done already (`health`) or cannot start (a bad setting: 2).
fn plan(command: Command, config: &CloudConfig) -> Result<Job, ExitCode> {
    let job = match command {
        Command::Serve => match config.ingest_settings() {
            Ok(settings) => Job::Serve(settings),
            Err(error) => {
                eprintln!("error: {error}");
                return Err(ExitCode::from(2));
            }
        },
        Command::Migrate => Job::Migrate,
        Command::Health { url } => {
            let target = url.unwrap_or_else(|| {
                let mut listen = config.http.listen;
                if listen.ip().is_unspecified() {
                    listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{listen}/health")
            });
            return Err(match health_probe(&target) {
                Ok(status) => {
                    println!("{target}: {status}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {target}: {error}");
                    ExitCode::FAILURE
                }
            });
        }
        Command::Export {
            day,
            output,
            format,
        } => {
            let output = match output.map_or_else(|| config.export.output(), Ok) {
                Ok(output) => output,
                Err(error) => {
                    eprintln!("error: export.output: {error}");
                    return Err(ExitCode::from(2));
                }
            };
            Job::Export(
                gridlink_cloud::export::ExportJob {
                    day,
                    format: format.unwrap_or(config.export.format),
                    gap_factor: config.export.gap_factor,
                    holder: gridlink_cloud::export::schedule::holder_name(&config.mqtt.client_id),
                    force: true,
                },
                output,
            )
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    name,
                    expires_in,
                    no_expiry,
                },
        } => Job::CreateToken {
            role: role.into(),
            name,
            lifetime_s: if no_expiry {
                None
            } else {
                Some(expires_in.unwrap_or(gridlink_cloud::api::DEFAULT_TOKEN_LIFETIME_S))
            },
        },
        Command::Token { command } => Job::Token(command),
        Command::ApiKey { command } => Job::ApiKey(command),
        Command::Client { command } => Job::Client(command),
    };
    Ok(job)
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
    let job = match plan(cli.command, &config) {
        Ok(job) => job,
        Err(code) => return code,
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
            Job::Serve(settings) => server::serve(config, settings, wait_for_signal()).await,
            Job::Migrate => migrate(&config).await,
            Job::CreateToken {
                role,
                name,
                lifetime_s,
            } => create_token(&config, role, &name, lifetime_s).await,
            Job::Token(command) => token(&config, command).await,
            Job::ApiKey(command) => api_key(&config, command).await,
            Job::Client(command) => client(&config, command).await,
            Job::Export(job, output) => export(&config, &job, &output).await,
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

async fn migrate(config: &CloudConfig) -> anyhow::Result<()> {
    let store = server::connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    eprintln!(
        "migrations applied to {}",
        redact_database_url(&config.database_url)
    );
    Ok(())
}

async fn create_token(
    config: &CloudConfig,
    role: Role,
    name: &str,
    lifetime_s: Option<u64>,
) -> anyhow::Result<()> {
    let store = server::connect(config).await?;
    let issued = auth::issue_token()?;
    let now = now_ms();
    let expires_ms =
        lifetime_s.map(|s| now.saturating_add(i64::try_from(s * 1000).unwrap_or(i64::MAX)));
    let record = store
        .create_expiring_token(name, role, &issued.hash, now, expires_ms)
        .await
        .context("storing the token (run `gridlink-cloud migrate` first if the database is new)")?;
    println!("{}", issued.secret);
    let expiry = record.expires_ms.map_or_else(
        || "never expires".to_owned(),
        |ms| format!("expires at {ms} ms"),
    );
    eprintln!(
        "created token {} {:?} with role {}, {expiry}; it is shown only this once",
        record.id,
        record.name,
        record.role.as_str()
    );
    Ok(())
}

/// `token list` and `token revoke` (which refuses the last active admin
/// token, as the API does).
async fn token(config: &CloudConfig, command: TokenCommand) -> anyhow::Result<()> {
    let store = server::connect(config).await?;
    let hint = "(run `gridlink-cloud migrate` first if the database is new)";
    let now = now_ms();
    match command {
        TokenCommand::Create { .. } => unreachable!("handled as Job::CreateToken"),
        TokenCommand::List => {
            let tokens = store
                .tokens()
                .await
                .with_context(|| format!("reading the tokens {hint}"))?;
            println!("id\tname\trole\tcreated_ms\texpires_ms\trevoked_ms\tactive");
            let ms = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            for t in tokens {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.created_ms,
                    ms(t.expires_ms),
                    ms(t.revoked_ms),
                    t.is_active(now)
                );
            }
        }
        TokenCommand::Revoke { id } => match store.revoke_token(id, now).await {
            Ok(Some(_)) => eprintln!("token {id} revoked"),
            Ok(None) => anyhow::bail!("no token {id}"),
            Err(gridlink_cloud::store::StoreError::Conflict(reason)) => {
                anyhow::bail!("{reason}")
            }
            Err(error) => return Err(error).context(format!("revoking token {id} {hint}")),
        },
    }
    Ok(())
}

/// `client create|list|revoke` (migrates first, so a new database works).
async fn client(config: &CloudConfig, command: ClientCommand) -> anyhow::Result<()> {
    use gridlink_cloud::api::openadr::oauth::issue_client;
    use gridlink_cloud::store::VtnStore as _;
    use gridlink_cloud::store::vtn::ClientRole;
    let store = server::connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    match command {
        ClientCommand::Create { role, name } => {
            let role = match role {
                ClientRoleArg::Bl => ClientRole::Bl,
                ClientRoleArg::Ven => ClientRole::Ven,
            };
            let issued = issue_client()?;
            let client = store
                .create_client(&issued.client_id, &name, role, &issued.hash, now_ms())
                .await
                .context("storing the client")?;
            println!(
                "{}",
                serde_json::json!({
                    "clientID": client.client_id,
                    "clientSecret": issued.secret,
                    "role": client.role.as_str(),
                    "name": client.name,
                })
            );
            eprintln!(
                "created OpenADR {} client {}; its secret is shown only this once",
                client.role.as_str(),
                client.client_id
            );
        }
        ClientCommand::List => {
            println!("client_id\tname\trole\tcreated_ms\trevoked_ms");
            for c in store.clients().await.context("reading the clients")? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.client_id,
                    c.name,
                    c.role.as_str(),
                    c.created_ms,
                    c.revoked_ms
                        .map_or_else(|| "-".to_owned(), |v| v.to_string())
                );
            }
        }
        ClientCommand::Revoke { client_id } => {
            match store.revoke_client(&client_id, now_ms()).await? {
                Some(_) => eprintln!("client {client_id} revoked"),
                None => anyhow::bail!("no client {client_id}"),
            }
        }
    }
    Ok(())
}

async fn export(
    config: &CloudConfig,
    job: &gridlink_cloud::export::ExportJob,
    output: &gridlink_cloud::export::Output,
) -> anyhow::Result<()> {
    use gridlink_cloud::export::{Destination, ExportOutcome, export_day};
    let store = server::connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    let destination = Destination::open(output, &config.export.s3_endpoint_url).await?;
    let outcome = export_day(&store, &destination, job)
        .await
        .with_context(|| format!("exporting {} to {output}", job.day))?;
    match outcome {
        ExportOutcome::Exported(manifest) => {
            println!(
                "{day}: {vens} VENs, {rows} rows, {gaps} gaps, {bytes} bytes of {format} in {output}{day}/",
                day = manifest.day,
                vens = manifest.totals.vens,
                rows = manifest.totals.rows,
                gaps = manifest.totals.gaps,
                bytes = manifest.totals.bytes,
                format = manifest.format,
                output = match output {
                    gridlink_cloud::export::Output::Directory(path) =>
                        format!("{}/", path.display()),
                    s3 @ gridlink_cloud::export::Output::S3 { .. } => s3.to_string(),
                },
            );
        }
        ExportOutcome::AlreadyDone { done_ms } => {
            println!(
                "{}: already exported at {}",
                job.day,
                gridlink_cloud::export::iso_ms(done_ms)
            );
        }
    }
    Ok(())
}

async fn api_key(config: &CloudConfig, command: ApiKeyCommand) -> anyhow::Result<()> {
    let store = server::connect(config).await?;
    let hint = "(run `gridlink-cloud migrate` first if the database is new)";
    match command {
        ApiKeyCommand::Create {
            name,
            customer,
            vens,
        } => {
            let secret = ApiKeySecret::generate()?;
            let new = NewApiKey {
                name,
                customer,
                ven_ids: vens,
                hash: secret.hash(),
            };
            let record = store
                .create_api_key(&new, now_ms())
                .await
                .with_context(|| format!("storing the API key {hint}"))?;
            println!("{}", secret.key(record.id));
            eprintln!(
                "created API key {} {:?} for {:?}, VENs {}; it is shown only this once",
                record.id,
                record.name,
                record.customer,
                record
                    .ven_ids
                    .iter()
                    .map(VenId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        ApiKeyCommand::List => {
            let keys = store
                .api_keys()
                .await
                .with_context(|| format!("reading the API keys {hint}"))?;
            println!("id\tname\tcustomer\tcreated_ms\trevoked_ms\tvens");
            for key in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.name,
                    key.customer,
                    key.created_ms,
                    key.revoked_ms
                        .map_or_else(|| "-".to_owned(), |ms| ms.to_string()),
                    key.ven_ids
                        .iter()
                        .map(VenId::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            match store
                .revoke_api_key(id, now_ms())
                .await
                .with_context(|| format!("revoking the API key {hint}"))?
            {
                Some(key) => eprintln!("API key {} {:?} is revoked", key.id, key.name),
                None => anyhow::bail!("no API key {id} exists"),
            }
        }
    }
    Ok(())
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
    tracing::info!("stop signal received");
}

/// GETs `url` (plain `http://host:port/path`) with a 3 s time-out; `Ok`
/// with the status line if the answer is 200.
fn health_probe(url: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs are probed"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let address = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| anyhow::anyhow!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} resolves to no address"))?;
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| anyhow::anyhow!("cannot connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| anyhow::anyhow!("cannot send the request: {e}"))?;
    let mut answer = String::new();
    let _ = stream.take(64 * 1024).read_to_string(&mut answer);
    let status = answer.lines().next().unwrap_or_default().to_owned();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(status)
    } else if status.is_empty() {
        anyhow::bail!("no answer")
    } else {
        anyhow::bail!("unhealthy: {status}")
    }
}

//! gridlink-demo: the whole system on one machine, in one process
//! (`cargo run --release -p gridlink-demo`; flags: `--help`).
//!
//! It puts the workspace's crates together and adds only what a demo needs
//! beyond them: an embedded MQTT broker ([`broker`], for the demo only),
//! the agents' generated configuration and a small client of the cloud's
//! API ([`http`], over the workspace's `reqwest`). The site simulator is
//! [`gridlink_sim`]; the cloud, agent and PKI are their own crates.
//!
//! [`run`] starts, in a demo directory:
//!
//! 1. a demo CA and certificates ([`gridlink_provision::pki::TestPki`]):
//!    the broker's server certificate for 127.0.0.1/localhost, the cloud's
//!    `backend` certificate and one certificate per VEN (`pki/`);
//! 2. an embedded MQTT broker ([`broker`]): TLS with client certificates,
//!    the device policy enforced (each VEN only its own topics), QoS 1,
//!    persistent sessions, shared subscriptions, retained messages, wills;
//! 3. N simulated sites ([`Site`] on Modbus TCP, loopback, free ports): a
//!    main meter, a PV and a heat-pump sub-meter and 4 loads each, seeds
//!    `seed`, `seed + 1`, ...;
//! 4. the cloud on SQLite (`gridlink.db`) with an operator token made at
//!    start, each VEN registered (site `Demo site N`, site meter
//!    [`SITE_METER`], so an event's measured response reads only the main
//!    meter), its API on `http_port`;
//! 5. one agent per site (`agents/site-N/agent.toml`, its buffer beside it).
//!
//! When every VEN's readings are visible through the API it sends a
//! [`Ready`] (addresses, token, ready-made requests), then runs until
//! `shutdown` completes: the agents stop first (they drain their buffers
//! to the broker), then the cloud, then the broker.

mod agent_toml;
pub mod broker;
pub mod http;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use gridlink_cloud::config::CloudConfig;
use gridlink_cloud::store::{Role, Store as _, VenRegistration};
use gridlink_protocol::{ShadowOp, TopicKind, VenId};
use gridlink_provision::pki::TestPki;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

pub use agent_toml::{AgentPaths, DR_SECTIONS, SITE_METER, agent_toml, simple_level};

use gridlink_sim::{Site, SiteConfig, serve_tcp};

/// Most sites one demo runs.
pub const MAX_SITES: u16 = 50;
/// Meters per demo site: the main meter, a PV and a heat-pump sub-meter.
pub const METERS_PER_SITE: u8 = 3;
/// Controllable loads per demo site.
pub const LOADS_PER_SITE: u16 = 4;
/// How long [`run`] waits for every VEN's first readings before it reports
/// ready anyway (with a warning).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the demo waits for the cloud's subscriptions before it starts
/// the agents anyway.
const CLOUD_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the cloud gets to store and acknowledge the agents' last
/// messages before it stops.
const CLOUD_SETTLE: Duration = Duration::from_secs(1);
/// How long the agents get to drain and stop.
const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the demo runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Number of simulated sites, each with its agent (1 to [`MAX_SITES`]).
    pub sites: u16,
    /// The demo directory, kept at exit; `None` for a temporary directory
    /// removed at exit.
    pub dir: Option<PathBuf>,
    /// The API's port on 127.0.0.1; 0 for any free port.
    pub http_port: u16,
    /// Seed of the first site; site `i` uses `seed + i - 1`.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            sites: 3,
            dir: None,
            http_port: 8080,
            seed: 1,
        }
    }
}

/// One running demo site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSite {
    /// The site's VEN id (its agent's certificate CN and MQTT client id).
    pub ven_id: String,
    /// The simulator's Modbus TCP address.
    pub modbus: SocketAddr,
    /// The agent's health and metrics endpoint.
    pub health: SocketAddr,
    /// The agent's generated configuration.
    pub config: PathBuf,
}

/// Everything a user (or a test) needs once the demo is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The cloud's HTTP API.
    pub api: SocketAddr,
    /// The embedded MQTT broker (TLS, client certificates).
    pub broker: SocketAddr,
    /// An operator token for the API.
    pub token: String,
    /// The demo directory.
    pub dir: PathBuf,
    /// Whether `dir` is kept at exit.
    pub dir_kept: bool,
    /// The sites and their agents.
    pub sites: Vec<DemoSite>,
    /// Whether the agents run with their DR configuration (loads, levels);
    /// false while the agent does not accept those sections yet.
    pub dr: bool,
    /// A program name not used before in this demo's database.
    pub program_name: String,
    /// Whether every VEN's readings were visible through the API before
    /// this was sent.
    pub all_vens_reporting: bool,
}

/// The DR event the printed `curl` dispatches: `SIMPLE` level 2.
pub const EVENT_LEVEL: u8 = 2;
/// Its duration (ISO 8601).
pub const EVENT_DURATION: &str = "PT5M";

impl Ready {
    /// The VEN ids of the sites.
    pub fn ven_ids(&self) -> Vec<&str> {
        self.sites.iter().map(|site| site.ven_id.as_str()).collect()
    }

    /// The JSON body of `POST /openadr3/3.1.0/programs`.
    pub fn program_request(&self) -> String {
        serde_json::json!({ "programName": self.program_name }).to_string()
    }

    /// The JSON body of `POST /openadr3/3.1.0/events`: a `SIMPLE`
    /// level-[`EVENT_LEVEL`] event for every demo VEN, starting at `start`
    /// (RFC 3339) for [`EVENT_DURATION`]. `program_id` and `start` are
    /// inserted as they are, so the printed `curl` can pass shell
    /// substitutions.
    pub fn event_request(&self, program_id: &str, start: &str) -> String {
        let targets = self
            .sites
            .iter()
            .map(|site| format!("\"{}\"", site.ven_id))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            r#"{{"programID":"{program_id}","eventName":"demo shed","priority":0,"targets":[{targets}],"intervalPeriod":{{"start":"{start}","duration":"{EVENT_DURATION}"}},"intervals":[{{"id":0,"payloads":[{{"type":"SIMPLE","values":[{EVENT_LEVEL}]}}]}}]}}"#
        )
    }

    /// The text the demo prints: addresses, the token, and `curl`
    /// commands (bash) that list the VENs, create a program, dispatch an
    /// event to every VEN and follow its status.
    pub fn instructions(&self) -> String {
        let mut text = String::new();
        let api = format!("http://{}", self.api);
        let _ = writeln!(
            text,
            "\ngridlink demo is running: {} sites, each with its agent",
            self.sites.len()
        );
        let _ = writeln!(
            text,
            "  API      {api}  (OpenAPI document: {api}/openapi.json)"
        );
        let _ = writeln!(
            text,
            "  broker   mqtts://{}  (embedded, client certificates in {})",
            self.broker,
            self.dir.join("pki").display()
        );
        let kept = if self.dir_kept { "kept" } else { "removed" };
        let _ = writeln!(text, "  files    {}  ({kept} at exit)", self.dir.display());
        for site in &self.sites {
            let _ = writeln!(
                text,
                "  {:<8} Modbus TCP {}, agent metrics http://{}/metrics, config {}",
                site.ven_id,
                site.modbus,
                site.health,
                site.config.display()
            );
        }
        let _ = writeln!(text, "  note     {}", broker::BROKER_NOTICE);
        if !self.dr {
            let _ = writeln!(
                text,
                "  note     the agents run without DR configuration (this agent build does not accept it yet): events are received but no load is switched"
            );
        }
        if !self.all_vens_reporting {
            let _ = writeln!(
                text,
                "  note     not every VEN had reported when this was printed: see the log"
            );
        }
        let auth = r#"-H "Authorization: Bearer $TOKEN""#;
        let json = r"-H 'Content-Type: application/json'";
        let extract_id = r#"sed -n 's/.*"id":"\([^"]*\)".*/\1/p'"#;
        let first = self.sites.first().map_or("site-1", |s| s.ven_id.as_str());
        let _ = write!(
            text,
            r#"
Try it (bash):

export API={api} TOKEN={token}
curl -s {auth} $API/api/v1/vens
curl -s {auth} "$API/api/v1/series?ven={first}&meter={SITE_METER}&quantity=active_power"

# create a program, then dispatch a SIMPLE level-{EVENT_LEVEL} event to every VEN, starting now
PROGRAM=$(curl -s -X POST {auth} {json} \
  -d '{program}' \
  $API/openadr3/3.1.0/programs | {extract_id}); echo "program $PROGRAM"
EVENT=$(curl -s -X POST {auth} {json} \
  -d '{event}' \
  $API/openadr3/3.1.0/events | {extract_id}); echo "event $EVENT"

# a moment later: each VEN's acknowledgements and the measured shed; a site's loads
sleep 3; curl -s {auth} $API/api/v1/events/$EVENT/status
curl -s {auth} $API/api/v1/vens/{first}/loads

Stop with Ctrl-C.
"#,
            token = self.token,
            program = self.program_request(),
            event = self.event_request(r#"'"$PROGRAM"'"#, r#"'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"#),
        );
        text
    }
}

/// Runs the demo until `shutdown` completes (see the module documentation);
/// sends [`Ready`] on `ready` once everything is up. Returns an error if
/// anything fails to start or stops on its own.
pub async fn run(
    options: DemoOptions,
    ready: oneshot::Sender<Ready>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_SITES).contains(&options.sites),
        "--sites must be 1 to {MAX_SITES}, not {}",
        options.sites
    );
    // Everything here uses rustls 0.23 with ring; make ring the process
    // default so no builder has to choose. Fails only if a default is
    // already set.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Kept alive until the end of `run`; removes a temporary directory.
    let (dir, _temporary) = demo_dir(options.dir.as_deref())?;

    let ven_ids = (1..=options.sites)
        .map(|i| VenId::new(format!("site-{i}")))
        .collect::<Result<Vec<_>, _>>()
        .context("demo VEN ids")?;
    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir)
        .with_context(|| format!("cannot create {}", pki_dir.display()))?;
    let pki = TestPki::generate(&pki_dir, &ven_ids).context("creating the demo CA")?;

    let broker = broker::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        broker::BrokerTls {
            ca: pki.ca_cert(),
            cert: &pki.server().cert,
            key: &pki.server().key,
        },
    )
    .await?;
    let broker_addr = broker.addr();
    tracing::info!(broker = %broker_addr, "embedded MQTT broker listening (TLS, client certificates)");
    tracing::info!("{}", broker::BROKER_NOTICE);

    let (simulators, sites) = start_sites(&ven_ids, options.seed).await?;

    let (api, token, stop_cloud, mut cloud) =
        start_cloud(&dir, &ven_ids, options.http_port, broker_addr, &pki).await?;

    // The agents, once the cloud has subscribed: a VEN's first status is
    // retained, but retained messages do not reach shared subscriptions.
    wait_for_cloud_subscriptions(&broker, &mut cloud).await?;
    let (stop_agents, agents_stop) = watch::channel(false);
    let (mut agents, demo_sites, dr) =
        match start_agents(&dir, &pki, broker_addr, &sites, &agents_stop) {
            Ok(started) => started,
            Err(error) => {
                let _ = stop_agents.send(true);
                let _ = stop_cloud.send(());
                let _ = cloud.await;
                return Err(error);
            }
        };

    let ready_info = Ready {
        api,
        broker: broker_addr,
        token,
        dir: dir.clone(),
        dir_kept: options.dir.is_some(),
        sites: demo_sites,
        dr,
        program_name: format!("demo-{}", unix_seconds()),
        all_vens_reporting: false,
    };

    let failure = supervise(
        shutdown,
        ready,
        ready_info,
        &mut cloud,
        &mut agents,
        &broker,
    )
    .await;
    if failure.is_none() {
        tracing::info!("stopping: agents first (they drain their buffers), then the cloud");
    }

    let cloud_result = stop_all(
        Running {
            stop_agents,
            agents,
            stop_cloud,
            cloud,
            simulators,
            broker,
        },
        failure.is_some(),
    )
    .await;
    if let Some(error) = failure {
        return Err(error);
    }
    cloud_result?;
    tracing::info!("demo stopped");
    Ok(())
}

/// Sends [`Ready`] once every VEN reports, and waits for `shutdown`; or
/// returns early with the failure of the cloud, an agent or the broker.
async fn supervise(
    shutdown: impl Future<Output = ()> + Send,
    ready: oneshot::Sender<Ready>,
    ready_info: Ready,
    cloud: &mut CloudTask,
    agents: &mut AgentTasks,
    broker: &broker::EmbeddedBroker,
) -> Option<anyhow::Error> {
    // Up: wait for every VEN's readings (or a failure, or a stop).
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ready = Some(ready);
    let mut ready_info = ready_info;
    let mut waiting = std::pin::pin!(wait_for_vens(
        ready_info.api,
        ready_info.token.clone(),
        ready_info.ven_ids().iter().map(|&v| v.to_owned()).collect()
    ));
    let mut broker_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut shutdown => break None,
            all = &mut waiting, if ready.is_some() => {
                ready_info.all_vens_reporting = all;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(ready_info.clone());
                }
            }
            joined = &mut *cloud => break Some(match joined {
                Ok(Ok(())) => anyhow::anyhow!("the cloud stopped on its own"),
                Ok(Err(error)) => error.context("the cloud failed"),
                Err(error) => anyhow::Error::new(error).context("the cloud panicked"),
            }),
            Some(joined) = agents.join_next() => break Some(match joined {
                Ok((ven, Ok(_))) => anyhow::anyhow!("the agent of {ven} stopped on its own"),
                Ok((ven, Err(error))) => error.context(format!("the agent of {ven} failed")),
                Err(error) => anyhow::Error::new(error).context("an agent panicked"),
            }),
            _ = broker_check.tick() => if broker.has_stopped() {
                break Some(anyhow::anyhow!("the embedded MQTT broker stopped"));
            },
        }
    }
}

/// The demo directory: `dir` (created, kept) or a new temporary directory
/// (removed when the returned guard is dropped).
fn demo_dir(dir: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        Ok((dir, None))
    } else {
        let temporary = tempfile::Builder::new()
            .prefix("gridlink-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        Ok((temporary.path().to_path_buf(), Some(temporary)))
    }
}

/// A simulated site served on Modbus TCP, and its VEN.
type SimulatedSite = (VenId, Site, SocketAddr);

/// Starts one simulated site per VEN on a free loopback port.
async fn start_sites(
    ven_ids: &[VenId],
    seed: u64,
) -> anyhow::Result<(JoinSet<std::io::Result<()>>, Vec<SimulatedSite>)> {
    let mut simulators = JoinSet::new();
    let mut sites = Vec::new();
    for (i, ven) in (0u64..).zip(ven_ids) {
        let site = Site::new(SiteConfig {
            meters: METERS_PER_SITE,
            loads: LOADS_PER_SITE,
            seed: seed.wrapping_add(i),
            ..SiteConfig::default()
        })
        .context("demo site")?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("cannot listen for Modbus TCP")?;
        let modbus = listener.local_addr()?;
        simulators.spawn(serve_tcp(site.clone(), listener));
        tracing::info!(ven = %ven, %modbus, seed = site.config().seed, "simulated site");
        sites.push((ven.clone(), site, modbus));
    }
    Ok((simulators, sites))
}

/// The agents' tasks: each returns its VEN id and how it ended.
type AgentTasks = JoinSet<(String, anyhow::Result<gridlink_agent::service::Summary>)>;

/// Writes each site's agent config and starts its agent; returns the
/// tasks, the sites as [`Ready`] shows them, and whether the configs carry
/// the DR sections.
fn start_agents(
    dir: &Path,
    pki: &TestPki,
    broker: SocketAddr,
    sites: &[SimulatedSite],
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(AgentTasks, Vec<DemoSite>, bool)> {
    let mut agents = JoinSet::new();
    let mut demo_sites = Vec::new();
    let mut dr = true;
    for (ven, site, modbus) in sites {
        let identity = pki
            .identity(ven.as_str())
            .context("the VEN's certificate is missing")?;
        let agent_dir = dir.join("agents").join(ven.as_str());
        std::fs::create_dir_all(&agent_dir)
            .with_context(|| format!("cannot create {}", agent_dir.display()))?;
        let health = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let paths = AgentPaths {
            broker,
            ca: pki.ca_cert(),
            cert: &identity.cert,
            key: &identity.key,
            buffer: &agent_dir.join("buffer"),
            health,
            modbus: *modbus,
        };
        let config_path = agent_dir.join("agent.toml");
        let (text, config) = agent_config(ven.as_str(), site, paths, &config_path, &mut dr)?;
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let name = ven.as_str().to_owned();
        let stop = stop.clone();
        agents.spawn(async move {
            let result = gridlink_agent::service::run(config, stop).await;
            (name, result)
        });
        demo_sites.push(DemoSite {
            ven_id: ven.as_str().to_owned(),
            modbus: *modbus,
            health,
            config: config_path,
        });
    }
    Ok((agents, demo_sites, dr))
}

/// What [`stop_all`] stops.
struct Running {
    stop_agents: watch::Sender<bool>,
    agents: AgentTasks,
    stop_cloud: oneshot::Sender<()>,
    cloud: CloudTask,
    simulators: JoinSet<std::io::Result<()>>,
    broker: broker::EmbeddedBroker,
}

/// Stops the agents (they drain to the broker), then the cloud, the
/// simulators and the broker; returns how the cloud stopped. `failed`: the
/// demo is stopping because something failed (no grace period).
async fn stop_all(running: Running, failed: bool) -> anyhow::Result<()> {
    let Running {
        stop_agents,
        mut agents,
        stop_cloud,
        mut cloud,
        mut simulators,
        broker,
    } = running;
    let _ = stop_agents.send(true);
    let drain = async {
        while let Some(joined) = agents.join_next().await {
            match joined {
                Ok((ven, Ok(summary))) => tracing::info!(ven, ?summary, "agent stopped"),
                Ok((ven, Err(error))) => {
                    tracing::warn!(
                        ven,
                        error = format!("{error:#}"),
                        "agent failed while stopping"
                    );
                }
                Err(error) => tracing::warn!(%error, "agent panicked while stopping"),
            }
        }
    };
    if tokio::time::timeout(AGENT_STOP_TIMEOUT, drain)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?AGENT_STOP_TIMEOUT, "agents did not stop in time; aborting them");
        agents.abort_all();
    }
    // Let the cloud store and acknowledge what the agents sent last.
    if !failed {
        tokio::time::sleep(CLOUD_SETTLE).await;
    }
    let _ = stop_cloud.send(());
    let cloud_result = if cloud.is_finished() && failed {
        Ok(())
    } else {
        match (&mut cloud).await {
            Ok(result) => result.context("the cloud failed while stopping"),
            Err(error) => Err(anyhow::Error::new(error).context("the cloud panicked")),
        }
    };
    simulators.abort_all();
    while simulators.join_next().await.is_some() {}
    let stats = broker.stats();
    tracing::info!(
        connections = stats.connections.load(Ordering::Relaxed),
        refused = stats.refused.load(Ordering::Relaxed),
        published = stats.published.load(Ordering::Relaxed),
        delivered = stats.delivered.load(Ordering::Relaxed),
        denied_publishes = stats.denied_publishes.load(Ordering::Relaxed),
        denied_subscriptions = stats.denied_subscriptions.load(Ordering::Relaxed),
        dropped = stats.dropped.load(Ordering::Relaxed),
        "MQTT broker stopping"
    );
    broker.stop().await;
    cloud_result
}

/// The cloud's task, stopped through its oneshot.
type CloudTask = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Starts the cloud on SQLite in `dir`, its API on `http_port` (0: a free
/// port), with `vens` registered and a new operator token; returns the API
/// address, the token, the stop sender and the task.
async fn start_cloud(
    dir: &Path,
    vens: &[VenId],
    http_port: u16,
    broker: SocketAddr,
    pki: &TestPki,
) -> anyhow::Result<(SocketAddr, String, oneshot::Sender<()>, CloudTask)> {
    let http_port = match http_port {
        0 => free_port()?,
        port => port,
    };
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, http_port));
    let cloud_config = cloud_config(dir, api, broker, pki)?;
    let settings = cloud_config.ingest_settings()?;
    let token = prepare_store(&cloud_config, vens).await?;
    let (stop_cloud, cloud_stop) = oneshot::channel::<()>();
    let cloud = tokio::spawn(gridlink_cloud::server::serve(
        cloud_config,
        settings,
        async move {
            let _ = cloud_stop.await;
        },
    ));
    Ok((api, token, stop_cloud, cloud))
}

/// The cloud's configuration, through its own loader: SQLite in `dir`, the
/// API on `api`, ingest on the embedded broker with the `backend`
/// certificate.
fn cloud_config(
    dir: &Path,
    api: SocketAddr,
    broker: SocketAddr,
    pki: &TestPki,
) -> anyhow::Result<CloudConfig> {
    let text = format!(
        r#"database_url = {database:?}

[http]
listen = "{api}"

[mqtt]
host = "{host}"
port = {port}
ca = {ca:?}
cert = {cert:?}
key = {key:?}
client_id = "gridlink-cloud-demo"

[ingest]
max_delay_ms = 200
"#,
        database = format!("sqlite://{}", dir.join("gridlink.db").display()),
        host = broker.ip(),
        port = broker.port(),
        ca = pki.ca_cert().display().to_string(),
        cert = pki.backend().cert.display().to_string(),
        key = pki.backend().key.display().to_string(),
    );
    Ok(CloudConfig::parse(&text, "demo cloud.toml")?)
}

/// Applies the migrations, registers each VEN (site `Demo site N`, its
/// site meter [`SITE_METER`], so an event's measured response reads the
/// grid meter and not the PV and heat-pump sub-meters) and stores a new
/// operator token; returns the token.
async fn prepare_store(config: &CloudConfig, vens: &[VenId]) -> anyhow::Result<String> {
    let store = gridlink_cloud::server::connect(config).await?;
    store.migrate().await.context("applying migrations")?;
    let now_ms = i64::try_from(unix_seconds())
        .context("the clock")?
        .saturating_mul(1000);
    for (i, ven) in vens.iter().enumerate() {
        let registration = VenRegistration {
            site: format!("Demo site {}", i + 1),
            site_meter: Some(SITE_METER.to_owned()),
            groups: None,
            loads: None,
        };
        store
            .register_ven(ven, &registration, now_ms)
            .await
            .with_context(|| format!("registering {ven}"))?;
    }
    let issued = gridlink_cloud::api::auth::issue_token()?;
    store
        .create_token("demo operator", Role::Operator, &issued.hash)
        .await
        .context("storing the demo's operator token")?;
    Ok(issued.secret)
}

/// The agent's config for a site: with the DR sections if this agent build
/// accepts them (tried first), else without. `dr` becomes false when they
/// had to be left out.
fn agent_config(
    ven: &str,
    site: &Site,
    paths: AgentPaths<'_>,
    path: &Path,
    dr: &mut bool,
) -> anyhow::Result<(String, gridlink_agent::config::AgentConfig)> {
    let origin = path.display().to_string();
    if *dr || DR_SECTIONS {
        let text = agent_toml(ven, site, paths, true);
        match gridlink_agent::config::parse(&text, &origin) {
            Ok(config) => return Ok((text, config)),
            Err(error) if !DR_SECTIONS && error.to_string().contains("unknown field `dr`") => {
                tracing::warn!(
                    "this agent build does not accept the [dr] and [[loads]] sections yet: the demo's agents run without DR configuration"
                );
                *dr = false;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context("the generated agent config"));
            }
        }
    }
    let text = agent_toml(ven, site, paths, false);
    let config =
        gridlink_agent::config::parse(&text, &origin).context("the generated agent config")?;
    Ok((text, config))
}

/// Waits (up to [`CLOUD_SUBSCRIBE_TIMEOUT`]) until the cloud has
/// subscribed to the VENs' topics at the broker; fails if the cloud stops.
async fn wait_for_cloud_subscriptions(
    broker: &broker::EmbeddedBroker,
    cloud: &mut CloudTask,
) -> anyhow::Result<()> {
    let group = gridlink_cloud::config::default_share_group();
    let mut filters: Vec<String> = [
        TopicKind::Meter,
        TopicKind::Status,
        TopicKind::Loads,
        TopicKind::Ack,
    ]
    .into_iter()
    .map(|kind| {
        if group.is_empty() {
            kind.wildcard_filter()
        } else {
            kind.shared_filter(&group)
        }
    })
    .collect();
    filters.extend(
        [ShadowOp::Update, ShadowOp::Get].map(|op| TopicKind::Shadow(op).wildcard_filter()),
    );
    let deadline = tokio::time::Instant::now() + CLOUD_SUBSCRIBE_TIMEOUT;
    loop {
        if cloud.is_finished() {
            return match cloud.await {
                Ok(Ok(())) => Err(anyhow::anyhow!("the cloud stopped on its own")),
                Ok(Err(error)) => Err(error.context("the cloud failed")),
                Err(error) => Err(anyhow::Error::new(error).context("the cloud panicked")),
            };
        }
        let missing: Vec<&String> = filters
            .iter()
            .filter(|f| !broker.has_subscription(f))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?missing,
                "the cloud has not subscribed to these yet; starting the agents anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `/api/v1/vens` lists every VEN in `vens` with a reading;
/// true if that happened within [`READY_TIMEOUT`].
async fn wait_for_vens(api: SocketAddr, token: String, vens: Vec<String>) -> bool {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let client = match http::ApiClient::new(api) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "cannot make an HTTP client to watch the API");
            return false;
        }
    };
    loop {
        if let Ok(answer) = client
            .request("GET", "/api/v1/vens", Some(&token), None)
            .await
            && answer.status == 200
        {
            let listed = answer.json();
            let reporting = |ven: &String| {
                listed["vens"].as_array().is_some_and(|all| {
                    all.iter().any(|v| {
                        v["ven_id"].as_str() == Some(ven.as_str()) && v["last_reading_ms"].is_i64()
                    })
                })
            };
            if vens.iter().all(reporting) {
                return true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(timeout = ?READY_TIMEOUT, "not every VEN has reported yet");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A loopback port free at the time of the call (bound, then released),
/// for servers that bind by themselves (the cloud's API, the agents'
/// health endpoints).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

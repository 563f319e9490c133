//! The dashboard end to end in headless Chromium: the cloud's `serve()`
//! (HTTP on a socket, SQLite in a temporary directory) against a real
//! Mosquitto with mTLS, a VEN (rumqttc with its own certificate) that
//! publishes telemetry and acknowledges commands, and
//! `tests/browser/dashboard.mjs` (playwright-core driving `/usr/bin/chromium`).
//!
//! The script signs in, sees the VEN on the overview, watches the site's
//! live value change after asking this test (a small HTTP trigger) to
//! publish a new reading, checks that a viewer has no "create event",
//! creates an event as an operator (an invalid one first: the field error
//! is shown) and sees the VEN's acknowledgement, sees an alert the alert
//! rules raise for real (negative power on the import-only `grid` meter,
//! no hold-down) and acknowledges it, and opens a project's figures. One screenshot per page goes to
//! `$CARGO_TARGET_TMPDIR/screenshots`.
//!
//! Needs Chromium, Node.js and the npm packages of `tests/browser`
//! (`scripts/setup-test-deps` installs them); without them the test fails
//! saying so.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gridlink_cloud::config::CloudConfig;
use gridlink_cloud::store::{AnyStore, RegisteredLoad, Role, Store, VenRegistration};
use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, Phase, Point, Quantity, Series, Status,
    TelemetryBatch, Timestamp, Topic, VenId, decode, encode,
};
use gridlink_provision::pki::TestPki;
use gridlink_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);
/// Hang guard of the whole browser script (generous: 2 shared cores).
const SCRIPT_TIMEOUT: Duration = Duration::from_mins(5);
const CHROMIUM: &str = "/usr/bin/chromium";
const VEN: &str = "ven-1";

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails (never skips) when the browser test's prerequisites are missing.
fn check_prerequisites() {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("node (Debian package nodejs)".to_owned());
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        missing.push("cloud/tests/browser/node_modules (npm ci)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the dashboard browser test needs {}: run scripts/setup-test-deps",
        missing.join(", ")
    );
}

/// One batch of ven-1's grid meter: total active power, per-phase power
/// and voltage, at each of `times`, from `watts(ts)`.
fn batch(seq: u64, times: &[i64], watts: impl Fn(i64) -> i64) -> TelemetryBatch {
    let series = |quantity, phase, exponent, value: &dyn Fn(i64) -> i64| Series {
        meter: "grid".into(),
        quantity,
        phase,
        exponent,
        points: times
            .iter()
            .map(|&ts_ms| Point {
                ts_ms,
                raw: value(ts_ms),
            })
            .collect(),
    };
    let phase_share = |ts| watts(ts) / 3;
    TelemetryBatch {
        ven_id: VenId::new(VEN).unwrap(),
        batch_seq: seq,
        series: vec![
            series(Quantity::ActivePower, Phase::Total, 0, &watts),
            series(Quantity::ActivePower, Phase::L1, 0, &phase_share),
            series(Quantity::ActivePower, Phase::L2, 0, &phase_share),
            series(Quantity::ActivePower, Phase::L3, 0, &phase_share),
            series(Quantity::Voltage, Phase::L1, -1, &|ts| {
                2300 + (ts / 60_000) % 20
            }),
        ],
    }
}

/// A daily-looking load curve, W.
fn load_curve(ts: i64) -> i64 {
    let minute = (ts / 60_000) % 1440;
    1500 + (minute % 120 - 60).abs() * 10
}

/// The simulated VEN: publishes what it is told and acknowledges commands.
struct VenClient {
    client: AsyncClient,
    seq: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl VenClient {
    async fn connect(broker: &Mosquitto, pki: &TestPki) -> Arc<Self> {
        let mut options = broker.client_options(pki, VEN);
        options.set_clean_session(false);
        options.set_max_packet_size(128 * 1024, 128 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let subscriber = client.clone();
        let (connected, is_connected) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut connected = Some(connected);
            let ven_id = VenId::new(VEN).unwrap();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let topic = Topic::cmd(ven_id.clone()).to_string();
                        subscriber.try_subscribe(topic, QoS::AtLeastOnce).unwrap();
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let command: Command = decode(&publish.payload).unwrap();
                        let ack = CommandAck {
                            ven_id: ven_id.clone(),
                            command_id: command.command_id,
                            event_id: command.action.event_id().clone(),
                            state: match command.action {
                                CommandAction::Event(_) => AckState::Received,
                                CommandAction::Cancel { .. } => AckState::Cancelled,
                            },
                            at: Timestamp::from_unix_ms(now_ms()).unwrap(),
                            reason: None,
                        };
                        println!("VEN: command {} acknowledged", command.command_id);
                        subscriber
                            .try_publish(
                                Topic::ack(ven_id.clone()).to_string(),
                                QoS::AtLeastOnce,
                                false,
                                encode(&ack, Encoding::Postcard).unwrap(),
                            )
                            .unwrap();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, is_connected)
            .await
            .expect("the VEN connects")
            .unwrap();
        Arc::new(Self {
            client,
            seq: AtomicU64::new(1),
            task,
        })
    }

    async fn publish(&self, batch_of: impl FnOnce(u64) -> TelemetryBatch) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let payload = encode(&batch_of(seq), Encoding::Postcard).unwrap();
        self.client
            .publish(
                Topic::meter(VenId::new(VEN).unwrap()).to_string(),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    async fn online(&self) {
        let status = Status {
            ven_id: VenId::new(VEN).unwrap(),
            online: true,
            at: Timestamp::from_unix_ms(now_ms()).unwrap(),
            agent_version: "0.1.0".into(),
            backlog_batches: 0,
            dropped_readings: 0,
        };
        self.client
            .publish(
                Topic::status(VenId::new(VEN).unwrap()).to_string(),
                QoS::AtLeastOnce,
                true,
                encode(&status, Encoding::Postcard).unwrap(),
            )
            .await
            .unwrap();
    }
}

impl Drop for VenClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The trigger the browser script calls: `GET /publish?value=W` makes the
/// VEN publish one reading of `W` now (answered once it is handed to the
/// MQTT client).
async fn serve_trigger(listener: tokio::net::TcpListener, ven: Arc<VenClient>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let ven = Arc::clone(&ven);
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]);
            let value = request
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.strip_prefix("/publish?value="))
                .and_then(|v| v.parse::<i64>().ok());
            let answer = if let Some(value) = value {
                let ts = now_ms();
                ven.publish(|seq| batch(seq, &[ts], |_| value)).await;
                println!("trigger: published {value} W at {ts}");
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else {
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    check_prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let ven_id = VenId::new(VEN).unwrap();
    let pki = TestPki::generate(dir.path(), std::slice::from_ref(&ven_id)).unwrap();
    let broker = Mosquitto::spawn(&pki).await;

    // The database: the VEN registered with its site, site meter, group
    // and loads, and a viewer and an operator token.
    let database = format!("sqlite://{}", dir.path().join("cloud.db").display());
    let store = AnyStore::connect(&database).await.unwrap();
    store.migrate().await.unwrap();
    store
        .register_ven(
            &ven_id,
            &VenRegistration {
                site: "Depot North".into(),
                site_meter: Some("grid".into()),
                groups: Some(vec!["north".into()]),
                loads: Some(vec![
                    RegisteredLoad {
                        name: "heat-pump".into(),
                        rated_power_w: Some(3000.0),
                        controllable: true,
                    },
                    RegisteredLoad {
                        name: "ev-charger".into(),
                        rated_power_w: Some(7400.0),
                        controllable: true,
                    },
                ]),
            },
            now_ms(),
        )
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for role in [Role::Viewer, Role::Operator] {
        let token = gridlink_cloud::api::auth::issue_token().unwrap();
        store
            .create_token(
                &format!("{} (browser test)", role.as_str()),
                role,
                &token.hash,
            )
            .await
            .unwrap();
        tokens.push(token.secret);
    }
    drop(store);

    // The cloud.
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let text = format!(
        "database_url = {database:?}\n[http]\nlisten = \"{api}\"\n[mqtt]\nhost = \"127.0.0.1\"\n\
         port = {port}\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
         client_id = \"cloud-dashboard-test\"\nkeep_alive_s = 5\n\
         [alerts]\nscan_interval_s = 1\nimport_only_meters = [\"grid\"]\n\
         [alerts.hold_down.negative_import]\nopen_after_s = 0\nresolve_after_s = 600\n",
        port = broker.port(),
        ca = pki.ca_cert().display().to_string(),
        cert = pki.backend().cert.display().to_string(),
        key = pki.backend().key.display().to_string(),
    );
    let config = CloudConfig::parse(&text, "test cloud.toml").unwrap();
    let settings = config.ingest_settings().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let cloud = tokio::spawn(gridlink_cloud::server::serve(
        config,
        settings,
        async move {
            let _ = stopped.await;
        },
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(api).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The VEN: online, and two hours of history, one reading a minute.
    let ven = VenClient::connect(&broker, &pki).await;
    ven.online().await;
    let now = now_ms();
    let start = now - 2 * 3_600_000;
    let times: Vec<i64> = (0..120).map(|i| start + i * 60_000).collect();
    for (i, chunk) in times.chunks(30).enumerate() {
        let chunk = chunk.to_vec();
        ven.publish(|seq| batch(seq, &chunk, load_curve)).await;
        println!("history batch {i} published");
    }

    let trigger = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let trigger_url = format!("http://{}", trigger.local_addr().unwrap());
    let trigger_task = tokio::spawn(serve_trigger(trigger, Arc::clone(&ven)));

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    // Fresh each run, so no screenshot of an earlier run is mistaken for this one's.
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let script = browser_dir().join("dashboard.mjs");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .current_dir(browser_dir())
        .env("DASHBOARD_URL", format!("http://{api}"))
        .env("VIEWER_TOKEN", &tokens[0])
        .env("OPERATOR_TOKEN", &tokens[1])
        .env("TRIGGER_URL", &trigger_url)
        .env("VEN_ID", VEN)
        .env("EXPECT_ALERT", "1")
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .expect("the browser script finishes (hang guard)")
        .expect("node runs");
    println!(
        "--- dashboard.mjs stdout ---\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    println!(
        "--- dashboard.mjs stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("screenshots in {}", screenshots.display());

    trigger_task.abort();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), cloud)
        .await
        .expect("serve stops")
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "the browser script failed ({}); its output is above",
        output.status
    );
}

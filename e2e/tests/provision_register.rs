//! `gridlink-provision register-ven` against the real cloud: the
//! `gridlink-cloud` router over SQLite in a temporary directory, served on
//! a loopback port by this test, and the real binary. The VEN shows with
//! its site and loads before any reading; a second run changes nothing; a
//! viewer's token, a bad site, an unreachable cloud and a bad bundle each
//! end in exit status 1 with one clear line.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gridlink_cloud::api::auth;
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::dr::DrStore as _;
use gridlink_cloud::store::{AnyStore, Role, Store};
use gridlink_protocol::VenId;
use gridlink_provision::bundle::{Bundle, Endpoint};
use gridlink_provision::pki::CertificateAuthority;

/// The cloud, serving on 127.0.0.1, with an installer's and a viewer's token.
struct Cloud {
    url: String,
    store: Arc<AnyStore>,
    installer: String,
    viewer: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Cloud {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cloud.db").display());
        let store = Arc::new(AnyStore::connect(&url).await.unwrap());
        store.migrate().await.unwrap();
        let mut tokens = Vec::new();
        for role in [Role::Installer, Role::Viewer] {
            let token = auth::issue_token().unwrap();
            store
                .create_token(role.as_str(), role, &token.hash)
                .await
                .unwrap();
            tokens.push(token.secret);
        }
        let router = api::router(AppState::new(
            Arc::clone(&store),
            Arc::new(Metrics::default()),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let [installer, viewer] = <[String; 2]>::try_from(tokens).unwrap();
        Self {
            url: format!("http://{address}"),
            store,
            installer,
            viewer,
            server,
            _dir: dir,
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A bundle for `ven` as `sign` writes it, with the site's `[[loads]]`
/// added to agent.toml as the installer does.
fn bundle(dir: &Path, ven: &str) -> PathBuf {
    let ven = VenId::new(ven).unwrap();
    let ca = CertificateAuthority::create(None).unwrap();
    let issued = ca.issue_ven(&ven).unwrap();
    let out = dir.join(ven.as_str());
    Bundle {
        ven,
        cert_pem: issued.cert_pem,
        ca_pem: ca.cert_pem().to_owned(),
        key_pem: Some(issued.key_pem),
        endpoint: "localhost:8883".parse::<Endpoint>().unwrap(),
    }
    .write(&out)
    .unwrap();
    let toml = out.join("agent.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[[loads]]\nname = \"hvac\"\ncontroller = \"tcp://127.0.0.1:502\"\nunit_id = 1\n\
         coil = 0\nrated_power_w = 3000.0\n\
         \n[[loads]]\nname = \"freezer\"\ncontroller = \"tcp://127.0.0.1:502\"\nunit_id = 1\n\
         coil = 1\nrated_power_w = 800\nnever_switch = true\n\
         \n[dr]\nsite_meter = \"main\"\n",
    );
    std::fs::write(&toml, text).unwrap();
    out
}

struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn register_ven(cloud: &str, token: &str, bundle: &Path, site: &str, groups: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(gridlink_e2e::binary("gridlink-provision"));
    command
        .arg("register-ven")
        .args(["--cloud", cloud, "--token", token])
        .arg("--bundle")
        .arg(bundle)
        .args(["--site", site])
        .env_remove("GRIDLINK_TOKEN");
    for group in groups {
        command.args(["--group", group]);
    }
    let output = command.output().await.unwrap();
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A failed run: exit status 1 and exactly one line on stderr, returned.
fn failed(run: &Run) -> &str {
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    run.stderr.trim_end()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_site_and_loads_before_the_first_reading_idempotently() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(dir.path(), "depot-1");
    let ven = VenId::new("depot-1").unwrap();

    let run = register_ven(
        &cloud.url,
        &cloud.installer,
        &bundle,
        "Depot North",
        &["north"],
    )
    .await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("registered depot-1 at site \"Depot North\"; groups: north"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("load hvac: on, 3000 W"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("load freezer: on, 800 W, never switched"),
        "{}",
        run.stdout
    );

    // Listed with its site and loads; no reading yet.
    let vens = cloud.store.vens().await.unwrap();
    assert_eq!(vens.len(), 1);
    assert_eq!(vens[0].ven_id, ven);
    assert_eq!(vens[0].site.as_deref(), Some("Depot North"));
    assert_eq!(vens[0].site_meter.as_deref(), Some("main"));
    assert_eq!(vens[0].last_reading_ms, None);
    let loads = cloud.store.loads(&ven).await.unwrap();
    let summary: Vec<(&str, bool, Option<f64>, bool)> = loads
        .iter()
        .map(|l| (l.name.as_str(), l.on, l.power_w, l.controllable))
        .collect();
    assert_eq!(
        summary,
        [
            ("freezer", true, Some(800.0), false),
            ("hvac", true, Some(3000.0), true)
        ]
    );
    assert_eq!(cloud.store.ven_groups(&ven).await.unwrap(), ["north"]);

    // Again: the same VEN, the same loads, nothing doubled.
    let again = register_ven(
        &cloud.url,
        &cloud.installer,
        &bundle,
        "Depot North",
        &["north"],
    )
    .await;
    assert!(again.success, "{}{}", again.stdout, again.stderr);
    assert_eq!(again.stdout, run.stdout);
    assert_eq!(cloud.store.vens().await.unwrap(), vens);
    assert_eq!(cloud.store.loads(&ven).await.unwrap(), loads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_are_one_line_and_exit_1() {
    let cloud = Cloud::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle(dir.path(), "depot-2");

    // A viewer may not register: the 403 problem's title and detail.
    let run = register_ven(&cloud.url, &cloud.viewer, &bundle, "Depot", &[]).await;
    let line = failed(&run);
    assert!(line.contains("403"), "{line}");
    assert!(line.contains("Forbidden"), "{line}");
    assert!(
        line.contains("a token with role viewer may not register VENs"),
        "{line}"
    );
    // An unknown token: 401.
    let unknown = auth::issue_token().unwrap().secret;
    let line = failed(&register_ven(&cloud.url, &unknown, &bundle, "Depot", &[]).await).to_owned();
    assert!(line.contains("401"), "{line}");
    // A site the cloud refuses: the 400 names the field.
    let long = "x".repeat(200);
    let line =
        failed(&register_ven(&cloud.url, &cloud.installer, &bundle, &long, &[]).await).to_owned();
    assert!(line.contains("400") && line.contains("site: "), "{line}");
    assert!(
        cloud.store.vens().await.unwrap().is_empty(),
        "nothing stored"
    );

    // Nobody listens on this port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let run = register_ven(&url, &cloud.installer, &bundle, "Depot", &[]).await;
    let line = failed(&run);
    assert!(
        line.starts_with(&format!(
            "error: cannot reach the cloud at {url}/api/v1/vens/depot-2: "
        )),
        "{line}"
    );
    assert!(line.to_lowercase().contains("refused"), "{line}");
    let line =
        failed(&register_ven("cloud.example.com", &cloud.installer, &bundle, "D", &[]).await)
            .to_owned();
    assert!(line.contains("invalid cloud URL"), "{line}");

    // A bundle without agent.toml, and one with a bad load.
    let line = failed(&register_ven(&cloud.url, &cloud.installer, dir.path(), "Depot", &[]).await)
        .to_owned();
    assert!(line.starts_with("error: bad bundle: "), "{line}");
    assert!(line.contains("agent.toml"), "{line}");
    let toml = bundle.join("agent.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n[[loads]]\nrated_power_w = 5.0\n")).unwrap();
    let line =
        failed(&register_ven(&cloud.url, &cloud.installer, &bundle, "Depot", &[]).await).to_owned();
    assert!(line.contains("loads[2].name is missing"), "{line}");
    assert!(
        cloud.store.vens().await.unwrap().is_empty(),
        "nothing stored"
    );
}

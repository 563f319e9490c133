//! The harness of the interoperability tests (tests/): a real
//! `gridlink-cloud serve` over SQLite with a real Mosquitto (mutual TLS,
//! gridlink-testkit), and OAuth clients made by the cloud's own CLI.
//!
//! The binary is `GRIDLINK_CLOUD_BIN`, else the main workspace's debug
//! build in `~/.cache/gridlink/target` (the test command's target).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridlink_protocol::VenId;
use gridlink_provision::pki::TestPki;
use gridlink_testkit::free_port;
use gridlink_testkit::mosquitto::Mosquitto;

/// The cloud binary under test.
pub fn cloud_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GRIDLINK_CLOUD_BIN") {
        return PathBuf::from(path);
    }
    let target =
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/gridlink/target");
    target.join("debug/gridlink-cloud")
}

/// A running cloud, its broker and its files; stopped when dropped.
pub struct Cloud {
    dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    child: Child,
    port: u16,
    database_url: String,
}

impl Cloud {
    /// Starts Mosquitto and `gridlink-cloud serve`, and waits until the
    /// HTTP API answers and the cloud is connected to the broker.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Cloud::start`] with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let binary = cloud_binary();
        assert!(
            binary.is_file(),
            "{} is missing: build it (`cargo build -p gridlink-cloud`) or set GRIDLINK_CLOUD_BIN",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let pki = TestPki::generate(dir.path(), &[VenId::new("ven-1").unwrap()]).expect("test PKI");
        let broker = Mosquitto::spawn(&pki).await;
        let port = free_port();
        let database_url = format!("sqlite://{}", dir.path().join("cloud.db").display());
        let log = File::create(dir.path().join("cloud.log")).expect("log file");
        let backend = pki.backend();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .env_clear()
            .env("GRIDLINK_LOG", "info")
            .env("GRIDLINK_DATABASE_URL", &database_url)
            .env("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
            .env("GRIDLINK_MQTT_PORT", broker.port().to_string())
            .env("GRIDLINK_MQTT_CA", pki.ca_cert())
            .env("GRIDLINK_MQTT_CERT", &backend.cert)
            .env("GRIDLINK_MQTT_KEY", &backend.key)
            .env("GRIDLINK_MQTT_CLIENT_ID", "cloud-interop");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start gridlink-cloud");
        let cloud = Self {
            dir,
            pki,
            broker,
            child,
            port,
            database_url,
        };
        cloud.wait_ready().await;
        cloud
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http
                .get(format!("{}/metrics", self.base_url()))
                .send()
                .await
                && let Ok(text) = response.text().await
                && text
                    .lines()
                    .any(|l| l.trim() == "gridlink_mqtt_connected 1")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gridlink-cloud did not come up in 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The VTN's base URL, with the trailing slash clients join paths to.
    pub fn vtn_url(&self) -> String {
        format!("{}/openadr3/3.1.0/", self.base_url())
    }

    /// The test's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test PKI (the broker's CA, client identities).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The broker.
    pub fn broker(&self) -> &Mosquitto {
        &self.broker
    }

    /// A new OAuth client (`bl` or `ven`) made with `gridlink-cloud client
    /// create`: its id and secret.
    pub fn oauth_client(&self, role: &str, name: &str) -> (String, String) {
        let output = Command::new(cloud_binary())
            .args(["client", "create", "--role", role, "--name", name])
            .env_clear()
            .env("GRIDLINK_DATABASE_URL", &self.database_url)
            .stderr(Stdio::inherit())
            .output()
            .expect("run gridlink-cloud client create");
        assert!(output.status.success(), "client create failed");
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("client create prints JSON");
        (
            json["clientID"].as_str().expect("clientID").to_owned(),
            json["clientSecret"]
                .as_str()
                .expect("clientSecret")
                .to_owned(),
        )
    }

    /// An access token for an OAuth client (`POST /auth/token`, client
    /// credentials in the body).
    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}auth/token", self.vtn_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("POST /auth/token");
        assert!(
            response.status().is_success(),
            "token: {}",
            response.status()
        );
        let json: serde_json::Value = response.json().await.expect("token JSON");
        json["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// A JSON request to the VTN (`path` relative to [`Cloud::vtn_url`]):
    /// the status and the JSON answer (`null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.vtn_url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("VTN request");
        let status = response.status();
        let bytes = response.bytes().await.expect("answer body");
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON answer")
        };
        (status, json)
    }

    /// The cloud's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cloud.log")).unwrap_or_default()
    }

    /// Fails if the cloud answered any request with a 5xx (its
    /// `gridlink_http_requests_total` metric) or logged a panic.
    pub async fn assert_no_server_errors(&self) {
        let metrics = reqwest::get(format!("{}/metrics", self.base_url()))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let errors: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("gridlink_http_requests_total") && l.contains("status=\"5"))
            .collect();
        assert!(errors.is_empty(), "5xx answers: {errors:?}\n{}", self.log());
        assert!(!self.log().contains("panicked"), "{}", self.log());
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

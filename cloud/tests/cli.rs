//! The `gridlink-cloud` binary: exit codes and messages for bad
//! configuration, `migrate` and `token create`, and `serve` answering HTTP
//! with a token made on the command line while no broker is reachable.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gridlink_provision::pki::TestPki;
use gridlink_testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_gridlink-cloud");

/// The binary with no `GRIDLINK_*` variable inherited, run in `dir`.
fn cloud(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("GRIDLINK_") {
            command.env_remove(name);
        }
    }
    command.current_dir(dir);
    command
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("run gridlink-cloud")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn version_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(cloud(dir.path()).arg("--version"));
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("gridlink-cloud {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_config_file_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:8080\"\nlistn = \"x\"\n",
    )
    .unwrap();
    let output = run(cloud(dir.path()).args(["migrate", "--config"]).arg(&path));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let expected = format!("error: {}:3:1: unknown field `listn`", path.display());
    assert!(
        stderr(&output).starts_with(&expected),
        "{}",
        stderr(&output)
    );

    std::fs::write(&path, "[retention]\nraw_days = -1\n").unwrap();
    let output = run(cloud(dir.path()).arg("serve").env("GRIDLINK_CONFIG", &path));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cloud.toml:2:12: -1 is out of range: expected 0 to 36500"),
        "{}",
        stderr(&output)
    );

    let output = run(cloud(dir.path()).args(["migrate", "--config", "missing.toml"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot read missing.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_environment_variable_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(cloud(dir.path())
        .arg("migrate")
        .env("GRIDLINK_HTTP_LISTEN", "x"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: GRIDLINK_HTTP_LISTEN: invalid socket address \"x\""),
        "{}",
        stderr(&output)
    );

    let output = run(cloud(dir.path()).arg("serve"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("mqtt.host is not set: set it in the config file or with GRIDLINK_MQTT_HOST"),
        "{}",
        stderr(&output)
    );
    assert!(
        !dir.path().join("gridlink.db").exists(),
        "nothing was started"
    );

    let output = run(cloud(dir.path()).args(["token", "create", "--role", "root", "--name", "x"]));
    assert_eq!(output.status.code(), Some(2), "clap refuses unknown roles");
}

/// A `serve` process, killed if the test ends without stopping it.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; the status and body of the answer.
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

#[test]
fn migrate_token_create_and_serve_without_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    let pki = TestPki::generate(&pki_dir, &[]).unwrap();
    let database = format!("sqlite://{}", dir.path().join("cloud.db").display());
    let http_port = free_port();
    let broker_port = free_port(); // nothing listens here
    let env = |command: &mut Command| {
        command
            .env("GRIDLINK_DATABASE_URL", &database)
            .env("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
            .env("GRIDLINK_MQTT_PORT", broker_port.to_string())
            .env("GRIDLINK_MQTT_CA", pki.ca_cert())
            .env("GRIDLINK_MQTT_CERT", &pki.backend().cert)
            .env("GRIDLINK_MQTT_KEY", &pki.backend().key)
            .env("GRIDLINK_MQTT_CLIENT_ID", "cli-test");
    };

    let mut migrate = cloud(dir.path());
    migrate.arg("migrate");
    env(&mut migrate);
    let output = run(&mut migrate);
    assert!(output.status.success(), "{}", stderr(&output));

    let mut create = cloud(dir.path());
    create.args(["token", "create", "--role", "viewer", "--name", "ci viewer"]);
    env(&mut create);
    let output = run(&mut create);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(token.starts_with("glk_") && token.len() == 68, "{token:?}");
    assert!(
        stderr(&output).contains("shown only this once"),
        "{}",
        stderr(&output)
    );

    let mut serve = cloud(dir.path());
    serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    env(&mut serve);
    let mut serve = Serve(serve.spawn().unwrap());

    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Ok(answer) = http(http_port, "GET", "/health", None) {
            break answer;
        }
        assert!(serve.0.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < deadline, "serve did not answer in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health.0, 503, "{}", health.1);
    let json: serde_json::Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(json["database"], "ok");
    assert_eq!(json["broker"], "disconnected");

    probe_health(dir.path(), &env, http_port, broker_port);

    let (status, body) = http(http_port, "GET", "/api/v1/vens", Some(&token)).unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"vens\":[]}"));
    let (status, _) = http(http_port, "GET", "/api/v1/vens", None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = http(http_port, "POST", "/api/v1/tokens", Some(&token)).unwrap();
    assert_eq!(status, 403, "a viewer token cannot create tokens");

    // SIGTERM stops it cleanly.
    let pid = serve.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    if let Some(mut err) = serve.0.stderr.take() {
        err.read_to_string(&mut log).unwrap();
    }
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("stop signal received"), "{log}");
}

/// The container health check: `health` reads the same configuration as
/// `serve` and says unhealthy (exit 1) while the broker is away; a 200
/// answer is healthy; nothing listening is a clear failure.
fn probe_health(dir: &Path, env: &dyn Fn(&mut Command), http_port: u16, broker_port: u16) {
    // The container health check: `health` reads the same configuration
    // and says unhealthy (exit 1) while the broker is away.
    let mut probe = cloud(dir);
    probe.arg("health");
    env(&mut probe);
    let output = run(&mut probe);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unhealthy: HTTP/1.1 503"),
        "{}",
        stderr(&output)
    );
    // A 200 answer is healthy (any URL may be probed: here a public route).
    let mut ok = cloud(dir);
    ok.args([
        "health",
        "--url",
        &format!("http://127.0.0.1:{http_port}/openapi.json"),
    ]);
    env(&mut ok);
    let output = run(&mut ok);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut nothing = cloud(dir);
    nothing.args([
        "health",
        "--url",
        &format!("http://127.0.0.1:{broker_port}/health"),
    ]);
    env(&mut nothing);
    let output = run(&mut nothing);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn serve_exits_1_when_the_backend_certificate_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(cloud(dir.path())
        .arg("serve")
        .env(
            "GRIDLINK_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("c.db").display()),
        )
        .env("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
        .env("GRIDLINK_MQTT_CA", dir.path().join("no-ca.pem")));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Whichever MQTT client starts first (shadow service, dispatcher,
    // ingest) names the file it could not read.
    assert!(stderr(&output).contains("no-ca.pem"), "{}", stderr(&output));
}

/// A share group on a broker not declared to keep shared subscriptions
/// across its restart (Mosquitto 2.0 does not) would lose readings at every
/// broker restart: `serve` refuses to start, saying why and what to do.
#[test]
fn serve_refuses_a_share_group_that_a_broker_restart_would_lose() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &[]).unwrap();
    let backend = pki.backend();
    let output = run(cloud(dir.path())
        .arg("serve")
        .env(
            "GRIDLINK_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("c.db").display()),
        )
        .env("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("GRIDLINK_MQTT_HOST", "127.0.0.1")
        .env("GRIDLINK_MQTT_PORT", free_port().to_string())
        .env("GRIDLINK_MQTT_CA", pki.ca_cert())
        .env("GRIDLINK_MQTT_CERT", &backend.cert)
        .env("GRIDLINK_MQTT_KEY", &backend.key)
        .env("GRIDLINK_MQTT_SHARE_GROUP", "gridlink"));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("mqtt.share_group"), "{text}");
    assert!(text.contains("shared_subscriptions_persist"), "{text}");
}

/// `token create` with an expiry, without one and by default; `token list`
/// shows them without secrets; `token revoke` refuses the last admin token
/// and revokes the others.
#[test]
fn token_create_with_expiry_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("cloud.db").display());
    let command = |args: &[&str]| {
        let mut command = cloud(dir.path());
        command.args(args).env("GRIDLINK_DATABASE_URL", &database);
        run(&mut command)
    };
    assert!(command(&["migrate"]).status.success());
    let created = |args: &[&str]| {
        let output = command(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        (
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            stderr(&output),
        )
    };
    let (admin, message) = created(&[
        "token",
        "create",
        "--role",
        "admin",
        "--name",
        "root",
        "--no-expiry",
    ]);
    assert!(admin.starts_with("glk_"), "{admin}");
    assert!(message.contains("never expires"), "{message}");
    let (day, message) = created(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--name",
        "day",
        "--expires-in",
        "P1D",
    ]);
    assert!(message.contains("expires at"), "{message}");
    let (_, message) = created(&["token", "create", "--role", "viewer", "--name", "default"]);
    assert!(message.contains("expires at"), "{message}");
    for bad in [["--expires-in", "0"], ["--expires-in", "P20000D"]] {
        let mut args = vec!["token", "create", "--role", "viewer", "--name", "x"];
        args.extend(bad);
        assert_eq!(command(&args).status.code(), Some(2), "{bad:?}");
    }
    let both = command(&[
        "token",
        "create",
        "--role",
        "viewer",
        "--name",
        "x",
        "--expires-in",
        "60",
        "--no-expiry",
    ]);
    assert_eq!(both.status.code(), Some(2));

    let list = command(&["token", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(!text.contains(&admin) && !text.contains(&day), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[0][..3], ["1", "root", "admin"]);
    assert_eq!(rows[0][4], "-", "no expiry: {text}");
    let created_ms: i64 = rows[1][3].parse().unwrap();
    let expires_ms: i64 = rows[1][4].parse().unwrap();
    assert_eq!(expires_ms - created_ms, 86_400_000, "{text}");
    let expires_ms: i64 = rows[2][4].parse().unwrap();
    assert_eq!(
        expires_ms - rows[2][3].parse::<i64>().unwrap(),
        90 * 86_400_000
    );

    let refused = command(&["token", "revoke", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("last active admin"),
        "{}",
        stderr(&refused)
    );
    assert!(command(&["token", "revoke", "2"]).status.success());
    let list = command(&["token", "list"]);
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let day_row: Vec<&str> = text.lines().nth(2).unwrap().split('\t').collect();
    assert_ne!(day_row[5], "-", "revoked: {text}");
    assert_eq!(day_row[6], "false", "{text}");
    assert_eq!(command(&["token", "revoke", "99"]).status.code(), Some(1));
}

//! The one-command demo end to end, in-process: the embedded broker, the
//! cloud on SQLite and three simulated sites with their agents, on free
//! ports. Every VEN's readings reach the API, the operator token works and
//! a missing one is refused, the event the printed `curl` dispatches is
//! acknowledged by every VEN and sheds the right loads, and the demo stops
//! cleanly.

use std::time::Duration;

use gridlink_demo::{self as demo, DemoOptions, Ready, SITE_METER, http};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;

const SITES: u16 = 3;

async fn get(ready: &Ready, path: &str, token: Option<&str>) -> http::HttpResponse {
    http::request(ready.api, "GET", path, token, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn post(ready: &Ready, path: &str, body: &str) -> http::HttpResponse {
    http::request(ready.api, "POST", path, Some(&ready.token), Some(body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Polls `check` every 500 ms until it returns `Some`, or panics after
/// `limit` with `what` and the last answer.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} not seen within {limit:?}; last answer: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_reports_dispatches_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        sites: SITES,
        dir: Some(dir.path().join("demo")),
        http_port: 0,
        seed: 11,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut demo = tokio::spawn(demo::run(options, ready_tx, async move {
        let _ = stop_rx.await;
    }));
    let ready = tokio::select! {
        ready = ready_rx => ready.expect("the demo stopped before it was ready"),
        result = &mut demo => panic!("the demo stopped before it was ready: {result:?}"),
        () = tokio::time::sleep(Duration::from_mins(3)) => panic!("the demo was not ready in 3 minutes"),
    };
    assert!(ready.all_vens_reporting, "ready before every VEN reported");
    assert_eq!(ready.ven_ids(), ["site-1", "site-2", "site-3"]);
    assert!(ready.dir.join("gridlink.db").exists());
    for site in &ready.sites {
        assert!(site.config.exists(), "{}", site.config.display());
    }

    // What the user reads: the address, the token and the very requests
    // this test sends.
    let text = ready.instructions();
    assert!(
        text.contains(&format!("API={}", format_args!("http://{}", ready.api))),
        "{text}"
    );
    assert!(text.contains(&ready.token), "{text}");
    assert!(text.contains(&ready.program_request()), "{text}");
    assert!(text.contains("/openadr3/3.1.0/events"), "{text}");
    assert!(text.contains(demo::broker::BROKER_NOTICE), "{text}");

    // Auth: the operator token works; no token or a wrong one is refused.
    let vens = get(&ready, "/api/v1/vens", Some(&ready.token)).await;
    assert_eq!(vens.status, 200, "{}", vens.body);
    assert_eq!(get(&ready, "/api/v1/vens", None).await.status, 401);
    let wrong = format!("glk_{}", "0".repeat(64));
    assert_eq!(get(&ready, "/api/v1/vens", Some(&wrong)).await.status, 401);

    every_ven_reports(&ready, &vens).await;
    dispatch_and_see_acks(&ready).await;

    // A clean stop.
    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(90), demo)
        .await
        .expect("the demo stops within 90 s")
        .expect("the demo task does not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        dir.path().join("demo").join("gridlink.db").exists(),
        "--dir is kept"
    );
}

/// Every VEN is listed with a last reading and has a power series with
/// points.
async fn every_ven_reports(ready: &Ready, vens: &http::HttpResponse) {
    // Every VEN's readings are visible: listed with a last reading, and a
    // power series with points.
    let listed = vens.json();
    for ven in ready.ven_ids() {
        let entry = listed["vens"]
            .as_array()
            .and_then(|all| all.iter().find(|v| v["ven_id"] == ven))
            .unwrap_or_else(|| panic!("{ven} not listed: {}", vens.body));
        assert!(entry["last_reading_ms"].is_i64(), "{entry}");
        // Registered before its agent started, with its grid meter: the
        // measured response of an event reads that meter only.
        assert_eq!(entry["site_meter"], SITE_METER, "{entry}");
        assert!(
            entry["site"]
                .as_str()
                .is_some_and(|site| site.starts_with("Demo site ")),
            "{entry}"
        );
        let path = format!("/api/v1/series?ven={ven}&meter=main&quantity=active_power");
        eventually(
            &format!("{ven}'s power series"),
            Duration::from_secs(30),
            async || {
                let series = get(ready, &path, Some(&ready.token)).await;
                let points = series.json()["points"].as_array().map_or(0, Vec::len);
                if series.status == 200 && points > 0 {
                    Ok(())
                } else {
                    Err(format!("{} {}", series.status, series.body))
                }
            },
        )
        .await;
    }
}

/// Creates the program and dispatches the event of the printed `curl`
/// commands; every VEN acknowledges it with `received`.
async fn dispatch_and_see_acks(ready: &Ready) {
    // DR: the program and the event of the printed curl commands, and a
    // `received` ack from every VEN.
    let program = post(ready, "/openadr3/3.1.0/programs", &ready.program_request()).await;
    assert_eq!(program.status, 201, "{}", program.body);
    let program_id = program.json()["id"]
        .as_str()
        .expect("the program has an id")
        .to_owned();
    let start = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid")
        .format(&Rfc3339)
        .expect("RFC 3339 formats");
    let event = post(
        ready,
        "/openadr3/3.1.0/events",
        &ready.event_request(&program_id, &start),
    )
    .await;
    assert_eq!(event.status, 201, "{}", event.body);
    let event_id = event.json()["id"]
        .as_str()
        .expect("the event has an id")
        .to_owned();
    let status_path = format!("/api/v1/events/{event_id}/status");
    let status = eventually(
        "a received ack from every VEN",
        Duration::from_mins(1),
        async || {
            let status = get(ready, &status_path, Some(&ready.token)).await;
            let body = status.json();
            let all_received = ready.ven_ids().iter().all(|ven| {
                body["vens"].as_array().is_some_and(|vens| {
                    vens.iter().any(|v| {
                        v["ven_id"] == *ven
                            && v["history"].as_array().is_some_and(|history| {
                                history.iter().any(|ack| ack["state"] == "received")
                            })
                    })
                })
            });
            if status.status == 200 && all_received {
                Ok(body)
            } else {
                Err(format!("{} {}", status.status, status.body))
            }
        },
    )
    .await;
    eprintln!("event status: {status}");
    assert_eq!(
        status["vens"].as_array().map(Vec::len),
        Some(usize::from(SITES))
    );
    let _: &Value = &status["total"];

    // The event is executed: at level 2 every site sheds the loads whose
    // `simple_level` is 1 or 2 and keeps the others, as the loads'
    // snapshots show.
    for ven in ready.ven_ids() {
        let path = format!("/api/v1/vens/{ven}/loads");
        eventually(
            &format!("{ven}'s loads shed"),
            Duration::from_secs(30),
            async || {
                let loads = get(ready, &path, Some(&ready.token)).await;
                let switched: Vec<(String, bool)> = loads.json()["loads"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|l| {
                                (
                                    l["name"].as_str().unwrap_or_default().to_owned(),
                                    l["on"] == true,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let expected: Vec<(String, bool)> = (1..=demo::LOADS_PER_SITE)
                    .map(|k| {
                        (
                            format!("load-{k}"),
                            demo::simple_level(k) > demo::EVENT_LEVEL,
                        )
                    })
                    .collect();
                if switched == expected {
                    Ok(())
                } else {
                    Err(format!("{} {}", loads.status, loads.body))
                }
            },
        )
        .await;
    }
}

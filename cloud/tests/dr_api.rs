//! The OpenADR 3.1 program and event API, VEN groups and event status,
//! through the router without a socket (`tower::ServiceExt::oneshot`), on
//! SQLite and on PostgreSQL: CRUD, search filters with skip/limit, every
//! kind of bad event as a 400 problem naming the field, roles (viewer 403),
//! unknown ids (404), and the measured response of `/status`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use axum::http::{Method, StatusCode};
use gridlink_cloud::store::dr::DrStore as _;
use gridlink_cloud::store::{IngestBatch, Role, Store};
use gridlink_protocol::{
    AckState, CommandAck, ObjectId, Phase, Point, Quantity, Series, Timestamp, VenId,
};
use serde_json::{Value, json};

mod common;
use common::ApiApp;

struct App {
    api: ApiApp,
    operator: String,
    viewer: String,
    installer: String,
}

impl std::ops::Deref for App {
    type Target = ApiApp;
    fn deref(&self) -> &ApiApp {
        &self.api
    }
}

impl App {
    async fn sqlite() -> Self {
        Self::from(ApiApp::sqlite().await)
    }

    async fn postgres(name: &str) -> Self {
        Self::from(ApiApp::postgres(name).await)
    }

    fn from(api: ApiApp) -> Self {
        Self {
            operator: api.token(Role::Operator).to_owned(),
            viewer: api.token(Role::Viewer).to_owned(),
            installer: api.token(Role::Installer).to_owned(),
            api,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api.request(method, uri, token, body.as_ref()).await
    }

    async fn ok(&self, method: Method, uri: &str, body: Option<Value>) -> Value {
        self.api.ok(method, uri, body).await
    }

    /// The name of the one invalid parameter of a 400 answer.
    async fn bad(&self, uri: &str, body: Value) -> String {
        self.api.invalid_param(Method::POST, uri, Some(body)).await
    }

    /// Registers ven-1 and ven-2 in group `north` and ven-3 in none.
    async fn register_vens(&self) {
        for (ven, groups) in [
            ("ven-1", json!(["north"])),
            ("ven-2", json!(["north", "all"])),
            ("ven-3", json!([])),
        ] {
            let (status, json) = self
                .call(
                    Method::PUT,
                    &format!("/api/v1/vens/{ven}/groups"),
                    &self.installer,
                    Some(json!({ "groups": groups })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{json}");
        }
    }
}

fn event_body(program_id: &str, targets: &Value, start: &str) -> Value {
    json!({
        "programID": program_id,
        "eventName": "peak shave",
        "priority": 1,
        "targets": targets,
        "payloadDescriptors": [{ "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW" }],
        "intervalPeriod": { "start": start, "duration": "PT1H", "randomizeStart": "PT5M" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "IMPORT_CAPACITY_LIMIT", "values": [12.5] }] }]
    })
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn crud_filters_and_paging(app: App) {
    app.register_vens().await;
    let groups = app.ok(Method::GET, "/api/v1/vens/ven-2/groups", None).await;
    assert_eq!(
        groups,
        json!({ "ven_id": "ven-2", "groups": ["all", "north"] })
    );

    let program = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(json!({ "programName": "peak", "targets": ["north"] })),
        )
        .await;
    assert_eq!(program["objectType"], "PROGRAM");
    assert_eq!(program["programName"], "peak");
    assert!(program["createdDateTime"].as_str().unwrap().ends_with('Z'));
    let program_id = program["id"].as_str().unwrap().to_owned();
    let other = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(json!({ "programName": "other" })),
        )
        .await;
    let other_id = other["id"].as_str().unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            "/openadr3/3.1.0/programs",
            &app.operator,
            Some(json!({ "programName": "peak" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "programName is unique");
    let listed = app
        .ok(Method::GET, "/openadr3/3.1.0/programs?targets=north", None)
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], program_id.as_str());
    let renamed = app
        .ok(
            Method::PUT,
            &format!("/openadr3/3.1.0/programs/{program_id}"),
            Some(json!({ "programName": "peak-2", "targets": ["north"] })),
        )
        .await;
    assert_eq!(renamed["programName"], "peak-2");
    assert_eq!(renamed["createdDateTime"], program["createdDateTime"]);

    // Events: explicit targets, inherited targets, another program.
    let e1 = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/events",
            Some(event_body(
                &program_id,
                &json!(["ven-3"]),
                "2026-01-01T10:00:00Z",
            )),
        )
        .await;
    assert_eq!(e1["objectType"], "EVENT");
    assert_eq!(e1["programID"], program_id.as_str());
    assert_eq!(e1["intervalPeriod"]["randomizeStart"], "PT5M");
    let e1_id = e1["id"].as_str().unwrap().to_owned();
    let e2 = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/events",
            Some(event_body(
                &program_id,
                &Value::Null,
                "2026-01-02T10:00:00Z",
            )),
        )
        .await;
    let e2_id = e2["id"].as_str().unwrap().to_owned();
    let stored = app
        .store
        .event(&ObjectId::new(e2_id.clone()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.targets, ["north"], "inherited from the program");
    assert_eq!(
        stored.vens,
        [VenId::new("ven-1").unwrap(), VenId::new("ven-2").unwrap()]
    );
    let e3 = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/events",
            Some(event_body(
                other_id,
                &json!(["all"]),
                "2999-01-01T00:00:00Z",
            )),
        )
        .await;
    let e3_id = e3["id"].as_str().unwrap().to_owned();

    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.ok(Method::GET, "/openadr3/3.1.0/events", None).await;
    assert_eq!(ids(&all), [e1_id.clone(), e2_id.clone(), e3_id.clone()]);
    let of_program = app
        .ok(
            Method::GET,
            &format!("/openadr3/3.1.0/events?programID={program_id}"),
            None,
        )
        .await;
    assert_eq!(ids(&of_program), [e1_id.clone(), e2_id.clone()]);
    let by_targets = app
        .ok(
            Method::GET,
            "/openadr3/3.1.0/events?targets=ven-3&targets=all",
            None,
        )
        .await;
    assert_eq!(ids(&by_targets), [e1_id.clone(), e3_id.clone()]);
    let page = app
        .ok(Method::GET, "/openadr3/3.1.0/events?skip=1&limit=1", None)
        .await;
    assert_eq!(ids(&page), std::slice::from_ref(&e2_id));
    let active = app
        .ok(Method::GET, "/openadr3/3.1.0/events?active=true", None)
        .await;
    assert_eq!(
        ids(&active),
        std::slice::from_ref(&e3_id),
        "the 2026 events have ended"
    );
    for bad in ["limit=51", "skip=-1", "active=maybe"] {
        let (status, json) = app
            .call(
                Method::GET,
                &format!("/openadr3/3.1.0/events?{bad}"),
                &app.viewer,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
    }
    // Unknown (3.0-style or extra) query parameters are ignored.
    let all = app.ok(Method::GET, "/openadr3/3.1.0/events", None).await;
    let extra = app
        .ok(
            Method::GET,
            "/openadr3/3.1.0/events?colour=red&venID=x",
            None,
        )
        .await;
    assert_eq!(extra, all);

    // Replace, then delete.
    let mut body = event_body(&program_id, &json!(["ven-1"]), "2026-01-01T10:00:00Z");
    body["eventName"] = json!("renamed");
    let replaced = app
        .ok(
            Method::PUT,
            &format!("/openadr3/3.1.0/events/{e1_id}"),
            Some(body),
        )
        .await;
    assert_eq!(replaced["eventName"], "renamed");
    assert_eq!(replaced["id"], e1_id.as_str());
    let got = app
        .ok(
            Method::GET,
            &format!("/openadr3/3.1.0/events/{e1_id}"),
            None,
        )
        .await;
    assert_eq!(got, replaced);
    app.ok(
        Method::DELETE,
        &format!("/openadr3/3.1.0/events/{e1_id}"),
        None,
    )
    .await;
    // Deleting a program deletes its events (openadr3.yaml lists no 409).
    app.ok(
        Method::DELETE,
        &format!("/openadr3/3.1.0/programs/{program_id}"),
        None,
    )
    .await;
    for id in [&e1_id, &e2_id] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/openadr3/3.1.0/events/{id}"),
                &app.viewer,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Commands: e1 to ven-3, e2 to ven-1 and ven-2, e3 to ven-2; e1's
    // replacement to ven-1 and a cancel to ven-3; deleting e1 cancels at
    // ven-1; e2 had ended when its program was deleted: no cancel.
    assert_eq!(app.store.unsent_commands(100).await.unwrap().len(), 7);
}

async fn bad_events_name_the_field(app: App) {
    app.register_vens().await;
    let program = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(json!({ "programName": "p" })),
        )
        .await;
    let pid = program["id"].as_str().unwrap();
    let good = event_body(pid, &json!(["ven-1"]), "2026-01-01T10:00:00Z");
    let uri = "/openadr3/3.1.0/events";
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    assert_eq!(
        app.bad(uri, with("/intervalPeriod/duration", json!("-PT1H")))
            .await,
        "intervalPeriod.duration",
        "end before start"
    );
    assert_eq!(
        app.bad(
            uri,
            with("/intervalPeriod/randomizeStart", json!("5 minutes"))
        )
        .await,
        "intervalPeriod.randomizeStart"
    );
    assert_eq!(
        app.bad(uri, with("/programID", json!("no-such-program")))
            .await,
        "programID"
    );
    let mut no_program = good.clone();
    no_program.as_object_mut().unwrap().remove("programID");
    assert_eq!(app.bad(uri, no_program).await, "programID");
    assert_eq!(app.bad(uri, with("/priority", json!(-1))).await, "priority");
    assert!(
        app.store.unsent_commands(10).await.unwrap().is_empty(),
        "nothing stored"
    );
    // What openadr3.yaml allows is accepted (our agents acknowledge what they
    // cannot execute): any payload type, opaque targets, no targets, no
    // intervals.
    let mut no_intervals = good.clone();
    no_intervals.as_object_mut().unwrap().remove("intervals");
    for body in [
        with("/intervals/0/payloads/0/type", json!("GHG")),
        with("/intervals/0/payloads/0/type", json!("x-GUESS")),
        with("/payloadDescriptors/0/payloadType", json!("X")),
        with("/targets", json!(["ven-1", "nobody"])),
        with("/targets", json!([])),
        no_intervals,
    ] {
        app.ok(Method::POST, uri, Some(body)).await;
    }
    // The good one passes.
    app.ok(Method::POST, uri, Some(good)).await;
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn roles_and_unknown_ids(app: App) {
    app.register_vens().await;
    let program = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(json!({ "programName": "p" })),
        )
        .await;
    let pid = program["id"].as_str().unwrap().to_owned();
    let event = event_body(&pid, &json!(["ven-1"]), "2026-01-01T10:00:00Z");
    let writes = [
        (
            Method::POST,
            "/openadr3/3.1.0/programs".to_owned(),
            Some(json!({ "programName": "v" })),
        ),
        (
            Method::PUT,
            format!("/openadr3/3.1.0/programs/{pid}"),
            Some(json!({ "programName": "v" })),
        ),
        (
            Method::DELETE,
            format!("/openadr3/3.1.0/programs/{pid}"),
            None,
        ),
        (
            Method::POST,
            "/openadr3/3.1.0/events".to_owned(),
            Some(event.clone()),
        ),
        (
            Method::PUT,
            "/openadr3/3.1.0/events/e-1".to_owned(),
            Some(event.clone()),
        ),
        (
            Method::DELETE,
            "/openadr3/3.1.0/events/e-1".to_owned(),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/vens/ven-9/groups".to_owned(),
            Some(json!({ "groups": [] })),
        ),
    ];
    for (method, uri, body) in writes {
        let (status, json) = app.call(method.clone(), &uri, &app.viewer, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {uri}");
        assert_eq!(json["type"], "urn:gridlink:problem:forbidden");
    }
    let (status, _) = app
        .call(Method::GET, "/openadr3/3.1.0/programs", &app.viewer, None)
        .await;
    assert_eq!(status, StatusCode::OK, "viewers read");

    let unknown = [
        (
            Method::GET,
            "/openadr3/3.1.0/programs/nope".to_owned(),
            None,
        ),
        (
            Method::PUT,
            "/openadr3/3.1.0/programs/nope".to_owned(),
            Some(json!({ "programName": "x" })),
        ),
        (
            Method::DELETE,
            "/openadr3/3.1.0/programs/nope".to_owned(),
            None,
        ),
        (Method::GET, "/openadr3/3.1.0/events/nope".to_owned(), None),
        (
            Method::PUT,
            "/openadr3/3.1.0/events/nope".to_owned(),
            Some(event),
        ),
        (
            Method::DELETE,
            "/openadr3/3.1.0/events/nope".to_owned(),
            None,
        ),
        (Method::GET, "/api/v1/events/nope/status".to_owned(), None),
    ];
    for (method, uri, body) in unknown {
        let (status, json) = app.call(method.clone(), &uri, &app.operator, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {json}");
        assert_eq!(json["type"], "urn:gridlink:problem:unknown-object");
    }
    let (status, json) = app
        .call(
            Method::GET,
            "/openadr3/3.1.0/events/bad%20id",
            &app.viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["invalid_params"][0]["name"], "eventID");
}

fn power(ven: &str, seq: u64, points: Vec<(i64, i64)>) -> IngestBatch {
    metered(ven, "grid", seq, points)
}

fn metered(ven: &str, meter: &str, seq: u64, points: Vec<(i64, i64)>) -> IngestBatch {
    IngestBatch {
        ven_id: VenId::new(ven).unwrap(),
        batch_seq: seq,
        received_ms: 0,
        series: vec![Series {
            meter: meter.into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            exponent: 0,
            points: points
                .into_iter()
                .map(|(ts_ms, raw)| Point { ts_ms, raw })
                .collect(),
        }],
    }
}

/// ven-1: 1000 W before, 400 W during and a PV sub-meter, its site meter
/// registered; ven-2: 500 W before and during; ven-4 (in `north`): two
/// meters and no site meter registered.
async fn readings_and_site_meters(app: &App, start: i64) {
    let before: Vec<(i64, i64)> = (1..=60).map(|i| (start - i * 10_000, 1000)).collect();
    let during: Vec<(i64, i64)> = (0..50).map(|i| (start + i * 10_000, 400)).collect();
    let flat: Vec<(i64, i64)> = (-60..50).map(|i| (start + i * 10_000, 500)).collect();
    // ven-1's PV sub-meter is left out: its site meter is registered.
    // ven-4 has two meters and none registered: it is not measured.
    let pv: Vec<(i64, i64)> = (-60..50).map(|i| (start + i * 10_000, -3000)).collect();
    app.store
        .ingest(&[
            power("ven-1", 1, before),
            power("ven-1", 2, during),
            metered("ven-1", "pv", 3, pv.clone()),
            power("ven-2", 1, flat.clone()),
            power("ven-4", 1, flat),
            metered("ven-4", "pv", 2, pv),
        ])
        .await
        .unwrap();
    for (ven, body) in [
        (
            "ven-1",
            json!({ "site": "Depot North", "site_meter": "grid" }),
        ),
        (
            "ven-4",
            json!({ "site": "Depot South", "groups": ["north"] }),
        ),
    ] {
        let (status, json) = app
            .call(
                Method::PUT,
                &format!("/api/v1/vens/{ven}"),
                &app.installer,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
    }
}

async fn status_shows_acks_and_measured_response(app: App) {
    app.register_vens().await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    // Started 10 minutes ago (whole seconds, as RFC 3339 is written).
    let start = (now - 600_000) / 1000 * 1000;
    readings_and_site_meters(&app, start).await;
    let program = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(json!({ "programName": "p" })),
        )
        .await;
    let start_text = Timestamp::from_unix_ms(start).unwrap().to_string();
    let event = app
        .ok(
            Method::POST,
            "/openadr3/3.1.0/events",
            Some(event_body(
                program["id"].as_str().unwrap(),
                &json!(["north"]),
                &start_text,
            )),
        )
        .await;
    let id = event["id"].as_str().unwrap().to_owned();
    let ack = |state, at: i64, reason: Option<&str>| CommandAck {
        ven_id: VenId::new("ven-1").unwrap(),
        command_id: 1,
        event_id: ObjectId::new(id.clone()).unwrap(),
        state,
        at: Timestamp::from_unix_ms(at).unwrap(),
        reason: reason.map(str::to_owned),
    };
    for a in [
        ack(AckState::Received, start - 5000, None),
        ack(AckState::Active, start, None),
        ack(AckState::Scheduled, start - 4000, None),
    ] {
        app.store.record_ack(&a, now).await.unwrap();
    }
    let (status, json) = app
        .call(
            Method::GET,
            &format!("/api/v1/events/{id}/status"),
            &app.viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["start_ms"], start);
    assert_eq!(json["baseline_window_ms"], 900_000);
    assert_eq!(json["states"], json!({ "active": 1, "none": 2 }));
    let v1 = &json["vens"][0];
    assert_eq!(v1["ven_id"], "ven-1");
    assert_eq!(v1["state"], "active");
    let history: Vec<&str> = v1["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["received", "scheduled", "active"]);
    assert_eq!(v1["response"]["baseline_w"], 1000.0);
    assert_eq!(v1["response"]["during_w"], 400.0);
    assert_eq!(v1["response"]["shed_w"], 600.0);
    assert_eq!(v1["response"]["shed_pct"], 60.0);
    assert_eq!(v1["response"]["baseline_readings"], 60);
    let v2 = &json["vens"][1];
    assert_eq!(v2["state"], Value::Null);
    assert_eq!(v2["response"]["shed_w"], 0.0);
    assert_eq!(v2["response"]["unmeasured_reason"], Value::Null);
    let v4 = &json["vens"][2];
    assert_eq!(v4["ven_id"], "ven-4");
    assert_eq!(v4["response"]["baseline_w"], Value::Null);
    assert_eq!(v4["response"]["shed_w"], Value::Null);
    assert!(
        v4["response"]["unmeasured_reason"]
            .as_str()
            .unwrap()
            .contains("several meters"),
        "{v4}"
    );
    assert_eq!(json["total"]["baseline_w"], 1500.0);
    assert_eq!(json["total"]["during_w"], 900.0);
    assert_eq!(json["total"]["shed_pct"], 40.0);
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::App::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::App::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}

on_both!(
    crud_filters_and_paging,
    bad_events_name_the_field,
    roles_and_unknown_ids,
    status_shows_acks_and_measured_response,
);

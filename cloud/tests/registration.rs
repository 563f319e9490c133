//! VEN registration (`PUT /api/v1/vens/{id}`) through the router without a
//! socket (`tower::ServiceExt::oneshot`), on SQLite and on PostgreSQL: the
//! site, groups and loads are served before the VEN's first message; a
//! repeat is idempotent; the agent's first snapshot replaces the registered
//! loads, and a registration after it leaves them alone; roles (viewer and
//! operator 403); bad bodies are 400 problems naming the field.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use axum::http::{Method, StatusCode};
use gridlink_cloud::store::{Role, Store};
use gridlink_protocol::{LoadChangeCause, LoadSnapshot, LoadState, Timestamp, VenId};
use serde_json::{Value, json};
use std::collections::BTreeSet;

mod common;
use common::ApiApp;

struct App(ApiApp);

impl std::ops::Deref for App {
    type Target = ApiApp;
    fn deref(&self) -> &ApiApp {
        &self.0
    }
}

impl App {
    async fn sqlite() -> Self {
        Self(ApiApp::sqlite().await)
    }

    async fn postgres(name: &str) -> Self {
        Self(ApiApp::postgres(name).await)
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        role: Role,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.request(method, uri, self.token(role), body).await
    }

    async fn register(&self, ven: &str, body: &Value) -> Value {
        let (status, json) = self
            .call(
                Method::PUT,
                &format!("/api/v1/vens/{ven}"),
                Role::Installer,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    async fn get(&self, uri: &str) -> Value {
        let (status, json) = self.call(Method::GET, uri, Role::Viewer, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        json
    }

    /// The name of the one invalid parameter of a 400 answer.
    async fn bad(&self, body: &Value) -> String {
        let (status, json) = self
            .call(Method::PUT, "/api/v1/vens/depot-1", Role::Admin, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["type"], "urn:gridlink:problem:invalid-parameter");
        let name = json["invalid_params"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{name}: ")),
            "{json}"
        );
        name
    }
}

fn depot() -> Value {
    json!({
        "site": "Depot North",
        "site_meter": "main",
        "groups": ["north"],
        "loads": [
            { "name": "hvac", "rated_power_w": 3000.0, "controllable": true },
            { "name": "freezer", "rated_power_w": 800.0, "controllable": false }
        ]
    })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

async fn registered_site_and_loads_show_before_the_first_reading(app: App) {
    let answer = app.register("depot-1", &depot()).await;
    assert_eq!(answer["ven_id"], "depot-1");
    assert_eq!(answer["site"], "Depot North");
    assert_eq!(answer["site_meter"], "main");
    assert_eq!(answer["groups"], json!(["north"]));
    assert_eq!(answer["online"], Value::Null);
    assert_eq!(answer["last_reading_ms"], Value::Null);
    // The answer is the VEN as GET shows it, plus its groups.
    let one = app.get("/api/v1/vens/depot-1").await;
    let mut expected = keys(&one);
    expected.insert("groups".into());
    assert_eq!(keys(&answer), expected);
    assert_eq!(one["site"], "Depot North");
    let list = app.get("/api/v1/vens").await;
    assert_eq!(list["vens"][0]["site"], "Depot North");
    assert_eq!(list["vens"][0]["site_meter"], "main");
    assert_eq!(list["vens"].as_array().unwrap().len(), 1);

    let loads = app.get("/api/v1/vens/depot-1/loads").await;
    let loads = loads["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 2);
    assert_eq!(loads[0]["name"], "freezer");
    assert_eq!(loads[0]["controllable"], false);
    assert_eq!(loads[1]["name"], "hvac");
    assert_eq!(loads[1]["on"], true);
    assert_eq!(loads[1]["power_w"], 3000.0);
    assert_eq!(loads[1]["controllable"], true);
    assert_eq!(loads[1]["cause"], "startup");
    assert_eq!(loads[1]["setpoint"], Value::Null);
    let groups = app.get("/api/v1/vens/depot-1/groups").await;
    assert_eq!(groups["groups"], json!(["north"]));

    // Again: the same answer and the same loads.
    let again = app.register("depot-1", &depot()).await;
    assert_eq!(again, answer);
    let loads_again = app.get("/api/v1/vens/depot-1/loads").await;
    assert_eq!(loads_again["loads"].as_array().unwrap().len(), 2);

    // Until the first snapshot a registration replaces the registered
    // loads; without `groups` and `loads` it keeps them.
    let renamed = app
        .register("depot-1", &json!({ "site": "Depot North 2" }))
        .await;
    assert_eq!(renamed["site"], "Depot North 2");
    assert_eq!(renamed["site_meter"], "main", "kept when omitted");
    assert_eq!(renamed["groups"], json!(["north"]));
    assert_eq!(
        app.get("/api/v1/vens/depot-1/loads").await["loads"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    app.register(
        "depot-1",
        &json!({ "site": "Depot North", "groups": [], "loads": [{ "name": "pump" }] }),
    )
    .await;
    let loads = app.get("/api/v1/vens/depot-1/loads").await;
    assert_eq!(loads["loads"][0]["name"], "pump");
    assert_eq!(loads["loads"][0]["power_w"], Value::Null);
    assert_eq!(loads["loads"][0]["controllable"], true);
    assert_eq!(
        app.get("/api/v1/vens/depot-1/groups").await["groups"],
        json!([])
    );

    // The agent's first snapshot replaces them, even one taken before the
    // registration (the gateway's clock may be behind).
    let snapshot = LoadSnapshot {
        ven_id: VenId::new("depot-1").unwrap(),
        at: Timestamp::from_unix_ms(1_000_000).unwrap(),
        loads: vec![LoadState {
            name: "hvac".into(),
            on: false,
            power_w: Some(0.0),
            setpoint: None,
            controllable: true,
            last_change: None,
            cause: LoadChangeCause::External,
        }],
    };
    app.store.record_loads(&snapshot, 1_000_500).await.unwrap();
    let loads = app.get("/api/v1/vens/depot-1/loads").await;
    assert_eq!(loads["loads"].as_array().unwrap().len(), 1, "{loads}");
    assert_eq!(loads["loads"][0]["name"], "hvac");
    assert_eq!(loads["loads"][0]["on"], false);
    assert_eq!(loads["loads"][0]["cause"], "external");

    // After it, a registration sets the site but leaves the agent's loads.
    app.register("depot-1", &depot()).await;
    let after = app.get("/api/v1/vens/depot-1/loads").await;
    assert_eq!(after, loads);
    assert_eq!(app.get("/api/v1/vens/depot-1").await["site"], "Depot North");
}

async fn roles_and_bad_bodies(app: App) {
    for role in [Role::Viewer, Role::Operator] {
        let (status, json) = app
            .call(Method::PUT, "/api/v1/vens/depot-1", role, Some(&depot()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}: {json}");
        assert_eq!(json["type"], "urn:gridlink:problem:forbidden");
    }
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/vens/depot-1",
            Role::Admin,
            Some(&depot()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "admins register too");

    let long = "x".repeat(129);
    let many_loads: Vec<Value> = (0..=gridlink_protocol::status::MAX_LOADS)
        .map(|i| json!({ "name": format!("l{i}") }))
        .collect();
    let cases = [
        (json!({ "groups": ["north"] }), "site"),
        (json!({ "site": "" }), "site"),
        (json!({ "site": long }), "site"),
        (json!({ "site": "a\nb" }), "site"),
        (json!({ "site": 7 }), "site"),
        (json!({ "site": "s", "site_meter": "" }), "site_meter"),
        (
            json!({ "site": "s", "site_meter": "main meter" }),
            "site_meter",
        ),
        (
            json!({ "site": "s", "site_meter": "m".repeat(65) }),
            "site_meter",
        ),
        (json!({ "site": "s", "site_meter": 3 }), "site_meter"),
        (json!({ "site": "s", "groups": [""] }), "groups"),
        (json!({ "site": "s", "groups": "north" }), "groups"),
        (
            json!({ "site": "s", "loads": [{ "name": "a b" }] }),
            "loads[0].name",
        ),
        (
            json!({ "site": "s", "loads": [{ "name": "a" }, { "name": "a" }] }),
            "loads[1].name",
        ),
        (
            json!({ "site": "s", "loads": [{ "name": "a", "rated_power_w": -1.0 }] }),
            "loads[0].rated_power_w",
        ),
        (
            json!({ "site": "s", "loads": [{ "name": "a", "rated_power_w": "3 kW" }] }),
            "loads[0].rated_power_w",
        ),
        (
            json!({ "site": "s", "loads": [{ "rated_power_w": 1.0 }] }),
            "loads[0]",
        ),
        (json!({ "site": "s", "loads": many_loads }), "loads"),
        (json!({ "site": "s", "sight": "x" }), "sight"),
    ];
    for (body, field) in cases {
        let named = app.bad(&body).await;
        assert!(
            named == field || named.starts_with(&format!("{field}.")),
            "{body}: named {named}, expected {field}"
        );
    }
    // Nothing of a refused body is stored.
    let one = app.get("/api/v1/vens/depot-1").await;
    assert_eq!(one["site"], "Depot North");
    let (status, json) = app
        .call(
            Method::PUT,
            "/api/v1/vens/a+b",
            Role::Installer,
            Some(&depot()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["invalid_params"][0]["name"], "id");
    let (status, json) = app
        .call(Method::PUT, "/api/v1/vens/depot-2", Role::Installer, None)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
    assert_eq!(
        app.call(Method::GET, "/api/v1/vens/depot-2", Role::Viewer, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
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
    registered_site_and_loads_show_before_the_first_reading,
    roles_and_bad_bodies,
);

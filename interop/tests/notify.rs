//! OpenADR 3.1 notifications from the real cloud binary: one VEN
//! subscribed by webhook (a subscription with a callback, verified by the
//! echo challenge), another on the broker's MQTT topics the VTN lists for
//! it (Mosquitto with mutual TLS and the ACL `gridlink-provision` makes).
//! Each receives the creation, update and deletion of an event it is
//! targeted by within 1 s, and nothing about an event it is not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use gridlink_interop::Cloud;
use gridlink_testkit::mqtt::{MqttTestClient, client_options};
use reqwest::{Method, StatusCode};
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Longest a notification may take (the bound).
const WITHIN: Duration = Duration::from_secs(1);

/// A callback that answers the echo challenge and forwards every POSTed
/// notification with the time it arrived.
async fn webhook() -> (String, mpsc::UnboundedReceiver<(Instant, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    async fn echo(Query(query): Query<HashMap<String, String>>) -> String {
        query.get("echo").cloned().unwrap_or_default()
    }
    async fn notified(
        State(tx): State<mpsc::UnboundedSender<(Instant, Value)>>,
        body: axum::body::Bytes,
    ) -> &'static str {
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = tx.send((Instant::now(), json));
        ""
    }
    let app = Router::new()
        .route("/hook", get(echo).post(notified))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

fn event(program: &str, targets: &[&str], name: &str) -> Value {
    json!({
        "programID": program, "eventName": name, "targets": targets,
        "intervalPeriod": { "start": "2030-01-01T10:00:00Z", "duration": "PT1H" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "PRICE", "values": [0.2] }] }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_mqtt_vens_are_notified_within_a_second() {
    let cloud = Cloud::start_with(&[
        ("GRIDLINK_OPENADR_NOTIFY_ALLOW_HTTP", "true"),
        ("GRIDLINK_OPENADR_NOTIFY_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let (bl_id, bl_secret) = cloud.oauth_client("bl", "notify-bl");
    let (web_id, web_secret) = cloud.oauth_client("ven", "notify-web");
    let (mqtt_id, mqtt_secret) = cloud.oauth_client("ven", "notify-mqtt");
    let bl = cloud.token(&bl_id, &bl_secret).await;
    let web = cloud.token(&web_id, &web_secret).await;
    let mqtt = cloud.token(&mqtt_id, &mqtt_secret).await;

    // Two VENs: `web-ven` by webhook; `ven-1` by MQTT (its certificate's CN
    // is its venName, which the broker's ACL requires).
    for (token, name) in [(&web, "web-ven"), (&mqtt, "ven-1")] {
        let (status, json) = cloud
            .call(
                Method::POST,
                "vens",
                token,
                Some(json!({ "venName": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
    }
    let (status, program) = cloud
        .call(
            Method::POST,
            "programs",
            &bl,
            Some(json!({ "programName": "notify" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{program}");
    let program = program["id"].as_str().unwrap().to_owned();

    // The webhook VEN subscribes to events (the VTN checks the callback).
    let (callback, mut hooks) = webhook().await;
    let (status, json) = cloud
        .call(
            Method::POST,
            "subscriptions",
            &web,
            Some(json!({
                "clientName": "web-ven", "programID": program,
                "objectOperations": [{ "objects": ["EVENT"],
                    "operations": ["CREATE", "UPDATE", "DELETE"], "callbackUrl": callback,
                    "bearerToken": "hook-secret" }]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{json}");

    // The MQTT VEN asks the VTN where its events are and subscribes there.
    let (status, notifiers) = cloud.call(Method::GET, "notifiers", &mqtt, None).await;
    assert_eq!(status, StatusCode::OK, "{notifiers}");
    assert_eq!(notifiers["WEBHOOK"], true);
    assert_eq!(notifiers["MQTT"]["serialization"], "JSON");
    assert_eq!(notifiers["MQTT"]["authentication"]["method"], "CERTIFICATE");
    let (status, ven) = cloud.call(Method::GET, "vens", &mqtt, None).await;
    assert_eq!(status, StatusCode::OK);
    let ven_id = ven[0]["id"].as_str().unwrap().to_owned();
    let (status, topics) = cloud
        .call(
            Method::GET,
            &format!("notifiers/mqtt/topics/vens/{ven_id}/events"),
            &mqtt,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{topics}");
    let broker = cloud.broker();
    let mut subscriber = MqttTestClient::connect(client_options(
        cloud.pki(),
        "ven-1",
        broker.host(),
        broker.port(),
    ))
    .await
    .expect("ven-1 connects");
    let mut filters: Vec<String> = topics["topics"]
        .as_object()
        .expect("topics by operation")
        .values()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    filters.sort();
    filters.dedup();
    assert!(!filters.is_empty(), "{topics}");
    for filter in &filters {
        let code = subscriber.subscribe(filter, QoS::AtLeastOnce).await;
        assert!(
            matches!(code, rumqttc::SubscribeReasonCode::Success(_)),
            "the ACL refused {filter}: {code:?}"
        );
    }
    // Another VEN's topics: Mosquitto grants the subscription (its ACL
    // file checks reads at delivery) and delivers nothing on them.
    subscriber
        .subscribe("openadr3/vens/web-ven/#", QoS::AtLeastOnce)
        .await;

    // An event neither VEN is targeted by, then one for both.
    let (status, hidden) = cloud
        .call(
            Method::POST,
            "events",
            &bl,
            Some(event(&program, &["nobody"], "hidden")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hidden}");
    let body = event(&program, &["web-ven", "ven-1"], "shared");
    let (status, shared) = cloud
        .call(Method::POST, "events", &bl, Some(body.clone()))
        .await;
    let created = Instant::now();
    assert_eq!(status, StatusCode::CREATED, "{shared}");
    let shared_id = shared["id"].as_str().unwrap().to_owned();

    let mut renamed = body;
    renamed["eventName"] = json!("renamed");
    let steps: [(&str, Method, Option<Value>); 3] = [
        ("CREATE", Method::GET, None),
        ("UPDATE", Method::PUT, Some(renamed)),
        ("DELETE", Method::DELETE, None),
    ];
    for (operation, method, body) in steps {
        let sent = if operation == "CREATE" {
            created
        } else {
            let (status, json) = cloud
                .call(method, &format!("events/{shared_id}"), &bl, body)
                .await;
            assert_eq!(status, StatusCode::OK, "{operation}: {json}");
            Instant::now()
        };
        // The webhook.
        let (at, note) = tokio::time::timeout(WITHIN * 5, hooks.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook notification of {operation}"))
            .expect("receiver open");
        assert_eq!(note["objectType"], "EVENT", "{note}");
        assert_eq!(note["operation"], operation, "{note}");
        assert_eq!(note["object"]["id"], shared_id.as_str(), "{note}");
        let waited = at.saturating_duration_since(sent);
        assert!(waited <= WITHIN, "webhook {operation} after {waited:?}");
        // MQTT.
        let publish = subscriber
            .next_publish(WITHIN * 5)
            .await
            .unwrap_or_else(|| panic!("no MQTT notification of {operation}"));
        let waited = Instant::now().saturating_duration_since(sent);
        assert!(
            publish.topic.starts_with("openadr3/vens/ven-1/"),
            "{} reached ven-1",
            publish.topic
        );
        let note: Value = serde_json::from_slice(&publish.payload).expect("JSON notification");
        assert_eq!(note["operation"], operation, "{}: {note}", publish.topic);
        assert_eq!(note["object"]["id"], shared_id.as_str(), "{note}");
        assert!(waited <= WITHIN, "MQTT {operation} after {waited:?}");
    }
    // Nothing about the hidden event reached either VEN.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hooks.try_recv().is_err(), "an extra webhook notification");
    assert!(
        subscriber
            .next_publish(Duration::from_millis(200))
            .await
            .is_none(),
        "an extra MQTT notification"
    );
    cloud.assert_no_server_errors().await;
}

//! What the router tests share: the whole API over a migrated store
//! (SQLite in a temporary directory, or a database of a fresh PostgreSQL
//! cluster), a token for every role, and one request through
//! `tower::ServiceExt::oneshot`, without a socket.
#![allow(
    dead_code,
    reason = "each test crate includes this module and uses a different part of it"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::auth;
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, Role, Store};
use gridlink_testkit::postgres::PostgresCluster;
use serde_json::Value;
use tower::ServiceExt as _;

/// The API router over its own store, with one token per role.
pub struct ApiApp {
    /// The whole API.
    pub router: Router,
    /// The store behind it.
    pub store: Arc<AnyStore>,
    tokens: Vec<(Role, String)>,
    _dir: Option<tempfile::TempDir>,
    _cluster: Option<PostgresCluster>,
}

impl ApiApp {
    /// Over SQLite in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("api.db").display());
        Self::open(&url, Some(dir), None).await
    }

    /// Over database `name` of a fresh PostgreSQL cluster.
    pub async fn postgres(name: &str) -> Self {
        let cluster = PostgresCluster::start().await;
        let url = cluster.create_database(name).await;
        Self::open(&url, None, Some(cluster)).await
    }

    async fn open(
        url: &str,
        dir: Option<tempfile::TempDir>,
        cluster: Option<PostgresCluster>,
    ) -> Self {
        let store = Arc::new(AnyStore::connect(url).await.expect("open the store"));
        store.migrate().await.expect("migrate");
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Operator, Role::Installer, Role::Admin] {
            let token = auth::issue_token().expect("issue a token");
            store
                .create_token(role.as_str(), role, &token.hash)
                .await
                .expect("store a token");
            tokens.push((role, token.secret));
        }
        let metrics = Arc::new(Metrics::default());
        metrics.ingest.mqtt_connected.store(1, Ordering::Relaxed);
        let router = api::router(AppState::new(Arc::clone(&store), metrics));
        Self {
            router,
            store,
            tokens,
            _dir: dir,
            _cluster: cluster,
        }
    }

    /// The bearer token of `role`.
    pub fn token(&self, role: Role) -> &str {
        &self
            .tokens
            .iter()
            .find(|(r, _)| *r == role)
            .expect("a token for every role")
            .1
    }

    /// One request with `token`; the status and the JSON body (`Null` when
    /// the body is empty).
    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .expect("read the body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, json)
    }

    /// `method uri` as the operator; panics unless it succeeded, else the
    /// JSON body.
    pub async fn ok(&self, method: Method, uri: &str, body: Option<Value>) -> Value {
        let token = self.token(Role::Operator).to_owned();
        let (status, json) = self
            .request(method.clone(), uri, &token, body.as_ref())
            .await;
        assert!(status.is_success(), "{method} {uri}: {status} {json}");
        json
    }

    /// `method uri` as the operator, which must be answered 400 with an
    /// invalid-parameter problem; the name of its first invalid parameter.
    pub async fn invalid_param(&self, method: Method, uri: &str, body: Option<Value>) -> String {
        let token = self.token(Role::Operator).to_owned();
        let (status, json) = self.request(method, uri, &token, body.as_ref()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {json}");
        assert_eq!(json["type"], "urn:gridlink:problem:invalid-parameter");
        json["invalid_params"][0]["name"]
            .as_str()
            .expect("an invalid parameter's name")
            .to_owned()
    }
}

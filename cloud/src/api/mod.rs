//! The HTTP API (axum): health, Prometheus metrics, the `OpenAPI` document,
//! and telemetry under `/api/v1/`.
//!
//! Every route is one [`Operation`]: its method, path, required
//! [`Permission`], handler and `OpenAPI` description hang off that one enum,
//! so the router ([`router`]) and the document ([`openapi_document`]) cannot
//! drift apart. Errors are RFC 7807 problem documents ([`ApiError`]).
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use gridlink_cloud::api::{self, AppState};
//! use gridlink_cloud::metrics::Metrics;
//!
//! let state = AppState::new(Arc::new(store), Arc::new(Metrics::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, api::router(state)).await
//! # }
//! ```

mod alerts;
mod api_keys;
mod audit;
pub mod auth;
mod body;
pub mod config;
mod dashboard;
mod error;
mod event_status;
mod groups;
mod health;
mod ingest;
mod live;
mod me;
pub mod openadr;
mod openadr_clients;
mod openapi;
mod overview;
mod params;
mod projects;
mod registration;
mod request_id;
mod request_metrics;
mod series;
mod shadow;
mod tokens;
mod vens;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};

pub use self::ingest::decode_body as decode_ingest_body;
pub use api_keys::{
    API_KEY_HEADER, API_KEY_PREFIX, ApiKeySecret, authenticate_api_key, parse_api_key,
};
pub use audit::{DEFAULT_AUDIT_LIMIT, MAX_SUMMARY_BYTES};
pub use error::{ApiError, InvalidParam, PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX};
pub use live::KEEP_ALIVE as LIVE_KEEP_ALIVE;
pub use openadr::{MAX_LIMIT, MAX_SKIP, PAYLOAD_TYPES};
pub use openapi::openapi_document;
pub use request_id::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, RequestId};
pub use request_metrics::{RequestMetrics, UNMATCHED_ROUTE};
pub use tokens::{DEFAULT_TOKEN_LIFETIME_S, MAX_TOKEN_LIFETIME_S};

use self::auth::{Guard, Permission};
use crate::ingest::HttpIngest;
use crate::metrics::Metrics;
pub(crate) use crate::model::clock::now_ms;
use crate::store::Store;

/// Most points in one series or network answer unless configured
/// (`http.max_points`).
pub const DEFAULT_MAX_POINTS: u32 = 10_000;

/// What every handler shares.
pub struct AppState<S> {
    /// The database.
    pub store: Arc<S>,
    /// Ingest's counters (also the broker connection state for `/health`).
    pub metrics: Arc<Metrics>,
    /// HTTP request counters.
    pub requests: Arc<RequestMetrics>,
    /// Most points in one series or network answer (`http.max_points`).
    pub max_points: u32,
    /// The device shadow service's client, through which `PATCH
    /// /api/v1/vens/{id}/shadow` publishes; `None` where the broker runs
    /// the shadow (`shadow.enabled = false`), and that route answers 503.
    pub shadow: Option<crate::shadow::ShadowHandle>,
    /// Woken after an event write committed commands to the outbox, so the
    /// dispatcher (`crate::dispatch`) publishes them at once.
    pub dispatch_wake: Arc<tokio::sync::Notify>,
    /// What ingest (MQTT and HTTP) just committed: the live stream's and
    /// the alert rules' source.
    pub feed: crate::feed::Feed,
    /// HTTP ingest's limits and the API keys' rate limiter
    /// (`[http_ingest]`).
    pub http_ingest: Arc<HttpIngest>,
    /// The OpenADR VTN's notifier, settings and token key.
    pub vtn: Arc<VtnState>,
}

/// Where the OpenADR 3.1 VTN is served (`openadr::BASE_PATH`).
pub const OPENADR_BASE_PATH: &str = "/openadr3/3.1.0";

/// What the OpenADR VTN's routes share.
#[derive(Debug, Default)]
pub struct VtnState {
    /// Where notifications go (`None`: subscriptions are stored, nothing
    /// is sent; tests of other parts).
    pub notifier: Option<crate::notify::Notifier>,
    /// The callback URL policy and delivery settings (`[openadr.notify]`).
    pub notify_config: crate::notify::NotifyConfig,
    /// Whether notifications are also published to the broker.
    pub mqtt: bool,
    /// The broker's URI as VENs reach it (`GET /notifiers`).
    pub mqtt_uri: Option<String>,
    /// The broker's CA certificate (PEM), for `GET /notifiers`.
    pub mqtt_ca: Option<String>,
    /// The access-token signing key, loaded once.
    pub(crate) key: tokio::sync::OnceCell<Vec<u8>>,
}

impl VtnState {
    /// A VTN that checks subscriptions' callbacks under `notify_config` and
    /// sends no notification (tests of the routes).
    pub fn without_delivery(notify_config: crate::notify::NotifyConfig) -> Self {
        Self {
            notify_config,
            ..Self::default()
        }
    }
}

impl<S> AppState<S> {
    /// State over a store and ingest's metrics, with the default point limit.
    pub fn new(store: Arc<S>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            requests: Arc::new(RequestMetrics::default()),
            max_points: DEFAULT_MAX_POINTS,
            shadow: None,
            dispatch_wake: Arc::new(tokio::sync::Notify::new()),
            feed: crate::feed::Feed::new(),
            http_ingest: Arc::new(HttpIngest::default()),
            vtn: Arc::new(VtnState::default()),
        }
    }

    /// The same state with the VTN's notifier and settings.
    #[must_use]
    pub fn with_vtn(mut self, vtn: VtnState) -> Self {
        self.vtn = Arc::new(vtn);
        self
    }

    /// The same state with HTTP ingest's body limit and rate limit from
    /// `config` (and fresh rate-limit buckets).
    #[must_use]
    pub fn with_http_ingest(mut self, http_ingest: HttpIngest) -> Self {
        self.http_ingest = Arc::new(http_ingest);
        self
    }

    /// The same state with the shadow service's handle.
    #[must_use]
    pub fn with_shadow(mut self, handle: crate::shadow::ShadowHandle) -> Self {
        self.shadow = Some(handle);
        self
    }

    /// The same state with another point limit (at least 10, as
    /// `http.max_points`).
    #[must_use]
    pub fn with_max_points(mut self, max_points: u32) -> Self {
        self.max_points = max_points.max(10);
        self
    }
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            requests: Arc::clone(&self.requests),
            max_points: self.max_points,
            shadow: self.shadow.clone(),
            dispatch_wake: Arc::clone(&self.dispatch_wake),
            feed: self.feed.clone(),
            http_ingest: Arc::clone(&self.http_ingest),
            vtn: Arc::clone(&self.vtn),
        }
    }
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET /health`: database and broker state.
    Health,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /openapi.json`: this API's `OpenAPI` 3.1 document.
    OpenApi,
    /// `GET /api/v1/vens`: every VEN.
    ListVens,
    /// `GET /api/v1/vens/{id}`: one VEN.
    GetVen,
    /// `PUT /api/v1/vens/{id}`: register a VEN with its site, groups and loads.
    RegisterVen,
    /// `GET /api/v1/vens/{id}/loads`: a VEN's loads.
    ListLoads,
    /// `GET /api/v1/series`: one meter series over time.
    Series,
    /// `GET /api/v1/network`: network-wide import and export over time.
    Network,
    /// `POST /api/v1/tokens`: issue an API token.
    CreateToken,
    /// `GET /api/v1/vens/{id}/shadow`: a VEN's device shadow.
    GetShadow,
    /// `PATCH /api/v1/vens/{id}/shadow`: change a VEN's desired settings.
    PatchShadow,
    /// `GET /api/v1/vens/{id}/groups`: the groups a VEN is in.
    GetVenGroups,
    /// `PUT /api/v1/vens/{id}/groups`: set them (registers the VEN).
    SetVenGroups,
    /// `GET /openadr3/3.1.0/programs`: search programs.
    SearchPrograms,
    /// `POST /openadr3/3.1.0/programs`: create a program.
    CreateProgram,
    /// `GET /openadr3/3.1.0/programs/{programID}`: one program.
    GetProgram,
    /// `PUT /openadr3/3.1.0/programs/{programID}`: replace a program.
    UpdateProgram,
    /// `DELETE /openadr3/3.1.0/programs/{programID}`: delete a program.
    DeleteProgram,
    /// `GET /openadr3/3.1.0/events`: search events.
    SearchEvents,
    /// `POST /openadr3/3.1.0/events`: create and dispatch an event.
    CreateEvent,
    /// `GET /openadr3/3.1.0/events/{eventID}`: one event.
    GetEvent,
    /// `PUT /openadr3/3.1.0/events/{eventID}`: replace and redispatch an event.
    UpdateEvent,
    /// `DELETE /openadr3/3.1.0/events/{eventID}`: delete (cancel) an event.
    DeleteEvent,
    /// `GET /api/v1/events/{id}/status`: acknowledgements and measured response.
    EventStatus,
    /// `GET /api/v1/live`: committed readings and statuses as server-sent events.
    Live,
    /// `GET /api/v1/overview`: every VEN's state and power, and network totals.
    Overview,
    /// `GET /api/v1/me`: the caller's token name, role and permissions.
    Me,
    /// `GET /api/v1/projects`: every energy project.
    ListProjects,
    /// `POST /api/v1/projects`: create a project.
    CreateProject,
    /// `GET /api/v1/projects/{id}`: one project.
    GetProject,
    /// `PUT /api/v1/projects/{id}`: replace a project.
    UpdateProject,
    /// `GET /api/v1/projects/{id}/energy`: energy generated and consumed per period.
    ProjectEnergy,
    /// `GET /api/v1/projects/{id}/finances`: entries, DR revenue and totals per period.
    ProjectFinances,
    /// `POST /api/v1/projects/{id}/finances`: add an expense or revenue entry.
    AddFinanceEntry,
    /// `DELETE /api/v1/projects/{id}/finances/{entry_id}`: delete an entry.
    DeleteFinanceEntry,
    /// `POST /api/v1/api-keys`: create an API key for HTTP ingest.
    CreateApiKey,
    /// `GET /api/v1/api-keys`: list the API keys (without secrets).
    ListApiKeys,
    /// `DELETE /api/v1/api-keys/{id}`: revoke an API key.
    RevokeApiKey,
    /// `POST /api/v1/ingest`: readings sent with an API key.
    Ingest,
    /// `GET /api/v1/alerts`: alerts, newest first.
    ListAlerts,
    /// `GET /api/v1/alerts/{id}`: one alert.
    GetAlert,
    /// `POST /api/v1/alerts/{id}/ack`: acknowledge an alert.
    AckAlert,
    /// `GET /api/v1/tokens`: list the API tokens (without secrets).
    ListTokens,
    /// `DELETE /api/v1/tokens/{id}`: revoke an API token.
    RevokeToken,
    /// `GET /api/v1/audit`: the audit trail of writes.
    ListAudit,
    /// `GET /openadr3/3.1.0/reports`.
    SearchReports,
    /// `POST /openadr3/3.1.0/reports`.
    CreateReport,
    /// `GET /openadr3/3.1.0/reports/{reportID}`.
    GetReport,
    /// `PUT /openadr3/3.1.0/reports/{reportID}`.
    UpdateReport,
    /// `DELETE /openadr3/3.1.0/reports/{reportID}`.
    DeleteReport,
    /// `GET /openadr3/3.1.0/subscriptions`.
    SearchSubscriptions,
    /// `POST /openadr3/3.1.0/subscriptions`.
    CreateSubscription,
    /// `GET /openadr3/3.1.0/subscriptions/{subscriptionID}`.
    GetSubscription,
    /// `PUT /openadr3/3.1.0/subscriptions/{subscriptionID}`.
    UpdateSubscription,
    /// `DELETE /openadr3/3.1.0/subscriptions/{subscriptionID}`.
    DeleteSubscription,
    /// `GET /openadr3/3.1.0/vens`.
    SearchOadrVens,
    /// `POST /openadr3/3.1.0/vens`.
    CreateOadrVen,
    /// `GET /openadr3/3.1.0/vens/{venID}`.
    GetOadrVen,
    /// `PUT /openadr3/3.1.0/vens/{venID}`.
    UpdateOadrVen,
    /// `DELETE /openadr3/3.1.0/vens/{venID}`.
    DeleteOadrVen,
    /// `GET /openadr3/3.1.0/resources`.
    SearchResources,
    /// `POST /openadr3/3.1.0/resources`.
    CreateResource,
    /// `GET /openadr3/3.1.0/resources/{resourceID}`.
    GetResource,
    /// `PUT /openadr3/3.1.0/resources/{resourceID}`.
    UpdateResource,
    /// `DELETE /openadr3/3.1.0/resources/{resourceID}`.
    DeleteResource,
    /// `GET /openadr3/3.1.0/auth/server`.
    AuthServer,
    /// `POST /openadr3/3.1.0/auth/token`.
    AuthToken,
    /// `GET /openadr3/3.1.0/notifiers`.
    ListNotifiers,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/programs`.
    TopicsPrograms,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/programs/{programID}`.
    TopicsProgram,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/events`.
    TopicsEvents,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/programs/{programID}/events`.
    TopicsProgramEvents,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/reports`.
    TopicsReports,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/subscriptions`.
    TopicsSubscriptions,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/vens`.
    TopicsVens,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}`.
    TopicsVen,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/resources`.
    TopicsResources,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/events`.
    TopicsVenEvents,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/programs`.
    TopicsVenPrograms,
    /// `GET /openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/resources`.
    TopicsVenResources,
    /// `POST /api/v1/openadr/clients`.
    CreateVtnClient,
    /// `GET /api/v1/openadr/clients`.
    ListVtnClients,
    /// `DELETE /api/v1/openadr/clients/{id}`.
    RevokeVtnClient,
}

impl Operation {
    /// Every operation, in document order.
    pub const ALL: [Self; 84] = [
        Self::Health,
        Self::Metrics,
        Self::OpenApi,
        Self::ListVens,
        Self::GetVen,
        Self::RegisterVen,
        Self::ListLoads,
        Self::Series,
        Self::Network,
        Self::CreateToken,
        Self::GetShadow,
        Self::PatchShadow,
        Self::GetVenGroups,
        Self::SetVenGroups,
        Self::SearchPrograms,
        Self::CreateProgram,
        Self::GetProgram,
        Self::UpdateProgram,
        Self::DeleteProgram,
        Self::SearchEvents,
        Self::CreateEvent,
        Self::GetEvent,
        Self::UpdateEvent,
        Self::DeleteEvent,
        Self::EventStatus,
        Self::Live,
        Self::Overview,
        Self::Me,
        Self::ListProjects,
        Self::CreateProject,
        Self::GetProject,
        Self::UpdateProject,
        Self::ProjectEnergy,
        Self::ProjectFinances,
        Self::AddFinanceEntry,
        Self::DeleteFinanceEntry,
        Self::CreateApiKey,
        Self::ListApiKeys,
        Self::RevokeApiKey,
        Self::Ingest,
        Self::ListAlerts,
        Self::GetAlert,
        Self::AckAlert,
        Self::ListTokens,
        Self::RevokeToken,
        Self::ListAudit,
        Self::SearchReports,
        Self::CreateReport,
        Self::GetReport,
        Self::UpdateReport,
        Self::DeleteReport,
        Self::SearchSubscriptions,
        Self::CreateSubscription,
        Self::GetSubscription,
        Self::UpdateSubscription,
        Self::DeleteSubscription,
        Self::SearchOadrVens,
        Self::CreateOadrVen,
        Self::GetOadrVen,
        Self::UpdateOadrVen,
        Self::DeleteOadrVen,
        Self::SearchResources,
        Self::CreateResource,
        Self::GetResource,
        Self::UpdateResource,
        Self::DeleteResource,
        Self::AuthServer,
        Self::AuthToken,
        Self::ListNotifiers,
        Self::TopicsPrograms,
        Self::TopicsProgram,
        Self::TopicsEvents,
        Self::TopicsProgramEvents,
        Self::TopicsReports,
        Self::TopicsSubscriptions,
        Self::TopicsVens,
        Self::TopicsVen,
        Self::TopicsResources,
        Self::TopicsVenEvents,
        Self::TopicsVenPrograms,
        Self::TopicsVenResources,
        Self::CreateVtnClient,
        Self::ListVtnClients,
        Self::RevokeVtnClient,
    ];

    /// The path template, as axum and `OpenAPI` write it.
    pub const fn path(self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Metrics => "/metrics",
            Self::OpenApi => "/openapi.json",
            Self::ListVens => "/api/v1/vens",
            Self::GetVen | Self::RegisterVen => "/api/v1/vens/{id}",
            Self::ListLoads => "/api/v1/vens/{id}/loads",
            Self::Series => "/api/v1/series",
            Self::Network => "/api/v1/network",
            Self::CreateToken | Self::ListTokens => "/api/v1/tokens",
            Self::RevokeToken => "/api/v1/tokens/{id}",
            Self::ListAudit => "/api/v1/audit",
            Self::GetShadow | Self::PatchShadow => "/api/v1/vens/{id}/shadow",
            Self::GetVenGroups | Self::SetVenGroups => "/api/v1/vens/{id}/groups",
            Self::SearchPrograms | Self::CreateProgram => "/openadr3/3.1.0/programs",
            Self::GetProgram | Self::UpdateProgram | Self::DeleteProgram => {
                "/openadr3/3.1.0/programs/{programID}"
            }
            Self::SearchEvents | Self::CreateEvent => "/openadr3/3.1.0/events",
            Self::GetEvent | Self::UpdateEvent | Self::DeleteEvent => {
                "/openadr3/3.1.0/events/{eventID}"
            }
            Self::EventStatus => "/api/v1/events/{id}/status",
            Self::Live => "/api/v1/live",
            Self::Overview => "/api/v1/overview",
            Self::Me => "/api/v1/me",
            Self::ListProjects | Self::CreateProject => "/api/v1/projects",
            Self::GetProject | Self::UpdateProject => "/api/v1/projects/{id}",
            Self::ProjectEnergy => "/api/v1/projects/{id}/energy",
            Self::ProjectFinances | Self::AddFinanceEntry => "/api/v1/projects/{id}/finances",
            Self::DeleteFinanceEntry => "/api/v1/projects/{id}/finances/{entry_id}",
            Self::CreateApiKey | Self::ListApiKeys => "/api/v1/api-keys",
            Self::RevokeApiKey => "/api/v1/api-keys/{id}",
            Self::Ingest => "/api/v1/ingest",
            Self::ListAlerts => "/api/v1/alerts",
            Self::GetAlert => "/api/v1/alerts/{id}",
            Self::SearchReports | Self::CreateReport => "/openadr3/3.1.0/reports",
            Self::GetReport | Self::UpdateReport | Self::DeleteReport => {
                "/openadr3/3.1.0/reports/{reportID}"
            }
            Self::SearchSubscriptions | Self::CreateSubscription => "/openadr3/3.1.0/subscriptions",
            Self::GetSubscription | Self::UpdateSubscription | Self::DeleteSubscription => {
                "/openadr3/3.1.0/subscriptions/{subscriptionID}"
            }
            Self::SearchOadrVens | Self::CreateOadrVen => "/openadr3/3.1.0/vens",
            Self::GetOadrVen | Self::UpdateOadrVen | Self::DeleteOadrVen => {
                "/openadr3/3.1.0/vens/{venID}"
            }
            Self::SearchResources | Self::CreateResource => "/openadr3/3.1.0/resources",
            Self::GetResource | Self::UpdateResource | Self::DeleteResource => {
                "/openadr3/3.1.0/resources/{resourceID}"
            }
            Self::AuthServer => "/openadr3/3.1.0/auth/server",
            Self::AuthToken => "/openadr3/3.1.0/auth/token",
            Self::ListNotifiers => "/openadr3/3.1.0/notifiers",
            Self::TopicsPrograms => "/openadr3/3.1.0/notifiers/mqtt/topics/programs",
            Self::TopicsProgram => "/openadr3/3.1.0/notifiers/mqtt/topics/programs/{programID}",
            Self::TopicsEvents => "/openadr3/3.1.0/notifiers/mqtt/topics/events",
            Self::TopicsProgramEvents => {
                "/openadr3/3.1.0/notifiers/mqtt/topics/programs/{programID}/events"
            }
            Self::TopicsReports => "/openadr3/3.1.0/notifiers/mqtt/topics/reports",
            Self::TopicsSubscriptions => "/openadr3/3.1.0/notifiers/mqtt/topics/subscriptions",
            Self::TopicsVens => "/openadr3/3.1.0/notifiers/mqtt/topics/vens",
            Self::TopicsVen => "/openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}",
            Self::TopicsResources => "/openadr3/3.1.0/notifiers/mqtt/topics/resources",
            Self::TopicsVenEvents => "/openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/events",
            Self::TopicsVenPrograms => {
                "/openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/programs"
            }
            Self::TopicsVenResources => {
                "/openadr3/3.1.0/notifiers/mqtt/topics/vens/{venID}/resources"
            }
            Self::CreateVtnClient | Self::ListVtnClients => "/api/v1/openadr/clients",
            Self::RevokeVtnClient => "/api/v1/openadr/clients/{id}",
            Self::AckAlert => "/api/v1/alerts/{id}/ack",
        }
    }

    /// The HTTP method.
    pub fn method(self) -> Method {
        match self {
            Self::CreateToken
            | Self::CreateProgram
            | Self::CreateEvent
            | Self::CreateProject
            | Self::AddFinanceEntry
            | Self::CreateApiKey
            | Self::Ingest
            | Self::CreateReport
            | Self::CreateSubscription
            | Self::CreateOadrVen
            | Self::CreateResource
            | Self::AuthToken
            | Self::CreateVtnClient
            | Self::AckAlert => Method::POST,
            Self::RegisterVen
            | Self::SetVenGroups
            | Self::UpdateProgram
            | Self::UpdateEvent
            | Self::UpdateReport
            | Self::UpdateSubscription
            | Self::UpdateOadrVen
            | Self::UpdateResource
            | Self::UpdateProject => Method::PUT,
            Self::DeleteProgram
            | Self::DeleteEvent
            | Self::DeleteFinanceEntry
            | Self::RevokeApiKey
            | Self::DeleteReport
            | Self::DeleteSubscription
            | Self::DeleteOadrVen
            | Self::DeleteResource
            | Self::RevokeVtnClient
            | Self::RevokeToken => Method::DELETE,
            Self::PatchShadow => Method::PATCH,
            _ => Method::GET,
        }
    }

    /// What the caller's token must allow; `None` for public routes.
    pub const fn permission(self) -> Option<Permission> {
        match self {
            Self::ListVens
            | Self::GetVen
            | Self::ListLoads
            | Self::Series
            | Self::Network
            | Self::GetShadow
            | Self::GetVenGroups
            | Self::EventStatus
            | Self::Live
            | Self::Overview
            | Self::ListProjects
            | Self::GetProject
            | Self::ProjectEnergy
            | Self::ProjectFinances
            | Self::ListAlerts
            | Self::GetAlert => Some(Permission::ReadTelemetry),
            Self::CreateProject
            | Self::UpdateProject
            | Self::AddFinanceEntry
            | Self::DeleteFinanceEntry => Some(Permission::ManageProjects),
            Self::AckAlert => Some(Permission::AcknowledgeAlerts),
            Self::RegisterVen | Self::SetVenGroups => Some(Permission::RegisterVens),
            Self::PatchShadow => Some(Permission::ConfigureVens),
            Self::CreateToken
            | Self::ListTokens
            | Self::RevokeToken
            | Self::CreateVtnClient
            | Self::ListVtnClients
            | Self::RevokeVtnClient
            | Self::CreateApiKey
            | Self::ListApiKeys
            | Self::RevokeApiKey => Some(Permission::ManageTokens),
            Self::ListAudit => Some(Permission::ReadAuditLog),
            // Ingest authenticates with an API key (`x-api-key`), not a token;
            // `Me` authenticates in its handler: any valid token may ask.
            // The VTN's routes authenticate OAuth clients and API tokens
            // themselves (`openadr::caller`).
            _ => None,
        }
    }

    /// The `OpenAPI` `operationId`.
    pub const fn id(self) -> &'static str {
        match self {
            Self::Health => "getHealth",
            Self::Metrics => "getMetrics",
            Self::OpenApi => "getOpenApi",
            Self::ListVens => "listVens",
            Self::GetVen => "getVen",
            Self::RegisterVen => "registerVen",
            Self::ListLoads => "listVenLoads",
            Self::Series => "getSeries",
            Self::Network => "getNetwork",
            Self::CreateToken => "createToken",
            Self::GetShadow => "getVenShadow",
            Self::PatchShadow => "patchVenShadow",
            Self::GetVenGroups => "getVenGroups",
            Self::SetVenGroups => "setVenGroups",
            Self::SearchPrograms => "searchAllPrograms",
            Self::CreateProgram => "createProgram",
            Self::GetProgram => "searchProgramByProgramId",
            Self::UpdateProgram => "updateProgram",
            Self::DeleteProgram => "deleteProgram",
            Self::SearchEvents => "searchAllEvents",
            Self::CreateEvent => "createEvent",
            Self::GetEvent => "searchEventsByID",
            Self::UpdateEvent => "updateEvent",
            Self::DeleteEvent => "deleteEvent",
            Self::EventStatus => "getEventStatus",
            Self::Live => "getLiveStream",
            Self::Overview => "getOverview",
            Self::Me => "getMe",
            Self::ListProjects => "listProjects",
            Self::CreateProject => "createProject",
            Self::GetProject => "getProject",
            Self::UpdateProject => "updateProject",
            Self::ProjectEnergy => "getProjectEnergy",
            Self::ProjectFinances => "getProjectFinances",
            Self::AddFinanceEntry => "createProjectFinanceEntry",
            Self::DeleteFinanceEntry => "deleteProjectFinanceEntry",
            Self::CreateApiKey => "createApiKey",
            Self::ListApiKeys => "listApiKeys",
            Self::RevokeApiKey => "revokeApiKey",
            Self::Ingest => "ingestReadings",
            Self::ListAlerts => "listAlerts",
            Self::GetAlert => "getAlert",
            Self::AckAlert => "acknowledgeAlert",
            Self::ListTokens => "listTokens",
            Self::RevokeToken => "revokeToken",
            Self::SearchReports => "searchAllReports",
            Self::CreateReport => "createReport",
            Self::GetReport => "searchReportsByReportID",
            Self::UpdateReport => "updateReport",
            Self::DeleteReport => "deleteReport",
            Self::SearchSubscriptions => "searchSubscriptions",
            Self::CreateSubscription => "createSubscription",
            Self::GetSubscription => "searchSubscriptionByID",
            Self::UpdateSubscription => "updateSubscription",
            Self::DeleteSubscription => "deleteSubscription",
            Self::SearchOadrVens => "searchVens",
            Self::CreateOadrVen => "createVen",
            Self::GetOadrVen => "searchVenByID",
            Self::UpdateOadrVen => "updateVen",
            Self::DeleteOadrVen => "deleteVen",
            Self::SearchResources => "searchVenResources",
            Self::CreateResource => "createResource",
            Self::GetResource => "searchVenResourceByID",
            Self::UpdateResource => "updateVenResource",
            Self::DeleteResource => "deleteVenResource",
            Self::AuthServer => "getAuthServerInfo",
            Self::AuthToken => "fetchToken",
            Self::ListNotifiers => "listAllNotifiers",
            Self::TopicsPrograms => "listAllMqttNotifierTopicsPrograms",
            Self::TopicsProgram => "listAllMqttNotifierTopicsProgram",
            Self::TopicsEvents => "listAllMqttNotifierTopicsEvents",
            Self::TopicsProgramEvents => "listAllMqttNotifierTopicsProgramEvents",
            Self::TopicsReports => "listAllMqttNotifierTopicsReports",
            Self::TopicsSubscriptions => "listAllMqttNotifierTopicsSubscriptions",
            Self::TopicsVens => "listAllMqttNotifierTopicsVens",
            Self::TopicsVen => "listAllMqttNotifierTopicsVen",
            Self::TopicsResources => "listAllMqttNotifierTopicsResources",
            Self::TopicsVenEvents => "listAllMqttNotifierTopicsVenEvents",
            Self::TopicsVenPrograms => "listAllMqttNotifierTopicsVenPrograms",
            Self::TopicsVenResources => "listAllMqttNotifierTopicsVenResources",
            Self::CreateVtnClient => "createOpenAdrClient",
            Self::ListVtnClients => "listOpenAdrClients",
            Self::RevokeVtnClient => "revokeOpenAdrClient",
            Self::ListAudit => "listAuditEntries",
        }
    }

    /// Whether the route needs a bearer token: those with a permission,
    /// and `Me` (any valid token).
    pub const fn authenticated(self) -> bool {
        self.permission().is_some() || matches!(self, Self::Me) || self.vtn_client()
    }

    /// Whether the route is one of the OpenADR 3.1 VTN's.
    pub const fn is_openadr(self) -> bool {
        matches!(
            self,
            Self::SearchPrograms
                | Self::CreateProgram
                | Self::GetProgram
                | Self::UpdateProgram
                | Self::DeleteProgram
                | Self::SearchEvents
                | Self::CreateEvent
                | Self::GetEvent
                | Self::UpdateEvent
                | Self::DeleteEvent
                | Self::SearchReports
                | Self::CreateReport
                | Self::GetReport
                | Self::UpdateReport
                | Self::DeleteReport
                | Self::SearchSubscriptions
                | Self::CreateSubscription
                | Self::GetSubscription
                | Self::UpdateSubscription
                | Self::DeleteSubscription
                | Self::SearchOadrVens
                | Self::CreateOadrVen
                | Self::GetOadrVen
                | Self::UpdateOadrVen
                | Self::DeleteOadrVen
                | Self::SearchResources
                | Self::CreateResource
                | Self::GetResource
                | Self::UpdateResource
                | Self::DeleteResource
                | Self::AuthServer
                | Self::AuthToken
                | Self::ListNotifiers
                | Self::TopicsPrograms
                | Self::TopicsProgram
                | Self::TopicsEvents
                | Self::TopicsProgramEvents
                | Self::TopicsReports
                | Self::TopicsSubscriptions
                | Self::TopicsVens
                | Self::TopicsVen
                | Self::TopicsResources
                | Self::TopicsVenEvents
                | Self::TopicsVenPrograms
                | Self::TopicsVenResources
        )
    }

    /// Whether the route is the VTN's and needs an OAuth client or token
    /// (all but `/auth/server` and `/auth/token`).
    pub const fn vtn_client(self) -> bool {
        self.is_openadr() && !matches!(self, Self::AuthServer | Self::AuthToken)
    }

    fn handler<S: Store + 'static>(self) -> MethodRouter<AppState<S>> {
        let filter = MethodFilter::try_from(self.method()).unwrap_or(MethodFilter::GET);
        match self {
            Self::Health => on(filter, health::health::<S>),
            Self::Metrics => on(filter, health::metrics::<S>),
            Self::OpenApi => on(filter, health::openapi),
            Self::ListVens => on(filter, vens::list::<S>),
            Self::GetVen => on(filter, vens::one::<S>),
            Self::RegisterVen => on(filter, registration::put::<S>),
            Self::ListLoads => on(filter, vens::loads::<S>),
            Self::Series => on(filter, series::series::<S>),
            Self::Network => on(filter, series::network::<S>),
            Self::CreateToken => on(filter, tokens::create::<S>),
            Self::GetShadow => on(filter, shadow::get::<S>),
            Self::PatchShadow => on(filter, shadow::patch::<S>),
            Self::GetVenGroups => on(filter, groups::get::<S>),
            Self::SetVenGroups => on(filter, groups::put::<S>),
            Self::SearchPrograms => on(filter, openadr::programs::list::<S>),
            Self::CreateProgram => on(filter, openadr::programs::create::<S>),
            Self::GetProgram => on(filter, openadr::programs::get::<S>),
            Self::UpdateProgram => on(filter, openadr::programs::update::<S>),
            Self::DeleteProgram => on(filter, openadr::programs::delete::<S>),
            Self::SearchEvents => on(filter, openadr::events::list::<S>),
            Self::CreateEvent => on(filter, openadr::events::create::<S>),
            Self::GetEvent => on(filter, openadr::events::get::<S>),
            Self::UpdateEvent => on(filter, openadr::events::update::<S>),
            Self::DeleteEvent => on(filter, openadr::events::delete::<S>),
            Self::EventStatus => on(filter, event_status::status::<S>),
            Self::Live => on(filter, live::live::<S>),
            Self::Overview => on(filter, overview::overview::<S>),
            Self::Me => on(filter, me::me::<S>),
            Self::ListProjects => on(filter, projects::list::<S>),
            Self::CreateProject => on(filter, projects::create::<S>),
            Self::GetProject => on(filter, projects::get::<S>),
            Self::UpdateProject => on(filter, projects::update::<S>),
            Self::ProjectEnergy => on(filter, projects::energy::<S>),
            Self::ProjectFinances => on(filter, projects::finances::<S>),
            Self::AddFinanceEntry => on(filter, projects::add_entry::<S>),
            Self::DeleteFinanceEntry => on(filter, projects::delete_entry::<S>),
            Self::CreateApiKey => on(filter, api_keys::create::<S>),
            Self::ListApiKeys => on(filter, api_keys::list::<S>),
            Self::RevokeApiKey => on(filter, api_keys::revoke::<S>),
            Self::Ingest => on(filter, self::ingest::ingest::<S>),
            Self::ListAlerts => on(filter, alerts::list::<S>),
            Self::GetAlert => on(filter, alerts::one::<S>),
            Self::AckAlert => on(filter, alerts::acknowledge::<S>),
            Self::ListTokens => on(filter, tokens::list::<S>),
            Self::RevokeToken => on(filter, tokens::revoke::<S>),
            Self::SearchReports => on(filter, openadr::reports::list::<S>),
            Self::CreateReport => on(filter, openadr::reports::create::<S>),
            Self::GetReport => on(filter, openadr::reports::get::<S>),
            Self::UpdateReport => on(filter, openadr::reports::update::<S>),
            Self::DeleteReport => on(filter, openadr::reports::delete::<S>),
            Self::SearchSubscriptions => on(filter, openadr::subscriptions::list::<S>),
            Self::CreateSubscription => on(filter, openadr::subscriptions::create::<S>),
            Self::GetSubscription => on(filter, openadr::subscriptions::get::<S>),
            Self::UpdateSubscription => on(filter, openadr::subscriptions::update::<S>),
            Self::DeleteSubscription => on(filter, openadr::subscriptions::delete::<S>),
            Self::SearchOadrVens => on(filter, openadr::vens::list::<S>),
            Self::CreateOadrVen => on(filter, openadr::vens::create::<S>),
            Self::GetOadrVen => on(filter, openadr::vens::get::<S>),
            Self::UpdateOadrVen => on(filter, openadr::vens::update::<S>),
            Self::DeleteOadrVen => on(filter, openadr::vens::delete::<S>),
            Self::SearchResources => on(filter, openadr::resources::list::<S>),
            Self::CreateResource => on(filter, openadr::resources::create::<S>),
            Self::GetResource => on(filter, openadr::resources::get::<S>),
            Self::UpdateResource => on(filter, openadr::resources::update::<S>),
            Self::DeleteResource => on(filter, openadr::resources::delete::<S>),
            Self::AuthServer => on(filter, openadr::oauth::server),
            Self::AuthToken => on(filter, openadr::oauth::token::<S>),
            Self::ListNotifiers => on(filter, openadr::notifiers::list::<S>),
            Self::TopicsPrograms => on(filter, openadr::notifiers::programs_topics),
            Self::TopicsProgram => on(filter, openadr::notifiers::program_topics::<S>),
            Self::TopicsEvents => on(filter, openadr::notifiers::events_topics),
            Self::TopicsProgramEvents => on(filter, openadr::notifiers::program_events_topics::<S>),
            Self::TopicsReports => on(filter, openadr::notifiers::reports_topics),
            Self::TopicsSubscriptions => on(filter, openadr::notifiers::subscriptions_topics),
            Self::TopicsVens => on(filter, openadr::notifiers::vens_topics),
            Self::TopicsVen => on(filter, openadr::notifiers::ven_topics::<S>),
            Self::TopicsResources => on(filter, openadr::notifiers::resources_topics),
            Self::TopicsVenEvents => on(filter, openadr::notifiers::ven_events_topics::<S>),
            Self::TopicsVenPrograms => on(filter, openadr::notifiers::ven_programs_topics::<S>),
            Self::TopicsVenResources => on(filter, openadr::notifiers::ven_resources_topics::<S>),
            Self::CreateVtnClient => on(filter, openadr_clients::create::<S>),
            Self::ListVtnClients => on(filter, openadr_clients::list::<S>),
            Self::RevokeVtnClient => on(filter, openadr_clients::revoke::<S>),
            Self::ListAudit => on(filter, audit::list::<S>),
        }
    }
}

/// The whole API over `state`: every [`Operation`], a 404 problem for
/// unknown paths, a 405 problem (with `Allow`) for a known path with the
/// wrong method, request counters for `/metrics`, a request id on every
/// answer (`x-request-id`), and the audit trail of every write made with a
/// token (`audit`).
pub fn router<S: Store + 'static>(state: AppState<S>) -> Router {
    let mut router = Router::new();
    for operation in Operation::ALL {
        let mut route = operation.handler::<S>();
        if let Some(permission) = operation.permission() {
            let guard = Guard {
                state: state.clone(),
                permission,
            };
            route = route.route_layer(middleware::from_fn_with_state(guard, auth::require::<S>));
        }
        if operation.vtn_client() {
            route = route.route_layer(middleware::from_fn_with_state(
                state.clone(),
                openadr::caller::require::<S>,
            ));
        }
        if audit::action(operation).is_some() {
            // Outside the guard, which leaves the caller in the answer.
            let audited = audit::AuditRoute {
                state: state.clone(),
                operation,
            };
            route = route.route_layer(middleware::from_fn_with_state(audited, audit::record::<S>));
        }
        if operation.is_openadr() {
            // The spec answers problems as application/json: outermost, so
            // that the caller check's 401 and 403 are too.
            route = route.layer(middleware::map_response(openadr::problem_as_json));
        }
        if operation == Operation::Ingest {
            let limit = state.http_ingest.max_body_bytes;
            route = route.layer(axum::extract::DefaultBodyLimit::max(limit));
        }
        if let Some(alias) = operation
            .path()
            .strip_prefix(openadr::BASE_PATH)
            .filter(|_| operation.is_openadr())
        {
            // Also at the root, for clients that assume a VTN there.
            router = router.route(alias, route.clone());
        }
        router = router.route(operation.path(), route);
    }
    router
        .merge(crate::api::dashboard::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.requests),
            request_metrics::track,
        ))
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Longest path repeated in a 404 answer.
const MAX_ECHOED_PATH: usize = 256;

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().chars().take(MAX_ECHOED_PATH).collect())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

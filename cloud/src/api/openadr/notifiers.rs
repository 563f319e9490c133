//! Notifications: what a change of an object sends, and to whom
//! ([`changed`]), and the routes that describe the bindings (`/notifiers`,
//! `/notifiers/mqtt/topics/...`).
//!
//! After a write commits, [`changed`] finds the subscriptions that name the
//! object's type and the operation (and its program, and one of its
//! targets, where the subscription gives them) and whose owner may read the
//! object ([`super::privacy`]: a VEN's subscription hears of programs and
//! events it was granted a target of, or that have none, and of its own
//! VENs, resources, reports and subscriptions). Each gets the spec's
//! `notification` (`objectType`, `operation`, `object`, `targets`) at its
//! callback, through the durable webhook outbox of [`crate::notify`].
//!
//! The same notifications go to the broker (the MQTT binding of 3.1): on
//! the BL topics (`openadr3/programs/{op}`, `openadr3/events/{op}`, ...)
//! and, for each VEN that may read the object, on its own topics
//! (`openadr3/vens/{venName}/events/{op}`, ...), which the broker's ACL lets
//! only that VEN read; those carry no targets (target hiding).
//!
//! A notification is enqueued after its change committed: a process that
//! dies between the two loses that notification (the change itself is
//! kept; a client that polls still sees it).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::privacy::TargetScope;
use super::{VtnCaller, path_id};
use crate::api::{ApiError, AppState};
use crate::notify::topics::{self, Op};
use crate::notify::{MqttNotification, WebhookDelivery};
use crate::store::Store;
use crate::store::dr::{EventRecord, ProgramRecord};
use crate::store::vtn::{ObjectFilter, ObjectKind, VtnObject};

/// One `objectOperations` entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ObjectOperation {
    /// The object types.
    pub objects: Vec<String>,
    /// The operations.
    pub operations: Vec<String>,
    /// Where to POST notifications.
    #[serde(rename = "callbackUrl")]
    pub callback_url: String,
    /// What to send as `Authorization: Bearer`.
    #[serde(rename = "bearerToken", default)]
    pub bearer_token: Option<String>,
}

/// The creator's role, kept in the subscription's `parent` column (the
/// notifier applies a VEN's privacy to what a VEN subscribed to).
pub(crate) const BL_OWNER: &str = "BL";
/// See [`BL_OWNER`].
pub(crate) const VEN_OWNER: &str = "VEN";

/// One committed change of an object.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// `PROGRAM`, `EVENT`, ...
    pub kind: &'static str,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// The object as BL sees it.
    pub object: Map<String, Value>,
    /// A program's or event's targets.
    pub targets: Vec<String>,
    /// Its program (events, reports, subscriptions, programs themselves).
    pub program_id: Option<String>,
    /// The clientID of a VEN-owned object.
    pub owner: Option<String>,
    /// A VEN's name, or a resource's VEN id.
    pub ven: Option<String>,
}

/// The object of a change as BL sees it (its renderer answers an object).
fn into_map(object: Value) -> Map<String, Value> {
    match object {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Change {
    /// A program's change.
    pub(crate) fn program(record: &ProgramRecord, object: Value, operation: &'static str) -> Self {
        let object = into_map(object);
        Self {
            kind: "PROGRAM",
            operation,
            object,
            targets: record.targets.clone(),
            program_id: Some(record.id.to_string()),
            owner: None,
            ven: None,
        }
    }

    /// An event's change.
    pub(crate) fn event(record: &EventRecord, object: Value, operation: &'static str) -> Self {
        let object = into_map(object);
        Self {
            kind: "EVENT",
            operation,
            object,
            targets: record.targets.clone(),
            program_id: Some(record.program_id.to_string()),
            owner: None,
            ven: None,
        }
    }

    /// A change of a VEN, resource, report or subscription.
    pub(crate) fn owned(record: &VtnObject, object: Value, operation: &'static str) -> Self {
        let object = into_map(object);
        Self {
            kind: record.kind.as_str(),
            operation,
            object,
            targets: Vec::new(),
            program_id: record.program_id.clone(),
            owner: record.client_id.clone(),
            ven: match record.kind {
                ObjectKind::Ven => record.name.clone(),
                ObjectKind::Resource => record.parent.clone(),
                ObjectKind::Report | ObjectKind::Subscription => None,
            },
        }
    }

    /// Whether programs and events are what changed (targeted objects).
    fn targeted(&self) -> bool {
        matches!(self.kind, "PROGRAM" | "EVENT")
    }

    /// The notification of this change with the object as `scope` shows it.
    fn notification(&self, scope: &TargetScope) -> Value {
        let mut object = self.object.clone();
        let shown = scope.shown(&self.targets);
        if self.targeted() {
            if shown.is_empty() {
                object.remove("targets");
            } else {
                object.insert("targets".into(), json!(shown));
            }
        }
        let mut out = Map::new();
        out.insert("objectType".into(), Value::String(self.kind.into()));
        out.insert("operation".into(), Value::String(self.operation.into()));
        out.insert("object".into(), Value::Object(object));
        if self.targeted() && !shown.is_empty() {
            out.insert("targets".into(), json!(shown));
        }
        Value::Object(out)
    }

    fn op(&self) -> Op {
        match self.operation {
            "CREATE" => Op::Create,
            "DELETE" => Op::Delete,
            _ => Op::Update,
        }
    }
}

/// Whether a subscription's terms select the change.
fn selects(subscription: &VtnObject, change: &Change) -> Vec<ObjectOperation> {
    if subscription
        .program_id
        .as_ref()
        .is_some_and(|p| change.program_id.as_ref() != Some(p))
    {
        return Vec::new();
    }
    if !subscription.targets.is_empty()
        && change.targeted()
        && !change
            .targets
            .iter()
            .any(|t| subscription.targets.contains(t))
    {
        return Vec::new();
    }
    let Some(operations) = subscription.body["objectOperations"].as_array() else {
        return Vec::new();
    };
    operations
        .iter()
        .filter_map(|op| serde_json::from_value::<ObjectOperation>(op.clone()).ok())
        .filter(|op| {
            op.objects.iter().any(|o| o == change.kind)
                && op.operations.iter().any(|o| o == change.operation)
        })
        .collect()
}

/// Sends the notifications of a committed change. Failures are logged and
/// counted, never answered to the writer: the change is committed.
pub(crate) async fn changed<S: Store>(state: &AppState<S>, change: Change) {
    if let Err(error) = send(state, &change).await {
        tracing::warn!(kind = change.kind, operation = change.operation, %error,
            "notifications of a change were not enqueued");
    }
}

async fn send<S: Store>(state: &AppState<S>, change: &Change) -> Result<(), ApiError> {
    let Some(notifier) = &state.vtn.notifier else {
        return Ok(());
    };
    let subscriptions = state
        .store
        .objects(
            ObjectKind::Subscription,
            &ObjectFilter {
                limit: u32::MAX,
                ..ObjectFilter::default()
            },
        )
        .await?;
    let mut scopes: HashMap<String, TargetScope> = HashMap::new();
    let mut webhooks = Vec::new();
    // Every gridlink VEN has its `ven` object before the grants are read
    // (once per change, not once per subscriber: at 1,000 VEN subscribers
    // that was most of the fan-out's time).
    if change.targeted() {
        state.store.sync_agents(crate::api::now_ms()).await?;
    }
    for subscription in &subscriptions {
        let operations = selects(subscription, change);
        if operations.is_empty() {
            continue;
        }
        let owner = subscription.client_id.clone().unwrap_or_default();
        let scope = if subscription.parent.as_deref() == Some(VEN_OWNER) {
            if change.targeted() {
                if !scopes.contains_key(&owner) {
                    let granted = state.store.grants(&owner).await?;
                    scopes.insert(owner.clone(), TargetScope::Granted(granted));
                }
                let scope = scopes[&owner].clone();
                if !scope.admits(&change.targets) {
                    continue;
                }
                scope
            } else if change.owner.as_deref() == Some(owner.as_str()) {
                TargetScope::All
            } else {
                continue;
            }
        } else {
            TargetScope::All
        };
        let body = change.notification(&scope);
        let mut urls: Vec<&str> = Vec::new();
        for op in &operations {
            if urls.contains(&op.callback_url.as_str()) {
                continue;
            }
            urls.push(&op.callback_url);
            webhooks.push(WebhookDelivery {
                subscription_id: subscription.id.to_string(),
                url: op.callback_url.clone(),
                bearer_token: op.bearer_token.clone(),
                body: body.clone(),
            });
        }
    }
    let mqtt = mqtt_notifications(state, change).await?;
    notifier.send(webhooks, mqtt).await?;
    Ok(())
}

/// The MQTT notifications of a change: the BL topics, and each VEN's own.
async fn mqtt_notifications<S: Store>(
    state: &AppState<S>,
    change: &Change,
) -> Result<Vec<MqttNotification>, ApiError> {
    if !state.vtn.mqtt {
        return Ok(Vec::new());
    }
    let op = change.op();
    let bl = change.notification(&TargetScope::All);
    let mut out = Vec::new();
    let mut push = |topic: Result<String, topics::TopicLevelError>, body: &Value| {
        if let Ok(topic) = topic {
            out.push(MqttNotification {
                topic,
                body: body.clone(),
            });
        }
    };
    match change.kind {
        "PROGRAM" => {
            push(Ok(topics::programs(op)), &bl);
            if let Some(id) = &change.program_id {
                push(topics::program(id, op), &bl);
            }
        }
        "EVENT" => {
            push(Ok(topics::events(op)), &bl);
            if let Some(id) = &change.program_id {
                push(topics::program_events(id, op), &bl);
            }
        }
        "REPORT" => push(Ok(topics::reports(op)), &bl),
        "SUBSCRIPTION" => push(Ok(topics::subscriptions(op)), &bl),
        "VEN" => push(Ok(topics::vens(op)), &bl),
        _ => push(Ok(topics::resources(op)), &bl),
    }
    match change.kind {
        "PROGRAM" | "EVENT" => {
            let hidden = change.notification(&TargetScope::Named(Vec::new()));
            state.store.sync_agents(crate::api::now_ms()).await?;
            for name in state.store.ven_names_for(&change.targets).await? {
                let topic = if change.kind == "EVENT" {
                    topics::ven_events(&name, op)
                } else {
                    topics::ven_programs(&name, op)
                };
                push(topic, &hidden);
            }
        }
        "VEN" => {
            if let Some(name) = &change.ven {
                push(topics::ven(name, op), &bl);
            }
        }
        "RESOURCE" => {
            if let Some(ven) = change
                .ven
                .as_deref()
                .and_then(|v| gridlink_protocol::ObjectId::new(v).ok())
                && let Some(ven) = state.store.object(ObjectKind::Ven, &ven).await?
                && let Some(name) = &ven.name
            {
                push(topics::ven_resources(name, op), &bl);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// `GET /notifiers`: webhooks always; MQTT when the cloud has a broker.
pub(crate) async fn list<S: Store>(State(state): State<AppState<S>>) -> Json<Value> {
    let mut out = Map::new();
    out.insert("WEBHOOK".into(), Value::Bool(true));
    if state.vtn.mqtt
        && let Some(uri) = &state.vtn.mqtt_uri
    {
        out.insert(
            "MQTT".into(),
            json!({
                "URIS": [uri],
                "serialization": "JSON",
                "authentication": {
                    "method": "CERTIFICATE",
                    "caCert": state.vtn.mqtt_ca.clone().unwrap_or_default(),
                    // Each VEN connects with the certificate and key made for it
                    // (`gridlink-provision`); the VTN never hands out keys.
                    "clientCert": "",
                    "clientKey": ""
                }
            }),
        );
    }
    Json(Value::Object(out))
}

/// The `topics` answer for `topic(op)`.
fn topics_json(
    topic: impl Fn(Op) -> Result<String, topics::TopicLevelError>,
    with_create: bool,
) -> Result<Json<Value>, ApiError> {
    let mut out = Map::new();
    for (key, op) in Op::KEYED {
        if op == Op::Create && !with_create {
            continue;
        }
        let name = topic(op).map_err(|e| ApiError::invalid_param("path", e.to_string()))?;
        out.insert(key.into(), Value::String(name));
    }
    Ok(Json(json!({ "topics": out })))
}

const BL_ONLY: &str = "these topics carry every object of the kind: only BL clients may \
     subscribe to them (a VEN has its own, /notifiers/mqtt/topics/vens/{venID}/...)";

fn bl_only(caller: &VtnCaller) -> Result<(), ApiError> {
    if caller.is_ven() {
        Err(ApiError::VtnForbidden(BL_ONLY))
    } else {
        Ok(())
    }
}

/// Which BL-wide topic family a route lists.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Family {
    /// `/notifiers/mqtt/topics/programs`.
    Programs,
    /// `/notifiers/mqtt/topics/events`.
    Events,
    /// `/notifiers/mqtt/topics/reports`.
    Reports,
    /// `/notifiers/mqtt/topics/subscriptions`.
    Subscriptions,
    /// `/notifiers/mqtt/topics/vens`.
    Vens,
    /// `/notifiers/mqtt/topics/resources`.
    Resources,
}

/// `GET /notifiers/mqtt/topics/{programs|events|reports|subscriptions|vens|resources}`.
pub(crate) fn family(family: Family, caller: &VtnCaller) -> Result<Json<Value>, ApiError> {
    bl_only(caller)?;
    let topic: fn(Op) -> String = match family {
        Family::Programs => topics::programs,
        Family::Events => topics::events,
        Family::Reports => topics::reports,
        Family::Subscriptions => topics::subscriptions,
        Family::Vens => topics::vens,
        Family::Resources => topics::resources,
    };
    topics_json(|op| Ok(topic(op)), true)
}

macro_rules! family_route {
    ($name:ident, $family:ident) => {
        /// A BL-wide topic family.
        pub(crate) async fn $name(
            Extension(caller): Extension<VtnCaller>,
        ) -> Result<Json<Value>, ApiError> {
            family(Family::$family, &caller)
        }
    };
}

family_route!(programs_topics, Programs);
family_route!(events_topics, Events);
family_route!(reports_topics, Reports);
family_route!(subscriptions_topics, Subscriptions);
family_route!(vens_topics, Vens);
family_route!(resources_topics, Resources);

/// `GET /notifiers/mqtt/topics/programs/{programID}` (BL).
pub(crate) async fn program_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    bl_only(&caller)?;
    if state.store.program(&id).await?.is_none() {
        return Err(ApiError::UnknownObject("program", id));
    }
    topics_json(|op| topics::program(id.as_str(), op), false)
}

/// `GET /notifiers/mqtt/topics/programs/{programID}/events` (BL).
pub(crate) async fn program_events_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    bl_only(&caller)?;
    if state.store.program(&id).await?.is_none() {
        return Err(ApiError::UnknownObject("program", id));
    }
    topics_json(|op| topics::program_events(id.as_str(), op), true)
}

/// The VEN of a per-VEN topics route, if the caller may read it.
async fn ven_name<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let id = path_id(path, "venID")?;
    let ven = super::privacy::owned(state, caller, ObjectKind::Ven, id.clone()).await?;
    ven.name.ok_or(ApiError::UnknownObject("ven", id))
}

/// `GET /notifiers/mqtt/topics/vens/{venID}`.
pub(crate) async fn ven_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = ven_name(&state, &caller, path).await?;
    topics_json(|op| topics::ven(&name, op), false)
}

/// `GET /notifiers/mqtt/topics/vens/{venID}/events`.
pub(crate) async fn ven_events_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = ven_name(&state, &caller, path).await?;
    topics_json(|op| topics::ven_events(&name, op), true)
}

/// `GET /notifiers/mqtt/topics/vens/{venID}/programs`.
pub(crate) async fn ven_programs_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = ven_name(&state, &caller, path).await?;
    topics_json(|op| topics::ven_programs(&name, op), true)
}

/// `GET /notifiers/mqtt/topics/vens/{venID}/resources`.
pub(crate) async fn ven_resources_topics<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = ven_name(&state, &caller, path).await?;
    topics_json(|op| topics::ven_resources(&name, op), true)
}

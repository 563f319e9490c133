//! The AWS IoT classic device shadow: the document, its update semantics and
//! the messages on `$aws/things/{venId}/shadow/...`, plus the typed settings
//! a gridlink agent reports and accepts through it.
//!
//! AWS IoT Core runs the shadow service in production. On brokers without
//! one (Mosquitto, the demo broker) the cloud answers the same topics with
//! [`ShadowDocument`], so the agent's code is the same in both places.
//!
//! Semantics kept from AWS:
//! * an update merges `state.desired` / `state.reported` into the document
//!   key by key; a `null` value deletes the key, `"desired": null` clears all
//!   of desired;
//! * an update that names a `version` is refused with 409 unless it is the
//!   document's current version; every accepted update adds one;
//! * `delta` holds the desired keys whose value differs from reported
//!   (objects compared key by key, everything else as a whole); it is
//!   published on `update/delta` whenever it is not empty after an update;
//! * error responses carry `code`, `message`, `timestamp` and the request's
//!   `clientToken`.
//!
//! Left out: per-field `metadata` timestamps and the `update/documents`
//! topic; gridlink does not read them.
//!
//! ```
//! use gridlink_protocol::shadow::{ShadowDocument, ShadowUpdateRequest};
//! let mut doc = ShadowDocument::default();
//! let desired: ShadowUpdateRequest =
//!     serde_json::from_str(r#"{"state":{"desired":{"poll_interval_ms":5000}}}"#).unwrap();
//! doc.apply(&desired, 1_700_000_000).unwrap();
//! assert_eq!(doc.delta().unwrap()["poll_interval_ms"], 5000);
//! let reported: ShadowUpdateRequest =
//!     serde_json::from_str(r#"{"state":{"reported":{"poll_interval_ms":5000}}}"#).unwrap();
//! let accepted = doc.apply(&reported, 1_700_000_001).unwrap();
//! assert_eq!(accepted.version, 2);
//! assert!(doc.delta().is_none());
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest `desired` or `reported` section, as JSON bytes (AWS: 8 KB).
pub const MAX_SECTION_BYTES: usize = 8 * 1024;

/// Deepest nesting of a section (AWS: 6 levels under `desired`/`reported`).
pub const MAX_DEPTH: usize = 6;

/// `state` of an update request: either section may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowUpdateState {
    /// Settings asked for. `Some(Value::Null)` clears every desired key.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub desired: Option<Value>,
    /// State the device reports.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub reported: Option<Value>,
}

/// Keeps an explicit `null` as `Some(Value::Null)` (absent stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A message on `shadow/update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowUpdateRequest {
    /// What to merge. Required.
    pub state: Option<ShadowUpdateState>,
    /// Echoed in the response so the sender can match it.
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// If set, the update applies only to this document version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl ShadowUpdateRequest {
    /// A request reporting `reported`.
    pub fn report(reported: Value, client_token: Option<String>) -> Self {
        Self {
            state: Some(ShadowUpdateState {
                desired: None,
                reported: Some(reported),
            }),
            client_token,
            version: None,
        }
    }

    /// A request desiring `desired`.
    pub fn desire(desired: Value, client_token: Option<String>) -> Self {
        Self {
            state: Some(ShadowUpdateState {
                desired: Some(desired),
                reported: None,
            }),
            client_token,
            version: None,
        }
    }
}

/// A message on `shadow/get`: only a token to echo (the body may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowGetRequest {
    /// Echoed in the response.
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A message on `shadow/update/accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowUpdateAccepted {
    /// The state as the request gave it.
    pub state: ShadowUpdateState,
    /// The document's version after the update.
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The request's token.
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A message on `shadow/update/delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDelta {
    /// The desired keys that differ from reported.
    pub state: Map<String, Value>,
    /// The document's version.
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
}

/// `state` of a whole document, as `shadow/get/accepted` and the cloud's
/// API give it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowState {
    /// Desired settings (absent if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Map<String, Value>>,
    /// Reported state (absent if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Map<String, Value>>,
    /// Desired keys that differ from reported (absent if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Map<String, Value>>,
}

/// A message on `shadow/get/accepted`: the whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowGetAccepted {
    /// Desired, reported and delta.
    pub state: ShadowState,
    /// The document's version.
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The request's token.
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A message on `shadow/update/rejected` or `shadow/get/rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("shadow request rejected ({code}): {message}")]
pub struct ShadowRejected {
    /// HTTP-like status: 400 bad request, 404 no shadow, 409 version
    /// conflict, 413 too large.
    pub code: u16,
    /// What was wrong.
    pub message: String,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The request's token.
    #[serde(rename = "clientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// A thing's shadow document as the shadow service keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowDocument {
    /// Desired settings.
    pub desired: Map<String, Value>,
    /// Reported state.
    pub reported: Map<String, Value>,
    /// 0 for a shadow never updated; one more per accepted update.
    pub version: u64,
    /// Seconds since the Unix epoch of the last accepted update.
    pub timestamp: i64,
}

impl ShadowDocument {
    /// Applies an update at `now` (Unix seconds), or says why not. The
    /// document is unchanged when it is rejected.
    pub fn apply(
        &mut self,
        request: &ShadowUpdateRequest,
        now: i64,
    ) -> Result<ShadowUpdateAccepted, ShadowRejected> {
        let reject = |code, message: String| ShadowRejected {
            code,
            message,
            timestamp: now,
            client_token: request.client_token.clone(),
        };
        if let Some(token) = &request.client_token
            && token.len() > 64
        {
            return Err(reject(400, "clientToken is longer than 64 bytes".into()));
        }
        let Some(state) = &request.state else {
            return Err(reject(400, "Missing required node: state".into()));
        };
        if state.desired.is_none() && state.reported.is_none() {
            return Err(reject(400, "state must contain desired or reported".into()));
        }
        if let Some(version) = request.version
            && version != self.version
        {
            return Err(reject(
                409,
                format!(
                    "Version conflict: the request is for version {version}, the shadow is at {}",
                    self.version
                ),
            ));
        }
        let mut next = self.clone();
        for (name, section, target) in [
            ("desired", &state.desired, &mut next.desired),
            ("reported", &state.reported, &mut next.reported),
        ] {
            match section {
                None => {}
                Some(Value::Null) => target.clear(),
                Some(Value::Object(patch)) => {
                    if depth(patch) > MAX_DEPTH {
                        return Err(reject(
                            400,
                            format!("state.{name} is nested deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    merge(target, patch);
                    let bytes = serde_json::to_vec(target).map_or(usize::MAX, |v| v.len());
                    if bytes > MAX_SECTION_BYTES {
                        return Err(reject(
                            413,
                            format!(
                                "state.{name} would be {bytes} bytes; at most {MAX_SECTION_BYTES} are allowed"
                            ),
                        ));
                    }
                }
                Some(_) => {
                    return Err(reject(
                        400,
                        format!("state.{name} must be an object or null"),
                    ));
                }
            }
        }
        next.version = self.version + 1;
        next.timestamp = now;
        *self = next;
        Ok(ShadowUpdateAccepted {
            state: state.clone(),
            version: self.version,
            timestamp: now,
            client_token: request.client_token.clone(),
        })
    }

    /// Desired keys whose value differs from reported; `None` if there are
    /// none.
    pub fn delta(&self) -> Option<Map<String, Value>> {
        let delta = diff(&self.desired, &self.reported);
        (!delta.is_empty()).then_some(delta)
    }

    /// The `update/delta` message, if there is a delta.
    pub fn delta_message(&self) -> Option<ShadowDelta> {
        self.delta().map(|state| ShadowDelta {
            state,
            version: self.version,
            timestamp: self.timestamp,
        })
    }

    /// The `get/accepted` message.
    pub fn get_accepted(&self, client_token: Option<String>) -> ShadowGetAccepted {
        ShadowGetAccepted {
            state: ShadowState {
                desired: (!self.desired.is_empty()).then(|| self.desired.clone()),
                reported: (!self.reported.is_empty()).then(|| self.reported.clone()),
                delta: self.delta(),
            },
            version: self.version,
            timestamp: self.timestamp,
            client_token,
        }
    }
}

/// Merges `patch` into `target` as a shadow update does: `null` deletes,
/// objects merge key by key (an object left empty is removed), anything
/// else replaces.
pub fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge(existing, inner);
                    if existing.is_empty() {
                        target.remove(key);
                    }
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

fn diff(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        match (want, reported.get(key)) {
            (Value::Object(w), Some(Value::Object(r))) => {
                let inner = diff(w, r);
                if !inner.is_empty() {
                    out.insert(key.clone(), Value::Object(inner));
                }
            }
            (w, Some(r)) if w == r => {}
            (w, _) => {
                out.insert(key.clone(), w.clone());
            }
        }
    }
    out
}

fn depth(map: &Map<String, Value>) -> usize {
    1 + map
        .values()
        .map(|v| match v {
            Value::Object(m) => depth(m),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// What a gridlink agent reports in `state.reported`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReported {
    /// The agent's version (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// SHA-256 (hex) of the configuration file the agent runs from.
    pub config_digest: String,
    /// The poll interval in force, in milliseconds.
    pub poll_interval_ms: u64,
    /// The longest shed in force, in seconds (the desired `max_shed_s`
    /// echoed, or the hard limit).
    #[serde(default)]
    pub max_shed_s: u64,
    /// Per load: whether it takes part in DR, its state.
    pub loads: BTreeMap<String, LoadReported>,
    /// Buffer health.
    pub buffer: BufferHealth,
    /// DR participation.
    pub dr: DrReported,
    /// The local hard limits (what a desired value may not exceed).
    pub limits: HardLimits,
    /// The last desired settings the agent refused, and why; `None` when
    /// the last delta was applied.
    pub rejected: Option<RejectedDesired>,
}

/// One load in [`AgentReported`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReported {
    /// Takes part in DR events (false: opted out by settings or config).
    pub dr_participation: bool,
    /// Switched on now.
    pub on: bool,
    /// May be switched by DR at all (false for a `never_switch` load).
    pub controllable: bool,
}

/// The agent's buffer health in [`AgentReported`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferHealth {
    /// Batches waiting for the broker.
    pub backlog_batches: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Readings dropped because the buffer was full, since start.
    pub dropped_readings: u64,
}

/// DR participation in [`AgentReported`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrReported {
    /// Events active now.
    pub active_events: Vec<String>,
    /// Events scheduled, not yet started.
    pub scheduled_events: Vec<String>,
    /// Loads shed now.
    pub shed_loads: Vec<String>,
}

/// The configured hard limits, which no command or desired setting can
/// override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardLimits {
    /// Longest time any load stays shed, in seconds.
    pub max_shed_s: u64,
    /// Shortest poll interval allowed, in milliseconds.
    pub min_poll_interval_ms: u64,
    /// Loads DR never switches.
    pub never_switch: Vec<String>,
}

/// Desired settings the agent refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedDesired {
    /// Shadow version of the refused delta.
    pub version: u64,
    /// What was refused and why.
    pub reason: String,
}

/// What the agent accepts in `state.desired`. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDesired {
    /// Poll interval for every device, in milliseconds; at least the
    /// configured `min_poll_interval_ms`.
    pub poll_interval_ms: Option<u64>,
    /// Per load: take part in DR or opt out.
    #[serde(default)]
    pub loads: BTreeMap<String, LoadDesired>,
    /// Longest shed in seconds, at most the configured hard limit.
    pub max_shed_s: Option<u64>,
}

/// Desired settings of one load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadDesired {
    /// Take part in DR events (false opts the load out).
    pub dr_participation: Option<bool>,
}

impl AgentDesired {
    /// Checks the settings against the agent's hard limits and its loads;
    /// the error says which value is refused and why.
    pub fn check(&self, limits: &HardLimits, loads: &[&str]) -> Result<(), String> {
        if let Some(ms) = self.poll_interval_ms
            && ms < limits.min_poll_interval_ms
        {
            return Err(format!(
                "poll_interval_ms {ms} is below the local minimum of {}",
                limits.min_poll_interval_ms
            ));
        }
        if let Some(s) = self.max_shed_s
            && s > limits.max_shed_s
        {
            return Err(format!(
                "max_shed_s {s} is above the local hard limit of {}",
                limits.max_shed_s
            ));
        }
        for (name, load) in &self.loads {
            if !loads.contains(&name.as_str()) {
                return Err(format!("loads.{name}: no such load"));
            }
            if load.dr_participation == Some(true) && limits.never_switch.contains(name) {
                return Err(format!(
                    "loads.{name}: configured never_switch; DR participation cannot be turned on"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(v: Value) -> ShadowUpdateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn merge_delete_and_delta() {
        let mut doc = ShadowDocument::default();
        doc.apply(
            &request(json!({"state": {"desired": {"a": 1, "loads": {"l1": {"p": false}}}}})),
            10,
        )
        .unwrap();
        doc.apply(
            &request(json!({"state": {"reported": {"a": 1, "loads": {"l1": {"p": true}, "l2": {"p": true}}}}})),
            11,
        )
        .unwrap();
        assert_eq!(doc.version, 2);
        assert_eq!(
            Value::Object(doc.delta().unwrap()),
            json!({"loads": {"l1": {"p": false}}})
        );
        doc.apply(
            &request(json!({"state": {"desired": {"loads": {"l1": null}}}})),
            12,
        )
        .unwrap();
        assert_eq!(doc.delta(), None);
        assert_eq!(Value::Object(doc.desired.clone()), json!({"a": 1}));
        doc.apply(&request(json!({"state": {"desired": null}})), 13)
            .unwrap();
        assert!(doc.desired.is_empty());
        let got = serde_json::to_value(doc.get_accepted(Some("t".into()))).unwrap();
        assert_eq!(got["version"], 4);
        assert_eq!(got["clientToken"], "t");
        assert!(got["state"].get("desired").is_none());
        assert_eq!(got["state"]["reported"]["a"], 1);
    }

    #[test]
    fn rejections_leave_the_document_alone() {
        let mut doc = ShadowDocument::default();
        doc.apply(&request(json!({"state": {"reported": {"a": 1}}})), 1)
            .unwrap();
        let before = doc.clone();
        let cases = [
            (
                json!({"clientToken": "x"}),
                400,
                "Missing required node: state",
            ),
            (json!({"state": {}}), 400, "desired or reported"),
            (
                json!({"state": {"desired": 3}}),
                400,
                "must be an object or null",
            ),
            (
                json!({"state": {"reported": {"b": 2}}, "version": 7}),
                409,
                "Version conflict",
            ),
            (
                json!({"state": {"reported": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}),
                400,
                "deeper",
            ),
            (
                json!({"state": {"reported": {"big": "x".repeat(MAX_SECTION_BYTES)}}}),
                413,
                "bytes",
            ),
        ];
        for (body, code, message) in cases {
            let err = doc.apply(&request(body.clone()), 2).unwrap_err();
            assert_eq!(err.code, code, "{body}");
            assert!(err.message.contains(message), "{body}: {}", err.message);
            assert_eq!(doc, before);
        }
        let err = doc
            .apply(
                &request(json!({"state": {"reported": {}}, "clientToken": "k"})),
                2,
            )
            .map(|_| ())
            .and_then(|()| {
                doc.apply(
                    &request(json!({"state": {"reported": {}}, "version": 0, "clientToken": "k"})),
                    3,
                )
                .map(|_| ())
            })
            .unwrap_err();
        assert_eq!(err.client_token.as_deref(), Some("k"));
    }

    #[test]
    fn agent_desired_respects_hard_limits() {
        let limits = HardLimits {
            max_shed_s: 3600,
            min_poll_interval_ms: 1000,
            never_switch: vec!["fridge".into()],
        };
        let loads = ["hvac", "fridge"];
        let ok: AgentDesired = serde_json::from_value(
            json!({"poll_interval_ms": 5000, "max_shed_s": 600, "loads": {"hvac": {"dr_participation": false}}}),
        )
        .unwrap();
        ok.check(&limits, &loads).unwrap();
        for (body, needle) in [
            (json!({"poll_interval_ms": 10}), "below the local minimum"),
            (json!({"max_shed_s": 7200}), "above the local hard limit"),
            (
                json!({"loads": {"pump": {"dr_participation": true}}}),
                "no such load",
            ),
            (
                json!({"loads": {"fridge": {"dr_participation": true}}}),
                "never_switch",
            ),
        ] {
            let d: AgentDesired = serde_json::from_value(body).unwrap();
            assert!(d.check(&limits, &loads).unwrap_err().contains(needle));
        }
        assert!(serde_json::from_value::<AgentDesired>(json!({"colour": "red"})).is_err());
    }
}

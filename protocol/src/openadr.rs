//! The OpenADR 3.1 event model as the agent receives it: events with their
//! interval periods, intervals and `valuesMap` payloads.
//!
//! JSON field names follow the OpenADR 3.1 schema (`programID`,
//! `intervalPeriod`, `randomizeStart`, ...), so an event from the cloud's
//! OpenADR API maps field by field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ValidationError;
use crate::names::{check_name, check_text};
use crate::time::{IsoDuration, Timestamp};

/// Longest OpenADR object id, target or payload type.
pub const MAX_OBJECT_ID_LEN: usize = 128;

/// An OpenADR object id (`objectID`): 1-128 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Checks `id` against the `objectID` pattern.
    pub fn new(id: impl Into<String>) -> Result<Self, ValidationError> {
        let id = id.into();
        check_name("object id", &id, MAX_OBJECT_ID_LEN, &['_', '-'])
            .map_err(|reason| ValidationError::field("id", reason))?;
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ObjectId> for String {
    fn from(value: ObjectId) -> Self {
        value.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The nature of an interval's values (`valuesMap.type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// `SIMPLE`: level 0 (normal) to 3 (emergency shed), one integer.
    Simple,
    /// `PRICE`: energy price, one number (currency in the descriptor).
    Price,
    /// `IMPORT_CAPACITY_LIMIT`: maximum import, one number (kW unless the
    /// descriptor's units say otherwise).
    ImportCapacityLimit,
    /// `EXPORT_CAPACITY_LIMIT`: maximum export, one number.
    ExportCapacityLimit,
    /// `DISPATCH_SETPOINT`: absolute consumption setpoint, one number.
    DispatchSetpoint,
    /// Any other type of the spec's enumerations or a private string; carried
    /// through, and opted out of by agents that do not know it.
    Other(String),
}

impl PayloadType {
    /// The OpenADR string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Simple => "SIMPLE",
            Self::Price => "PRICE",
            Self::ImportCapacityLimit => "IMPORT_CAPACITY_LIMIT",
            Self::ExportCapacityLimit => "EXPORT_CAPACITY_LIMIT",
            Self::DispatchSetpoint => "DISPATCH_SETPOINT",
            Self::Other(s) => s,
        }
    }
}

impl FromStr for PayloadType {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "SIMPLE" => Self::Simple,
            "PRICE" => Self::Price,
            "IMPORT_CAPACITY_LIMIT" => Self::ImportCapacityLimit,
            "EXPORT_CAPACITY_LIMIT" => Self::ExportCapacityLimit,
            "DISPATCH_SETPOINT" => Self::DispatchSetpoint,
            other => {
                check_text("payload type", other, MAX_OBJECT_ID_LEN)
                    .and_then(|()| {
                        if other.is_empty() {
                            Err("payload type is empty".into())
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(|reason| ValidationError::field("type", reason))?;
                Self::Other(other.to_string())
            }
        })
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PayloadType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PayloadType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One value of a `valuesMap`: OpenADR allows numbers, integers, strings,
/// booleans and points.
///
/// JSON writes the bare value (`1`, `0.17`, `"x"`, `true`, `{"x":..,"y":..}`);
/// postcard writes a tagged enum.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadValue {
    /// An integer, e.g. a SIMPLE level.
    Integer(i64),
    /// A number, e.g. a price or a limit in kW.
    Number(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// A point on a 2-D grid (`point` schema).
    Point {
        /// x value.
        x: f64,
        /// y value.
        y: f64,
    },
}

impl PayloadValue {
    /// The value as a number, if it is an integer or a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::Integer(i) => Some(i as f64),
            Self::Number(n) => Some(n),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum TaggedValue {
    Integer(i64),
    Number(f64),
    Text(String),
    Bool(bool),
    Point { x: f64, y: f64 },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BareValue {
    Integer(i64),
    Number(f64),
    Text(String),
    Bool(bool),
    Point { x: f64, y: f64 },
}

impl Serialize for PayloadValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            match self {
                Self::Integer(v) => BareValue::Integer(*v),
                Self::Number(v) => BareValue::Number(*v),
                Self::Text(v) => BareValue::Text(v.clone()),
                Self::Bool(v) => BareValue::Bool(*v),
                Self::Point { x, y } => BareValue::Point { x: *x, y: *y },
            }
            .serialize(serializer)
        } else {
            match self {
                Self::Integer(v) => TaggedValue::Integer(*v),
                Self::Number(v) => TaggedValue::Number(*v),
                Self::Text(v) => TaggedValue::Text(v.clone()),
                Self::Bool(v) => TaggedValue::Bool(*v),
                Self::Point { x, y } => TaggedValue::Point { x: *x, y: *y },
            }
            .serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PayloadValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(if deserializer.is_human_readable() {
            match BareValue::deserialize(deserializer)? {
                BareValue::Integer(v) => Self::Integer(v),
                BareValue::Number(v) => Self::Number(v),
                BareValue::Text(v) => Self::Text(v),
                BareValue::Bool(v) => Self::Bool(v),
                BareValue::Point { x, y } => Self::Point { x, y },
            }
        } else {
            match TaggedValue::deserialize(deserializer)? {
                TaggedValue::Integer(v) => Self::Integer(v),
                TaggedValue::Number(v) => Self::Number(v),
                TaggedValue::Text(v) => Self::Text(v),
                TaggedValue::Bool(v) => Self::Bool(v),
                TaggedValue::Point { x, y } => Self::Point { x, y },
            }
        })
    }
}

/// `valuesMap`: values of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValuesMap {
    /// What the values mean.
    #[serde(rename = "type")]
    pub payload_type: PayloadType,
    /// The values; one for every type this crate knows.
    pub values: Vec<PayloadValue>,
}

/// `eventPayloadDescriptor`: context for the values of one payload type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayloadDescriptor {
    /// The payload type described.
    #[serde(rename = "payloadType")]
    pub payload_type: PayloadType,
    /// Units of the values, e.g. `KW`.
    pub units: Option<String>,
    /// Currency of a price, e.g. `USD`.
    pub currency: Option<String>,
}

/// `intervalPeriod`: start, duration and randomization of intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalPeriod {
    /// Start; `0001-01-01` means "now".
    pub start: Option<Timestamp>,
    /// Duration; `P9999Y` means no end.
    pub duration: Option<IsoDuration>,
    /// The absolute range of the offset a VEN applies to the start, to
    /// spread the load of many VENs. gridlink's agent delays the start by a
    /// uniform random offset in `[0, randomizeStart]`, never earlier than
    /// the operator's start, drawn once per event and kept across restarts.
    #[serde(rename = "randomizeStart")]
    pub randomize_start: Option<IsoDuration>,
}

/// `interval`: a time window and its payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Client-assigned number of the interval (not a sequence).
    pub id: i32,
    /// Overrides the event's period for this interval.
    #[serde(rename = "intervalPeriod")]
    pub interval_period: Option<IntervalPeriod>,
    /// What applies during the interval.
    pub payloads: Vec<ValuesMap>,
}

/// An OpenADR 3.1 `event` as dispatched to a VEN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's id at the VTN.
    pub id: ObjectId,
    /// The program it belongs to.
    #[serde(rename = "programID")]
    pub program_id: ObjectId,
    /// Free text for people.
    #[serde(rename = "eventName")]
    pub event_name: Option<String>,
    /// Lower is more important; resolves overlapping events.
    pub priority: Option<u32>,
    /// Target strings (VEN names, groups, resources).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub targets: Vec<String>,
    /// Context for the payload types used in the intervals.
    #[serde(
        rename = "payloadDescriptors",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub payload_descriptors: Vec<EventPayloadDescriptor>,
    /// Default start and duration of the intervals.
    #[serde(rename = "intervalPeriod")]
    pub interval_period: Option<IntervalPeriod>,
    /// The intervals, in order.
    pub intervals: Vec<Interval>,
}

/// OpenADR allows `null` for absent lists; read it as empty.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    if deserializer.is_human_readable() {
        Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
    } else {
        Vec::deserialize(deserializer)
    }
}

const MAX_EVENT_NAME: usize = 256;
const MAX_INTERVALS: usize = 1024;

impl Event {
    /// Checks the event against the OpenADR rules this system relies on:
    /// every interval has a start and duration (its own or the event's), the
    /// known payload types have exactly one value of the right kind and
    /// range, numbers are finite, and strings are within their limits.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_content()?;
        self.validate_timing()
    }

    /// The checks of [`Event::validate`] that any OpenADR event must pass
    /// (what a VTN refuses): names and targets within their limits, and the
    /// values of the known payload types of the right kind and range. An
    /// event that passes may still not be executable (no intervals, no start
    /// or duration), which [`Event::validate`] tells.
    pub fn validate_content(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.event_name {
            check_text("eventName", name, MAX_EVENT_NAME)
                .map_err(|r| ValidationError::field("event.eventName", r))?;
        }
        for (i, target) in self.targets.iter().enumerate() {
            let field = || format!("event.targets[{i}]");
            check_text("target", target, MAX_OBJECT_ID_LEN)
                .map_err(|r| ValidationError::field(field(), r))?;
            if target.is_empty() {
                return Err(ValidationError::field(field(), "target is empty"));
            }
        }
        for (i, d) in self.payload_descriptors.iter().enumerate() {
            for (name, value) in [("units", &d.units), ("currency", &d.currency)] {
                if let Some(v) = value {
                    check_text(name, v, MAX_OBJECT_ID_LEN).map_err(|r| {
                        ValidationError::field(format!("event.payloadDescriptors[{i}].{name}"), r)
                    })?;
                }
            }
        }
        if self.intervals.len() > MAX_INTERVALS {
            return Err(ValidationError::field(
                "event.intervals",
                format!(
                    "{} intervals; at most {MAX_INTERVALS} are allowed",
                    self.intervals.len()
                ),
            ));
        }
        for (i, interval) in self.intervals.iter().enumerate() {
            for (j, map) in interval.payloads.iter().enumerate() {
                validate_values(map).map_err(|r| {
                    ValidationError::field(format!("event.intervals[{i}].payloads[{j}]"), r)
                })?;
            }
        }
        Ok(())
    }

    /// Whether the event can be executed: at least one interval, and each
    /// with a start and a duration (its own or the event's).
    pub fn validate_timing(&self) -> Result<(), ValidationError> {
        if self.intervals.is_empty() {
            return Err(ValidationError::field(
                "event.intervals",
                "an event needs at least one interval",
            ));
        }
        for (i, interval) in self.intervals.iter().enumerate() {
            let has = |f: fn(&IntervalPeriod) -> bool| {
                interval.interval_period.as_ref().is_some_and(f)
                    || self.interval_period.as_ref().is_some_and(f)
            };
            if !has(|p| p.start.is_some()) {
                return Err(ValidationError::field(
                    format!("event.intervals[{i}].intervalPeriod.start"),
                    "no start: set it on the interval or the event",
                ));
            }
            if !has(|p| p.duration.is_some()) {
                return Err(ValidationError::field(
                    format!("event.intervals[{i}].intervalPeriod.duration"),
                    "no duration: set it on the interval or the event",
                ));
            }
        }
        Ok(())
    }
}

fn validate_values(map: &ValuesMap) -> Result<(), String> {
    for v in &map.values {
        match v {
            PayloadValue::Number(n) if !n.is_finite() => {
                return Err(format!("{n} is not a finite number"));
            }
            PayloadValue::Point { x, y } if !x.is_finite() || !y.is_finite() => {
                return Err("point coordinates must be finite".into());
            }
            PayloadValue::Text(t) => check_text("value", t, 1024)?,
            _ => {}
        }
    }
    let one = || match map.values.as_slice() {
        [v] => Ok(v),
        other => Err(format!(
            "{} needs exactly one value, got {}",
            map.payload_type,
            other.len()
        )),
    };
    match map.payload_type {
        PayloadType::Simple => match one()? {
            PayloadValue::Integer(0..=3) => Ok(()),
            other => Err(format!(
                "SIMPLE level must be an integer 0 to 3, got {other:?}"
            )),
        },
        PayloadType::Price
        | PayloadType::ImportCapacityLimit
        | PayloadType::ExportCapacityLimit
        | PayloadType::DispatchSetpoint => match one()?.as_f64() {
            Some(n) if map.payload_type != PayloadType::Price && n < 0.0 => Err(format!(
                "{} must not be negative, got {n}",
                map.payload_type
            )),
            Some(_) => Ok(()),
            None => Err(format!("{} value must be a number", map.payload_type)),
        },
        PayloadType::Other(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json() -> &'static str {
        r#"{
            "id": "evt-1", "programID": "prog_a", "eventName": "peak shave",
            "priority": 1, "targets": ["ven-1", "group-north"],
            "payloadDescriptors": [{"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW", "currency": null}],
            "intervalPeriod": {"start": "2026-11-21T17:00:00Z", "duration": "PT1H", "randomizeStart": "PT5M"},
            "intervals": [
                {"id": 0, "intervalPeriod": null, "payloads": [{"type": "SIMPLE", "values": [2]}]},
                {"id": 1, "intervalPeriod": {"start": "2026-11-21T18:00:00Z", "duration": "PT30M", "randomizeStart": null},
                 "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [12.5]}, {"type": "X_PRIVATE", "values": ["a", true, {"x": 1.0, "y": 2.0}]}]}
            ]
        }"#
    }

    #[test]
    fn reads_openadr_json() {
        let e: Event = serde_json::from_str(event_json()).unwrap();
        e.validate().unwrap();
        assert_eq!(e.program_id.as_str(), "prog_a");
        assert_eq!(
            e.intervals[0].payloads[0].values,
            vec![PayloadValue::Integer(2)]
        );
        assert_eq!(
            e.intervals[1].payloads[0].payload_type,
            PayloadType::ImportCapacityLimit
        );
        assert_eq!(
            e.intervals[1].payloads[1].values[2],
            PayloadValue::Point { x: 1.0, y: 2.0 }
        );
        assert_eq!(
            e.interval_period.unwrap().randomize_start,
            Some(IsoDuration::from_secs(300))
        );
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let pc: Event = postcard::from_bytes(&postcard::to_allocvec(&e).unwrap()).unwrap();
        assert_eq!(pc, e);
    }

    #[test]
    fn null_lists_read_as_empty() {
        let e: Event = serde_json::from_str(
            r#"{"id":"e","programID":"p","eventName":null,"priority":null,"targets":null,"payloadDescriptors":null,
                "intervalPeriod":{"start":"0001-01-01","duration":"P9999Y","randomizeStart":null},
                "intervals":[{"id":0,"intervalPeriod":null,"payloads":[]}]}"#,
        )
        .unwrap();
        assert!(e.targets.is_empty() && e.payload_descriptors.is_empty());
        e.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let base: Event = serde_json::from_str(event_json()).unwrap();
        let check = |mutate: &dyn Fn(&mut Event), expect: &str| {
            let mut e = base.clone();
            mutate(&mut e);
            let err = e.validate().unwrap_err().to_string();
            assert!(err.contains(expect), "{err} lacks {expect}");
        };
        check(
            &|e| e.intervals[0].payloads[0].values = vec![PayloadValue::Integer(4)],
            "intervals[0].payloads[0]: SIMPLE level",
        );
        check(
            &|e| e.intervals[0].payloads[0].values.clear(),
            "exactly one value",
        );
        check(
            &|e| e.intervals[1].payloads[0].values = vec![PayloadValue::Number(f64::NAN)],
            "finite",
        );
        check(
            &|e| e.intervals[1].payloads[0].values = vec![PayloadValue::Number(-1.0)],
            "negative",
        );
        check(
            &|e| e.intervals[1].payloads[0].values = vec![PayloadValue::Text("x".into())],
            "must be a number",
        );
        check(&|e| e.intervals.clear(), "at least one interval");
        check(
            &|e| e.interval_period = None,
            "intervals[0].intervalPeriod.start",
        );
        check(
            &|e| {
                e.interval_period = Some(IntervalPeriod {
                    start: e.interval_period.unwrap().start,
                    duration: None,
                    randomize_start: None,
                });
            },
            "intervals[0].intervalPeriod.duration",
        );
        check(&|e| e.targets.push(String::new()), "targets[2]");
        check(&|e| e.event_name = Some("a\u{7}".into()), "eventName");
    }

    #[test]
    fn object_ids_and_payload_types() {
        assert!(ObjectId::new("evt-1_A").is_ok());
        assert!(ObjectId::new("evt 1").is_err());
        assert!(ObjectId::new("").is_err());
        assert!(serde_json::from_str::<ObjectId>("\"a:b\"").is_err());
        assert_eq!("PRICE".parse::<PayloadType>().unwrap(), PayloadType::Price);
        assert_eq!(
            "GHG".parse::<PayloadType>().unwrap(),
            PayloadType::Other("GHG".into())
        );
        assert!("".parse::<PayloadType>().is_err());
    }
}

//! The MQTT topic names of OpenADR 3.1 notifications (the
//! `/notifiers/mqtt/topics/...` answers, and where the VTN publishes).
//!
//! Every name starts with [`PREFIX`]. The business-logic topics
//! (`openadr3/programs/create`, `openadr3/events/update`, ...) are the
//! backend's alone; a VEN may subscribe only below its own
//! `openadr3/vens/{venName}/` (the broker ACL,
//! `gridlink_provision::policy`), where `venName` is the VEN's
//! certificate CN, which is why the per-VEN names use the name and not
//! the object id.
//!
//! ```
//! use gridlink_cloud::notify::topics::{self, Op};
//!
//! assert_eq!(topics::programs(Op::Create), "openadr3/programs/create");
//! assert_eq!(topics::events(Op::All), "openadr3/events/+");
//! assert_eq!(
//!     topics::ven_events("ven-1", Op::Update).unwrap(),
//!     "openadr3/vens/ven-1/events/update"
//! );
//! assert!(topics::ven_events("a/b", Op::Update).is_err());
//! ```

/// Every notification topic starts with this.
pub const PREFIX: &str = "openadr3/";

/// The operation a notification reports, as the last topic level; `All`
/// is the single-level wildcard `+` that matches the three (for
/// subscribing, never for publishing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `create` (an OpenADR `POST`).
    Create,
    /// `update` (`PUT`).
    Update,
    /// `delete` (`DELETE`).
    Delete,
    /// `+`: every operation.
    All,
}

impl Op {
    /// The operations the `/notifiers/mqtt/topics` answers list, with
    /// their keys there.
    pub const KEYED: [(&'static str, Self); 4] = [
        ("CREATE", Self::Create),
        ("UPDATE", Self::Update),
        ("DELETE", Self::Delete),
        ("ALL", Self::All),
    ];

    /// The topic level.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::All => "+",
        }
    }

    /// The operation of a notification's `operation` (`POST`, `PUT`,
    /// `DELETE`).
    pub fn from_operation(operation: &str) -> Option<Self> {
        match operation {
            "POST" => Some(Self::Create),
            "PUT" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// A name that cannot be one topic level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot be an MQTT topic level: it must be 1 to 128 characters without / + # or NUL")]
pub struct TopicLevelError(pub String);

/// `segment` if it is exactly one topic level (so a name cannot reach
/// into another VEN's topics, nor be a wildcard).
pub fn level(segment: &str) -> Result<&str, TopicLevelError> {
    if segment.is_empty()
        || segment.chars().count() > 128
        || segment.contains(['/', '+', '#', '\0'])
    {
        Err(TopicLevelError(segment.chars().take(64).collect()))
    } else {
        Ok(segment)
    }
}

/// `openadr3/programs/{op}`.
pub fn programs(op: Op) -> String {
    format!("{PREFIX}programs/{}", op.as_str())
}

/// `openadr3/programs/{programID}/{op}`.
pub fn program(program_id: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!(
        "{PREFIX}programs/{}/{}",
        level(program_id)?,
        op.as_str()
    ))
}

/// `openadr3/events/{op}`.
pub fn events(op: Op) -> String {
    format!("{PREFIX}events/{}", op.as_str())
}

/// `openadr3/programs/{programID}/events/{op}`.
pub fn program_events(program_id: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!(
        "{PREFIX}programs/{}/events/{}",
        level(program_id)?,
        op.as_str()
    ))
}

/// `openadr3/reports/{op}`.
pub fn reports(op: Op) -> String {
    format!("{PREFIX}reports/{}", op.as_str())
}

/// `openadr3/subscriptions/{op}`.
pub fn subscriptions(op: Op) -> String {
    format!("{PREFIX}subscriptions/{}", op.as_str())
}

/// `openadr3/vens/{op}`.
pub fn vens(op: Op) -> String {
    format!("{PREFIX}vens/{}", op.as_str())
}

/// `openadr3/resources/{op}`.
pub fn resources(op: Op) -> String {
    format!("{PREFIX}resources/{}", op.as_str())
}

/// `openadr3/vens/{venName}/{op}`: the VEN object itself.
pub fn ven(ven_name: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!("{PREFIX}vens/{}/{}", level(ven_name)?, op.as_str()))
}

/// `openadr3/vens/{venName}/events/{op}`.
pub fn ven_events(ven_name: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!(
        "{PREFIX}vens/{}/events/{}",
        level(ven_name)?,
        op.as_str()
    ))
}

/// `openadr3/vens/{venName}/programs/{op}`.
pub fn ven_programs(ven_name: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!(
        "{PREFIX}vens/{}/programs/{}",
        level(ven_name)?,
        op.as_str()
    ))
}

/// `openadr3/vens/{venName}/resources/{op}`.
pub fn ven_resources(ven_name: &str, op: Op) -> Result<String, TopicLevelError> {
    Ok(format!(
        "{PREFIX}vens/{}/resources/{}",
        level(ven_name)?,
        op.as_str()
    ))
}

/// The filter under which a VEN may subscribe (`openadr3/vens/{venName}/#`).
pub fn ven_filter(ven_name: &str) -> Result<String, TopicLevelError> {
    Ok(format!("{PREFIX}vens/{}/#", level(ven_name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name() {
        assert_eq!(programs(Op::Update), "openadr3/programs/update");
        assert_eq!(
            program("p-1", Op::Delete).unwrap(),
            "openadr3/programs/p-1/delete"
        );
        assert_eq!(events(Op::Create), "openadr3/events/create");
        assert_eq!(
            program_events("p-1", Op::All).unwrap(),
            "openadr3/programs/p-1/events/+"
        );
        assert_eq!(reports(Op::Create), "openadr3/reports/create");
        assert_eq!(subscriptions(Op::Delete), "openadr3/subscriptions/delete");
        assert_eq!(vens(Op::Update), "openadr3/vens/update");
        assert_eq!(resources(Op::All), "openadr3/resources/+");
        assert_eq!(ven("v", Op::Update).unwrap(), "openadr3/vens/v/update");
        assert_eq!(
            ven_programs("v", Op::Create).unwrap(),
            "openadr3/vens/v/programs/create"
        );
        assert_eq!(
            ven_resources("v", Op::Delete).unwrap(),
            "openadr3/vens/v/resources/delete"
        );
        assert_eq!(ven_filter("v").unwrap(), "openadr3/vens/v/#");
        assert_eq!(Op::from_operation("PUT"), Some(Op::Update));
        assert_eq!(Op::from_operation("GET"), None);
    }

    #[test]
    fn a_name_stays_one_level() {
        for bad in ["", "a/b", "+", "#", "x\0", &"v".repeat(129)] {
            assert!(ven_events(bad, Op::Create).is_err(), "{bad:?}");
            assert!(program(bad, Op::Create).is_err(), "{bad:?}");
        }
        assert!(level(&"v".repeat(128)).is_ok());
    }
}

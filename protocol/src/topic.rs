//! MQTT topics as typed values: one builder and one parser for every topic
//! of the design, so no crate formats or splits topic strings by hand.
//!
//! ```
//! use gridlink_protocol::{Topic, TopicKind, VenId};
//! let ven = VenId::new("ven-1").unwrap();
//! let topic = Topic::meter(ven.clone());
//! assert_eq!(topic.to_string(), "oadr/meter/ven-1");
//! assert_eq!(Topic::parse("oadr/meter/ven-1").unwrap(), topic);
//! assert_eq!(TopicKind::Meter.shared_filter("gridlink"), "$share/gridlink/oadr/meter/+");
//! ```

use std::fmt;

use crate::ven_id::{VenId, VenIdError};

/// The shared-subscription group the cloud's ingest workers join.
pub const INGEST_SHARE_GROUP: &str = "gridlink";

/// Which of the design's topics a [`Topic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `oadr/meter/{venId}`: VEN -> cloud, `TelemetryBatch`, QoS 1.
    Meter,
    /// `ven/loads/{venId}`: VEN -> cloud, `LoadSnapshot`, QoS 1.
    Loads,
    /// `ven/ack/{venId}`: VEN -> cloud, `CommandAck`, QoS 1.
    Ack,
    /// `ven/cmd/{venId}`: cloud -> VEN, `Command`, QoS 1 on a persistent session.
    Cmd,
    /// `ven/status/{venId}`: VEN -> cloud, `Status`, QoS 1, retained; also the last will.
    Status,
    /// `$aws/things/{venId}/shadow/...`: the AWS IoT classic shadow (JSON).
    Shadow(ShadowOp),
}

/// The classic-shadow topic suffixes of AWS IoT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowOp {
    /// `shadow/get`: ask for the whole document.
    Get,
    /// `shadow/get/accepted`.
    GetAccepted,
    /// `shadow/get/rejected`.
    GetRejected,
    /// `shadow/update`: report or desire state.
    Update,
    /// `shadow/update/accepted`.
    UpdateAccepted,
    /// `shadow/update/rejected`.
    UpdateRejected,
    /// `shadow/update/delta`: desired differs from reported.
    UpdateDelta,
    /// `shadow/update/documents`: previous and current documents.
    UpdateDocuments,
    /// `shadow/delete`.
    Delete,
    /// `shadow/delete/accepted`.
    DeleteAccepted,
    /// `shadow/delete/rejected`.
    DeleteRejected,
}

impl ShadowOp {
    /// Every shadow operation, for iteration in parsers and tests.
    pub const ALL: [Self; 11] = [
        Self::Get,
        Self::GetAccepted,
        Self::GetRejected,
        Self::Update,
        Self::UpdateAccepted,
        Self::UpdateRejected,
        Self::UpdateDelta,
        Self::UpdateDocuments,
        Self::Delete,
        Self::DeleteAccepted,
        Self::DeleteRejected,
    ];

    /// The part of the topic after `shadow/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetAccepted => "get/accepted",
            Self::GetRejected => "get/rejected",
            Self::Update => "update",
            Self::UpdateAccepted => "update/accepted",
            Self::UpdateRejected => "update/rejected",
            Self::UpdateDelta => "update/delta",
            Self::UpdateDocuments => "update/documents",
            Self::Delete => "delete",
            Self::DeleteAccepted => "delete/accepted",
            Self::DeleteRejected => "delete/rejected",
        }
    }
}

impl TopicKind {
    /// The five VEN topics (everything but the shadow).
    pub const VEN_TOPICS: [Self; 5] =
        [Self::Meter, Self::Loads, Self::Ack, Self::Cmd, Self::Status];

    /// The topic text before the ven id, e.g. `oadr/meter/`; `None` for the shadow.
    pub const fn prefix(self) -> Option<&'static str> {
        match self {
            Self::Meter => Some("oadr/meter/"),
            Self::Loads => Some("ven/loads/"),
            Self::Ack => Some("ven/ack/"),
            Self::Cmd => Some("ven/cmd/"),
            Self::Status => Some("ven/status/"),
            Self::Shadow(_) => None,
        }
    }

    /// True when the VEN publishes on this topic, false when it subscribes.
    pub const fn is_uplink(self) -> bool {
        match self {
            Self::Meter | Self::Loads | Self::Ack | Self::Status => true,
            Self::Cmd => false,
            Self::Shadow(op) => matches!(op, ShadowOp::Get | ShadowOp::Update | ShadowOp::Delete),
        }
    }

    /// True for the retained status topic.
    pub const fn is_retained(self) -> bool {
        matches!(self, Self::Status)
    }

    /// The filter matching this topic for every VEN, e.g. `oadr/meter/+`.
    pub fn wildcard_filter(self) -> String {
        match self {
            Self::Shadow(op) => format!("$aws/things/+/shadow/{}", op.suffix()),
            other => format!("{}+", other.prefix().unwrap_or_default()),
        }
    }

    /// The shared-subscription filter, e.g. `$share/gridlink/oadr/meter/+`, so
    /// several ingest processes split the VENs' messages between them.
    pub fn shared_filter(self, group: &str) -> String {
        format!("$share/{group}/{}", self.wildcard_filter())
    }
}

/// A concrete topic: its kind and the VEN it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Which topic.
    pub kind: TopicKind,
    /// The VEN in the topic.
    pub ven_id: VenId,
}

/// Why a topic string is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not start with any of the design's prefixes.
    #[error("foreign topic {0:?}: not one of oadr/meter/, ven/loads|ack|cmd|status/, $aws/things/")]
    Foreign(String),
    /// The topic has our prefix but the rest is not a ven id.
    #[error("topic {topic:?}: {source}")]
    BadVenId {
        /// The topic as received.
        topic: String,
        /// What is wrong with the ven id part.
        source: VenIdError,
    },
    /// A `$aws/things/{venId}/shadow/...` topic with an unknown suffix.
    #[error("topic {0:?}: unknown shadow operation")]
    UnknownShadowOp(String),
}

impl Topic {
    /// Builds a topic.
    pub const fn new(kind: TopicKind, ven_id: VenId) -> Self {
        Self { kind, ven_id }
    }

    /// `oadr/meter/{venId}`.
    pub const fn meter(ven_id: VenId) -> Self {
        Self::new(TopicKind::Meter, ven_id)
    }

    /// `ven/loads/{venId}`.
    pub const fn loads(ven_id: VenId) -> Self {
        Self::new(TopicKind::Loads, ven_id)
    }

    /// `ven/ack/{venId}`.
    pub const fn ack(ven_id: VenId) -> Self {
        Self::new(TopicKind::Ack, ven_id)
    }

    /// `ven/cmd/{venId}`.
    pub const fn cmd(ven_id: VenId) -> Self {
        Self::new(TopicKind::Cmd, ven_id)
    }

    /// `ven/status/{venId}`.
    pub const fn status(ven_id: VenId) -> Self {
        Self::new(TopicKind::Status, ven_id)
    }

    /// `$aws/things/{venId}/shadow/{op}`.
    pub const fn shadow(ven_id: VenId, op: ShadowOp) -> Self {
        Self::new(TopicKind::Shadow(op), ven_id)
    }

    /// Parses a topic as received in a PUBLISH (never a filter with
    /// wildcards: `+` and `#` are not ven-id characters and are refused).
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        for kind in TopicKind::VEN_TOPICS {
            if let Some(rest) = kind.prefix().and_then(|p| topic.strip_prefix(p)) {
                return Ok(Self::new(kind, ven_in(topic, rest)?));
            }
        }
        if let Some(rest) = topic.strip_prefix("$aws/things/") {
            let (ven, suffix) = rest
                .split_once("/shadow/")
                .ok_or_else(|| TopicError::UnknownShadowOp(topic.to_string()))?;
            let ven_id = ven_in(topic, ven)?;
            let op = ShadowOp::ALL
                .into_iter()
                .find(|op| op.suffix() == suffix)
                .ok_or_else(|| TopicError::UnknownShadowOp(topic.to_string()))?;
            return Ok(Self::shadow(ven_id, op));
        }
        Err(TopicError::Foreign(topic.to_string()))
    }
}

fn ven_in(topic: &str, part: &str) -> Result<VenId, TopicError> {
    VenId::new(part).map_err(|source| TopicError::BadVenId {
        topic: topic.to_string(),
        source,
    })
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TopicKind::Shadow(op) => {
                write!(f, "$aws/things/{}/shadow/{}", self.ven_id, op.suffix())
            }
            kind => write!(f, "{}{}", kind.prefix().unwrap_or_default(), self.ven_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ven(s: &str) -> VenId {
        VenId::new(s).unwrap()
    }

    #[test]
    fn every_topic_round_trips() {
        let kinds = TopicKind::VEN_TOPICS
            .into_iter()
            .chain(ShadowOp::ALL.into_iter().map(TopicKind::Shadow));
        for kind in kinds {
            let topic = Topic::new(kind, ven("site-1:gw_2"));
            let text = topic.to_string();
            assert_eq!(Topic::parse(&text), Ok(topic), "{text}");
        }
    }

    #[test]
    fn design_strings() {
        assert_eq!(Topic::meter(ven("v")).to_string(), "oadr/meter/v");
        assert_eq!(Topic::loads(ven("v")).to_string(), "ven/loads/v");
        assert_eq!(Topic::ack(ven("v")).to_string(), "ven/ack/v");
        assert_eq!(Topic::cmd(ven("v")).to_string(), "ven/cmd/v");
        assert_eq!(Topic::status(ven("v")).to_string(), "ven/status/v");
        assert_eq!(
            Topic::shadow(ven("v"), ShadowOp::UpdateDelta).to_string(),
            "$aws/things/v/shadow/update/delta"
        );
        assert_eq!(TopicKind::Status.wildcard_filter(), "ven/status/+");
        assert_eq!(
            TopicKind::Meter.shared_filter(INGEST_SHARE_GROUP),
            "$share/gridlink/oadr/meter/+"
        );
    }

    #[test]
    fn refuses_foreign_and_malformed() {
        assert!(matches!(
            Topic::parse("foo/bar"),
            Err(TopicError::Foreign(_))
        ));
        assert!(matches!(Topic::parse(""), Err(TopicError::Foreign(_))));
        assert!(matches!(
            Topic::parse("oadr/meter"),
            Err(TopicError::Foreign(_))
        ));
        for bad in [
            "oadr/meter/",
            "oadr/meter/+",
            "oadr/meter/#",
            "oadr/meter/a/b",
        ] {
            assert!(
                matches!(Topic::parse(bad), Err(TopicError::BadVenId { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Topic::parse("$aws/things/v/shadow/name/x/update"),
            Err(TopicError::UnknownShadowOp(_))
        ));
        assert!(matches!(
            Topic::parse("$aws/things/v/jobs/notify"),
            Err(TopicError::UnknownShadowOp(_))
        ));
    }
}

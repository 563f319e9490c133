//! Demand-response commands to a VEN and its acknowledgements.

use serde::{Deserialize, Serialize};

use crate::codec::WireMessage;
use crate::error::ValidationError;
use crate::names::check_text;
use crate::openadr::{Event, ObjectId};
use crate::time::Timestamp;
use crate::ven_id::VenId;

/// A command on `ven/cmd/{venId}`.
///
/// `command_id` increases per VEN at the cloud, so an agent that gets a
/// command again (QoS 1 redelivery) or out of order can tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The VEN the command is for; must equal the topic's.
    pub ven_id: VenId,
    /// Per-VEN increasing id assigned by the cloud.
    pub command_id: u64,
    /// When the cloud issued it.
    pub issued_at: Timestamp,
    /// What to do.
    pub action: CommandAction,
}

/// What a [`Command`] asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandAction {
    /// Schedule this event, replacing any earlier version with the same id.
    Event(Event),
    /// Cancel an event: restore its loads now if it is active.
    Cancel {
        /// The event to cancel.
        event_id: ObjectId,
    },
}

impl CommandAction {
    /// The event the action is about.
    pub fn event_id(&self) -> &ObjectId {
        match self {
            Self::Event(e) => &e.id,
            Self::Cancel { event_id } => event_id,
        }
    }
}

impl WireMessage for Command {
    const NAME: &'static str = "Command";

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.action {
            CommandAction::Event(event) => event.validate(),
            CommandAction::Cancel { .. } => Ok(()),
        }
    }
}

/// A step in a VEN's handling of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    /// Persisted at the VEN; nothing done yet.
    Received,
    /// On the VEN's timeline, waiting for its start.
    Scheduled,
    /// Loads are being controlled.
    Active,
    /// Ended and loads restored.
    Completed,
    /// Cancelled by the cloud; loads restored if they had been switched.
    Cancelled,
    /// The VEN declines (e.g. a payload type it cannot act on). Needs a reason.
    OptedOut,
    /// The VEN could not carry it out (e.g. a Modbus write failed). Needs a reason.
    Failed,
}

impl AckState {
    /// The name used in JSON, the API and the database.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::OptedOut => "opted_out",
            Self::Failed => "failed",
        }
    }

    /// True if no further state follows.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Cancelled | Self::OptedOut | Self::Failed
        )
    }
}

/// Longest reason text in an acknowledgement.
pub const MAX_REASON_LEN: usize = 512;

/// An acknowledgement on `ven/ack/{venId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandAck {
    /// The acknowledging VEN; must equal the topic's.
    pub ven_id: VenId,
    /// The command this step belongs to.
    pub command_id: u64,
    /// The event concerned.
    pub event_id: ObjectId,
    /// The step reached.
    pub state: AckState,
    /// When the VEN reached it.
    pub at: Timestamp,
    /// Why, for `failed` and `opted_out` (required there), or a note.
    pub reason: Option<String>,
}

impl WireMessage for CommandAck {
    const NAME: &'static str = "CommandAck";

    fn validate(&self) -> Result<(), ValidationError> {
        match (&self.reason, self.state) {
            (None, AckState::Failed | AckState::OptedOut) => Err(ValidationError::field(
                "reason",
                format!("a {} acknowledgement needs a reason", self.state.name()),
            )),
            (Some(r), _) if r.trim().is_empty() => {
                Err(ValidationError::field("reason", "reason is blank"))
            }
            (Some(r), _) => check_text("reason", r, MAX_REASON_LEN)
                .map_err(|e| ValidationError::field("reason", e)),
            (None, _) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(state: AckState, reason: Option<&str>) -> CommandAck {
        CommandAck {
            ven_id: VenId::new("ven-1").unwrap(),
            command_id: 3,
            event_id: ObjectId::new("evt-1").unwrap(),
            state,
            at: Timestamp::from_unix_ms(1_700_000_000_000).unwrap(),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn failed_and_opted_out_need_a_reason() {
        assert!(ack(AckState::Active, None).validate().is_ok());
        assert!(
            ack(AckState::Failed, Some("coil write timed out after 3 tries"))
                .validate()
                .is_ok()
        );
        let err = ack(AckState::Failed, None)
            .validate()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "reason: a failed acknowledgement needs a reason");
        assert!(ack(AckState::OptedOut, Some(" ")).validate().is_err());
        assert!(
            ack(AckState::Completed, Some(&"x".repeat(600)))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(ack(AckState::OptedOut, Some("unknown payload"))).unwrap();
        assert_eq!(json["state"], "opted_out");
        assert_eq!(json["at"], "2023-11-14T22:13:20Z");
        let cancel = Command {
            ven_id: VenId::new("v").unwrap(),
            command_id: 1,
            issued_at: Timestamp::from_unix_ms(0).unwrap(),
            action: CommandAction::Cancel {
                event_id: ObjectId::new("e").unwrap(),
            },
        };
        let json = serde_json::to_value(&cancel).unwrap();
        assert_eq!(json["action"]["cancel"]["event_id"], "e");
        assert_eq!(cancel.action.event_id().as_str(), "e");
    }

    #[test]
    fn final_states() {
        assert!(!AckState::Received.is_final());
        assert!(AckState::Failed.is_final());
        assert_eq!(
            serde_json::to_string(&AckState::OptedOut).unwrap(),
            format!("\"{}\"", AckState::OptedOut.name())
        );
    }
}

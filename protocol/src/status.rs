//! VEN status (also the last will) and load snapshots.

use serde::{Deserialize, Serialize};

use crate::codec::WireMessage;
use crate::error::ValidationError;
use crate::names::{check_name, check_text};
use crate::openadr::ObjectId;
use crate::time::Timestamp;
use crate::ven_id::VenId;

/// The retained `ven/status/{venId}` payload. The agent registers
/// [`Status::offline`] as its MQTT last will, so the broker publishes it when
/// the connection dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The VEN; must equal the topic's.
    pub ven_id: VenId,
    /// False in the last will and on a clean shutdown.
    pub online: bool,
    /// When the status was produced.
    pub at: Timestamp,
    /// The agent's version (empty in the last will).
    pub agent_version: String,
    /// Batches waiting in the local buffer.
    pub backlog_batches: u64,
    /// Readings dropped since start because the buffer was full.
    pub dropped_readings: u64,
}

impl Status {
    /// The last-will payload: offline, nothing else known.
    pub fn offline(ven_id: VenId, at: Timestamp) -> Self {
        Self {
            ven_id,
            online: false,
            at,
            agent_version: String::new(),
            backlog_batches: 0,
            dropped_readings: 0,
        }
    }
}

impl WireMessage for Status {
    const NAME: &'static str = "Status";

    fn validate(&self) -> Result<(), ValidationError> {
        check_text("agent_version", &self.agent_version, 64)
            .map_err(|r| ValidationError::field("agent_version", r))
    }
}

/// Longest load name.
pub const MAX_LOAD_NAME_LEN: usize = 64;
/// Most loads in one snapshot.
pub const MAX_LOADS: usize = 1024;

/// Why a load last changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadChangeCause {
    /// State read from the device at agent start.
    Startup,
    /// Switched by a DR event.
    Event {
        /// The event.
        event_id: ObjectId,
    },
    /// Restored at the end or cancellation of a DR event.
    Restore {
        /// The event.
        event_id: ObjectId,
    },
    /// Changed outside the agent (seen on the device).
    External,
}

/// One load's state in a [`LoadSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadState {
    /// The load's name from the agent's config.
    pub name: String,
    /// Relay state: true = on (consuming).
    pub on: bool,
    /// Measured or rated power in W, if known.
    pub power_w: Option<f64>,
    /// Current setpoint, for loads controlled by a holding register.
    pub setpoint: Option<f64>,
    /// False for loads the config says must never be switched.
    pub controllable: bool,
    /// When the state last changed.
    pub last_change: Option<Timestamp>,
    /// Why it last changed.
    pub cause: LoadChangeCause,
}

/// The `ven/loads/{venId}` payload: all loads of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSnapshot {
    /// The VEN; must equal the topic's.
    pub ven_id: VenId,
    /// When the snapshot was taken.
    pub at: Timestamp,
    /// Every configured load.
    pub loads: Vec<LoadState>,
}

impl WireMessage for LoadSnapshot {
    const NAME: &'static str = "LoadSnapshot";

    fn validate(&self) -> Result<(), ValidationError> {
        if self.loads.len() > MAX_LOADS {
            return Err(ValidationError::field(
                "loads",
                format!("{} loads; at most {MAX_LOADS}", self.loads.len()),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, load) in self.loads.iter().enumerate() {
            let field = |f: &str| format!("loads[{i}].{f}");
            check_name(
                "load name",
                &load.name,
                MAX_LOAD_NAME_LEN,
                &['_', '.', ':', '-'],
            )
            .map_err(|r| ValidationError::field(field("name"), r))?;
            if !names.insert(load.name.as_str()) {
                return Err(ValidationError::field(
                    field("name"),
                    format!("duplicate load {:?}", load.name),
                ));
            }
            for (name, value) in [("power_w", load.power_w), ("setpoint", load.setpoint)] {
                if value.is_some_and(|v| !v.is_finite()) {
                    return Err(ValidationError::field(
                        field(name),
                        "must be a finite number",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> LoadState {
        LoadState {
            name: name.into(),
            on: true,
            power_w: Some(1500.0),
            setpoint: None,
            controllable: true,
            last_change: None,
            cause: LoadChangeCause::Startup,
        }
    }

    #[test]
    fn snapshot_rules() {
        let mut snap = LoadSnapshot {
            ven_id: VenId::new("v").unwrap(),
            at: Timestamp::from_unix_ms(0).unwrap(),
            loads: vec![load("hvac-1"), load("pump")],
        };
        assert!(snap.validate().is_ok());
        snap.loads[1].name = "hvac-1".into();
        assert!(
            snap.validate()
                .unwrap_err()
                .to_string()
                .contains("loads[1].name: duplicate")
        );
        snap.loads[1] = LoadState {
            power_w: Some(f64::INFINITY),
            ..load("pump")
        };
        assert!(
            snap.validate()
                .unwrap_err()
                .to_string()
                .contains("loads[1].power_w")
        );
    }

    #[test]
    fn last_will_is_offline() {
        let s = Status::offline(
            VenId::new("v").unwrap(),
            Timestamp::from_unix_ms(0).unwrap(),
        );
        assert!(!s.online);
        assert!(s.validate().is_ok());
    }
}

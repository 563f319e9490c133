//! gridlink's wire protocol: the payload types, MQTT topics, codecs and
//! validation shared by the agent, the cloud and the tools. No I/O and no
//! async runtime, so it builds for the ARM gateways as it is.
//!
//! * [`VenId`] and [`Topic`]: who sends and where (`oadr/meter/{venId}`, ...).
//! * [`TelemetryBatch`]: meter readings, one compact column per series.
//! * [`Command`], [`CommandAck`]: OpenADR 3.1 events to a VEN and its steps.
//! * [`Status`], [`LoadSnapshot`]: VEN liveness and load states.
//! * [`encode`] / [`decode`]: `0x01` + postcard, or JSON; validated both ways.
//!
//! ```
//! use gridlink_protocol::{decode, encode, Encoding, Phase, Quantity, Series, TelemetryBatch, Topic, VenId};
//!
//! let ven = VenId::new("ven-1")?;
//! let mut power = Series::new("main", Quantity::ActivePower, Phase::Total, 0);
//! for s in 0..60 {
//!     power.push(1_700_000_000_000 + s * 1000, 1500.0 + (s % 5) as f64);
//! }
//! let batch = TelemetryBatch { ven_id: ven.clone(), batch_seq: 42, series: vec![power] };
//! let payload = encode(&batch, Encoding::Postcard)?;
//! assert!(payload.len() < 100); // 60 readings
//!
//! let topic = Topic::parse(&Topic::meter(ven).to_string())?;
//! let received: TelemetryBatch = decode(&payload)?;
//! assert_eq!(received.ven_id, topic.ven_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codec;
pub mod command;
pub mod compact;
pub mod error;
mod names;
pub mod openadr;
pub mod quantity;
pub mod shadow;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod topic;
pub mod ven_id;

pub use codec::{
    DecodeError, DecodeErrorKind, EncodeError, Encoding, MAX_PAYLOAD_BYTES, WireMessage, decode,
    encode,
};
pub use command::{AckState, Command, CommandAck, CommandAction};
pub use error::ValidationError;
pub use openadr::{
    Event, EventPayloadDescriptor, Interval, IntervalPeriod, ObjectId, PayloadType, PayloadValue,
    ValuesMap,
};
pub use quantity::{Phase, Quantity};
pub use status::{LoadChangeCause, LoadSnapshot, LoadState, Status};
pub use telemetry::{MAX_BATCH_SEQ, Point, Series, TelemetryBatch};
pub use time::{IsoDuration, Timestamp};
pub use topic::{ShadowOp, Topic, TopicError, TopicKind};
pub use ven_id::{VenId, VenIdError};

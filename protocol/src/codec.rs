//! Framing of every payload: one format byte, then postcard or JSON.
//!
//! | first byte | body |
//! |---|---|
//! | `0x01` | postcard, format version 1 (what the agent sends) |
//! | `{` (after optional whitespace) | JSON of the same type, for debugging and third-party devices |
//!
//! [`encode`] validates before it writes and refuses payloads over
//! [`MAX_PAYLOAD_BYTES`]; [`decode`] accepts both formats, never panics, and
//! validates what it decoded, so a value from `decode` is always well formed.
//!
//! ```
//! use gridlink_protocol::{decode, encode, Encoding, Phase, Quantity, Series, TelemetryBatch, VenId};
//! let mut series = Series::new("main", Quantity::ActivePower, Phase::Total, 0);
//! series.push(1_700_000_000_000, 1520.0);
//! series.push(1_700_000_001_000, 1498.0);
//! let batch = TelemetryBatch { ven_id: VenId::new("ven-1").unwrap(), batch_seq: 1, series: vec![series] };
//! let bytes = encode(&batch, Encoding::Postcard).unwrap();
//! assert_eq!(bytes[0], 0x01);
//! assert_eq!(decode::<TelemetryBatch>(&bytes).unwrap(), batch);
//! let json = encode(&batch, Encoding::Json).unwrap();
//! assert_eq!(decode::<TelemetryBatch>(&json).unwrap(), batch);
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};

use crate::compact::ColumnError;
use crate::error::ValidationError;
use crate::ven_id::VenIdError;

/// Largest payload AWS IoT Core accepts, and so the largest we send or take.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// The format byte of postcard payloads, format version 1.
pub const POSTCARD_V1: u8 = 0x01;

/// How a payload body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `0x01` + postcard (compact telemetry columns). What the agent sends.
    Postcard,
    /// JSON of the same types.
    Json,
}

impl Encoding {
    /// Which encoding a payload uses, from its first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Some(Self::Json),
            _ if bytes.first() == Some(&POSTCARD_V1) => Some(Self::Postcard),
            _ => None,
        }
    }
}

/// A type that travels as an MQTT payload.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The type's name, used in error messages.
    const NAME: &'static str;

    /// Checks the protocol's rules beyond what the types enforce.
    fn validate(&self) -> Result<(), ValidationError>;

    /// Appends the postcard body to `out`.
    fn write_postcard(&self, out: Vec<u8>) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_extend(self, out)
    }

    /// Reads a postcard body (everything after the format byte).
    fn read_postcard(body: &[u8]) -> Result<Self, DecodeErrorKind> {
        postcard_body(body)
    }
}

/// Deserializes a whole postcard body, refusing trailing bytes.
pub(crate) fn postcard_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeErrorKind> {
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeErrorKind::from_postcard(&e))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeErrorKind::Trailing(rest.len()))
    }
}

/// Why a payload could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The value breaks a protocol rule; nothing was written.
    #[error("refusing to encode: {0}")]
    Invalid(ValidationError),
    /// The encoded payload is over the limit; split the batch
    /// ([`crate::TelemetryBatch::split_to_fit`]).
    #[error("payload would be {size} bytes; the limit is {max}")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// postcard failed to serialize.
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    /// `serde_json` failed to serialize.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Why a payload could not be decoded: which type was expected and what was
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: {kind}")]
pub struct DecodeError {
    /// The type being decoded, e.g. `TelemetryBatch`.
    pub message: &'static str,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// What was wrong with a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Zero bytes.
    #[error("empty payload")]
    Empty,
    /// More than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Size of the payload.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The first byte is neither `0x01` nor `{`.
    #[error("unknown format byte 0x{0:02x}: expected 0x01 (postcard v1) or '{{' (JSON)")]
    UnknownFormat(u8),
    /// The payload ends in the middle of a value.
    #[error("truncated: the payload ends in the middle of a value")]
    Truncated,
    /// The postcard body is malformed.
    #[error("postcard body: {0}")]
    Postcard(PostcardProblem),
    /// Bytes follow a complete postcard body.
    #[error("{0} unexpected bytes after the end of the message")]
    Trailing(usize),
    /// The JSON is malformed or does not match the type (with line and column).
    #[error("json: {0}")]
    Json(String),
    /// The ven id in the payload breaks the thing-name rules.
    #[error("ven_id: {0}")]
    VenId(VenIdError),
    /// A compact telemetry column is malformed.
    #[error("series {index}: {source}")]
    Column {
        /// Position of the series.
        index: usize,
        /// What is wrong with its column bytes.
        source: ColumnError,
    },
    /// The payload decoded but breaks a protocol rule.
    #[error("{0}")]
    Invalid(ValidationError),
}

/// A postcard deserialization failure, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostcardProblem(&'static str);

impl fmt::Display for PostcardProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl DecodeErrorKind {
    fn from_postcard(err: &postcard::Error) -> Self {
        use postcard::Error as E;
        let what = match *err {
            E::DeserializeUnexpectedEnd => return Self::Truncated,
            E::DeserializeBadVarint => "malformed varint",
            E::DeserializeBadBool => "a bool is neither 0 nor 1",
            E::DeserializeBadChar => "invalid char",
            E::DeserializeBadUtf8 => "a string is not valid UTF-8",
            E::DeserializeBadOption => "an option tag is neither 0 nor 1",
            E::DeserializeBadEnum => "unknown enum variant (from a newer protocol version?)",
            E::DeserializeBadEncoding => "bad encoding",
            E::DeserializeBadCrc => "bad checksum",
            E::SerdeDeCustom => {
                "a field value breaks its rules (ven id, object id, time or duration)"
            }
            _ => "malformed body",
        };
        Self::Postcard(PostcardProblem(what))
    }

    fn from_json(err: &serde_json::Error) -> Self {
        if err.classify() == serde_json::error::Category::Eof {
            Self::Truncated
        } else {
            Self::Json(err.to_string())
        }
    }
}

/// Encodes `message` for the wire after validating it.
pub fn encode<M: WireMessage>(message: &M, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    message.validate().map_err(EncodeError::Invalid)?;
    let bytes = match encoding {
        Encoding::Postcard => message.write_postcard(vec![POSTCARD_V1])?,
        Encoding::Json => serde_json::to_vec(message)?,
    };
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(EncodeError::TooLarge {
            size: bytes.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes and validates a payload in either encoding. Never panics.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, DecodeError> {
    decode_kind(bytes).map_err(|kind| DecodeError {
        message: M::NAME,
        kind,
    })
}

fn decode_kind<M: WireMessage>(bytes: &[u8]) -> Result<M, DecodeErrorKind> {
    if bytes.is_empty() {
        return Err(DecodeErrorKind::Empty);
    }
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeErrorKind::TooLarge {
            size: bytes.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let message = match Encoding::sniff(bytes) {
        Some(Encoding::Postcard) => M::read_postcard(&bytes[1..])?,
        Some(Encoding::Json) => {
            serde_json::from_slice(bytes).map_err(|e| DecodeErrorKind::from_json(&e))?
        }
        None => return Err(DecodeErrorKind::UnknownFormat(bytes[0])),
    };
    message.validate().map_err(DecodeErrorKind::Invalid)?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TelemetryBatch;

    #[test]
    fn framing_errors_say_what_is_wrong() {
        let err = decode::<TelemetryBatch>(&[]).unwrap_err();
        assert_eq!(err.to_string(), "TelemetryBatch: empty payload");
        let err = decode::<TelemetryBatch>(&[0x02, 0]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::UnknownFormat(2));
        assert!(err.to_string().contains("0x02"), "{err}");
        let err = decode::<TelemetryBatch>(&vec![1; MAX_PAYLOAD_BYTES + 1]).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::TooLarge { .. }));
        let err = decode::<TelemetryBatch>(&[1, 5, b'v']).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated);
        let err = decode::<TelemetryBatch>(b"{\"ven_id\": \"v\", ").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Truncated);
        let err = decode::<TelemetryBatch>(b"{\"ven_id\": 3}").unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");
        let err = decode::<TelemetryBatch>(b"{\"ven_id\":\"a/b\",\"batch_seq\":1,\"series\":[]}")
            .unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
    }

    #[test]
    fn postcard_ven_id_errors_are_specific() {
        // ven id "a/b", seq 1, no series.
        let err = decode::<TelemetryBatch>(&[1, 3, b'a', b'/', b'b', 1, 0]).unwrap_err();
        assert!(matches!(err.kind, DecodeErrorKind::VenId(_)), "{err}");
        let err = decode::<TelemetryBatch>(&[1, 1, b'a', 1, 0, 9]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::Trailing(1));
        let err = decode::<TelemetryBatch>(&[1, 1, b'a', 1, 0]).unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::Invalid(ValidationError::EmptyBatch)
        );
    }

    #[test]
    fn sniff() {
        assert_eq!(Encoding::sniff(b"\n {}"), Some(Encoding::Json));
        assert_eq!(Encoding::sniff(&[1]), Some(Encoding::Postcard));
        assert_eq!(Encoding::sniff(b"  "), None);
        assert_eq!(Encoding::sniff(b"[1]"), None);
    }
}

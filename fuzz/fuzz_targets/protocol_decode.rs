//! `gridlink_protocol::decode` of every wire type, both formats (`0x01` +
//! postcard, or JSON, chosen by the payload's first byte as on the wire).
//!
//! Besides "never panics": a payload that decodes re-encodes, in both
//! formats, to bytes that decode again to the same postcard bytes (what
//! `decode` accepts, `encode` writes and `decode` reads back).
#![no_main]

use gridlink_protocol::{
    Command, CommandAck, EncodeError, Encoding, LoadSnapshot, Status, TelemetryBatch, WireMessage,
    decode, encode,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    round_trip::<TelemetryBatch>(bytes);
    round_trip::<Command>(bytes);
    round_trip::<CommandAck>(bytes);
    round_trip::<Status>(bytes);
    round_trip::<LoadSnapshot>(bytes);
});

fn round_trip<M: WireMessage + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(message) = decode::<M>(bytes) else {
        return;
    };
    for encoding in [Encoding::Postcard, Encoding::Json] {
        let encoded = match encode(&message, encoding) {
            Ok(encoded) => encoded,
            // A postcard payload near the limit may be longer as JSON.
            Err(EncodeError::TooLarge { .. }) => continue,
            Err(e) => panic!(
                "{}: decoded but does not encode as {encoding:?}: {e}\n{message:?}",
                M::NAME
            ),
        };
        let again = decode::<M>(&encoded).unwrap_or_else(|e| {
            panic!(
                "{}: re-encoded {encoding:?} does not decode: {e}\n{message:?}",
                M::NAME
            )
        });
        let (first, second) = (
            encode(&message, Encoding::Postcard),
            encode(&again, Encoding::Postcard),
        );
        if let (Ok(first), Ok(second)) = (first, second) {
            assert_eq!(
                first,
                second,
                "{}: changed by a {encoding:?} round trip",
                M::NAME
            );
        }
    }
}

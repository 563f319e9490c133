//! The body of `POST /api/v1/ingest`
//! (`gridlink_cloud::api::decode_ingest_body`): JSON readings checked field
//! by field and grouped into the telemetry batch the cloud would store.
//! A body it accepts is a batch the protocol accepts too: it encodes.
#![no_main]

use gridlink_cloud::api::decode_ingest_body;
use gridlink_protocol::{EncodeError, Encoding, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match decode_ingest_body(bytes) {
        Ok(batch) => match encode(&batch, Encoding::Postcard) {
            Ok(_) | Err(EncodeError::TooLarge { .. }) => {}
            Err(e) => panic!("an accepted body makes a batch that does not encode: {e}"),
        },
        Err(error) => {
            let _ = format!("{error:?}");
        }
    }
});

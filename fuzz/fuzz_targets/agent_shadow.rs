//! The agent's device-shadow client (`gridlink_agent::shadow::ShadowClient`)
//! fed one payload on each shadow response topic it subscribes to, as the
//! broker would deliver them, then asked for its reported state.
#![no_main]

use gridlink_agent::shadow::ShadowClient;
use gridlink_protocol::shadow::{BufferHealth, HardLimits};
use gridlink_protocol::{ShadowOp, VenId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(ven) = VenId::new("ven-1") else {
        return;
    };
    let mut client = ShadowClient::new(
        ven,
        "digest".into(),
        HardLimits {
            max_shed_s: 3600,
            min_poll_interval_ms: 1000,
            never_switch: vec!["fridge".into()],
        },
        vec!["hvac".into(), "fridge".into(), "pump".into()],
        1000,
        None,
    );
    for op in [
        ShadowOp::UpdateDelta,
        ShadowOp::GetAccepted,
        ShadowOp::GetRejected,
        ShadowOp::UpdateRejected,
        ShadowOp::UpdateAccepted,
        ShadowOp::UpdateDocuments,
    ] {
        let _ = client.on_inbound(op, bytes);
    }
    let _ = client.dr_settings();
    let _ = client.report(BufferHealth::default(), 1);
});

//! The agent's DR command path: a command payload from the broker checked
//! and decoded as the uplink does (`gridlink_agent::uplink::check_command`),
//! then applied to the DR timeline and played forward, as the DR loop does:
//! the command, the writes planned, then ticks over the next two days.
#![no_main]

use std::collections::BTreeSet;

use gridlink_agent::dr::timeline::{LoadSpec, Timeline, TimelineConfig, TimelineState};
use gridlink_agent::uplink::check_command;
use gridlink_protocol::VenId;
use libfuzzer_sys::fuzz_target;

/// 2026-11-21T12:00:00Z, the time of the protocol's golden commands.
const NOW_MS: i64 = 1_795_262_400_000;

fn load(name: &str, priority: u32, simple_level: u8, setpoint_scale: Option<f64>) -> LoadSpec {
    LoadSpec {
        name: name.into(),
        has_coil: true,
        setpoint_scale,
        rated_power_w: 2000.0,
        priority,
        simple_level,
        never_switch: false,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(ven) = VenId::new("ven-1") else {
        return;
    };
    let Ok(command) = check_command(bytes, &ven) else {
        return;
    };
    let mut timeline = Timeline::new(
        TimelineConfig {
            ven_id: ven,
            loads: vec![
                load("hvac", 1, 1, Some(0.1)),
                load("pump", 2, 2, None),
                load("heater", 3, 3, Some(1.0)),
            ],
            max_shed_ms: 4 * 3_600_000,
            restore_hysteresis_w: 500.0,
            has_site_meter: true,
        },
        TimelineState::default(),
    );
    let opted_out: BTreeSet<String> = BTreeSet::from(["heater".to_string()]);
    let _ = timeline.command(&command, NOW_MS, 123_456, &opted_out);
    // The same command again (a redelivery) is ignored, not applied twice.
    let _ = timeline.command(&command, NOW_MS + 1, 7, &opted_out);
    let mut now = NOW_MS;
    for step_ms in [
        0,
        1_000,
        60_000,
        600_000,
        3_600_000,
        6 * 3_600_000,
        48 * 3_600_000,
    ] {
        now += step_ms;
        let _ = timeline.tick(now, Some((now - 500, 25_000.0)), 3_600_000, &opted_out);
        for action in timeline.plan(now, &opted_out) {
            timeline.write_done(&action, now);
        }
    }
});

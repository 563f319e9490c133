//! `agent.toml`: `gridlink_agent::config::parse` (TOML, then every check
//! with its file position), and for a config it accepts, what the agent
//! derives from it at start: the Modbus endpoints with their request plans
//! and the DR timeline's settings.
#![no_main]

use gridlink_agent::{acquisition, config, dr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match config::parse(text, "agent.toml") {
        Ok(config) => {
            let _ = acquisition::endpoints(&config);
            let _ = dr::timeline_config(&config);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

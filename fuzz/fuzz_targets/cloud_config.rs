//! `cloud.toml`: `gridlink_cloud::config::CloudConfig::parse`, then the
//! checks `CloudConfig::load` applies after it (the alert settings) and
//! what `serve` derives from it (the ingest settings).
#![no_main]

use gridlink_cloud::config::CloudConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match CloudConfig::parse(text, "cloud.toml") {
        Ok(mut config) => {
            let _ = config.apply_env(|_| None);
            let _ = config.alerts.check();
            let _ = config.ingest_settings();
            let _ = config.retention.raw_max_age();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

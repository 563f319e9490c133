//! `[shadow]`: whether the cloud runs the device shadow service.

use serde::{Deserialize, Serialize};

/// `[shadow]`: the device shadow service (`crate::shadow`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Answer the AWS IoT shadow topics (`$aws/things/+/shadow/update` and
    /// `/get`) and serve `PATCH /api/v1/vens/{id}/shadow`. Turn it off
    /// where the broker runs the shadow itself (AWS IoT Core). Default
    /// true. Env `GRIDLINK_SHADOW_ENABLED`.
    #[serde(default = "default_shadow_enabled")]
    pub enabled: bool,
}

/// Default of [`ShadowConfig::enabled`]: on, as Mosquitto has no shadow.
pub const fn default_shadow_enabled() -> bool {
    true
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            enabled: default_shadow_enabled(),
        }
    }
}

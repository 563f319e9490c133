//! `[dr]` and `[[loads]]`: demand response settings, its hard limits, and
//! the loads DR may switch.

use serde::Deserialize;

use super::{ByteOrder, Controller, RegisterKind, ValueType};

/// `[dr]`: how events are executed, and the hard limits no command or
/// shadow setting can override. Optional: every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrConfig {
    /// The `[[devices]]` entry whose `active_power` / `total` point is the
    /// site's net import in W (+ import, - export). Needed for
    /// `IMPORT_CAPACITY_LIMIT` events; without it they are opted out of.
    #[serde(default)]
    pub site_meter: Option<String>,
    /// Hard limit: no load stays shed longer than this many seconds,
    /// whatever an event says; it is then restored. At least 1. Default
    /// 14400 (4 h).
    #[serde(default = "default_max_shed_s")]
    pub max_shed_s: u64,
    /// Hard limit: the shortest poll interval the shadow may ask for, in
    /// ms; at least 100. Default 1000.
    #[serde(default = "default_min_poll_interval_ms")]
    pub min_poll_interval_ms: u64,
    /// Period of the closed loop that holds an `IMPORT_CAPACITY_LIMIT`, and
    /// of the checks of event starts and ends, in ms; 100 to 60000.
    /// Default 1000.
    #[serde(default = "default_control_interval_ms")]
    pub control_interval_ms: u64,
    /// A load shed for a capacity limit is restored only when the import
    /// plus its power is at most the limit minus this many W. Finite, at
    /// least 0. Default 500.
    #[serde(default = "default_restore_hysteresis_w")]
    pub restore_hysteresis_w: f64,
    /// A load snapshot is published on every change and at least every
    /// this many seconds; at least 1. Default 60.
    #[serde(default = "default_snapshot_interval_s")]
    pub snapshot_interval_s: u64,
    /// Time-out of one Modbus write (and of connecting), in ms; 10 to
    /// 60000. Default 1000.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Further attempts after a failed write, with doubling back-off from
    /// 100 ms; 0 to 10. Default 3.
    #[serde(default = "default_write_retries")]
    pub write_retries: u32,
}

/// Default of [`DrConfig::max_shed_s`]: 4 hours.
pub const fn default_max_shed_s() -> u64 {
    14_400
}

/// Default of [`DrConfig::min_poll_interval_ms`].
pub const fn default_min_poll_interval_ms() -> u64 {
    1000
}

/// Default of [`DrConfig::control_interval_ms`].
pub const fn default_control_interval_ms() -> u64 {
    1000
}

/// Default of [`DrConfig::restore_hysteresis_w`].
pub const fn default_restore_hysteresis_w() -> f64 {
    500.0
}

/// Default of [`DrConfig::snapshot_interval_s`].
pub const fn default_snapshot_interval_s() -> u64 {
    60
}

/// Default of [`DrConfig::write_timeout_ms`].
pub const fn default_write_timeout_ms() -> u64 {
    1000
}

/// Default of [`DrConfig::write_retries`].
pub const fn default_write_retries() -> u32 {
    3
}

impl Default for DrConfig {
    fn default() -> Self {
        Self {
            site_meter: None,
            max_shed_s: default_max_shed_s(),
            min_poll_interval_ms: default_min_poll_interval_ms(),
            control_interval_ms: default_control_interval_ms(),
            restore_hysteresis_w: default_restore_hysteresis_w(),
            snapshot_interval_s: default_snapshot_interval_s(),
            write_timeout_ms: default_write_timeout_ms(),
            write_retries: default_write_retries(),
        }
    }
}

/// One `[[loads]]` table: a load DR may switch (a relay coil) or set (a
/// holding register), with its place in the shedding order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// The load's name in snapshots, the shadow and logs: 1 to 64
    /// characters of `A-Z a-z 0-9 _ . : -`, unique among the loads.
    pub name: String,
    /// Where the load's controller is, as a device's `controller`:
    /// `"tcp://host:port"` or `"file:///dev/ttyUSB0"` (RTU, 9600 8N1).
    pub controller: Controller,
    /// Modbus unit id, 0 to 247 (1 to 247 on a serial line).
    pub unit_id: u8,
    /// The relay coil (written with function 0x05): true = on = consuming.
    /// SIMPLE and `IMPORT_CAPACITY_LIMIT` events switch loads by it.
    #[serde(default)]
    pub coil: Option<u16>,
    /// The setpoint holding register (u16, written with function 0x06)
    /// that `DISPATCH_SETPOINT` events write.
    #[serde(default)]
    pub setpoint: Option<SetpointConfig>,
    /// Where the load's measured power in W is read, for snapshots and
    /// the capacity loop; without it `rated_power_w` is used.
    #[serde(default)]
    pub power: Option<LoadPowerConfig>,
    /// The load's rated power in W: finite, at least 0.
    pub rated_power_w: f64,
    /// Shedding order: lower is shed first (and restored last). Default 100.
    #[serde(default = "default_load_priority")]
    pub priority: u32,
    /// The SIMPLE level (1 to 3) at and above which this load is shed.
    /// Default 1.
    #[serde(default = "default_simple_level")]
    pub simple_level: u8,
    /// Hard limit: DR never touches this load (it is still reported).
    /// Default false.
    #[serde(default)]
    pub never_switch: bool,
}

/// Default of [`LoadConfig::priority`].
pub const fn default_load_priority() -> u32 {
    100
}

/// Default of [`LoadConfig::simple_level`].
pub const fn default_simple_level() -> u8 {
    1
}

/// `setpoint = { address = 0, scale = 1.0 }`: a u16 holding register.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointConfig {
    /// Protocol address of the holding register (0-based).
    pub address: u16,
    /// The register counts this many units of the event's value: the
    /// register gets `round(value / scale)`. Finite, not 0. Default 1.
    #[serde(default = "super::default_scale")]
    pub scale: f64,
}

/// `power = { register = "input", address = 4096, type = "f32" }`: where a
/// load's power is read, in W after `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadPowerConfig {
    /// `"input"` or `"holding"`.
    pub register: RegisterKind,
    /// Protocol address of the first register.
    pub address: u16,
    /// `u16`, `i16`, `u32`, `i32`, `u64`, `i64`, `f32` or `f64`.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Byte order as for device points. Default `ABCD`.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Multiplier to W. Default 1.
    #[serde(default = "super::default_scale")]
    pub scale: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_config_parses_and_defaults() {
        let d: DrConfig = toml::from_str("").unwrap();
        assert_eq!(d, DrConfig::default());
        assert_eq!(d.max_shed_s, 14_400);
        assert!((d.restore_hysteresis_w - 500.0).abs() < f64::EPSILON);
        let d: DrConfig =
            toml::from_str("site_meter = \"main\"\nwrite_retries = 0\ncontrol_interval_ms = 500")
                .unwrap();
        assert_eq!(d.site_meter.as_deref(), Some("main"));
        assert_eq!((d.write_retries, d.control_interval_ms), (0, 500));
        assert!(toml::from_str::<DrConfig>("max_shed = 1").is_err());
    }

    #[test]
    fn load_config_parses_and_defaults() {
        let l: LoadConfig = toml::from_str(
            "name = \"hvac\"\ncontroller = \"tcp://127.0.0.1:5020\"\nunit_id = 1\ncoil = 0\n\
             setpoint = { address = 0 }\npower = { register = \"input\", address = 4096, type = \"f32\" }\n\
             rated_power_w = 3000.0",
        )
        .unwrap();
        assert_eq!(l.coil, Some(0));
        assert!((l.setpoint.unwrap().scale - 1.0).abs() < f64::EPSILON);
        let p = l.power.unwrap();
        assert_eq!((p.register, p.address), (RegisterKind::Input, 4096));
        assert_eq!(p.byte_order, ByteOrder::default());
        assert_eq!(
            (l.priority, l.simple_level, l.never_switch),
            (100, 1, false)
        );
        assert!(toml::from_str::<LoadConfig>("name = \"x\"").is_err());
    }
}

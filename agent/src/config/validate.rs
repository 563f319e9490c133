//! Checks that need more than one field, or more than serde can say.

use std::collections::HashMap;
use std::path::PathBuf;

use gridlink_protocol::telemetry::{EXPONENT_RANGE, MAX_METER_NAME_LEN};
use gridlink_protocol::{Phase, Quantity};

use super::error::{FieldPath, Problem, Seg, SpanIndex};
use super::{AgentConfig, BufferConfig, Controller, DeviceConfig, MqttConfig, TransmissionMode};

/// Smallest accepted poll interval.
const MIN_POLL_INTERVAL_MS: u64 = 100;
/// Accepted request time-outs.
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

struct Checker<'a> {
    spans: &'a SpanIndex<'a>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn fail(&mut self, path: &[Seg], message: impl Into<String>) {
        self.problems.push(self.spans.problem(path, message));
    }

    fn line_of(&self, path: &[Seg]) -> usize {
        self.spans.locate(path).line
    }
}

/// Every problem of `config`, located in the text `spans` was built from.
pub(super) fn check(config: &AgentConfig, spans: &SpanIndex<'_>) -> Vec<Problem> {
    let mut c = Checker {
        spans,
        problems: Vec::new(),
    };
    check_mqtt(&mut c, &config.mqtt, &config.buffer);
    check_buffer(&mut c, &config.buffer);
    check_devices(&mut c, &config.devices);
    check_dr(&mut c, config);
    check_loads(&mut c, &config.loads, &config.devices);
    c.problems
}

fn check_mqtt(c: &mut Checker<'_>, mqtt: &MqttConfig, buffer: &BufferConfig) {
    let at = |field| [Seg::Key("mqtt"), Seg::Key(field)];
    if mqtt.host.trim().is_empty() {
        c.fail(&at("host"), "is empty; give the broker's host name");
    }
    if mqtt.port == 0 {
        c.fail(&at("port"), "0 is not a port");
    }
    if !(5..=1200).contains(&mqtt.keep_alive_s) {
        c.fail(
            &at("keep_alive_s"),
            format!("{} s is outside 5..=1200", mqtt.keep_alive_s),
        );
    }
    if mqtt.reconnect_backoff_min_ms == 0 {
        c.fail(&at("reconnect_backoff_min_ms"), "must be at least 1 ms");
    }
    if mqtt.reconnect_backoff_max_ms < mqtt.reconnect_backoff_min_ms {
        c.fail(
            &at("reconnect_backoff_max_ms"),
            format!(
                "{} ms is less than reconnect_backoff_min_ms ({} ms)",
                mqtt.reconnect_backoff_max_ms, mqtt.reconnect_backoff_min_ms
            ),
        );
    }
    if mqtt.publishes_per_s == 0 {
        c.fail(&at("publishes_per_s"), "must be at least 1");
    }
    if mqtt.bytes_per_s < buffer.max_payload_bytes {
        c.fail(
            &at("bytes_per_s"),
            format!(
                "{} is less than buffer.max_payload_bytes ({}): a full batch could never be sent",
                mqtt.bytes_per_s, buffer.max_payload_bytes
            ),
        );
    }
    if mqtt.max_inflight == 0 {
        c.fail(&at("max_inflight"), "must be at least 1");
    }
}

fn check_buffer(c: &mut Checker<'_>, buffer: &BufferConfig) {
    let at = |field| [Seg::Key("buffer"), Seg::Key(field)];
    if buffer.path.as_os_str().is_empty() {
        c.fail(&at("path"), "is empty; give the buffer's directory");
    }
    if !(1024..=131_072).contains(&buffer.max_payload_bytes) {
        c.fail(
            &at("max_payload_bytes"),
            format!(
                "{} is outside 1024..=131072 (131072 = 128 KiB is the AWS IoT payload limit)",
                buffer.max_payload_bytes
            ),
        );
    }
    let min_bytes = (1 << 20).max(4 * u64::from(buffer.max_payload_bytes));
    if buffer.max_bytes < min_bytes {
        c.fail(
            &at("max_bytes"),
            format!(
                "{} bytes is too small; at least {min_bytes} (1 MiB and 4 × max_payload_bytes)",
                buffer.max_bytes
            ),
        );
    }
    if buffer.cache_bytes > buffer.max_bytes {
        c.fail(
            &at("cache_bytes"),
            format!(
                "{} is more than max_bytes ({})",
                buffer.cache_bytes, buffer.max_bytes
            ),
        );
    }
    if buffer.seal_interval_ms < 100 {
        c.fail(
            &at("seal_interval_ms"),
            format!("{} ms is less than 100 ms", buffer.seal_interval_ms),
        );
    }
}

fn check_devices(c: &mut Checker<'_>, devices: &[DeviceConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    // One serial line has one setting; the first device on it sets it.
    let mut buses: HashMap<&PathBuf, usize> = HashMap::new();
    for (i, device) in devices.iter().enumerate() {
        let at = |field: &'static str| vec![Seg::Key("devices"), Seg::Index(i), Seg::Key(field)];
        check_name(c, &at("name"), &device.name);
        if let Some(first) = names.insert(&device.name, i) {
            let first_line = c.line_of(&[Seg::Key("devices"), Seg::Index(first), Seg::Key("name")]);
            c.fail(
                &at("name"),
                format!(
                    "{:?} is already the name of devices[{first}] (line {first_line})",
                    device.name
                ),
            );
            names.insert(&device.name, first);
        }
        check_transport(c, i, device);
        if let Controller::Serial { path } = &device.controller {
            if let Some(&first) = buses.get(path) {
                let (mine, theirs) = (device.serial_settings(), devices[first].serial_settings());
                if mine != theirs {
                    let first_line = c.line_of(&[Seg::Key("devices"), Seg::Index(first)]);
                    c.fail(
                        &at("controller"),
                        format!(
                            "{} is set up as {} by devices[{first}] (line {first_line}) but as {} here; \
                             one serial line has one baud rate, data bits, parity and stop bits",
                            device.controller,
                            theirs.map(|s| s.to_string()).unwrap_or_default(),
                            mine.map(|s| s.to_string()).unwrap_or_default(),
                        ),
                    );
                }
            } else {
                buses.insert(path, i);
            }
        }
        check_timing(c, i, device);
        if device.points.is_empty() {
            c.fail(
                &at("points"),
                "the device has no [[devices.points]]; add at least one",
            );
        }
        check_points(c, i, device);
    }
}

fn check_name(c: &mut Checker<'_>, path: &[Seg], name: &str) {
    if name.is_empty() {
        c.fail(path, "is empty");
    } else if let Some((pos, ch)) = name
        .chars()
        .enumerate()
        .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '-')))
    {
        c.fail(
            path,
            format!("{name:?} has {ch:?} at position {pos}; allowed are A-Z a-z 0-9 _ . : -"),
        );
    } else if name.len() > MAX_METER_NAME_LEN {
        c.fail(
            path,
            format!(
                "is {} characters long; at most {MAX_METER_NAME_LEN} are allowed",
                name.len()
            ),
        );
    }
}

fn check_transport(c: &mut Checker<'_>, i: usize, device: &DeviceConfig) {
    let at = |field: &'static str| vec![Seg::Key("devices"), Seg::Index(i), Seg::Key(field)];
    let serial = matches!(device.controller, Controller::Serial { .. });
    match (device.transmission_mode, serial) {
        (Some(TransmissionMode::Tcp), true) => c.fail(
            &at("transmission_mode"),
            "\"TCP\" needs a tcp:// controller; use \"RTU\" (or leave it out) for file://",
        ),
        (Some(TransmissionMode::Rtu), false) => c.fail(
            &at("transmission_mode"),
            "\"RTU\" needs a file:// (serial) controller; RTU over TCP is not supported",
        ),
        _ => {}
    }
    if serial {
        if device.unit_id == 0 {
            c.fail(
                &at("unit_id"),
                "0 is the RTU broadcast address, which no device answers; use 1..=247",
            );
        }
        if device.baud_rate == Some(0) {
            c.fail(&at("baud_rate"), "0 is not a baud rate");
        }
        if let Some(bits) = device.data_bits.filter(|b| !(5..=8).contains(b)) {
            c.fail(&at("data_bits"), format!("{bits} is outside 5..=8"));
        }
        if let Some(bits) = device.stop_bits.filter(|b| !(1..=2).contains(b)) {
            c.fail(&at("stop_bits"), format!("{bits} is not 1 or 2"));
        }
    } else {
        let serial_only = [
            ("baud_rate", device.baud_rate.is_some()),
            ("data_bits", device.data_bits.is_some()),
            ("parity", device.parity.is_some()),
            ("stop_bits", device.stop_bits.is_some()),
        ];
        for (field, set) in serial_only {
            if set {
                c.fail(&at(field), "applies only to serial (file://) controllers");
            }
        }
    }
    if device.unit_id > 247 {
        c.fail(
            &at("unit_id"),
            format!("{} is outside 0..=247", device.unit_id),
        );
    }
}

fn check_timing(c: &mut Checker<'_>, i: usize, device: &DeviceConfig) {
    let at = |field: &'static str| vec![Seg::Key("devices"), Seg::Index(i), Seg::Key(field)];
    if device.poll_interval_ms < MIN_POLL_INTERVAL_MS {
        c.fail(
            &at("poll_interval_ms"),
            format!(
                "{} ms is less than the minimum {MIN_POLL_INTERVAL_MS} ms",
                device.poll_interval_ms
            ),
        );
    }
    if !TIMEOUT_RANGE_MS.contains(&device.timeout_ms) {
        c.fail(
            &at("timeout_ms"),
            format!("{} ms is outside {TIMEOUT_RANGE_MS:?}", device.timeout_ms),
        );
    }
    if device.backoff_max_ms < device.poll_interval_ms {
        c.fail(
            &at("backoff_max_ms"),
            format!(
                "{} ms is less than poll_interval_ms ({} ms)",
                device.backoff_max_ms, device.poll_interval_ms
            ),
        );
    }
}

fn check_points(c: &mut Checker<'_>, i: usize, device: &DeviceConfig) {
    let mut seen: HashMap<(Quantity, Phase), usize> = HashMap::new();
    for (j, point) in device.points.iter().enumerate() {
        let at = |field: &'static str| -> FieldPath {
            vec![
                Seg::Key("devices"),
                Seg::Index(i),
                Seg::Key("points"),
                Seg::Index(j),
                Seg::Key(field),
            ]
        };
        match (point.register.is_bit(), point.value_type) {
            (false, None) => c.fail(
                &at("type"),
                format!(
                    "is required for {} registers: u16, i16, u32, i32, u64, i64, f32 or f64",
                    point.register
                ),
            ),
            (false, Some(super::ValueType::Bool)) => c.fail(
                &at("type"),
                format!(
                    "bool is for coil and discrete points; a {} register holds u16, i16, u32, i32, \
                     u64, i64, f32 or f64",
                    point.register
                ),
            ),
            (true, Some(t)) if t != super::ValueType::Bool => c.fail(
                &at("type"),
                format!("a {} is one bit: its type is bool, not {t}", point.register),
            ),
            _ => {}
        }
        if point.byte_order.is_16_bit_only() && point.width() > 1 && !point.register.is_bit() {
            c.fail(
                &at("byte_order"),
                format!(
                    "{} is for 16-bit types; {} spans {} registers: use ABCD, DCBA, BADC or CDAB",
                    point.byte_order,
                    point.value_type(),
                    point.width()
                ),
            );
        }
        let end = u32::from(point.address) + u32::from(point.width());
        if end > 65_536 {
            c.fail(
                &at("address"),
                format!(
                    "{} at {} needs addresses {}..={}, past the last address 65535",
                    point.value_type(),
                    point.address,
                    point.address,
                    end - 1
                ),
            );
        }
        if !point.scale.is_finite() || point.scale == 0.0 {
            c.fail(
                &at("scale"),
                format!("{} is not a usable multiplier", point.scale),
            );
        }
        if let Some(e) = point.exponent.filter(|e| !EXPONENT_RANGE.contains(e)) {
            c.fail(&at("exponent"), format!("{e} is outside -9..=9"));
        }
        let key = (point.quantity, point.phase);
        if let Some(&first) = seen.get(&key) {
            let first_line = c.line_of(&[
                Seg::Key("devices"),
                Seg::Index(i),
                Seg::Key("points"),
                Seg::Index(first),
                Seg::Key("quantity"),
            ]);
            c.fail(
                &at("quantity"),
                format!(
                    "{} on phase {:?} is already read by points[{first}] (line {first_line}) of device {:?}",
                    point.quantity.name(),
                    point.phase,
                    device.name
                ),
            );
        } else {
            seen.insert(key, j);
        }
    }
}

fn check_dr(c: &mut Checker<'_>, config: &AgentConfig) {
    let dr = &config.dr;
    let at = |field| [Seg::Key("dr"), Seg::Key(field)];
    if let Some(meter) = &dr.site_meter {
        match config.devices.iter().find(|d| &d.name == meter) {
            None => c.fail(
                &at("site_meter"),
                format!("{meter:?} names no [[devices]] entry"),
            ),
            Some(device)
                if !device
                    .points
                    .iter()
                    .any(|p| p.quantity == Quantity::ActivePower && p.phase == Phase::Total) =>
            {
                c.fail(
                    &at("site_meter"),
                    format!(
                        "device {meter:?} has no active_power point on phase total; the site's \
                         import is read from it"
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if dr.max_shed_s == 0 {
        c.fail(&at("max_shed_s"), "must be at least 1 s");
    }
    if dr.min_poll_interval_ms < MIN_POLL_INTERVAL_MS {
        c.fail(
            &at("min_poll_interval_ms"),
            format!(
                "{} ms is less than the minimum {MIN_POLL_INTERVAL_MS} ms",
                dr.min_poll_interval_ms
            ),
        );
    }
    if !(100..=60_000).contains(&dr.control_interval_ms) {
        c.fail(
            &at("control_interval_ms"),
            format!("{} ms is outside 100..=60000", dr.control_interval_ms),
        );
    }
    if !dr.restore_hysteresis_w.is_finite() || dr.restore_hysteresis_w < 0.0 {
        c.fail(
            &at("restore_hysteresis_w"),
            format!("{} is not a finite number >= 0", dr.restore_hysteresis_w),
        );
    }
    if dr.snapshot_interval_s == 0 {
        c.fail(&at("snapshot_interval_s"), "must be at least 1 s");
    }
    if !TIMEOUT_RANGE_MS.contains(&dr.write_timeout_ms) {
        c.fail(
            &at("write_timeout_ms"),
            format!("{} ms is outside {TIMEOUT_RANGE_MS:?}", dr.write_timeout_ms),
        );
    }
    if dr.write_retries > 10 {
        c.fail(
            &at("write_retries"),
            format!("{} is outside 0..=10", dr.write_retries),
        );
    }
}

fn check_loads(c: &mut Checker<'_>, loads: &[super::LoadConfig], devices: &[DeviceConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, load) in loads.iter().enumerate() {
        let at = |field: &'static str| vec![Seg::Key("loads"), Seg::Index(i), Seg::Key(field)];
        check_name(c, &at("name"), &load.name);
        if let Some(first) = names.insert(&load.name, i) {
            let first_line = c.line_of(&[Seg::Key("loads"), Seg::Index(first), Seg::Key("name")]);
            c.fail(
                &at("name"),
                format!(
                    "{:?} is already the name of loads[{first}] (line {first_line})",
                    load.name
                ),
            );
            names.insert(&load.name, first);
        }
        let serial = matches!(load.controller, Controller::Serial { .. });
        if serial && let Some(j) = devices.iter().position(|d| d.controller == load.controller) {
            c.fail(
                &at("controller"),
                format!(
                    "{} is the bus of devices[{j}]; a serial load needs a bus of its own \
                     (DR opens its own connection)",
                    load.controller
                ),
            );
        }
        if serial && load.unit_id == 0 {
            c.fail(
                &at("unit_id"),
                "0 is the RTU broadcast address, which no device answers; use 1..=247",
            );
        }
        if load.unit_id > 247 {
            c.fail(
                &at("unit_id"),
                format!("{} is outside 0..=247", load.unit_id),
            );
        }
        if load.coil.is_none() && load.setpoint.is_none() && !load.never_switch {
            c.fail(
                &at("coil"),
                "the load has neither a coil nor a setpoint, so DR cannot act on it; add one or \
                 set never_switch = true",
            );
        }
        if let Some(setpoint) = &load.setpoint
            && (!setpoint.scale.is_finite() || setpoint.scale == 0.0)
        {
            c.fail(
                &at("setpoint"),
                format!("scale {} is not a usable multiplier", setpoint.scale),
            );
        }
        if let Some(power) = &load.power {
            if power.register.is_bit() {
                c.fail(
                    &at("power"),
                    format!(
                        "register {} holds one bit; power is read from \"input\" or \"holding\" registers",
                        power.register
                    ),
                );
            }
            if power.value_type == super::ValueType::Bool {
                c.fail(&at("power"), "type bool cannot hold a power");
            }
            if u32::from(power.address) + u32::from(power.value_type.width()) > 65_536 {
                c.fail(
                    &at("power"),
                    format!(
                        "{} at {} runs past the last address 65535",
                        power.value_type, power.address
                    ),
                );
            }
            if !power.scale.is_finite() || power.scale == 0.0 {
                c.fail(
                    &at("power"),
                    format!("scale {} is not a usable multiplier", power.scale),
                );
            }
        }
        if !load.rated_power_w.is_finite() || load.rated_power_w < 0.0 {
            c.fail(
                &at("rated_power_w"),
                format!("{} is not a finite number >= 0", load.rated_power_w),
            );
        }
        if !(1..=3).contains(&load.simple_level) {
            c.fail(
                &at("simple_level"),
                format!("{} is outside 1..=3", load.simple_level),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    const HEAD: &str = "ven_id = \"v\"\n[mqtt]\nhost = \"h\"\n[buffer]\npath = \"b\"\n";

    #[test]
    fn a_valid_device_has_no_problems() {
        let text = format!(
            "{HEAD}[[devices]]\nname = \"m\"\ncontroller = \"tcp://x\"\nunit_id = 0\n\
             [[devices.points]]\nregister = \"holding\"\naddress = 65534\ntype = \"i32\"\nquantity = \"current\"\n"
        );
        assert_eq!(problems(&text), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = format!(
            "{HEAD}[[devices]]\nname = \"m\"\ncontroller = \"tcp://x\"\nunit_id = 1\nbaud_rate = 9600\n\
             [[devices.points]]\nregister = \"holding\"\naddress = 65535\ntype = \"f32\"\nquantity = \"current\"\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:#?}");
        assert_eq!(
            p[0],
            "t.toml:10:13: devices[0].baud_rate: applies only to serial (file://) controllers"
        );
        assert!(
            p[1].starts_with("t.toml:13:11: devices[0].points[0].address: f32 at 65535"),
            "{p:?}"
        );
    }
}

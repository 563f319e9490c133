//! `agent.toml`: the shipped example parses, and every kind of mistake is
//! reported with the file, line and column of the offending value and a
//! message that names the field.

use std::path::Path;

use gridlink_agent::acquisition;
use gridlink_agent::config::{
    self, ByteOrder, ConfigError, Controller, Parity, RegisterKind, ValueType,
};
use gridlink_protocol::{Phase, Quantity};

/// A valid config; the tests replace one line of it (numbers in comments).
const BASE: &str = r#"ven_id = "ven-1"

[mqtt]
host = "broker.example.com"

[buffer]
path = "/var/lib/gridlink/buffer"

[[devices]]
name = "main"
controller = "tcp://10.0.0.5:502"
unit_id = 1

  [[devices.points]]
  register = "input"
  address = 0
  type = "f32"
  quantity = "voltage"
  phase = "L1"

[[devices]]
name = "pv"
controller = "file:///dev/ttyUSB0"
baud_rate = 9600
unit_id = 2

  [[devices.points]]
  register = "holding"
  address = 100
  type = "i32"
  byte_order = "CDAB"
  quantity = "active_power"
"#;

/// `BASE` with line `n` (from 1) replaced by `text`.
fn with_line(n: usize, text: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    lines[n - 1] = text;
    lines.join("\n") + "\n"
}

fn error(text: &str) -> String {
    match config::parse(text, "agent.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_config_is_valid() {
    let c = config::parse(BASE, "agent.toml").unwrap();
    assert_eq!(c.devices.len(), 2);
    assert_eq!(c.devices[1].points[0].byte_order, ByteOrder::Cdab);
}

#[test]
fn the_example_config_parses_and_resolves_paths() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = config::load(dir.join("agent.example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ven_id.as_str(), "site-42-gw1");
    assert_eq!(c.mqtt.port, 8883);
    assert_eq!(c.mqtt.ca, dir.join("ca.pem"), "relative to the config file");
    assert_eq!(c.mqtt.key, dir.join("key.pem"));
    assert_eq!(c.buffer.path, Path::new("/var/lib/gridlink/buffer"));
    assert_eq!(c.buffer.max_bytes, 256 << 20);
    assert_eq!(c.health.listen.to_string(), "127.0.0.1:9100");

    let names: Vec<&str> = c.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["main", "pv", "heat-pump"]);
    let main = &c.devices[0];
    assert_eq!(
        main.controller,
        Controller::Tcp {
            host: "192.168.10.20".into(),
            port: 502
        }
    );
    assert_eq!(main.points.len(), 12);
    let energy = &main.points[10];
    assert_eq!(
        (energy.quantity, energy.scale, energy.exponent()),
        (Quantity::EnergyImport, 1000.0, 0)
    );
    let frequency = main
        .points
        .iter()
        .find(|p| p.quantity == Quantity::Frequency)
        .unwrap();
    assert_eq!(frequency.exponent(), -3);
    assert_eq!(main.points[0].phase, Phase::L1);
    assert_eq!(main.points[0].exponent(), -1);

    let pv = &c.devices[1];
    let serial = pv.serial_settings().unwrap();
    assert_eq!(
        (
            serial.baud_rate,
            serial.data_bits,
            serial.parity,
            serial.stop_bits
        ),
        (9600, 8, Parity::None, 1)
    );
    assert_eq!(pv.points[0].register, RegisterKind::Holding);
    assert_eq!(pv.points[1].value_type(), ValueType::U64);

    // The two serial devices share one bus: two controllers in all, the
    // bus polling its devices in turn.
    let endpoints = acquisition::endpoints(&c);
    assert_eq!(endpoints.len(), 2);
    let bus = endpoints.iter().find(|e| e.serial.is_some()).unwrap();
    assert_eq!(
        bus.devices.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [1, 2]
    );
    // SDM630 voltages and currents (0..12) are one request; the rest split
    // at the gaps nobody configured.
    let main_plan = &endpoints
        .iter()
        .find(|e| e.serial.is_none())
        .unwrap()
        .devices[0]
        .1
        .plan;
    let requests: Vec<(u16, u16)> = main_plan
        .requests
        .iter()
        .map(|r| (r.address, r.count))
        .collect();
    assert_eq!(requests, [(0, 12), (52, 2), (60, 4), (70, 6)]);
}

#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a toml block in README.md") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closed");
    let c = config::parse(&readme[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.devices.len(), 2);
}

#[test]
fn load_makes_relative_paths_absolute_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bundle")).unwrap();
    std::fs::write(
        dir.path().join("bundle/agent.toml"),
        BASE.replace("/var/lib/gridlink/buffer", "buf"),
    )
    .unwrap();
    // A relative config path, as `gridlink-agent run --config bundle/agent.toml` gives it.
    let cwd = std::env::current_dir().unwrap();
    let relative = pathdiff(dir.path(), &cwd).join("bundle/agent.toml");
    let c = config::load(&relative).unwrap();
    let bundle = std::fs::canonicalize(dir.path().join("bundle")).unwrap();
    assert!(c.mqtt.cert.is_absolute(), "{}", c.mqtt.cert.display());
    assert_eq!(c.mqtt.cert, bundle.join("cert.pem"));
    assert_eq!(c.buffer.path, bundle.join("buf"));
}

/// `target` relative to `base` (both absolute): `../..` up to the common
/// prefix, then down.
fn pathdiff(target: &Path, base: &Path) -> std::path::PathBuf {
    let (target, base): (Vec<_>, Vec<_>) =
        (target.components().collect(), base.components().collect());
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &target[common..] {
        out.push(part);
    }
    out
}

#[test]
fn a_missing_file_names_the_path() {
    let err = config::load("/nonexistent/agent.toml").unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/agent.toml: "),
        "{err}"
    );
}

#[test]
fn load_reports_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, with_line(16, "  adress = 0")).unwrap();
    let err = config::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:16:3: unknown field `adress`", path.display())),
        "{err}"
    );
}

/// Syntax and schema mistakes, found by the TOML parser: (line, new text,
/// the exact start of the error).
const SCHEMA_MISTAKES: &[(usize, &str, &str)] = &[
    (
        16,
        "  adress = 0",
        "agent.toml:16:3: unknown field `adress`, expected one of `register`, `address`,",
    ),
    (
        4,
        "hots = \"broker\"",
        "agent.toml:4:1: unknown field `hots`, expected one of `host`, `port`,",
    ),
    (
        3,
        "[mqt]",
        "agent.toml:3:2: unknown field `mqt`, expected one of `ven_id`, `mqtt`,",
    ),
    (
        12,
        "unit_id = \"1\"",
        "agent.toml:12:11: invalid type: string \"1\", expected u8",
    ),
    (
        12,
        "unit_id = 300",
        "agent.toml:12:11: invalid value: integer `300`, expected u8",
    ),
    (
        18,
        "  quantity = \"power\"",
        "agent.toml:18:14: unknown variant `power`, expected one of `active_power`,",
    ),
    (
        19,
        "  phase = \"L4\"",
        "agent.toml:19:11: unknown variant `L4`, expected one of `total`, `L1`,",
    ),
    (
        15,
        "  register = \"inputs\"",
        "agent.toml:15:14: unknown variant `inputs`, expected one of `coil`,",
    ),
    (
        17,
        "  type = \"float\"",
        "agent.toml:17:10: unknown variant `float`, expected one of `bool`, `u16`,",
    ),
    (
        31,
        "  byte_order = \"ABDC\"",
        "agent.toml:31:16: unknown variant `ABDC`, expected one of `ABCD`,",
    ),
    (
        11,
        "controller = \"10.0.0.5:502\"",
        "agent.toml:11:14: unsupported controller \"10.0.0.5:502\"; expected \"tcp://host:port\"",
    ),
    (
        11,
        "controller = \"tcp://10.0.0.5:0\"",
        "agent.toml:11:14: invalid port \"0\"",
    ),
    (
        1,
        "ven_id = \"site/1\"",
        "agent.toml:1:10: ven id \"site/1\" contains '/' at position 4",
    ),
    (18, "", "agent.toml:14:3: missing field `quantity`"),
    (4, "", "agent.toml:3:1: missing field `host`"),
    (
        24,
        "baud_rate = 9600.5",
        "agent.toml:24:13: invalid type: floating point `9600.5`, expected u32",
    ),
    (
        7,
        "path = \"/x\"\nmax_bytes = \"lots\"",
        "agent.toml:8:13: invalid type: string \"lots\", expected u64",
    ),
    (
        1,
        "ven_id = \"v\"\n[health]\nlisten = \"localhost\"",
        "agent.toml:3:10: invalid socket address syntax",
    ),
    (
        10,
        "name = \"main\"\nname = \"again\"",
        "agent.toml:11:1: duplicate key",
    ),
];

#[test]
fn schema_mistakes_name_the_field_and_line() {
    for &(line, text, expected) in SCHEMA_MISTAKES {
        let err = error(&with_line(line, text));
        assert!(
            err.starts_with(expected),
            "line {line} {text:?}:\n got  {err}\n want {expected}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Values that parse but cannot work, found by validation: (line, new
/// text, the exact error).
const SEMANTIC_MISTAKES: &[(usize, &str, &str)] = &[
    (
        22,
        "name = \"main\"",
        "agent.toml:22:8: devices[1].name: \"main\" is already the name of devices[0] (line 10)",
    ),
    (
        10,
        "name = \"main meter\"",
        "agent.toml:10:8: devices[0].name: \"main meter\" has ' ' at position 4; allowed are A-Z a-z 0-9 _ . : -",
    ),
    (
        10,
        "name = \"\"",
        "agent.toml:10:8: devices[0].name: is empty",
    ),
    (
        12,
        "unit_id = 248",
        "agent.toml:12:11: devices[0].unit_id: 248 is outside 0..=247",
    ),
    (
        25,
        "unit_id = 0",
        "agent.toml:25:11: devices[1].unit_id: 0 is the RTU broadcast address, which no device answers; use 1..=247",
    ),
    (
        12,
        "unit_id = 1\npoll_interval_ms = 50",
        "agent.toml:13:20: devices[0].poll_interval_ms: 50 ms is less than the minimum 100 ms",
    ),
    (
        12,
        "unit_id = 1\ntimeout_ms = 5",
        "agent.toml:13:14: devices[0].timeout_ms: 5 ms is outside 10..=60000",
    ),
    (
        12,
        "unit_id = 1\nbackoff_max_ms = 500",
        "agent.toml:13:18: devices[0].backoff_max_ms: 500 ms is less than poll_interval_ms (1000 ms)",
    ),
    (
        12,
        "unit_id = 1\nparity = \"E\"",
        "agent.toml:13:10: devices[0].parity: applies only to serial (file://) controllers",
    ),
    (
        12,
        "unit_id = 1\ntransmission_mode = \"RTU\"",
        "agent.toml:13:21: devices[0].transmission_mode: \"RTU\" needs a file:// (serial) controller; RTU over TCP is not supported",
    ),
    (
        24,
        "data_bits = 9",
        "agent.toml:24:13: devices[1].data_bits: 9 is outside 5..=8",
    ),
    (
        17,
        "  type = \"bool\"",
        "agent.toml:17:10: devices[0].points[0].type: bool is for coil and discrete points",
    ),
    (
        17,
        "",
        "agent.toml:14:3: devices[0].points[0].type: is required for input registers: u16, i16, u32, i32, u64, i64, f32 or f64",
    ),
    (
        15,
        "  register = \"coil\"",
        "agent.toml:17:10: devices[0].points[0].type: a coil is one bit: its type is bool, not f32",
    ),
    (
        16,
        "  address = 65535",
        "agent.toml:16:13: devices[0].points[0].address: f32 at 65535 needs addresses 65535..=65536, past the last address 65535",
    ),
    (
        31,
        "  byte_order = \"AB\"",
        "agent.toml:31:16: devices[1].points[0].byte_order: AB is for 16-bit types; i32 spans 2 registers: use ABCD, DCBA, BADC or CDAB",
    ),
    (
        19,
        "  phase = \"L1\"\n  scale = 0.0",
        "agent.toml:20:11: devices[0].points[0].scale: 0 is not a usable multiplier",
    ),
    (
        19,
        "  phase = \"L1\"\n  exponent = 12",
        "agent.toml:20:14: devices[0].points[0].exponent: 12 is outside -9..=9",
    ),
    (
        32,
        "  quantity = \"active_power\"\n  [[devices.points]]\n  register = \"holding\"\n  address = 0\n  type = \"u16\"\n  quantity = \"active_power\"",
        "agent.toml:37:14: devices[1].points[1].quantity: active_power on phase Total is already read by points[0] (line 32) of device \"pv\"",
    ),
    (
        7,
        "path = \"/x\"\nmax_payload_bytes = 200000",
        "agent.toml:8:21: buffer.max_payload_bytes: 200000 is outside 1024..=131072",
    ),
    (
        7,
        "path = \"/x\"\ncache_bytes = 999999999999",
        "agent.toml:8:15: buffer.cache_bytes: 999999999999 is more than max_bytes (268435456)",
    ),
    (
        4,
        "host = \"h\"\nreconnect_backoff_min_ms = 5000\nreconnect_backoff_max_ms = 1000",
        "agent.toml:6:28: mqtt.reconnect_backoff_max_ms: 1000 ms is less than reconnect_backoff_min_ms (5000 ms)",
    ),
    (
        4,
        "host = \"h\"\nbytes_per_s = 1000",
        "agent.toml:5:15: mqtt.bytes_per_s: 1000 is less than buffer.max_payload_bytes (131072): a full batch could never be sent",
    ),
    (
        4,
        "host = \"h\"\nkeep_alive_s = 2",
        "agent.toml:5:16: mqtt.keep_alive_s: 2 s is outside 5..=1200",
    ),
];

#[test]
fn semantic_mistakes_name_the_field_and_line() {
    for &(line, text, expected) in SEMANTIC_MISTAKES {
        let err = error(&with_line(line, text));
        assert!(
            err.starts_with(expected),
            "line {line} {text:?}:\n got  {err}\n want {expected}"
        );
    }
}

#[test]
fn devices_on_one_bus_must_agree_on_the_line_settings() {
    let text = format!(
        "{BASE}\n[[devices]]\nname = \"hp\"\ncontroller = \"file:///dev/ttyUSB0\"\nbaud_rate = 19200\nunit_id = 3\n\
         [[devices.points]]\nregister = \"input\"\naddress = 0\ntype = \"f32\"\nquantity = \"active_power\"\n"
    );
    assert_eq!(
        error(&text),
        "agent.toml:36:14: devices[2].controller: file:///dev/ttyUSB0 is set up as 9600 8N1 by devices[1] \
         (line 21) but as 19200 8N1 here; one serial line has one baud rate, data bits, parity and stop bits"
    );
    // The same settings written out or left to their defaults agree.
    let text = text.replace("baud_rate = 19200\n", "parity = \"N\"\n");
    config::parse(&text, "agent.toml").unwrap();
}

#[test]
fn a_device_without_points_is_refused() {
    let lines: Vec<&str> = BASE.lines().take(13).collect();
    let err = error(&(lines.join("\n") + "\n"));
    assert_eq!(
        err,
        "agent.toml:9:1: devices[0].points: the device has no [[devices.points]]; add at least one"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = with_line(12, "unit_id = 248\npoll_interval_ms = 10");
    let err = config::parse(&text, "agent.toml").unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].starts_with("agent.toml:12:11: devices[0].unit_id: "));
    assert!(problems[1].starts_with("agent.toml:13:20: devices[0].poll_interval_ms: "));
    assert_eq!(err.to_string(), problems.join("\n"));
}

/// `BASE` with a site meter point on `main` and the given `[dr]` and
/// `[[loads]]` text after it.
fn with_dr(tail: &str) -> String {
    let base = BASE.replace(
        "  quantity = \"voltage\"\n  phase = \"L1\"\n",
        "  quantity = \"voltage\"\n  phase = \"L1\"\n\n  [[devices.points]]\n  register = \"input\"\n  address = 52\n  type = \"f32\"\n  quantity = \"active_power\"\n",
    );
    format!("{base}{tail}")
}

const LOAD: &str = "\n[[loads]]\nname = \"hvac\"\ncontroller = \"tcp://127.0.0.1:5020\"\nunit_id = 1\ncoil = 0\n\
                    rated_power_w = 3000.0\n";

#[test]
fn dr_and_loads_parse_and_are_optional() {
    let c = config::parse(BASE, "agent.toml").unwrap();
    assert!(c.loads.is_empty());
    assert_eq!(c.dr, config::DrConfig::default());
    assert_eq!(c.dr.site_meter, None);

    let text = with_dr(&format!(
        "\n[dr]\nsite_meter = \"main\"\nmax_shed_s = 600\ncontrol_interval_ms = 500\n{LOAD}\
         setpoint = {{ address = 0, scale = 0.5 }}\npower = {{ register = \"input\", address = 4096, type = \"f32\" }}\n\
         priority = 2\nsimple_level = 3\n"
    ));
    let c = config::parse(&text, "agent.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.dr.site_meter.as_deref(), Some("main"));
    assert_eq!((c.dr.max_shed_s, c.dr.control_interval_ms), (600, 500));
    let load = &c.loads[0];
    assert_eq!(load.coil, Some(0));
    assert!((load.setpoint.unwrap().scale - 0.5).abs() < f64::EPSILON);
    assert_eq!(load.power.unwrap().value_type, ValueType::F32);
    assert_eq!(
        (load.priority, load.simple_level, load.never_switch),
        (2, 3, false)
    );
}

#[test]
fn the_example_config_has_dr_and_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let c = config::load(dir.join("agent.example.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.dr.site_meter.as_deref(), Some("main"));
    let names: Vec<&str> = c.loads.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["hvac", "freezer"]);
    assert!(c.loads[1].never_switch);
}

#[test]
fn dr_mistakes_name_the_field_and_line() {
    // A site meter that is not a device.
    let err = error(&with_dr("\n[dr]\nsite_meter = \"grid\"\n"));
    assert!(
        err.contains(":41:14: dr.site_meter: \"grid\" names no [[devices]] entry"),
        "{err}"
    );
    // A device without an active_power/total point.
    let err = error(&with_dr("\n[dr]\nsite_meter = \"pv\"\n").replace(
        "  quantity = \"active_power\"\n\n[dr]",
        "  quantity = \"current\"\n\n[dr]",
    ));
    assert!(err.contains("dr.site_meter: device \"pv\""), "{err}");
    // Duplicate load names, bad level, no coil or setpoint, bad controller.
    let text = with_dr(&format!("{LOAD}{LOAD}simple_level = 4\n"));
    let err = config::parse(&text, "agent.toml").unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("loads[1].name: \"hvac\" is already the name of loads[0] (line 41)"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("loads[1].simple_level: 4 is outside 1..=3"),
        "{problems:?}"
    );
    let err = error(&with_dr(&LOAD.replace("coil = 0\n", "")));
    assert!(
        err.contains("loads[0].coil: the load has neither a coil nor a setpoint"),
        "{err}"
    );
    let err = error(&with_dr(&LOAD.replace("tcp://127.0.0.1:5020", "udp://x")));
    assert!(
        err.starts_with("agent.toml:42:14: unsupported controller"),
        "{err}"
    );
    let err = error(&with_dr(&format!("{LOAD}cooil = 1\n")));
    assert!(err.contains("unknown field `cooil`"), "{err}");
    let err = error(&with_dr(
        "\n[dr]\ncontrol_interval_ms = 10\nwrite_retries = 11\n",
    ));
    assert!(
        err.contains("dr.control_interval_ms: 10 ms is outside 100..=60000"),
        "{err}"
    );
    assert!(
        err.contains("dr.write_retries: 11 is outside 0..=10"),
        "{err}"
    );
}

#[test]
fn a_serial_load_cannot_share_a_polled_bus() {
    let text = format!(
        "{BASE}\n[[loads]]\nname = \"pump\"\ncontroller = \"file:///dev/ttyUSB0\"\nunit_id = 5\ncoil = 0\nrated_power_w = 500.0\n"
    );
    let err = error(&text);
    assert!(
        err.contains("loads[0].controller: file:///dev/ttyUSB0 is the bus of devices[1]"),
        "{err}"
    );
}

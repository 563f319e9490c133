//! `[[devices]]`: the meters the agent polls, and their register maps.
//!
//! The vocabulary is Telegraf's Modbus input, which installers already
//! know: `controller = "tcp://10.0.0.5:502"` or `"file:///dev/ttyUSB0"`,
//! register kinds `coil`, `discrete`, `holding`, `input`, types `u16` ...
//! `f64`, byte orders `ABCD`, `DCBA`, `BADC`, `CDAB`.

use std::fmt;
use std::path::PathBuf;

use gridlink_protocol::{Phase, Quantity};
use serde::Deserialize;

/// One Modbus device (a meter, or one channel of a multi-channel meter)
/// and the points read from it. Its readings carry its `name`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// The meter name the readings are published under: 1 to 64 characters
    /// of `A-Z a-z 0-9 _ . : -`, unique in the file.
    pub name: String,
    /// Where the device is: `"tcp://host:port"` (port 502 if omitted) for
    /// Modbus TCP, or `"file:///dev/ttyUSB0"` for Modbus RTU on a serial
    /// line. Devices with the same controller share one connection (one
    /// RS-485 bus) and are polled one after the other.
    pub controller: Controller,
    /// Optional, as in Telegraf: `"TCP"` (needs a `tcp://` controller),
    /// `"RTU"` (needs a `file://` controller) or `"auto"` (the default: TCP
    /// for `tcp://`, RTU for `file://`).
    #[serde(default)]
    pub transmission_mode: Option<TransmissionMode>,
    /// Serial only: bits per second. Default 9600.
    #[serde(default)]
    pub baud_rate: Option<u32>,
    /// Serial only: data bits, 5 to 8. Default 8.
    #[serde(default)]
    pub data_bits: Option<u8>,
    /// Serial only: `"N"` (none), `"E"` (even) or `"O"` (odd). Default `"N"`.
    #[serde(default)]
    pub parity: Option<Parity>,
    /// Serial only: stop bits, 1 or 2. Default 1.
    #[serde(default)]
    pub stop_bits: Option<u8>,
    /// The Modbus unit id (slave id), 0 to 247. On a serial bus 0 is the
    /// broadcast address, which no device answers, so it is refused there.
    pub unit_id: u8,
    /// How often the device is read, in ms; at least 100. Default 1000.
    /// Polls are aligned to multiples of the interval in UTC, and readings
    /// are stamped with the scheduled time, so they are exactly regular.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long to wait for each answer (and for a TCP connection), in ms;
    /// 10 to 60000. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// After a time-out or a broken link the device is retried after one
    /// poll interval, then two, four ... up to this many ms; at least
    /// `poll_interval_ms`. Default 60000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Registers (or bits) nobody configured that may be read to merge two
    /// points into one request. Default 0: only configured registers are
    /// read (some meters answer an exception for unmapped registers).
    #[serde(default)]
    pub max_gap: u16,
    /// The values read from the device: one `[[devices.points]]` table
    /// each, at least one.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

/// Default of [`DeviceConfig::poll_interval_ms`].
pub const fn default_poll_interval_ms() -> u64 {
    1000
}

/// Default of [`DeviceConfig::timeout_ms`].
pub const fn default_timeout_ms() -> u64 {
    1000
}

/// Default of [`DeviceConfig::backoff_max_ms`].
pub const fn default_backoff_max_ms() -> u64 {
    60_000
}

/// Default of [`DeviceConfig::baud_rate`].
pub const fn default_baud_rate() -> u32 {
    9600
}

/// Default of [`DeviceConfig::data_bits`].
pub const fn default_data_bits() -> u8 {
    8
}

/// Default of [`DeviceConfig::stop_bits`].
pub const fn default_stop_bits() -> u8 {
    1
}

impl DeviceConfig {
    /// The serial line settings with defaults filled in; `None` for a TCP
    /// controller.
    pub fn serial_settings(&self) -> Option<SerialSettings> {
        matches!(self.controller, Controller::Serial { .. }).then(|| SerialSettings {
            baud_rate: self.baud_rate.unwrap_or(default_baud_rate()),
            data_bits: self.data_bits.unwrap_or(default_data_bits()),
            parity: self.parity.unwrap_or_default(),
            stop_bits: self.stop_bits.unwrap_or(default_stop_bits()),
        })
    }
}

/// Where a device is reached. Parsed from a URL string, Telegraf style.
///
/// ```
/// use gridlink_agent::config::Controller;
/// let tcp: Controller = "tcp://10.0.0.5".parse().unwrap();
/// assert_eq!(tcp, Controller::Tcp { host: "10.0.0.5".into(), port: 502 });
/// let rtu: Controller = "file:///dev/ttyUSB0".parse().unwrap();
/// assert_eq!(rtu.to_string(), "file:///dev/ttyUSB0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub enum Controller {
    /// Modbus TCP to `host:port`.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Modbus RTU on a serial line (one RS-485 bus).
    Serial {
        /// The serial device, e.g. `/dev/ttyUSB0`.
        path: PathBuf,
    },
}

/// The standard Modbus TCP port.
pub const MODBUS_TCP_PORT: u16 = 502;

impl std::str::FromStr for Controller {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected \"tcp://host:port\" or \"file:///path/to/serial/device\"";
        if let Some(rest) = s.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (host, port) =
                split_host_port(rest).map_err(|e| format!("{e} in {s:?}; {usage}"))?;
            if host.is_empty() {
                return Err(format!("no host in {s:?}; {usage}"));
            }
            Ok(Self::Tcp { host, port })
        } else if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!("{s:?} is not an absolute device path; {usage}"));
            }
            Ok(Self::Serial {
                path: PathBuf::from(path),
            })
        } else {
            Err(format!("unsupported controller {s:?}; {usage}"))
        }
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("invalid port {p:?}"))
    };
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or("unclosed '['")?;
        let port = match rest.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if rest.is_empty() => MODBUS_TCP_PORT,
            None => return Err(format!("unexpected {rest:?} after the address")),
        };
        return Ok((host.to_string(), port));
    }
    if authority.contains('/') {
        return Err("a path after host:port".to_string());
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err("an IPv6 address needs [brackets]".to_string())
        }
        Some((host, port)) => Ok((host.to_string(), parse_port(port)?)),
        None => Ok((authority.to_string(), MODBUS_TCP_PORT)),
    }
}

impl TryFrom<String> for Controller {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Serial { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// Telegraf's `transmission_mode`; only checked against the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TransmissionMode {
    /// From the controller: TCP for `tcp://`, RTU for `file://`.
    #[serde(rename = "auto")]
    Auto,
    /// Modbus TCP (MBAP header).
    #[serde(rename = "TCP")]
    Tcp,
    /// Modbus RTU (binary frames with CRC) on a serial line.
    #[serde(rename = "RTU")]
    Rtu,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum Parity {
    /// No parity bit.
    #[default]
    #[serde(rename = "N", alias = "none")]
    None,
    /// Even parity.
    #[serde(rename = "E", alias = "even")]
    Even,
    /// Odd parity.
    #[serde(rename = "O", alias = "odd")]
    Odd,
}

/// A serial line's settings, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialSettings {
    /// Bits per second.
    pub baud_rate: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
}

impl Default for SerialSettings {
    /// 9600 baud, 8 data bits, no parity, 1 stop bit.
    fn default() -> Self {
        Self {
            baud_rate: default_baud_rate(),
            data_bits: default_data_bits(),
            parity: Parity::None,
            stop_bits: default_stop_bits(),
        }
    }
}

impl fmt::Display for SerialSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        write!(
            f,
            "{} {}{}{}",
            self.baud_rate, self.data_bits, parity, self.stop_bits
        )
    }
}

/// One value read from a device: where it is, how it is encoded, and what
/// it measures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// The register kind: `coil` (read with function 0x01), `discrete`
    /// (0x02), `holding` (0x03) or `input` (0x04).
    pub register: RegisterKind,
    /// The protocol address of the first register (0-based, as on the
    /// wire; a manual's "30001" or "40001" is address 0).
    pub address: u16,
    /// How the register(s) are encoded: `u16`, `i16`, `u32`, `i32`, `u64`,
    /// `i64`, `f32`, `f64` (1, 2 or 4 registers), or `bool` (one bit).
    /// Required for `holding` and `input`; `coil` and `discrete` are
    /// always `bool` (and may leave it out).
    #[serde(rename = "type", default)]
    pub value_type: Option<ValueType>,
    /// The order of the bytes of a multi-register value, naming the bytes
    /// of the big-endian value `A B C D`: `ABCD` (big endian, high word
    /// first, the Modbus default), `DCBA` (little endian), `BADC` (bytes
    /// swapped in each word), `CDAB` (low word first). 64-bit types extend
    /// the same rule over four registers (`ABCDEFGH`, `HGFEDCBA`,
    /// `BADCFEHG` and `GHEFCDAB` are accepted as names too). For 16-bit
    /// types `AB` and `BA` say the same more plainly. Ignored for bits.
    /// Default `ABCD`.
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// The register value is multiplied by this before it is stored, e.g.
    /// 0.1 for a register counting 0.1 V, or 1000 for kWh into Wh. Default 1.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// What the value measures: `active_power` (W, + import, - export),
    /// `reactive_power` (var), `apparent_power` (VA), `voltage` (V),
    /// `current` (A), `frequency` (Hz), `power_factor`, `energy_import`
    /// or `energy_export` (Wh, cumulative). After `scale` the value must
    /// be in this unit.
    pub quantity: Quantity,
    /// Where it is measured: `total` (the default), `L1`, `L2`, `L3`, `N`,
    /// `L1L2`, `L2L3` or `L3L1`. Each (quantity, phase) appears once per
    /// device.
    #[serde(default = "default_phase")]
    pub phase: Phase,
    /// The resolution kept, as a decimal exponent: the value is stored as
    /// an integer count of `10^exponent` units (-1 = 0.1 V). -9 to 9.
    /// Default per quantity: W, var, VA and Wh 0; V -1; A and Hz -2; power
    /// factor -3.
    #[serde(default)]
    pub exponent: Option<i8>,
}

/// Default of [`PointConfig::scale`].
pub const fn default_scale() -> f64 {
    1.0
}

/// Default of [`PointConfig::phase`].
pub const fn default_phase() -> Phase {
    Phase::Total
}

/// Default of [`PointConfig::exponent`] for each quantity: the resolution
/// meters commonly deliver.
pub const fn default_exponent(quantity: Quantity) -> i8 {
    match quantity {
        Quantity::ActivePower
        | Quantity::ReactivePower
        | Quantity::ApparentPower
        | Quantity::EnergyImport
        | Quantity::EnergyExport => 0,
        Quantity::Voltage => -1,
        Quantity::Current | Quantity::Frequency => -2,
        Quantity::PowerFactor => -3,
    }
}

impl PointConfig {
    /// The value type, `bool` for bit registers when not given.
    pub fn value_type(&self) -> ValueType {
        self.value_type.unwrap_or(ValueType::Bool)
    }

    /// The exponent, or the quantity's default.
    pub fn exponent(&self) -> i8 {
        self.exponent.unwrap_or(default_exponent(self.quantity))
    }

    /// How many registers (or bits) the point spans.
    pub fn width(&self) -> u16 {
        self.value_type().width()
    }
}

/// A Modbus data table, and the function code that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Coils, read with Read Coils (0x01).
    Coil,
    /// Discrete inputs, read with Read Discrete Inputs (0x02).
    Discrete,
    /// Holding registers, read with Read Holding Registers (0x03).
    Holding,
    /// Input registers, read with Read Input Registers (0x04).
    Input,
}

impl RegisterKind {
    /// True for the one-bit tables (coils, discrete inputs).
    pub const fn is_bit(self) -> bool {
        matches!(self, Self::Coil | Self::Discrete)
    }

    /// The most registers (125) or bits (2000) one read request may ask for.
    pub const fn max_per_request(self) -> u16 {
        if self.is_bit() { 2000 } else { 125 }
    }

    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Coil => "coil",
            Self::Discrete => "discrete",
            Self::Holding => "holding",
            Self::Input => "input",
        }
    }
}

impl fmt::Display for RegisterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a point's registers encode its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// One bit of a coil or discrete input.
    Bool,
    /// Unsigned 16-bit integer, one register.
    U16,
    /// Signed 16-bit integer (two's complement), one register.
    I16,
    /// Unsigned 32-bit integer, two registers.
    U32,
    /// Signed 32-bit integer, two registers.
    I32,
    /// Unsigned 64-bit integer, four registers.
    U64,
    /// Signed 64-bit integer, four registers.
    I64,
    /// IEEE 754 single precision, two registers.
    F32,
    /// IEEE 754 double precision, four registers.
    F64,
}

impl ValueType {
    /// Registers (or, for `bool`, bits) the type occupies.
    pub const fn width(self) -> u16 {
        match self {
            Self::Bool | Self::U16 | Self::I16 => 1,
            Self::U32 | Self::I32 | Self::F32 => 2,
            Self::U64 | Self::I64 | Self::F64 => 4,
        }
    }

    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::U16 => "u16",
            Self::I16 => "i16",
            Self::U32 => "u32",
            Self::I32 => "i32",
            Self::U64 => "u64",
            Self::I64 => "i64",
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte order of a value spread over registers, naming the bytes of the
/// big-endian value `A B C D` (most significant first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum ByteOrder {
    /// Big endian, high word first (the Modbus convention).
    #[default]
    #[serde(rename = "ABCD", alias = "ABCDEFGH")]
    Abcd,
    /// Little endian: low word first, bytes swapped in each word.
    #[serde(rename = "DCBA", alias = "HGFEDCBA")]
    Dcba,
    /// High word first, bytes swapped in each word.
    #[serde(rename = "BADC", alias = "BADCFEHG")]
    Badc,
    /// Low word first, bytes in order in each word ("word swap").
    #[serde(rename = "CDAB", alias = "GHEFCDAB")]
    Cdab,
    /// 16-bit types only: big endian (same as `ABCD`).
    #[serde(rename = "AB")]
    Ab,
    /// 16-bit types only: bytes swapped (same as `BADC`).
    #[serde(rename = "BA")]
    Ba,
}

impl ByteOrder {
    /// Whether the two bytes of each register are swapped.
    pub const fn swaps_bytes(self) -> bool {
        matches!(self, Self::Dcba | Self::Badc | Self::Ba)
    }

    /// Whether the registers come low word first.
    pub const fn swaps_words(self) -> bool {
        matches!(self, Self::Dcba | Self::Cdab)
    }

    /// True for the names that only fit 16-bit types (`AB`, `BA`).
    pub const fn is_16_bit_only(self) -> bool {
        matches!(self, Self::Ab | Self::Ba)
    }

    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Abcd => "ABCD",
            Self::Dcba => "DCBA",
            Self::Badc => "BADC",
            Self::Cdab => "CDAB",
            Self::Ab => "AB",
            Self::Ba => "BA",
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        devices: Vec<DeviceConfig>,
    }

    fn parse_devices(text: &str) -> Vec<DeviceConfig> {
        toml::from_str::<Doc>(text).unwrap().devices
    }

    #[test]
    fn device_parses_with_defaults() {
        let devices = parse_devices(
            r#"
            [[devices]]
            name = "main"
            controller = "tcp://10.0.0.5:1502"
            unit_id = 3
              [[devices.points]]
              register = "input"
              address = 12
              type = "f32"
              quantity = "active_power"
            "#,
        );
        let d = &devices[0];
        assert_eq!(d.name, "main");
        assert_eq!(
            d.controller,
            Controller::Tcp {
                host: "10.0.0.5".into(),
                port: 1502
            }
        );
        assert_eq!(d.unit_id, 3);
        assert_eq!(d.poll_interval_ms, 1000);
        assert_eq!(d.timeout_ms, 1000);
        assert_eq!(d.backoff_max_ms, 60_000);
        assert_eq!(d.max_gap, 0);
        assert_eq!(d.serial_settings(), None);
        let p = &d.points[0];
        assert_eq!(p.register, RegisterKind::Input);
        assert_eq!(p.value_type(), ValueType::F32);
        assert_eq!(p.byte_order, ByteOrder::Abcd);
        assert!((p.scale - 1.0).abs() < f64::EPSILON);
        assert_eq!(p.phase, Phase::Total);
        assert_eq!(p.exponent(), 0);
        assert_eq!(p.width(), 2);
    }

    #[test]
    fn serial_device_parses_telegraf_style() {
        let devices = parse_devices(
            r#"
            [[devices]]
            name = "sub.1"
            controller = "file:///dev/ttyUSB0"
            transmission_mode = "RTU"
            baud_rate = 19200
            parity = "E"
            stop_bits = 1
            unit_id = 7
              [[devices.points]]
              register = "holding"
              address = 0
              type = "u32"
              byte_order = "CDAB"
              scale = 0.01
              quantity = "voltage"
              phase = "L2"
              exponent = -2
              [[devices.points]]
              register = "coil"
              address = 3
              quantity = "power_factor"
            "#,
        );
        let d = &devices[0];
        assert_eq!(
            d.controller,
            Controller::Serial {
                path: "/dev/ttyUSB0".into()
            }
        );
        assert_eq!(d.transmission_mode, Some(TransmissionMode::Rtu));
        assert_eq!(
            d.serial_settings(),
            Some(SerialSettings {
                baud_rate: 19200,
                data_bits: 8,
                parity: Parity::Even,
                stop_bits: 1
            })
        );
        assert_eq!(d.serial_settings().unwrap().to_string(), "19200 8E1");
        assert_eq!(d.points[0].register, RegisterKind::Holding);
        assert_eq!(d.points[0].value_type(), ValueType::U32);
        assert_eq!(d.points[0].byte_order, ByteOrder::Cdab);
        assert_eq!(d.points[0].phase, Phase::L2);
        assert_eq!(d.points[0].exponent(), -2);
        assert_eq!(d.points[1].value_type(), ValueType::Bool);
        assert_eq!(d.points[1].exponent(), -3);
    }

    #[test]
    fn controller_urls() {
        let ok = |s: &str| s.parse::<Controller>().unwrap();
        assert_eq!(
            ok("tcp://meter"),
            Controller::Tcp {
                host: "meter".into(),
                port: 502
            }
        );
        assert_eq!(
            ok("tcp://meter:5020/"),
            Controller::Tcp {
                host: "meter".into(),
                port: 5020
            }
        );
        assert_eq!(
            ok("tcp://[::1]:5020"),
            Controller::Tcp {
                host: "::1".into(),
                port: 5020
            }
        );
        assert_eq!(ok("tcp://[::1]").to_string(), "tcp://[::1]:502");
        assert_eq!(ok("tcp://10.1.2.3:502").to_string(), "tcp://10.1.2.3:502");
        assert_eq!(
            ok("file:///dev/ttyS1"),
            Controller::Serial {
                path: "/dev/ttyS1".into()
            }
        );
        for (bad, why) in [
            ("10.0.0.5:502", "unsupported controller"),
            ("udp://x:1", "unsupported controller"),
            ("tcp://:502", "no host"),
            ("tcp://x:0", "invalid port"),
            ("tcp://x:70000", "invalid port"),
            ("tcp://x:502/path", "a path"),
            ("tcp://::1:502", "[brackets]"),
            ("file://dev/ttyUSB0", "not an absolute"),
            ("file://", "not an absolute"),
        ] {
            let err = bad.parse::<Controller>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn byte_orders_and_widths() {
        #[derive(Deserialize)]
        struct B {
            o: ByteOrder,
        }
        let order = |s: &str| toml::from_str::<B>(&format!("o = \"{s}\"")).unwrap().o;
        assert_eq!(order("GHEFCDAB"), ByteOrder::Cdab);
        assert_eq!(order("HGFEDCBA"), ByteOrder::Dcba);
        assert_eq!(order("BA"), ByteOrder::Ba);
        assert!(toml::from_str::<B>("o = \"ACBD\"").is_err());
        assert!(ByteOrder::Dcba.swaps_bytes() && ByteOrder::Dcba.swaps_words());
        assert!(ByteOrder::Badc.swaps_bytes() && !ByteOrder::Badc.swaps_words());
        assert!(!ByteOrder::Cdab.swaps_bytes() && ByteOrder::Cdab.swaps_words());
        assert!(!ByteOrder::Abcd.swaps_bytes() && !ByteOrder::Abcd.swaps_words());
        assert_eq!(ValueType::F64.width(), 4);
        assert_eq!(RegisterKind::Coil.max_per_request(), 2000);
        assert_eq!(RegisterKind::Input.max_per_request(), 125);
        assert_eq!(default_exponent(Quantity::Frequency), -2);
        assert_eq!(default_exponent(Quantity::EnergyExport), 0);
    }
}

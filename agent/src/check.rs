//! `gridlink-agent check`: the installer's commissioning tool. Reads every
//! configured point once and shows, per point, the value with its unit or
//! the exact reason there is none.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = gridlink_agent::config::load("/etc/gridlink/agent.toml")?;
//! let report = gridlink_agent::check::check(&config).await;
//! print!("{report}");
//! std::process::exit(if report.all_ok() { 0 } else { 1 });
//! # }
//! ```
//!
//! prints
//!
//! ```text
//! device  unit  controller           register  address  type  order  quantity      phase  value
//! main    1     tcp://10.0.0.5:502   input     0        f32   ABCD   voltage       L1     230.4 V
//! main    1     tcp://10.0.0.5:502   input     52       f32   ABCD   active_power  total  1520 W
//! pv      2     file:///dev/ttyUSB0  holding   4000     i32   CDAB   active_power  total  timed out after 1000 ms
//!
//! 3 points: 2 read, 1 failed
//! ```

use std::fmt;

use gridlink_protocol::{Phase, Quantity};

use crate::acquisition::{self, PointError};
use crate::config::{AgentConfig, ByteOrder, RegisterKind, ValueType};

/// One point's line in the report.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// The device's name.
    pub device: String,
    /// The device's unit id.
    pub unit_id: u8,
    /// The device's controller URL.
    pub controller: String,
    /// The register kind.
    pub register: RegisterKind,
    /// The first register's address.
    pub address: u16,
    /// The value type.
    pub value_type: ValueType,
    /// The byte order (meaningless for bits).
    pub byte_order: ByteOrder,
    /// What the point measures.
    pub quantity: Quantity,
    /// On which phase.
    pub phase: Phase,
    /// The value, or why there is none.
    pub outcome: Result<Measurement, PointError>,
}

/// A value as it will be published: an integer count of `10^exponent`
/// units of the quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// The scaled integer.
    pub raw: i64,
    /// Its decimal exponent.
    pub exponent: i8,
    /// What it measures (for the unit).
    pub quantity: Quantity,
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled(self.raw, self.exponent))?;
        match self.quantity.unit() {
            "" => Ok(()),
            unit => write!(f, " {unit}"),
        }
    }
}

/// `raw × 10^exponent` written exactly in decimal: (2305, -1) → "230.5".
pub fn format_scaled(raw: i64, exponent: i8) -> String {
    let digits = raw.unsigned_abs().to_string();
    let sign = if raw < 0 { "-" } else { "" };
    if exponent >= 0 {
        if raw == 0 {
            return "0".to_string();
        }
        return format!(
            "{sign}{digits}{}",
            "0".repeat(usize::from(exponent.unsigned_abs()))
        );
    }
    let decimals = usize::from(exponent.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (int, frac) = padded.split_at(padded.len() - decimals);
    format!("{sign}{int}.{frac}")
}

/// Every configured point, read once.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// One row per point: devices in config order, points in config order.
    pub rows: Vec<CheckRow>,
}

impl CheckReport {
    /// True if every point gave a value.
    pub fn all_ok(&self) -> bool {
        self.rows.iter().all(|row| row.outcome.is_ok())
    }

    /// How many points failed.
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|row| row.outcome.is_err()).count()
    }
}

/// Reads every point of every device of `config` once (controllers in
/// parallel, each request with its device's time-out) and reports each.
pub async fn check(config: &AgentConfig) -> CheckReport {
    let polls = acquisition::read_once(config).await;
    let mut rows = Vec::new();
    for (device, poll) in config.devices.iter().zip(polls) {
        for (point, value) in device.points.iter().zip(poll.values) {
            rows.push(CheckRow {
                device: device.name.clone(),
                unit_id: device.unit_id,
                controller: device.controller.to_string(),
                register: point.register,
                address: point.address,
                value_type: point.value_type(),
                byte_order: point.byte_order,
                quantity: point.quantity,
                phase: point.phase,
                outcome: value.map(|raw| Measurement {
                    raw,
                    exponent: point.exponent(),
                    quantity: point.quantity,
                }),
            });
        }
    }
    CheckReport { rows }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows.is_empty() {
            return writeln!(f, "no devices configured");
        }
        let header = [
            "device",
            "unit",
            "controller",
            "register",
            "address",
            "type",
            "order",
            "quantity",
            "phase",
            "value",
        ];
        let cells: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.device.clone(),
                    row.unit_id.to_string(),
                    row.controller.clone(),
                    row.register.to_string(),
                    row.address.to_string(),
                    row.value_type.to_string(),
                    if row.register.is_bit() {
                        "-".to_string()
                    } else {
                        row.byte_order.to_string()
                    },
                    row.quantity.name().to_string(),
                    row.phase.name().to_string(),
                    match &row.outcome {
                        Ok(value) => value.to_string(),
                        Err(error) => error.to_string(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for line in &cells {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut write_line = |line: &[&str]| -> fmt::Result {
            let last = line.len() - 1;
            for (i, cell) in line.iter().enumerate() {
                if i == last {
                    writeln!(f, "{cell}")?;
                } else {
                    write!(f, "{cell:<width$}  ", width = widths[i])?;
                }
            }
            Ok(())
        };
        write_line(&header)?;
        for line in &cells {
            write_line(&line.each_ref().map(String::as_str))?;
        }
        let failed = self.failures();
        writeln!(
            f,
            "\n{} points: {} read, {failed} failed",
            self.rows.len(),
            self.rows.len() - failed
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::acquisition::RequestError;

    #[test]
    fn scaled_values_are_written_exactly() {
        assert_eq!(format_scaled(2305, -1), "230.5");
        assert_eq!(format_scaled(-5, -2), "-0.05");
        assert_eq!(format_scaled(5, -3), "0.005");
        assert_eq!(format_scaled(1000, -3), "1.000");
        assert_eq!(format_scaled(1520, 0), "1520");
        assert_eq!(format_scaled(-12, 2), "-1200");
        assert_eq!(format_scaled(0, 3), "0");
        assert_eq!(format_scaled(i64::MIN, -1), "-922337203685477580.8");
    }

    #[test]
    fn report_renders_an_aligned_table() {
        let row = |device: &str, quantity, outcome| CheckRow {
            device: device.to_string(),
            unit_id: 1,
            controller: "tcp://10.0.0.5:502".to_string(),
            register: RegisterKind::Input,
            address: 52,
            value_type: ValueType::F32,
            byte_order: ByteOrder::Abcd,
            quantity,
            phase: Phase::L1,
            outcome,
        };
        let report = CheckReport {
            rows: vec![
                row(
                    "main",
                    Quantity::Voltage,
                    Ok(Measurement {
                        raw: 2304,
                        exponent: -1,
                        quantity: Quantity::Voltage,
                    }),
                ),
                row(
                    "sub-meter",
                    Quantity::PowerFactor,
                    Ok(Measurement {
                        raw: 987,
                        exponent: -3,
                        quantity: Quantity::PowerFactor,
                    }),
                ),
                row(
                    "pv",
                    Quantity::ActivePower,
                    Err(PointError::Request(Arc::new(RequestError::Timeout(
                        Duration::from_secs(1),
                    )))),
                ),
            ],
        };
        assert!(!report.all_ok());
        assert_eq!(report.failures(), 1);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "device     unit  controller          register  address  type  order  quantity      phase  value"
        );
        assert_eq!(
            lines[1],
            "main       1     tcp://10.0.0.5:502  input     52       f32   ABCD   voltage       L1     230.4 V"
        );
        assert!(lines[2].ends_with("power_factor  L1     0.987"), "{text}");
        assert!(lines[3].ends_with("timed out after 1000 ms"), "{text}");
        assert_eq!(lines[5], "3 points: 2 read, 1 failed");
        assert!(CheckReport::default().all_ok());
    }
}

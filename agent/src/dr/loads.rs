//! The Modbus side of DR: writes to the loads' coils and setpoint
//! registers (with a time-out and retries), and reads of their state and
//! power. Loads on one controller share one connection.
//!
//! Device errors (a Modbus exception: the load said no) and transport
//! errors (time-out, broken link) are counted apart in
//! `gridlink_modbus_errors_total{device="<load>",kind=...}` and named apart
//! in the failure reason.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::acquisition::Link;
use crate::acquisition::decode::raw_value;
use crate::config::{AgentConfig, Controller, LoadConfig, RegisterKind};
use crate::metrics::{Metrics, ModbusErrorKind};

use super::timeline::{Action, Write};

/// First retry delay; doubled per attempt.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A load's state as read from its device.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The load.
    pub name: String,
    /// Its coil, if it has one and it answered.
    pub on: Option<bool>,
    /// Its setpoint register.
    pub setpoint: Option<u16>,
    /// Its measured power, W.
    pub power_w: Option<f64>,
}

/// Connections to the loads' controllers.
#[derive(Debug)]
pub struct LoadIo {
    loads: Vec<LoadConfig>,
    links: BTreeMap<Controller, Link>,
    timeout: Duration,
    retries: u32,
}

impl LoadIo {
    /// Links for every load's controller (opened on first use).
    pub fn new(config: &AgentConfig) -> Self {
        let mut links = BTreeMap::new();
        for load in &config.loads {
            links
                .entry(load.controller.clone())
                .or_insert_with(|| Link::new(load.controller.clone(), None));
        }
        Self {
            loads: config.loads.clone(),
            links,
            timeout: Duration::from_millis(config.dr.write_timeout_ms),
            retries: config.dr.write_retries,
        }
    }

    fn link(&mut self, controller: &Controller) -> &mut Link {
        self.links
            .entry(controller.clone())
            .or_insert_with(|| Link::new(controller.clone(), None))
    }

    /// Performs `action`, retrying with back-off; the error is the reason
    /// for a `failed` acknowledgement.
    pub async fn write(&mut self, action: &Action, metrics: &Metrics) -> Result<(), String> {
        let Some(load) = self.loads.iter().find(|l| l.name == action.load).cloned() else {
            return Err("not configured".to_string());
        };
        let (what, address) = match action.write {
            Write::Coil(_) => ("coil", load.coil),
            Write::Setpoint(_) => ("setpoint register", load.setpoint.map(|s| s.address)),
        };
        let Some(address) = address else {
            return Err(format!("has no {what}"));
        };
        let attempts = self.retries + 1;
        let timeout = self.timeout;
        let mut delay = RETRY_BACKOFF;
        let mut last = None;
        for attempt in 1..=attempts {
            let link = self.link(&load.controller);
            let result = match action.write {
                Write::Coil(on) => link.write_coil(load.unit_id, address, on, timeout).await,
                Write::Setpoint(value) => {
                    link.write_register(load.unit_id, address, value, timeout)
                        .await
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(error) => {
                    metrics.modbus_error(&load.name, error.kind());
                    tracing::debug!(load = %load.name, attempt, %error, "load write failed");
                    last = Some(error);
                    if attempt < attempts {
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2);
                    }
                }
            }
        }
        let error = last.map_or_else(String::new, |e| {
            let kind = match e.kind() {
                ModbusErrorKind::Exception => "device error",
                ModbusErrorKind::Timeout => "time-out",
                ModbusErrorKind::Transport => "transport error",
            };
            format!("{e} ({kind})")
        });
        Err(format!(
            "{what} {address} write on {} unit {} failed after {attempts} attempts: {error}",
            load.controller, load.unit_id
        ))
    }

    /// Reads each load's coil, setpoint and power once (at start).
    pub async fn read_states(&mut self, metrics: &Metrics) -> Vec<Observed> {
        let mut out = Vec::new();
        for load in self.loads.clone() {
            let timeout = self.timeout;
            let link = self.link(&load.controller);
            let on = match load.coil {
                Some(address) => {
                    match link
                        .read_raw(load.unit_id, RegisterKind::Coil, address, 1, timeout)
                        .await
                    {
                        Ok(bits) => bits.first().map(|b| *b != 0),
                        Err(error) => {
                            metrics.modbus_error(&load.name, error.kind());
                            tracing::warn!(load = %load.name, %error, "cannot read the load's coil at start");
                            None
                        }
                    }
                }
                None => None,
            };
            let setpoint = match load.setpoint {
                Some(s) => match link
                    .read_raw(load.unit_id, RegisterKind::Holding, s.address, 1, timeout)
                    .await
                {
                    Ok(words) => words.first().copied(),
                    Err(error) => {
                        metrics.modbus_error(&load.name, error.kind());
                        tracing::warn!(load = %load.name, %error, "cannot read the load's setpoint at start");
                        None
                    }
                },
                None => None,
            };
            let power_w = self.read_power(&load, metrics).await;
            tracing::info!(load = %load.name, ?on, ?setpoint, ?power_w, "load state at start");
            out.push(Observed {
                name: load.name.clone(),
                on,
                setpoint,
                power_w,
            });
        }
        out
    }

    /// Reads every load's relay (if it has a coil) and measured power (if
    /// it has a power register): `(name, on, power)`.
    pub async fn read_live(
        &mut self,
        metrics: &Metrics,
    ) -> Vec<(String, Option<bool>, Option<f64>)> {
        let mut out = Vec::new();
        for load in self.loads.clone() {
            let timeout = self.timeout;
            let on = match load.coil {
                Some(address) => {
                    match self
                        .link(&load.controller)
                        .read_raw(load.unit_id, RegisterKind::Coil, address, 1, timeout)
                        .await
                    {
                        Ok(bits) => bits.first().map(|b| *b != 0),
                        Err(error) => {
                            metrics.modbus_error(&load.name, error.kind());
                            None
                        }
                    }
                }
                None => None,
            };
            let power = if load.power.is_some() {
                self.read_power(&load, metrics).await
            } else {
                None
            };
            out.push((load.name.clone(), on, power));
        }
        out
    }

    async fn read_power(&mut self, load: &LoadConfig, metrics: &Metrics) -> Option<f64> {
        let power = load.power?;
        let timeout = self.timeout;
        let link = self.link(&load.controller);
        match link
            .read_raw(
                load.unit_id,
                power.register,
                power.address,
                power.value_type.width(),
                timeout,
            )
            .await
        {
            Ok(words) => {
                let value = raw_value(&words, power.value_type, power.byte_order).as_f64();
                Some(value * power.scale).filter(|v| v.is_finite())
            }
            Err(error) => {
                metrics.modbus_error(&load.name, error.kind());
                None
            }
        }
    }
}

//! The site model: meters, loads and their curves as a pure state machine.
//!
//! Instantaneous values (power, voltage, current, frequency) are pure
//! functions of the seed, the time and the loads' relay and setpoint
//! states ([`crate::noise`]). Energy counters are the only history: they
//! start at seeded values at the model's start time and integrate each
//! meter's total power on a fixed grid of [`TICK_MS`] anchored there, so
//! they too depend only on seed, start, time and the sequence of load
//! changes, never on when or how often the model was read.
//!
//! The model knows no clock: the caller advances it ([`SiteModel::advance`])
//! and it never goes back in time.

use std::f64::consts::PI;

use crate::noise::{Stream, StreamKind, smooth, uniform};

/// Energy counters integrate power on this grid (1 s).
pub const TICK_MS: u64 = 1_000;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const NOMINAL_VOLTAGE_V: f64 = 230.0;
const NOMINAL_FREQUENCY_HZ: f64 = 50.0;
/// Stream ids of loads start here, so they never share a stream with a meter.
const LOAD_ID_BASE: u16 = 0x1000;
/// The stream id of the main meter's base load.
const BASE_LOAD_ID: u16 = 0x0800;

/// The most meters a site can have: unit ids `1..=246` (247 is the test pattern).
pub const MAX_METERS: u8 = 246;
/// The most loads a site can have (their registers must fit the map).
pub const MAX_LOADS: u16 = 128;

/// What a meter measures, from its unit id: unit 1 is the site's main
/// meter; sub-meters cycle through PV, heat pump, EV charger and a general
/// circuit (unit 2 is PV, 3 heat pump, 4 EV charger, 5 circuit, 6 PV, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterKind {
    /// The site's grid connection: base load + all loads + all sub-meters.
    Main,
    /// A PV inverter: negative (exported) power by day, zero at night.
    Pv,
    /// A heat pump: compressor cycles of about 10 minutes, more in the morning and evening.
    HeatPump,
    /// An EV charger: one charging session a day, arriving in the evening.
    EvCharger,
    /// A general circuit (lighting, sockets) following the daily curve.
    Circuit,
}

impl MeterKind {
    /// The kind of the meter at `unit` (1-based; 0, which no meter has,
    /// maps to [`MeterKind::Main`] like 1).
    pub const fn of_unit(unit: u8) -> Self {
        match unit {
            0 | 1 => Self::Main,
            _ => match (unit - 2) % 4 {
                0 => Self::Pv,
                1 => Self::HeatPump,
                2 => Self::EvCharger,
                _ => Self::Circuit,
            },
        }
    }
}

/// One meter's readings, as its registers report them (float32, as an
/// Eastron SDM630 does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterValues {
    /// Phase 1/2/3 line-to-neutral voltage, V.
    pub voltage_v: [f32; 3],
    /// Phase 1/2/3 current, A (unsigned, as the SDM630 reports it).
    pub current_a: [f32; 3],
    /// Phase 1/2/3 active power, W (+ import, - export).
    pub power_w: [f32; 3],
    /// Total system power, W: the sum of the phases.
    pub total_power_w: f32,
    /// Supply frequency, Hz.
    pub frequency_hz: f32,
    /// Import active energy, kWh (cumulative).
    pub import_kwh: f32,
    /// Export active energy, kWh (cumulative).
    pub export_kwh: f32,
}

/// One controllable load's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadValues {
    /// Relay state (its coil): `true` = on.
    pub on: bool,
    /// Setpoint in percent of rated power, 0-100 (its holding register).
    pub setpoint_percent: u16,
    /// Rated power, W (fixed per seed, 500-5000 W).
    pub rated_power_w: f32,
    /// Present power, W: 0 when off.
    pub power_w: f32,
}

#[derive(Debug, Clone)]
struct Load {
    rated_w: f64,
    /// `None`: three-phase, split equally; `Some(p)`: single-phase on phase `p`.
    phase: Option<usize>,
    slot_ms: u64,
    slot_offset_ms: u64,
    on: bool,
    setpoint: u16,
}

#[derive(Debug, Clone)]
struct Meter {
    kind: MeterKind,
    /// Rated power of the sub-meter's device; the base load for the main meter.
    rated_w: f64,
    /// How the meter's power splits over the phases (sums to 1).
    phase_weights: [f64; 3],
    /// Voltage drop between the main meter and this one, V.
    voltage_drop_v: f64,
    import_kwh: f64,
    export_kwh: f64,
}

/// The whole site: meters, loads, time and energy counters.
#[derive(Debug, Clone)]
pub struct SiteModel {
    seed: u64,
    meters: Vec<Meter>,
    loads: Vec<Load>,
    /// The model's present time, ms since the Unix epoch.
    now_ms: u64,
    /// Energy is integrated up to here: `start + n * TICK_MS`.
    integrated_ms: u64,
}

const THIRDS: [f64; 3] = [1.0 / 3.0; 3];

/// Rounds `value` to a multiple of `step`.
fn round_to(value: f64, step: f64) -> f64 {
    (value / step).round() * step
}

impl SiteModel {
    /// A site with `meters` meters (unit ids `1..=meters`) and `loads`
    /// loads, all on at 100 %, whose energy counters start at `start_ms`.
    ///
    /// The caller checks the bounds ([`MAX_METERS`], [`MAX_LOADS`]).
    pub fn new(meters: u8, loads: u16, seed: u64, start_ms: u64) -> Self {
        let meters = (1..=meters)
            .map(|unit| Self::meter_spec(seed, unit))
            .collect();
        let loads = (1..=loads).map(|k| Self::load_spec(seed, k)).collect();
        Self {
            seed,
            meters,
            loads,
            now_ms: start_ms,
            integrated_ms: start_ms,
        }
    }

    fn meter_spec(seed: u64, unit: u8) -> Meter {
        let kind = MeterKind::of_unit(unit);
        let id = u16::from(unit);
        let draw =
            |channel, index| uniform(seed, Stream::new(StreamKind::Parameter, id, channel), index);
        let rated_w = match kind {
            MeterKind::Main => round_to(300.0 + 900.0 * draw(0, 0), 10.0),
            MeterKind::Pv => round_to(3_000.0 + 7_000.0 * draw(0, 0), 100.0),
            MeterKind::HeatPump => round_to(1_500.0 + 1_500.0 * draw(0, 0), 10.0),
            MeterKind::EvCharger => {
                if draw(0, 0) < 0.5 {
                    7_400.0
                } else {
                    11_000.0
                }
            }
            MeterKind::Circuit => round_to(500.0 + 2_500.0 * draw(0, 0), 10.0),
        };
        let phase_weights = match kind {
            MeterKind::Main => {
                let raw = [
                    0.3 + 0.1 * draw(1, 0),
                    0.3 + 0.1 * draw(1, 1),
                    0.3 + 0.1 * draw(1, 2),
                ];
                let sum: f64 = raw.iter().sum();
                raw.map(|w| w / sum)
            }
            MeterKind::Circuit => {
                let mut weights = [0.0; 3];
                weights[usize::from(unit - 2) / 4 % 3] = 1.0;
                weights
            }
            MeterKind::Pv | MeterKind::HeatPump | MeterKind::EvCharger => THIRDS,
        };
        let voltage_drop_v = match kind {
            MeterKind::Main => 0.0,
            _ => 0.1 + 0.5 * draw(2, 0),
        };
        let energy =
            |channel, index| uniform(seed, Stream::new(StreamKind::Energy, id, channel), index);
        let import_kwh = 10.0 + 90.0 * energy(0, 0);
        let export_kwh = match kind {
            MeterKind::Main | MeterKind::Pv => 1.0 + 49.0 * energy(1, 0),
            _ => 0.0,
        };
        Meter {
            kind,
            rated_w,
            phase_weights,
            voltage_drop_v,
            import_kwh,
            export_kwh,
        }
    }

    fn load_spec(seed: u64, k: u16) -> Load {
        let draw = |channel| {
            uniform(
                seed,
                Stream::new(StreamKind::Parameter, LOAD_ID_BASE + k, channel),
                0,
            )
        };
        let rated_w = 500.0 + 50.0 * (draw(0) * 91.0).floor();
        let phase = if rated_w >= 3_000.0 {
            None
        } else {
            Some(usize::from(k - 1) % 3)
        };
        let slot_ms = 300_000 + (draw(1) * 600_000.0) as u64;
        let slot_offset_ms = (draw(2) * slot_ms as f64) as u64;
        Load {
            rated_w,
            phase,
            slot_ms,
            slot_offset_ms,
            on: true,
            setpoint: 100,
        }
    }

    /// Number of meters.
    pub fn meter_count(&self) -> u8 {
        self.meters.len() as u8
    }

    /// Number of loads.
    pub fn load_count(&self) -> u16 {
        self.loads.len() as u16
    }

    /// Moves the model to `t_ms`, integrating energy up to there. A time
    /// before the present is ignored: the model never goes back, so energy
    /// counters never decrease.
    pub fn advance(&mut self, t_ms: u64) {
        if t_ms <= self.now_ms {
            return;
        }
        self.now_ms = t_ms;
        let hours = TICK_MS as f64 / HOUR_MS as f64;
        let mut powers = vec![[0.0; 3]; self.meters.len()];
        while self.integrated_ms + TICK_MS <= t_ms {
            self.phase_powers(self.integrated_ms, &mut powers);
            for (meter, phases) in self.meters.iter_mut().zip(&powers) {
                let total_w: f64 = phases.iter().sum();
                if total_w >= 0.0 {
                    meter.import_kwh += total_w / 1_000.0 * hours;
                } else {
                    meter.export_kwh += -total_w / 1_000.0 * hours;
                }
            }
            self.integrated_ms += TICK_MS;
        }
    }

    /// The meter at `unit` (1-based), at the present time.
    pub fn meter(&self, unit: u8) -> Option<MeterValues> {
        let index = usize::from(unit).checked_sub(1)?;
        let meter = self.meters.get(index)?;
        let t = self.now_ms;
        let mut powers = vec![[0.0; 3]; self.meters.len()];
        self.phase_powers(t, &mut powers);
        let phases = powers[index];
        let voltage = [0, 1, 2].map(|phase| self.grid_voltage(phase, t) - meter.voltage_drop_v);
        let current = [0, 1, 2].map(|phase| phases[phase].abs() / voltage[phase]);
        Some(MeterValues {
            voltage_v: voltage.map(|v| v as f32),
            current_a: current.map(|a| a as f32),
            power_w: phases.map(|w| w as f32),
            total_power_w: phases.iter().sum::<f64>() as f32,
            frequency_hz: grid_frequency(t) as f32,
            import_kwh: meter.import_kwh as f32,
            export_kwh: meter.export_kwh as f32,
        })
    }

    /// The kind of the meter at `unit`, if the site has it.
    pub fn meter_kind(&self, unit: u8) -> Option<MeterKind> {
        let index = usize::from(unit).checked_sub(1)?;
        self.meters.get(index).map(|m| m.kind)
    }

    /// Load `k` (1-based), at the present time.
    pub fn load(&self, k: u16) -> Option<LoadValues> {
        let load = self.loads.get(usize::from(k).checked_sub(1)?)?;
        Some(LoadValues {
            on: load.on,
            setpoint_percent: load.setpoint,
            rated_power_w: load.rated_w as f32,
            power_w: self.load_power(k, load, self.now_ms) as f32,
        })
    }

    /// Switches load `k`'s relay; `false` if there is no such load.
    pub fn set_load_on(&mut self, k: u16, on: bool) -> bool {
        match self.load_mut(k) {
            Some(load) => {
                load.on = on;
                true
            }
            None => false,
        }
    }

    /// Sets load `k`'s setpoint (percent, the caller checks 0-100);
    /// `false` if there is no such load.
    pub fn set_load_setpoint(&mut self, k: u16, percent: u16) -> bool {
        match self.load_mut(k) {
            Some(load) => {
                load.setpoint = percent;
                true
            }
            None => false,
        }
    }

    fn load_mut(&mut self, k: u16) -> Option<&mut Load> {
        self.loads.get_mut(usize::from(k).checked_sub(1)?)
    }

    /// Every meter's phase powers at `t_ms`, into `out` (one entry per meter).
    /// The main meter sees its base load, every load and every sub-meter.
    fn phase_powers(&self, t_ms: u64, out: &mut [[f64; 3]]) {
        let mut main = [0.0; 3];
        for (index, meter) in self.meters.iter().enumerate() {
            let unit = index as u16 + 1;
            let total = match meter.kind {
                MeterKind::Main => self.base_power(meter, t_ms),
                MeterKind::Pv => self.pv_power(unit, meter, t_ms),
                MeterKind::HeatPump => self.heat_pump_power(unit, meter, t_ms),
                MeterKind::EvCharger => self.ev_power(unit, meter, t_ms),
                MeterKind::Circuit => self.circuit_power(unit, meter, t_ms),
            };
            let phases = meter.phase_weights.map(|w| w * total);
            out[index] = phases;
            for phase in 0..3 {
                main[phase] += phases[phase];
            }
        }
        for (index, load) in self.loads.iter().enumerate() {
            let power = self.load_power(index as u16 + 1, load, t_ms);
            match load.phase {
                Some(phase) => main[phase] += power,
                None => {
                    for p in &mut main {
                        *p += power / 3.0;
                    }
                }
            }
        }
        if let Some(first) = out.first_mut() {
            *first = main;
        }
    }

    /// Smooth noise in `[-1, 1]` on this site's stream `(kind, id, channel)`.
    fn noise(&self, kind: StreamKind, id: u16, channel: u16, t_ms: u64, period_ms: u64) -> f64 {
        smooth(self.seed, Stream::new(kind, id, channel), t_ms, period_ms)
    }

    /// A uniform draw in `[0, 1)` on this site's stream `(kind, id, channel)`.
    fn draw(&self, kind: StreamKind, id: u16, channel: u16, index: u64) -> f64 {
        uniform(self.seed, Stream::new(kind, id, channel), index)
    }

    /// The part of the main meter's power not switched as a load: fridge,
    /// standby, IT; half constant, half following the daily curve.
    fn base_power(&self, meter: &Meter, t_ms: u64) -> f64 {
        let profile = daily_profile(hour_of_day(t_ms));
        let noise = 0.05 * self.noise(StreamKind::Drift, BASE_LOAD_ID, 0, t_ms, 120_000)
            + 0.02 * self.noise(StreamKind::Jitter, BASE_LOAD_ID, 0, t_ms, 2_000);
        meter.rated_w * (0.5 + 0.5 * profile) * (1.0 + noise)
    }

    /// A load's power: duty-cycle slots of 5-15 minutes, high (85-95 % of
    /// rated) more often when the daily curve is high, else low (30-40 %),
    /// with 2 % jitter; times setpoint, zero when the relay is off.
    fn load_power(&self, k: u16, load: &Load, t_ms: u64) -> f64 {
        if !load.on {
            return 0.0;
        }
        let id = LOAD_ID_BASE + k;
        let shifted = t_ms + load.slot_offset_ms;
        let slot = shifted / load.slot_ms;
        let slot_start = (slot * load.slot_ms).saturating_sub(load.slot_offset_ms);
        let duty = 0.3 + 0.6 * daily_profile(hour_of_day(slot_start));
        let level = if self.draw(StreamKind::Slot, id, 0, slot) < duty {
            0.85 + 0.1 * self.draw(StreamKind::Slot, id, 1, slot)
        } else {
            0.3 + 0.1 * self.draw(StreamKind::Slot, id, 2, slot)
        };
        let jitter = 1.0 + 0.02 * self.noise(StreamKind::Jitter, id, 0, t_ms, 2_000);
        load.rated_w * f64::from(load.setpoint) / 100.0 * level * jitter
    }

    /// PV: a sine from 06:00 to 20:00 UTC, peaking at 13:00, shaded by
    /// slowly drifting clouds; negative (exported).
    fn pv_power(&self, unit: u16, meter: &Meter, t_ms: u64) -> f64 {
        let hour = hour_of_day(t_ms);
        if !(6.0..20.0).contains(&hour) {
            return 0.0;
        }
        let sun = (PI * (hour - 6.0) / 14.0).sin().powf(1.3);
        let clouds = (0.75
            + 0.25 * self.noise(StreamKind::Cloud, unit, 0, t_ms, 600_000)
            + 0.1 * self.noise(StreamKind::Cloud, unit, 1, t_ms, 30_000))
        .clamp(0.2, 1.0);
        -meter.rated_w * sun * clouds
    }

    /// Heat pump: 10-minute compressor slots, running more often in the
    /// morning and evening; 20 W standby between runs.
    fn heat_pump_power(&self, unit: u16, meter: &Meter, t_ms: u64) -> f64 {
        const SLOT_MS: u64 = 600_000;
        let slot = t_ms / SLOT_MS;
        let hour = hour_of_day(slot * SLOT_MS);
        let duty = 0.25 + 0.45 * bump(hour, 6.0, 3.0) + 0.3 * bump(hour, 20.0, 3.0);
        if self.draw(StreamKind::Slot, unit, 0, slot) < duty {
            meter.rated_w
                * (0.92 + 0.04 * (1.0 + self.noise(StreamKind::Drift, unit, 0, t_ms, 60_000)))
        } else {
            20.0
        }
    }

    /// EV charger: one session a day, arriving between 16:30 and 19:30 UTC
    /// for 1.5-4.5 h at the charger's rating; 3 W standby otherwise.
    fn ev_power(&self, unit: u16, meter: &Meter, t_ms: u64) -> f64 {
        let day = t_ms / DAY_MS;
        let charging = [day.saturating_sub(1), day].into_iter().any(|d| {
            let arrive = d * DAY_MS
                + ((16.5 + 3.0 * self.draw(StreamKind::Session, unit, 0, d)) * HOUR_MS as f64)
                    as u64;
            let duration =
                ((1.5 + 3.0 * self.draw(StreamKind::Session, unit, 1, d)) * HOUR_MS as f64) as u64;
            (arrive..arrive + duration).contains(&t_ms)
        });
        if charging {
            meter.rated_w * (0.98 + 0.02 * self.noise(StreamKind::Jitter, unit, 0, t_ms, 5_000))
        } else {
            3.0
        }
    }

    /// A general circuit: 15 % constant, the rest following the daily curve.
    fn circuit_power(&self, unit: u16, meter: &Meter, t_ms: u64) -> f64 {
        let profile = daily_profile(hour_of_day(t_ms));
        let noise = 0.05 * self.noise(StreamKind::Drift, unit, 0, t_ms, 60_000)
            + 0.02 * self.noise(StreamKind::Jitter, unit, 0, t_ms, 2_000);
        meter.rated_w * (0.15 + 0.85 * profile) * (1.0 + noise)
    }

    /// The site's line-to-neutral voltage on `phase` (0-2) at the main meter.
    fn grid_voltage(&self, phase: usize, t_ms: u64) -> f64 {
        let phase = phase as u16;
        NOMINAL_VOLTAGE_V
            + 2.5 * self.noise(StreamKind::Voltage, 0, phase, t_ms, 300_000)
            + 1.0 * self.noise(StreamKind::Voltage, 0, 3 + phase, t_ms, 30_000)
            + 0.2 * self.noise(StreamKind::Voltage, 0, 6 + phase, t_ms, 2_000)
    }
}

/// The grid frequency: one synchronous grid, so it does not depend on the
/// seed; a slow wander of a few tens of mHz around 50 Hz.
fn grid_frequency(t_ms: u64) -> f64 {
    let stream = |channel| Stream::new(StreamKind::Frequency, 0, channel);
    NOMINAL_FREQUENCY_HZ
        + 0.04 * smooth(0, stream(0), t_ms, 600_000)
        + 0.015 * smooth(0, stream(1), t_ms, 60_000)
        + 0.003 * smooth(0, stream(2), t_ms, 5_000)
}

/// Hour of the day in UTC, `[0, 24)`.
fn hour_of_day(t_ms: u64) -> f64 {
    (t_ms % DAY_MS) as f64 / HOUR_MS as f64
}

/// A bell around `center` hours with `width` hours standard deviation,
/// wrapping around midnight; 1 at the center.
fn bump(hour: f64, center: f64, width: f64) -> f64 {
    let d = (hour - center).abs();
    let d = d.min(24.0 - d);
    (-0.5 * (d / width).powi(2)).exp()
}

/// The daily load curve, 0.22 at night to 1 at the evening peak: a morning
/// peak around 07:30, a midday shoulder, an evening peak around 19:30 (UTC).
pub fn daily_profile(hour: f64) -> f64 {
    (0.22
        + 0.5 * bump(hour, 7.5, 1.3)
        + 0.18 * bump(hour, 13.0, 2.5)
        + 0.78 * bump(hour, 19.5, 2.0))
    .min(1.0)
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "zero power and seeded ratings are exact, not computed"
)]
mod tests {
    use super::*;

    /// 2025-01-15T00:00:00Z.
    const MIDNIGHT_MS: u64 = 1_736_899_200_000;

    fn at_hour(hour: f64) -> u64 {
        MIDNIGHT_MS + (hour * HOUR_MS as f64) as u64
    }

    #[test]
    fn daily_profile_has_morning_and_evening_peaks() {
        let night = daily_profile(3.0);
        let morning = daily_profile(7.5);
        let midday = daily_profile(13.0);
        let evening = daily_profile(19.5);
        assert!(night < 0.25, "night {night}");
        assert!(
            morning > 0.65 && morning > midday,
            "morning {morning} midday {midday}"
        );
        assert!(evening > 0.95 && evening > morning, "evening {evening}");
        for tenth in 0..240 {
            let p = daily_profile(f64::from(tenth) / 10.0);
            assert!((0.2..=1.0).contains(&p), "{p} at {tenth}");
        }
    }

    #[test]
    fn meter_kinds_cycle_after_the_main_meter() {
        use MeterKind::*;
        let kinds: Vec<_> = (1..=7).map(MeterKind::of_unit).collect();
        assert_eq!(
            kinds,
            [Main, Pv, HeatPump, EvCharger, Circuit, Pv, HeatPump]
        );
    }

    #[test]
    fn main_meter_is_base_plus_loads_plus_sub_meters() {
        let mut model = SiteModel::new(5, 6, 42, at_hour(12.0));
        model.advance(at_hour(12.0) + 1);
        let main = model.meter(1).unwrap();
        let subs: f64 = (2..=5)
            .map(|u| f64::from(model.meter(u).unwrap().total_power_w))
            .sum();
        let loads: f64 = (1..=6)
            .map(|k| f64::from(model.load(k).unwrap().power_w))
            .sum();
        let base = f64::from(main.total_power_w) - subs - loads;
        let rated_base = model.meters[0].rated_w;
        // The base load at noon: 0.5 + 0.5 * profile of rated, within its noise.
        let expect = rated_base * (0.5 + 0.5 * daily_profile(12.0));
        assert!(
            (base - expect).abs() < 0.08 * expect,
            "base {base}, expected ~{expect}"
        );
    }

    #[test]
    fn switching_a_load_off_removes_exactly_its_power() {
        let t = at_hour(19.0);
        let mut model = SiteModel::new(2, 4, 7, t);
        model.advance(t + 500);
        let before = model.meter(1).unwrap().total_power_w;
        let load = model.load(3).unwrap();
        assert!(load.power_w > 100.0, "{load:?}");
        assert!(model.set_load_on(3, false));
        let after = model.meter(1).unwrap().total_power_w;
        assert!(
            (before - after - load.power_w).abs() < 0.01,
            "{before} - {after} != {load:?}"
        );
        assert_eq!(model.load(3).unwrap().power_w, 0.0);
        assert!(!model.set_load_on(5, false), "there is no load 5");
    }

    #[test]
    fn setpoint_scales_load_power() {
        let t = at_hour(8.0);
        let mut model = SiteModel::new(1, 2, 3, t);
        model.advance(t + 10);
        let full = model.load(1).unwrap().power_w;
        assert!(model.set_load_setpoint(1, 25));
        let quarter = model.load(1).unwrap().power_w;
        assert!((quarter - full / 4.0).abs() < 0.01, "{quarter} vs {full}");
    }

    #[test]
    fn phase_values_are_plausible_all_day() {
        let mut model = SiteModel::new(6, 8, 11, MIDNIGHT_MS);
        for minute in (0..24 * 60).step_by(7) {
            model.advance(MIDNIGHT_MS + minute * 60_000);
            for unit in 1..=6 {
                let m = model.meter(unit).unwrap();
                for phase in 0..3 {
                    assert!((225.0..235.0).contains(&m.voltage_v[phase]), "{m:?}");
                    let p = m.voltage_v[phase] * m.current_a[phase];
                    assert!(
                        (p - m.power_w[phase].abs()).abs() < 0.01 + 1e-5 * p,
                        "{m:?}"
                    );
                }
                let sum: f32 = m.power_w.iter().sum();
                assert!((sum - m.total_power_w).abs() < 0.01, "{m:?}");
                assert!((49.9..50.1).contains(&m.frequency_hz), "{m:?}");
            }
        }
    }

    #[test]
    fn pv_exports_by_day_only() {
        let mut model = SiteModel::new(2, 0, 5, MIDNIGHT_MS);
        model.advance(at_hour(2.0));
        assert_eq!(model.meter(2).unwrap().total_power_w, 0.0);
        model.advance(at_hour(13.0));
        assert!(model.meter(2).unwrap().total_power_w < -500.0);
    }

    #[test]
    fn energy_integrates_power_and_never_decreases() {
        let t = at_hour(18.0);
        let mut model = SiteModel::new(1, 3, 9, t);
        let start = model.meter(1).unwrap();
        let mut last = start.import_kwh;
        let mut expect_kwh = f64::from(start.import_kwh);
        for second in 1..=600 {
            // Power sampled at the start of each tick is what gets integrated.
            expect_kwh += f64::from(model.meter(1).unwrap().total_power_w) / 3_600_000.0;
            model.advance(t + second * TICK_MS);
            let now = model.meter(1).unwrap().import_kwh;
            assert!(now >= last);
            last = now;
        }
        assert!(
            (f64::from(last) - expect_kwh).abs() < 1e-3,
            "{last} vs {expect_kwh}"
        );
        assert!(
            last > start.import_kwh + 0.01,
            "10 minutes of load must count"
        );
        model.advance(t);
        assert_eq!(
            model.meter(1).unwrap().import_kwh,
            last,
            "time never goes back"
        );
    }

    #[test]
    fn values_depend_on_seed_and_time_not_on_read_pattern() {
        let start = at_hour(7.0);
        let end = start + 3_600_000 + 123;
        let mut a = SiteModel::new(4, 5, 1234, start);
        let mut b = SiteModel::new(4, 5, 1234, start);
        for step in 1..=36 {
            a.advance(start + step * 97_301);
        }
        assert!(
            start + 36 * 97_301 < end,
            "a is read at other times before the end"
        );
        a.advance(end);
        b.advance(end);
        for unit in 1..=4 {
            assert_eq!(a.meter(unit), b.meter(unit), "unit {unit}");
        }
        for k in 1..=5 {
            assert_eq!(a.load(k), b.load(k), "load {k}");
        }
        let mut other = SiteModel::new(4, 5, 1235, start);
        other.advance(end);
        assert_ne!(a.meter(1), other.meter(1), "another seed, other values");
    }

    #[test]
    fn load_ratings_are_in_range_and_seeded() {
        let model = SiteModel::new(1, MAX_LOADS, 77, 0);
        let ratings: Vec<f32> = (1..=MAX_LOADS)
            .map(|k| model.load(k).unwrap().rated_power_w)
            .collect();
        assert!(
            ratings.iter().all(|w| (500.0..=5_000.0).contains(w)),
            "{ratings:?}"
        );
        assert!(ratings.iter().any(|w| *w < 1_500.0) && ratings.iter().any(|w| *w > 4_000.0));
        let again = SiteModel::new(1, MAX_LOADS, 77, 0);
        assert!(
            (1..=MAX_LOADS)
                .all(|k| again.load(k).unwrap().rated_power_w == ratings[usize::from(k - 1)])
        );
    }
}

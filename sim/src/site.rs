//! [`Site`]: the shared, cheaply cloned handle on one simulated site, read
//! and written by the Modbus servers and by tests alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{LoadValues, MAX_LOADS, MAX_METERS, MeterKind, MeterValues, SiteModel};

/// What to simulate, and which faults to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// Number of meters, at unit ids `1..=meters` (1-246). Unit 1 is the
    /// site's main meter and also carries the loads' coils and registers.
    pub meters: u8,
    /// Number of controllable loads (0-128).
    pub loads: u16,
    /// Seed of every rating, curve and noise.
    pub seed: u64,
    /// Unit ids that never answer, like dead devices on a bus.
    pub silent_units: Vec<u8>,
    /// Every answer is sent this long after its request arrives.
    pub delay: Duration,
    /// Where the energy counters start integrating (their seeded initial
    /// values hold at this instant); `None`: when the site is created.
    /// Integration costs one step per simulated second, on the first read
    /// after a gap, so keep this within days of the times the site is read.
    pub start: Option<SystemTime>,
}

impl Default for SiteConfig {
    /// One main meter, four loads, seed 1, no faults, starting now.
    fn default() -> Self {
        Self {
            meters: 1,
            loads: 4,
            seed: 1,
            silent_units: Vec::new(),
            delay: Duration::ZERO,
            start: None,
        }
    }
}

/// Why a site could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// The meter count is outside 1-246.
    #[error("a site has 1 to {MAX_METERS} meters, not {0}")]
    MeterCount(u8),
    /// The load count is above 128.
    #[error("a site has at most {MAX_LOADS} loads, not {0}")]
    LoadCount(u16),
    /// The start time lies before 1970.
    #[error("the start time lies before the Unix epoch")]
    StartBeforeEpoch,
    /// No load with that number.
    #[error("no load {load}: the site's loads are 1..={loads}")]
    NoSuchLoad {
        /// The load asked for.
        load: u16,
        /// How many loads the site has.
        loads: u16,
    },
    /// A setpoint above 100 %.
    #[error("setpoint {0} % is above 100 %")]
    Setpoint(u16),
}

/// One simulated site: meters, loads and request counters behind an `Arc`,
/// so clones share the same state.
///
/// Reads without a time ([`Site::meter`], [`Site::load`]) happen at the
/// wall-clock now; the `_at` variants take the time explicitly. The site
/// never goes back in time: a time before the latest one it has seen reads
/// as that latest time.
#[derive(Debug, Clone)]
pub struct Site {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: SiteConfig,
    model: Mutex<SiteModel>,
    served: AtomicU64,
}

/// Milliseconds since the Unix epoch; 0 for earlier times.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Site {
    /// Builds the site described by `config`.
    pub fn new(config: SiteConfig) -> Result<Self, SiteError> {
        if !(1..=MAX_METERS).contains(&config.meters) {
            return Err(SiteError::MeterCount(config.meters));
        }
        if config.loads > MAX_LOADS {
            return Err(SiteError::LoadCount(config.loads));
        }
        let start = config.start.unwrap_or_else(SystemTime::now);
        if start < UNIX_EPOCH {
            return Err(SiteError::StartBeforeEpoch);
        }
        let model = SiteModel::new(config.meters, config.loads, config.seed, unix_ms(start));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                model: Mutex::new(model),
                served: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration the site was built with.
    pub fn config(&self) -> &SiteConfig {
        &self.shared.config
    }

    /// Meter `unit`'s readings now; `None` if the site has no such meter.
    pub fn meter(&self, unit: u8) -> Option<MeterValues> {
        self.meter_at(unit, SystemTime::now())
    }

    /// Meter `unit`'s readings at `at` (advancing the site to `at`).
    pub fn meter_at(&self, unit: u8, at: SystemTime) -> Option<MeterValues> {
        self.model_at(at).meter(unit)
    }

    /// What meter `unit` measures; `None` if the site has no such meter.
    pub fn meter_kind(&self, unit: u8) -> Option<MeterKind> {
        self.model().meter_kind(unit)
    }

    /// Load `k`'s (1-based) state now; `None` if there is no such load.
    pub fn load(&self, k: u16) -> Option<LoadValues> {
        self.load_at(k, SystemTime::now())
    }

    /// Load `k`'s (1-based) state at `at` (advancing the site to `at`).
    pub fn load_at(&self, k: u16, at: SystemTime) -> Option<LoadValues> {
        self.model_at(at).load(k)
    }

    /// Switches load `k`'s relay now, as a write to its coil would.
    pub fn set_load_on(&self, k: u16, on: bool) -> Result<(), SiteError> {
        let mut model = self.model_at(SystemTime::now());
        if model.set_load_on(k, on) {
            Ok(())
        } else {
            Err(self.no_such_load(k))
        }
    }

    /// Sets load `k`'s setpoint (percent of rated power, 0-100) now, as a
    /// write to its holding register would.
    pub fn set_load_setpoint(&self, k: u16, percent: u16) -> Result<(), SiteError> {
        if percent > 100 {
            return Err(SiteError::Setpoint(percent));
        }
        let mut model = self.model_at(SystemTime::now());
        if model.set_load_setpoint(k, percent) {
            Ok(())
        } else {
            Err(self.no_such_load(k))
        }
    }

    /// Modbus requests answered so far (with data or an exception), over
    /// all transports. Requests to silent units are not counted.
    pub fn requests_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    pub(crate) fn count_served(&self) {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
    }

    /// The model, advanced to `at`, locked.
    pub(crate) fn model_at(&self, at: SystemTime) -> MutexGuard<'_, SiteModel> {
        let mut model = self.model();
        model.advance(unix_ms(at));
        model
    }

    fn model(&self) -> MutexGuard<'_, SiteModel> {
        // The model is changed only by infallible field updates, so a panic
        // elsewhere while the lock was held cannot leave it half-updated.
        self.shared
            .model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn no_such_load(&self, k: u16) -> SiteError {
        SiteError::NoSuchLoad {
            load: k,
            loads: self.shared.config.loads,
        }
    }
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "a switched-off load draws exactly zero")]
mod tests {
    use super::*;

    #[test]
    fn config_bounds_are_checked() {
        let bad_meters = SiteConfig {
            meters: 0,
            ..SiteConfig::default()
        };
        assert_eq!(Site::new(bad_meters).unwrap_err(), SiteError::MeterCount(0));
        let too_many = SiteConfig {
            meters: 247,
            ..SiteConfig::default()
        };
        assert_eq!(Site::new(too_many).unwrap_err(), SiteError::MeterCount(247));
        let loads = SiteConfig {
            loads: 129,
            ..SiteConfig::default()
        };
        assert_eq!(Site::new(loads).unwrap_err(), SiteError::LoadCount(129));
        let early = SiteConfig {
            start: Some(UNIX_EPOCH - Duration::from_secs(1)),
            ..SiteConfig::default()
        };
        assert_eq!(Site::new(early).unwrap_err(), SiteError::StartBeforeEpoch);
    }

    #[test]
    fn clones_share_state_and_bad_loads_are_errors() {
        let site = Site::new(SiteConfig::default()).unwrap();
        let clone = site.clone();
        site.set_load_on(2, false).unwrap();
        assert!(!clone.load(2).unwrap().on);
        assert_eq!(clone.load(2).unwrap().power_w, 0.0);
        assert_eq!(
            site.set_load_on(5, false).unwrap_err(),
            SiteError::NoSuchLoad { load: 5, loads: 4 }
        );
        assert_eq!(
            site.set_load_setpoint(1, 101).unwrap_err(),
            SiteError::Setpoint(101)
        );
        site.set_load_setpoint(1, 30).unwrap();
        assert_eq!(clone.load(1).unwrap().setpoint_percent, 30);
        assert!(site.load(0).is_none() && site.meter(2).is_none());
        assert_eq!(site.meter_kind(1), Some(MeterKind::Main));
    }
}

//! gridlink-sim: a Modbus site simulator for tests, benchmarks and demos.
//!
//! A [`Site`] simulates meters and controllable loads:
//!
//! * meters at unit ids `1..=N` with the input register map of an Eastron
//!   SDM630 ([`registers::sdm630`]): float32 `ABCD` voltages, currents,
//!   powers, frequency and energy counters. Unit 1 is the site's main
//!   meter: base load + every load + every sub-meter; units 2.. are
//!   sub-meters (PV, heat pump, EV charger, circuit: [`MeterKind`]);
//! * loads `1..=M` on unit 1: a relay coil at `k - 1`, a setpoint holding
//!   register at `k - 1`, the rated power at `0x0100 + 2 (k - 1)`
//!   ([`registers`]); switching a load off removes its power from the
//!   main meter on the next read;
//! * a [`test_pattern`] unit (247) with every type in every byte order.
//!
//! Power follows a daily curve (morning and evening peaks) with noise and
//! steps, a pure function of the seed and the wall-clock time, so sites
//! with the same seed agree at the same instant. [`serve_tcp`] and
//! [`serve_rtu`] put a site on Modbus TCP and RTU; faults (silent units, a
//! delay) are injected through [`SiteConfig`].
//!
//! The crate depends on no other gridlink crate. The one-command demo,
//! which runs simulated sites with the cloud and the agents, is
//! `gridlink-demo`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gridlink_sim::{Site, SiteConfig, serve_tcp};
//!
//! let site = Site::new(SiteConfig { meters: 3, loads: 4, seed: 7, ..SiteConfig::default() })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = tokio::spawn(serve_tcp(site.clone(), listener));
//!
//! // ... poll `addr` with a Modbus client; compare with the model:
//! let main = site.meter(1).expect("unit 1 is the main meter");
//! println!("{addr}: {} W", main.total_power_w);
//! site.set_load_on(2, false)?; // as a DR command writing coil 1 would
//! server.abort();
//! # Ok(())
//! # }
//! ```

pub mod encoding;
mod model;
mod noise;
pub mod registers;
mod server;
mod site;
pub mod test_pattern;

pub use model::{
    LoadValues, MAX_LOADS, MAX_METERS, MeterKind, MeterValues, TICK_MS, daily_profile,
};
pub use server::{RtuError, serve_rtu, serve_tcp};
pub use site::{Site, SiteConfig, SiteError};

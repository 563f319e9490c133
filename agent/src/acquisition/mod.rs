//! Modbus acquisition: polls every configured device over TCP or RTU and
//! hands the decoded readings to the buffer.
//!
//! The pure parts are tested without sockets: [`plan`] merges points into
//! read requests, [`decode`] turns registers into quantized values and
//! [`schedule`] holds the back-off, timestamp and log-throttle state. The
//! I/O is thin: [`link::Link`] is one connection to a controller and runs
//! one device's poll cycle; each controller gets one task that polls its
//! devices one request at a time.
//!
//! Behaviour worth knowing:
//!
//! * One task per controller (`tcp://host:port`, or a serial port = one
//!   RS-485 bus): devices on different controllers never wait for each
//!   other; devices on one controller take turns, never two requests at
//!   once.
//! * Each device polls on its own [`tokio::time::Interval`] with
//!   [`MissedTickBehavior::Skip`](tokio::time::MissedTickBehavior::Skip),
//!   aligned to multiples of its interval in UTC. A reading's timestamp is
//!   the tick's scheduled time (see [`schedule::WallClock`]), so regular
//!   polls give exactly regular timestamps. A poll delayed by a busy bus
//!   runs late once, stamped with its scheduled time; further missed
//!   ticks are skipped, not caught up.
//! * Every request has the device's time-out. A Modbus exception fails only
//!   that request's points and keeps the connection. A time-out or a broken
//!   link drops the connection and ends the device's cycle; the device then
//!   backs off exponentially (one poll interval, two, four ... up to its
//!   `backoff_max_ms`), so a dead device costs its neighbours on the bus at
//!   most one time-out per back-off period.
//! * Readings go out with `try_send`, never waiting: if the buffer writer
//!   is behind, they are counted in `readings_overflowed` and dropped.
//! * NaN or infinite values (a meter's "not available") and values that do
//!   not fit their exponent are skipped and logged, never sent.
//!
//! ```no_run
//! # async fn demo(config: gridlink_agent::config::AgentConfig) {
//! use std::sync::Arc;
//! use gridlink_agent::{acquisition, metrics::Metrics};
//!
//! let (tx, mut rx) = tokio::sync::mpsc::channel(64);
//! let (stop, shutdown) = tokio::sync::watch::channel(false);
//! let task = tokio::spawn(acquisition::run(Arc::new(config), tx, Arc::new(Metrics::default()), shutdown));
//! while let Some(readings) = rx.recv().await {
//!     println!("{} readings", readings.len());
//! #   break;
//! }
//! stop.send(true).unwrap();
//! task.await.unwrap();
//! # }
//! ```

pub mod decode;
pub mod link;
pub mod plan;
mod poller;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{AgentConfig, Controller, DeviceConfig, PointConfig, SerialSettings};
use crate::metrics::{Metrics, now_ms};
use crate::reading::Reading;
pub use link::{DevicePoll, Link, PointError, RequestError};
use plan::{Plan, RegisterSpan};
pub use poller::{Hooks, SitePowerFeed};

/// A device ready to poll: its settings and its request plan.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    /// The meter name readings carry.
    pub name: Arc<str>,
    /// The Modbus unit id.
    pub unit_id: u8,
    /// Time-out of each request (and of connecting).
    pub timeout: Duration,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// The points, in config order.
    pub points: Vec<PointConfig>,
    /// The read requests covering them.
    pub plan: Plan,
}

impl DevicePlan {
    /// Plans the requests of a configured device.
    pub fn new(device: &DeviceConfig) -> Self {
        let spans: Vec<RegisterSpan> = device.points.iter().map(RegisterSpan::of).collect();
        Self {
            name: Arc::from(device.name.as_str()),
            unit_id: device.unit_id,
            timeout: Duration::from_millis(device.timeout_ms),
            poll_interval: Duration::from_millis(device.poll_interval_ms),
            backoff_max: Duration::from_millis(device.backoff_max_ms),
            points: device.points.clone(),
            plan: plan::plan(&spans, device.max_gap),
        }
    }
}

/// The devices sharing one controller (one connection, one bus).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where they are.
    pub controller: Controller,
    /// Serial line settings (from the first device; validation makes them
    /// agree); `None` for TCP.
    pub serial: Option<SerialSettings>,
    /// The devices, each with its index in the config.
    pub devices: Vec<(usize, DevicePlan)>,
}

/// Groups the configured devices by controller, in controller order.
pub fn endpoints(config: &AgentConfig) -> Vec<Endpoint> {
    let mut by_controller: BTreeMap<&Controller, Endpoint> = BTreeMap::new();
    for (index, device) in config.devices.iter().enumerate() {
        by_controller
            .entry(&device.controller)
            .or_insert_with(|| Endpoint {
                controller: device.controller.clone(),
                serial: device.serial_settings(),
                devices: Vec::new(),
            })
            .devices
            .push((index, DevicePlan::new(device)));
    }
    by_controller.into_values().collect()
}

/// Polls every device of `config` until `shutdown` becomes true (or its
/// sender is dropped), sending one `Vec<Reading>` per device poll on `tx`
/// without ever waiting for room.
///
/// Updates `metrics.polls`, `readings_acquired`, `readings_overflowed` and
/// the per-device Modbus error counters. Returns after shutdown, or once
/// `tx`'s receiver is gone; with no devices it just waits for shutdown. A
/// panic in a controller's task is re-raised here.
pub async fn run(
    config: Arc<AgentConfig>,
    tx: mpsc::Sender<Vec<Reading>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    run_with(config, tx, metrics, shutdown, Hooks::default()).await;
}

/// [`run`], plus the feeds DR and the shadow need: the site meter's total
/// active power on `hooks.site_power` after each of its polls, and a poll
/// interval from `hooks.poll_override` that replaces every device's while
/// it is `Some` (schedules restart aligned to the new interval).
pub async fn run_with(
    config: Arc<AgentConfig>,
    tx: mpsc::Sender<Vec<Reading>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    hooks: Hooks,
) {
    let clock = schedule::WallClock::new(Instant::now(), now_ms());
    let mut tasks = JoinSet::new();
    for endpoint in endpoints(&config) {
        let poller = poller::EndpointPoller::new(
            endpoint,
            clock,
            tx.clone(),
            Arc::clone(&metrics),
            hooks.clone(),
        );
        tasks.spawn(poller.run(shutdown.clone()));
    }
    drop(tx);
    if tasks.is_empty() {
        let _ = shutdown.wait_for(|&stop| stop).await;
        return;
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Reads every point of every device once, controllers in parallel and the
/// devices of one controller one after the other: one [`DevicePoll`] per
/// configured device, in config order. Nothing is retried; each request
/// waits at most its device's time-out.
pub async fn read_once(config: &AgentConfig) -> Vec<DevicePoll> {
    let mut tasks = JoinSet::new();
    for endpoint in endpoints(config) {
        tasks.spawn(async move {
            let mut link = Link::new(endpoint.controller, endpoint.serial);
            let mut polls = Vec::with_capacity(endpoint.devices.len());
            for (index, device) in &endpoint.devices {
                polls.push((*index, link.poll(device).await));
            }
            polls
        });
    }
    let mut polls: Vec<Option<DevicePoll>> = config.devices.iter().map(|_| None).collect();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(done) => {
                for (index, poll) in done {
                    polls[index] = Some(poll);
                }
            }
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => unreachable!("read_once's tasks are never cancelled: {error}"),
        }
    }
    polls
        .into_iter()
        .map(|poll| poll.expect("every device belongs to one endpoint"))
        .collect()
}

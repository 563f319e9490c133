//! The poll loop of one controller (a TCP endpoint or a serial bus): the
//! thin I/O layer around [`Link`], [`Backoff`], [`WallClock`] and the plan.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use gridlink_protocol::{Phase, Quantity};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};
use tracing::{info, warn};

use super::link::{DevicePoll, Link, PointError};
use super::schedule::{Backoff, Throttle, WallClock};
use super::{DevicePlan, Endpoint};
use crate::metrics::{Metrics, ModbusErrorKind, now_ms};
use crate::reading::Reading;

/// Where the site meter's import goes: `(timestamp ms, W)`.
pub type SitePowerFeed = watch::Sender<Option<(i64, f64)>>;

/// What acquisition shares with the rest of the agent beyond readings.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The device whose `active_power` / `total` reading is the site's
    /// import, and where to publish it as `(timestamp ms, W)`.
    pub site_power: Option<(Arc<str>, SitePowerFeed)>,
    /// A poll interval overriding every device's (`None`: as configured).
    pub poll_override: Option<watch::Receiver<Option<std::time::Duration>>>,
}

/// One device's schedule and health on its controller.
struct DeviceState {
    plan: DevicePlan,
    interval: Interval,
    backoff: Backoff,
    last_ts: Option<i64>,
    failure_log: Throttle,
    exception_log: Throttle,
    value_log: Throttle,
    clock_log: Throttle,
}

/// Polls the devices of one controller, one request at a time.
pub(super) struct EndpointPoller {
    controller: String,
    link: Link,
    devices: Vec<DeviceState>,
    clock: WallClock,
    tx: mpsc::Sender<Vec<Reading>>,
    metrics: Arc<Metrics>,
    overflow_log: Throttle,
    hooks: Hooks,
}

impl EndpointPoller {
    pub(super) fn new(
        endpoint: Endpoint,
        clock: WallClock,
        tx: mpsc::Sender<Vec<Reading>>,
        metrics: Arc<Metrics>,
        hooks: Hooks,
    ) -> Self {
        let devices = endpoint
            .devices
            .into_iter()
            .map(|(_, plan)| {
                // Ticks on multiples of the interval in UTC; a tick missed
                // because the bus was busy is skipped, not caught up.
                let mut interval =
                    interval_at(clock.first_aligned(plan.poll_interval), plan.poll_interval);
                interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                DeviceState {
                    backoff: Backoff::new(plan.poll_interval, plan.backoff_max),
                    plan,
                    interval,
                    last_ts: None,
                    failure_log: Throttle::default(),
                    exception_log: Throttle::default(),
                    value_log: Throttle::default(),
                    clock_log: Throttle::default(),
                }
            })
            .collect();
        Self {
            controller: endpoint.controller.to_string(),
            link: Link::new(endpoint.controller, endpoint.serial),
            devices,
            clock,
            tx,
            metrics,
            overflow_log: Throttle::default(),
            hooks,
        }
    }

    /// Restarts every device's schedule with `period` (`None`: each
    /// device's configured interval).
    fn reschedule(&mut self, period: Option<std::time::Duration>) {
        for device in &mut self.devices {
            let period = period.unwrap_or(device.plan.poll_interval);
            let mut interval = interval_at(self.clock.first_aligned(period), period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
            device.interval = interval;
        }
        info!(controller = %self.controller, ?period, "poll interval changed");
    }

    /// Polls until `shutdown` turns true (or its sender is dropped), or
    /// until the readings' receiver is gone.
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut first = 0;
        let mut poll_override = self.hooks.poll_override.take();
        if let Some(rx) = &mut poll_override {
            let period = *rx.borrow_and_update();
            if period.is_some() {
                self.reschedule(period);
            }
        }
        loop {
            let changed = async {
                match &mut poll_override {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let (index, tick) = tokio::select! {
                biased;
                _ = shutdown.wait_for(|&stop| stop) => return,
                alive = changed => {
                    match &mut poll_override {
                        Some(rx) if alive => {
                            let period = *rx.borrow_and_update();
                            self.reschedule(period);
                        }
                        _ => poll_override = None,
                    }
                    continue;
                }
                due = next_due(&mut self.devices, first) => due,
            };
            first = (index + 1) % self.devices.len();
            if !self.devices[index].backoff.ready(tick) {
                continue;
            }
            let poll = tokio::select! {
                biased;
                _ = shutdown.wait_for(|&stop| stop) => return,
                poll = self.link.poll(&self.devices[index].plan) => poll,
            };
            if !self.complete(index, tick, poll) {
                return;
            }
        }
    }

    /// Accounts for one poll of device `index` scheduled at `tick` and
    /// sends its readings. False if the receiver is gone.
    fn complete(&mut self, index: usize, tick: Instant, poll: DevicePoll) -> bool {
        let now = Instant::now();
        self.account(index, tick, now, &poll);
        match self.readings(index, tick, now, poll) {
            Some(readings) => self.send(readings, now),
            None => true,
        }
    }

    /// Metrics, back-off and (rate-limited) logs of one poll.
    fn account(&mut self, index: usize, tick: Instant, now: Instant, poll: &DevicePoll) {
        let device = &mut self.devices[index];
        let name = &device.plan.name;
        self.metrics.polls.fetch_add(1, Ordering::Relaxed);
        for error in &poll.errors {
            self.metrics.modbus_error(name, error.kind());
        }
        if poll.link_failed {
            let delay = device.backoff.failure(tick);
            if let (Some(suppressed), Some(error)) =
                (device.failure_log.allow(now), poll.errors.last())
            {
                warn!(
                    device = %name,
                    controller = %self.controller,
                    %error,
                    failures = device.backoff.failures(),
                    retry_in_ms = delay.as_millis(),
                    suppressed,
                    "Modbus device not reachable; backing off",
                );
            }
        } else {
            let failures = device.backoff.success();
            if failures > 0 {
                info!(device = %name, controller = %self.controller, failures, "Modbus device answers again");
                device.failure_log = Throttle::default();
            }
        }
        for error in poll
            .errors
            .iter()
            .filter(|e| e.kind() == ModbusErrorKind::Exception)
        {
            if let Some(suppressed) = device.exception_log.allow(now) {
                warn!(
                    device = %name,
                    %error,
                    suppressed,
                    "Modbus device refused a request; its points are skipped this cycle",
                );
            }
        }
    }

    /// The readings of one poll, stamped with the tick's time; `None` if
    /// there are none to send.
    fn readings(
        &mut self,
        index: usize,
        tick: Instant,
        now: Instant,
        poll: DevicePoll,
    ) -> Option<Vec<Reading>> {
        let device = &mut self.devices[index];
        let name = &device.plan.name;
        if let Some(step_ms) = self.clock.observe(now, now_ms())
            && let Some(suppressed) = device.clock_log.allow(now)
        {
            info!(
                step_ms,
                suppressed, "wall clock stepped; reading timestamps follow it"
            );
        }
        let ts_ms = self.clock.timestamp(tick);
        if device.last_ts.is_some_and(|last| ts_ms <= last) {
            if let Some(suppressed) = device.clock_log.allow(now) {
                warn!(
                    device = %name,
                    ts_ms,
                    last_ts_ms = device.last_ts,
                    suppressed,
                    "wall clock went back; readings dropped until it passes the last timestamp",
                );
            }
            return None;
        }
        let mut readings = Vec::with_capacity(poll.values.len());
        for (point, value) in device.plan.points.iter().zip(poll.values) {
            match value {
                Ok(raw) => readings.push(Reading {
                    meter: Arc::clone(name),
                    quantity: point.quantity,
                    phase: point.phase,
                    exponent: point.exponent(),
                    ts_ms,
                    raw,
                }),
                Err(PointError::Value(error)) => {
                    if let Some(suppressed) = device.value_log.allow(now) {
                        warn!(
                            device = %name,
                            quantity = point.quantity.name(),
                            phase = ?point.phase,
                            register = %point.register,
                            address = point.address,
                            %error,
                            suppressed,
                            "point skipped",
                        );
                    }
                }
                Err(PointError::Request(_)) => {}
            }
        }
        if readings.is_empty() {
            return None;
        }
        if let Some((site, feed)) = &self.hooks.site_power
            && site == name
            && let Some(r) = readings
                .iter()
                .find(|r| r.quantity == Quantity::ActivePower && r.phase == Phase::Total)
        {
            let watts = r.raw as f64 * 10f64.powi(i32::from(r.exponent));
            feed.send_replace(Some((ts_ms, watts)));
        }
        device.last_ts = Some(ts_ms);
        Some(readings)
    }

    /// Hands one poll's readings to the buffer without waiting. False if
    /// the receiver is gone.
    fn send(&mut self, readings: Vec<Reading>, now: Instant) -> bool {
        let count = readings.len() as u64;
        self.metrics
            .readings_acquired
            .fetch_add(count, Ordering::Relaxed);
        match self.tx.try_send(readings) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics
                    .readings_overflowed
                    .fetch_add(count, Ordering::Relaxed);
                if let Some(suppressed) = self.overflow_log.allow(now) {
                    warn!(
                        controller = %self.controller,
                        readings = count,
                        suppressed,
                        "buffer writer is behind; readings dropped",
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The next device whose interval ticks, starting the search at `first` so
/// devices due together take turns; with the tick's scheduled instant.
async fn next_due(devices: &mut [DeviceState], first: usize) -> (usize, Instant) {
    poll_fn(|cx| {
        let n = devices.len();
        for k in 0..n {
            let i = (first + k) % n;
            if let Poll::Ready(tick) = devices[i].interval.poll_tick(cx) {
                return Poll::Ready((i, tick));
            }
        }
        Poll::Pending
    })
    .await
}

//! The daily export inside `serve`: at `[export] at_utc` every day the
//! previous UTC day is exported.
//!
//! Several `serve` processes may all enable it: the day's lease row
//! (`export_days`) lets one of them export and the others find the day
//! done (or held, then they look again when the lease would expire, in
//! case its holder died). At start the most recent due day is exported if
//! no process has done it yet (a restart over `at_utc` loses nothing).
//! Failures are logged, counted (`gridlink_export_failures_total`) and
//! retried with a backoff from 1 minute doubling to 30 minutes, until the
//! day is exported or the next day becomes due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use time::Time;
use tokio::sync::watch;

use super::{
    Destination, ExportConfig, ExportConfigError, ExportDay, ExportError, ExportJob, ExportMetrics,
    ExportOutcome, export_day,
};
use crate::store::{ExportStore, ProjectStore};

/// First retry delay after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_mins(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_mins(30);

const DAY_MS: i64 = 86_400_000;

/// The day due at `now_ms`: yesterday once today's `at` has passed, else
/// the day before yesterday.
pub fn due_day(now_ms: i64, at: Time) -> Result<ExportDay, ExportConfigError> {
    let today = ExportDay::containing(now_ms)?;
    let due = if now_ms >= today.start_ms() + time_of_day_ms(at) {
        today.previous()
    } else {
        today.previous().and_then(ExportDay::previous)
    };
    due.ok_or(ExportConfigError::NoDayDue)
}

/// The first time after `now_ms` at which a new day becomes due, ms.
pub fn next_run_ms(now_ms: i64, at: Time) -> i64 {
    let start = now_ms - now_ms.rem_euclid(DAY_MS);
    let today = start + time_of_day_ms(at);
    if now_ms < today {
        today
    } else {
        today + DAY_MS
    }
}

fn time_of_day_ms(at: Time) -> i64 {
    (i64::from(at.hour()) * 3600 + i64::from(at.minute()) * 60) * 1000
}

/// Runs the daily export until `stop`. `holder` names this process in the
/// lease (host and process id).
pub async fn run<S: ExportStore + ProjectStore + 'static>(
    store: Arc<S>,
    config: ExportConfig,
    metrics: Arc<ExportMetrics>,
    holder: String,
    mut stop: watch::Receiver<bool>,
) -> (&'static str, anyhow::Result<()>) {
    const TASK: &str = "export";
    let (at, output) = match (config.at(), config.output()) {
        (Ok(at), Ok(output)) => (at, output),
        (Err(e), _) | (_, Err(e)) => return (TASK, Err(anyhow::anyhow!("[export]: {e}"))),
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        let now = super::now_ms();
        let wait = match due_day(now, at) {
            Err(error) => {
                tracing::error!(%error, "export schedule");
                return (TASK, Err(anyhow::anyhow!(error)));
            }
            Ok(day) => {
                let job = ExportJob {
                    day,
                    format: config.format,
                    gap_factor: config.gap_factor,
                    holder: holder.clone(),
                    force: false,
                };
                let started = Instant::now();
                let result = match Destination::open(&output, &config.s3_endpoint_url).await {
                    Ok(destination) => export_day(store.as_ref(), &destination, &job).await,
                    Err(error) => Err(error),
                };
                match result {
                    Ok(outcome) => {
                        backoff = MIN_BACKOFF;
                        if let ExportOutcome::Exported(manifest) = outcome {
                            record_success(&metrics, day, manifest.totals.rows, started);
                            tracing::info!(
                                day = %day,
                                vens = manifest.totals.vens,
                                rows = manifest.totals.rows,
                                gaps = manifest.totals.gaps,
                                output = %output,
                                "daily export written"
                            );
                        }
                        until(next_run_ms(super::now_ms(), at))
                    }
                    Err(ExportError::Held {
                        holder, until: end, ..
                    }) => {
                        tracing::info!(day = %day, holder, until = end, "another process exports the day");
                        MIN_BACKOFF
                    }
                    Err(error) => {
                        metrics.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            day = %day,
                            error = format!("{error:#}"),
                            retry_in = ?backoff,
                            "daily export failed; retrying"
                        );
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|&stop| stop) => return (TASK, Ok(())),
        }
    }
}

fn record_success(metrics: &ExportMetrics, day: ExportDay, rows: u64, started: Instant) {
    metrics.runs.fetch_add(1, Ordering::Relaxed);
    metrics.last_rows.store(rows, Ordering::Relaxed);
    metrics.last_day_ms.store(day.start_ms(), Ordering::Relaxed);
    metrics.last_duration_ms.store(
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// How long until `at_ms` (at least a second, so a clock step never spins).
fn until(at_ms: i64) -> Duration {
    let ms = at_ms.saturating_sub(super::now_ms()).max(1000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(1000))
}

/// The scheduler task `serve` spawns, if `[export] enabled`.
pub fn task(
    store: &Arc<crate::store::AnyStore>,
    config: &ExportConfig,
    metrics: &Arc<ExportMetrics>,
    settings: &crate::mqtt::MqttSettings,
    stop: &watch::Receiver<bool>,
) -> Option<impl Future<Output = (&'static str, anyhow::Result<()>)> + Send + 'static> {
    config.enabled.then(|| {
        run(
            Arc::clone(store),
            config.clone(),
            Arc::clone(metrics),
            holder_name(&settings.client_id),
            stop.clone(),
        )
    })
}

/// This process's name in the lease: the MQTT client id (unique per
/// process, see `mqtt.client_id`) and the process id.
pub fn holder_name(client_id: &str) -> String {
    format!("{client_id}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY0: i64 = 1_763_596_800_000; // 2025-11-20T00:00:00Z

    #[test]
    fn due_day_and_next_run() {
        let at = Time::from_hms(1, 30, 0).unwrap();
        let before = DAY0 + 3_600_000; // 01:00
        let after = DAY0 + 2 * 3_600_000; // 02:00
        assert_eq!(due_day(before, at).unwrap().to_string(), "2025-11-18");
        assert_eq!(due_day(after, at).unwrap().to_string(), "2025-11-19");
        assert_eq!(next_run_ms(before, at), DAY0 + 5_400_000);
        assert_eq!(next_run_ms(after, at), DAY0 + DAY_MS + 5_400_000);
        assert_eq!(
            next_run_ms(DAY0 + 5_400_000, at),
            DAY0 + DAY_MS + 5_400_000,
            "at the time itself the day is due, so the next run is tomorrow"
        );
        let midnight = Time::MIDNIGHT;
        assert_eq!(due_day(DAY0, midnight).unwrap().to_string(), "2025-11-19");
    }
}

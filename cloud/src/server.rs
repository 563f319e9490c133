//! The `serve` command as a library function, so the demo and tests run
//! the whole cloud in-process: migrations, MQTT ingest, the HTTP API and
//! retention, stopped together.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, AppState};
use crate::config::{CloudConfig, RetentionConfig, redact_database_url};
use crate::dispatch::Dispatcher;
use crate::ingest::{self, IngestSettings};
use crate::metrics::Metrics;
pub(crate) use crate::model::clock::now_ms;
use crate::shadow::ShadowService;
use crate::store::{AnyStore, Store};

/// How often `serve` prepares partitions and deletes raw readings past
/// retention.
const RETENTION_INTERVAL: Duration = Duration::from_hours(1);
/// How long `serve` waits for its tasks to finish after a stop signal.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the configured database.
pub async fn connect(config: &CloudConfig) -> anyhow::Result<AnyStore> {
    let url = redact_database_url(&config.database_url);
    AnyStore::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

/// The VTN's notification settings: webhooks through `notifier`, MQTT on
/// the cloud's broker (whose CA the VENs are given by `GET /notifiers`).
fn vtn_state(
    notifier: crate::notify::Notifier,
    config: &CloudConfig,
    settings: &IngestSettings,
) -> api::VtnState {
    api::VtnState {
        notifier: Some(notifier),
        notify_config: config.openadr.notify.clone(),
        mqtt: true,
        mqtt_uri: Some(format!(
            "mqtts://{}:{}",
            settings.mqtt.host, settings.mqtt.port
        )),
        mqtt_ca: std::fs::read_to_string(&settings.mqtt.ca).ok(),
        ..api::VtnState::default()
    }
}

/// Runs ingest, the HTTP API and retention until `shutdown` completes, or
/// until one of them fails (then the others are stopped and the error
/// returned). Migrations are applied first.
pub async fn serve(
    config: CloudConfig,
    settings: IngestSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let store = Arc::new(connect(&config).await?);
    store.migrate().await.context("applying migrations")?;
    store
        .prepare_partitions(now_ms())
        .await
        .context("preparing partitions")?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let metrics = Arc::new(Metrics::default());
    let mut state = AppState::new(Arc::clone(&store), Arc::clone(&metrics))
        .with_max_points(config.http.max_points)
        .with_http_ingest(config.http_ingest.http_ingest());
    let shadow = if config.shadow.enabled {
        let service = ShadowService::new(settings.mqtt.clone(), Arc::clone(&metrics.shadow))
            .context("starting the shadow service")?;
        state = state.with_shadow(service.handle());
        Some(service)
    } else {
        None
    };
    let dispatcher = Dispatcher::new(&settings.mqtt).context("starting the dispatcher")?;
    let dispatch_wake = Arc::clone(&state.dispatch_wake);
    let feed = state.feed.clone();
    let (stop, stopped) = watch::channel(false);
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    // The OpenADR notifier: its webhook worker and MQTT publisher run in
    // `tasks`; the VTN's routes enqueue through it.
    let notifier = crate::notify::spawn(
        &mut tasks,
        Arc::clone(&store),
        &config.openadr.notify,
        Some(&settings.mqtt),
        Arc::clone(&metrics.notify),
        &stopped,
    )
    .context("starting the OpenADR notifier")?;
    let app = api::router(state.with_vtn(vtn_state(notifier, &config, &settings)));

    tracing::info!(
        listen = %config.http.listen,
        database = %redact_database_url(&config.database_url),
        broker = format!("{}:{}", settings.mqtt.host, settings.mqtt.port),
        client_id = settings.mqtt.client_id,
        "gridlink-cloud serving"
    );
    let mut http_stop = stopped.clone();
    tasks.spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|&stop| stop).await;
        };
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        ("http", result.context("HTTP server"))
    });
    let dispatch = dispatcher.run(
        Arc::clone(&store),
        dispatch_wake,
        Arc::clone(&metrics.dispatch),
        stopped.clone(),
    );
    tasks.spawn(async move {
        dispatch.await;
        ("dispatch", Ok(()))
    });
    if let Some(export) = crate::export::schedule::task(
        &store,
        &config.export,
        &metrics.export,
        &settings.mqtt,
        &stopped,
    ) {
        tasks.spawn(export);
    }
    if let Some(alerts) =
        crate::alerts::service(&store, &config.alerts, &metrics.alerts, &feed, &stopped).await?
    {
        tasks.spawn(alerts);
    }
    let ingest = ingest::run(
        settings,
        Arc::clone(&store),
        Arc::clone(&metrics.ingest),
        feed,
        stopped.clone(),
    );
    tasks.spawn(async move { ("ingest", ingest.await.map_err(anyhow::Error::from)) });
    if let Some(service) = shadow {
        let shadow = service.run(Arc::clone(&store), stopped.clone());
        tasks.spawn(async move { ("shadow", shadow.await.map_err(anyhow::Error::from)) });
    }
    tasks.spawn(retention(store, config.retention.clone(), stopped));

    supervise(tasks, shutdown, &stop).await
}

/// Waits for `shutdown` or the first task to end, then stops them all
/// (`stop`) and waits up to [`SHUTDOWN_TIMEOUT`] for them. A task that
/// ended on its own is the error returned.
async fn supervise(
    mut tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: impl Future<Output = ()> + Send,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let failure = tokio::select! {
        () = shutdown => {
            tracing::info!("stop requested; stopping");
            None
        }
        Some(joined) = tasks.join_next() => Some(match joined {
            Ok((task, Ok(()))) => anyhow::anyhow!("{task} stopped unexpectedly"),
            Ok((task, Err(error))) => error.context(format!("{task} failed")),
            Err(error) => anyhow::Error::new(error).context("a task panicked"),
        }),
    };
    let _ = stop.send(true);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((task, Err(error))) => tracing::warn!(
                    task,
                    error = format!("{error:#}"),
                    "task failed while stopping"
                ),
                Ok((_, Ok(()))) => {}
                Err(error) => tracing::warn!(%error, "task panicked while stopping"),
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(timeout = ?SHUTDOWN_TIMEOUT, "tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    failure.map_or(Ok(()), Err)
}

/// Prepares partitions and deletes raw readings past retention now and
/// every hour, until `stop`. Failures are logged and retried next time.
async fn retention(
    store: Arc<AnyStore>,
    config: RetentionConfig,
    mut stop: watch::Receiver<bool>,
) -> (&'static str, anyhow::Result<()>) {
    loop {
        let now = now_ms();
        if let Err(error) = store.prepare_partitions(now).await {
            tracing::warn!(%error, "cannot prepare partitions; retrying in an hour");
        }
        if let Some(age) = config.raw_max_age() {
            let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            match store.enforce_retention(before).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    deleted,
                    raw_days = config.raw_days,
                    "raw readings past retention deleted"
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot enforce retention; retrying in an hour");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = stop.wait_for(|&stop| stop) => return ("retention", Ok(())),
        }
    }
}

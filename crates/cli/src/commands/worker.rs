//! `worker`: work the queue until SIGINT or SIGTERM.

use anyhow::Result;
use pipeline_worker::{RunUntil, Worker};
use std::sync::Arc;
use std::time::Duration;

use crate::app::{store_failure, App};
use crate::commands::{diarizer_loader, engine_loader, worker_settings};

/// `worker [--concurrency N] [--queues a,b]`.
pub async fn run(app: &App, concurrency: Option<usize>, queues: &[String]) -> Result<u8> {
    let config = app.config();
    let store = app.store().await?;
    let settings = worker_settings(config, concurrency);
    let id = settings.id.clone();
    let concurrency = settings.concurrency;
    let queue = super::queue(config, &store, queues)?;
    let transport = queue.name().to_string();
    let relay = super::webhooks::RunningRelay::start(config, &store);
    let mut worker = Worker::new(
        store,
        queue,
        super::storage(config)?,
        settings,
        engine_loader(config, concurrency),
    )
    .with_diarizer(diarizer_loader(config, concurrency));
    if let Some(backend) = super::result_backend(config)? {
        worker = worker.with_result_backend(backend);
    }
    let worker = Arc::new(worker);
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.trigger();
    });
    let source = match &config.broker.url {
        Some(url) => format!(
            "{transport} broker {} (queues {})",
            pipeline_core::config::mask_url(url),
            if queues.is_empty() {
                config.broker.queue.clone()
            } else {
                queues.join(",")
            }
        ),
        None => "embedded queue".to_string(),
    };
    tracing::info!(
        worker = %id,
        "worker {id} started: concurrency {concurrency}, {source}, database {}, model {}",
        pipeline_core::config::mask_url(&config.database_url()),
        config.model_dir().display()
    );
    let outcome = worker.run(RunUntil::Shutdown).await;
    relay.finish(Duration::from_secs(2)).await;
    outcome.map_err(store_failure)?;
    tracing::info!(worker = %id, "worker {id} stopped; its running jobs were handed back");
    Ok(0)
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! `worker`: work the queue until SIGINT or SIGTERM.

use anyhow::Result;
use pipeline_worker::{RunUntil, Worker};
use std::sync::Arc;

use crate::app::{store_failure, App};
use crate::commands::{engine_loader, worker_settings};

/// `worker [--concurrency N]`.
pub async fn run(app: &App, concurrency: Option<usize>) -> Result<u8> {
    let config = app.config();
    let store = app.store().await?;
    let settings = worker_settings(config, concurrency);
    let id = settings.id.clone();
    let concurrency = settings.concurrency;
    let queue = super::queue(&store);
    let worker = Arc::new(Worker::new(
        store,
        queue,
        settings,
        engine_loader(config, concurrency),
    ));
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.trigger();
    });
    eprintln!(
        "worker {id} started: concurrency {concurrency}, database {}, model {}",
        pipeline_core::config::mask_url(&config.database_url()),
        config.model_dir().display()
    );
    worker
        .run(RunUntil::Shutdown)
        .await
        .map_err(store_failure)?;
    eprintln!("worker {id} stopped; its running jobs were handed back");
    Ok(0)
}

async fn wait_for_signal() {
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

//! `serve` (the HTTP API, with an in-process worker) and `api-key`.

use anyhow::Result;
use pipeline_server::AppState;
use pipeline_worker::{RunUntil, Worker};
use serde_json::json;
use std::sync::Arc;

use crate::app::{exit, failure, store_failure, App};
use crate::commands::{diarizer_loader, engine_loader, worker_settings};
use crate::ApiKeyAction;

/// `serve [--bind ADDR] [--workers N]`.
pub async fn run(app: &App, bind: Option<String>, workers: Option<usize>) -> Result<u8> {
    let config = app.config();
    let store = app.store().await?;
    let queue = super::queue(config, &store, &[])?;
    let storage = super::storage(config)?;
    let state = AppState {
        store: store.clone(),
        queue: queue.clone(),
        storage: storage.clone(),
        defaults: super::default_process_options(config),
        max_attempts: config.processing.max_attempts.max(1),
        max_upload_bytes: config.server.max_upload_bytes,
        auth: config.server.auth,
        upload_dir: config.storage.data_dir.join("uploads"),
        output_dir: config.output_dir(),
        job_timeout: config.processing.job_timeout(),
        http: pipeline_server::HttpCounters::default(),
        allow_private_webhooks: config.webhooks.allow_private_targets,
        feed: pipeline_server::Feed::start(store.clone())
            .await
            .map_err(store_failure)?,
        body_timeout: std::time::Duration::from_secs(config.server.body_timeout_secs),
        cors_origins: config.server.cors_origins.clone(),
    };
    let bind = bind.unwrap_or_else(|| config.server.bind.clone());
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(|e| {
        failure(
            exit::BAD_INPUT,
            format!("cannot listen on {bind} (server.bind): {e}"),
        )
    })?;
    let address = listener.local_addr()?;
    let metrics = match &config.server.metrics_bind {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await.map_err(|e| {
            failure(
                exit::BAD_INPUT,
                format!("cannot listen on {at} (server.metrics_bind): {e}"),
            )
        })?),
        None => None,
    };
    let workers = workers.unwrap_or(config.processing.concurrency);
    let worker = (workers > 0).then(|| {
        let settings = worker_settings(config, Some(workers));
        let concurrency = settings.concurrency;
        let mut worker = Worker::new(
            store.clone(),
            queue.clone(),
            storage,
            settings,
            engine_loader(config, concurrency),
        )
        .with_diarizer(diarizer_loader(config, concurrency));
        if let Ok(Some(backend)) = super::result_backend(config) {
            worker = worker.with_result_backend(backend);
        }
        Arc::new(worker)
    });
    let running = worker.as_ref().map(|w| {
        let w = w.clone();
        tokio::spawn(async move { w.run(RunUntil::Shutdown).await })
    });
    if !config.server.auth {
        tracing::warn!("server.auth = false: the API accepts requests without a key");
    }
    tracing::info!("listening on http://{address} (workers in this process: {workers})");
    if let Some(at) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
        tracing::info!("metrics on http://{at}/metrics");
    }
    let relay = super::webhooks::RunningRelay::start(config, &store);
    let shutdown = worker.as_ref().map(|w| w.shutdown_handle());
    pipeline_server::serve(listener, metrics, state, async move {
        super::worker::wait_for_signal().await;
        if let Some(shutdown) = shutdown {
            shutdown.trigger();
        }
    })
    .await?;
    if let Some(running) = running {
        let _ = running.await;
    }
    relay.finish(std::time::Duration::from_secs(2)).await;
    tracing::info!("server stopped");
    Ok(0)
}

/// `api-key create|list|revoke`.
pub async fn api_key(app: &App, action: ApiKeyAction) -> Result<u8> {
    let store = app.store().await?;
    match action {
        ApiKeyAction::Create { name } => {
            let (record, key) = store.create_api_key(&name).await.map_err(store_failure)?;
            if app.json {
                app.print_json(&json!({"id": record.id, "key": key}));
            } else {
                outln!("API key {} ({name}); it is shown only now:", record.id);
                outln!("{key}");
            }
        }
        ApiKeyAction::List => {
            let keys = store.api_keys().await.map_err(store_failure)?;
            if app.json {
                app.print_json(&json!({"keys": keys}));
            } else if keys.is_empty() {
                outln!("No API keys; create one with: pipeline-manager api-key create");
            } else {
                for key in &keys {
                    outln!(
                        "{}  {:<16}  created {}  {}",
                        key.id,
                        key.name,
                        key.created_at.format("%Y-%m-%d %H:%M"),
                        match key.revoked_at {
                            Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                            None => "active".to_string(),
                        }
                    );
                }
            }
        }
        ApiKeyAction::Revoke { id } => {
            let id = uuid::Uuid::parse_str(&id)
                .map_err(|_| failure(exit::BAD_INPUT, format!("{id:?} is not a key id")))?;
            if !store.revoke_api_key(id).await.map_err(store_failure)? {
                return Err(failure(
                    exit::BAD_INPUT,
                    format!("no active API key with id {id}"),
                ));
            }
            if app.json {
                app.print_json(&json!({"id": id, "revoked": true}));
            } else {
                outln!("API key {id} revoked");
            }
        }
    }
    Ok(0)
}

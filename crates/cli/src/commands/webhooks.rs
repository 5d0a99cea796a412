//! `webhooks list|retry`, and the relay that every long-running command
//! runs beside its work.

use anyhow::Result;
use pipeline_core::config::Config;
use pipeline_store::{DeliveryStatus, Store, WebhookEndpoint};
use pipeline_webhooks::{Relay, RelaySettings};
use serde_json::json;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{exit, failure, store_failure, App};
use crate::WebhookAction;

/// The relay's settings from `[webhooks]`.
pub fn relay_settings(config: &Config) -> RelaySettings {
    let w = &config.webhooks;
    RelaySettings {
        endpoints: w
            .urls
            .iter()
            .map(|url| WebhookEndpoint {
                url: url.clone(),
                secret: w.secret.clone(),
            })
            .collect(),
        timeout: Duration::from_secs(w.timeout_secs.max(1)),
        retry_period: Duration::from_secs(w.retry_period_secs.max(1)),
    }
}

/// A relay delivering in the background until stopped.
pub struct RunningRelay {
    relay: Relay,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningRelay {
    /// Starts delivering `store`'s outbox.
    pub fn start(config: &Config, store: &Store) -> RunningRelay {
        let relay = Relay::new(store.clone(), relay_settings(config));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(relay.clone().run(async move {
            let _ = stopped.await;
        }));
        RunningRelay { relay, stop, task }
    }

    /// Stops after delivering what is due, waiting at most `limit`.
    pub async fn finish(self, limit: Duration) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        if let Err(e) = self.relay.drain(limit).await {
            eprintln!("pipeline-manager: webhook relay: {e}");
        }
    }
}

/// `webhooks list|retry`.
pub async fn run(app: &App, action: WebhookAction) -> Result<u8> {
    let store = app.store().await?;
    match action {
        WebhookAction::List { status, limit } => {
            let status = status
                .as_deref()
                .map(str::parse::<DeliveryStatus>)
                .transpose()
                .map_err(|e| failure(exit::BAD_INPUT, e))?;
            let deliveries = store
                .webhook_deliveries(status, limit)
                .await
                .map_err(store_failure)?;
            if app.json {
                app.print_json(&json!({"deliveries": deliveries}));
            } else if deliveries.is_empty() {
                println!("No webhook deliveries.");
            } else {
                for d in &deliveries {
                    println!(
                        "{:>6}  {:<9}  {:<15}  attempts {:<3} {}  {}{}",
                        d.id,
                        d.status.as_str(),
                        d.event,
                        d.attempts,
                        d.created_at.format("%Y-%m-%d %H:%M:%S"),
                        pipeline_core::config::mask_url(&d.url),
                        match (&d.last_error, d.status) {
                            (Some(e), DeliveryStatus::Pending | DeliveryStatus::Failed) =>
                                format!("  last error: {e}"),
                            _ => String::new(),
                        }
                    );
                }
            }
            Ok(0)
        }
        WebhookAction::Retry { id, failed } => {
            let retried = match (id, failed) {
                (Some(id), false) => {
                    let delivery = store
                        .retry_webhook_delivery(id)
                        .await
                        .map_err(|e| match e {
                            pipeline_store::StoreError::NotFoundDelivery(_)
                            | pipeline_store::StoreError::AlreadyDelivered(_) => {
                                failure(exit::BAD_INPUT, e.to_string())
                            }
                            e => store_failure(e),
                        })?;
                    vec![delivery.id]
                }
                (None, true) => {
                    let n = store
                        .retry_failed_webhook_deliveries()
                        .await
                        .map_err(store_failure)?;
                    Relay::new(store.clone(), relay_settings(app.config()))
                        .drain(Duration::from_secs(app.config().webhooks.timeout_secs + 5))
                        .await
                        .map_err(store_failure)?;
                    let still = store
                        .webhook_deliveries(Some(DeliveryStatus::Pending), 10_000)
                        .await
                        .map_err(store_failure)?
                        .len();
                    if app.json {
                        app.print_json(&json!({"retried": n, "pending": still}));
                    } else {
                        println!("{n} failed deliveries sent again; {still} still pending");
                    }
                    return Ok(if still == 0 { 0 } else { exit::JOB_FAILED });
                }
                _ => {
                    return Err(failure(
                        exit::BAD_INPUT,
                        "give a delivery id or --failed (not both)",
                    ))
                }
            };
            // Send now rather than wait for a worker: the user is watching.
            let relay = Relay::new(store.clone(), relay_settings(app.config()));
            relay
                .drain(Duration::from_secs(app.config().webhooks.timeout_secs + 5))
                .await
                .map_err(store_failure)?;
            let delivery = store
                .webhook_delivery(retried[0])
                .await
                .map_err(store_failure)?;
            if app.json {
                app.print_json(&json!({"delivery": delivery}));
            } else {
                println!(
                    "delivery {}: {} after {} attempts{}",
                    delivery.id,
                    delivery.status.as_str(),
                    delivery.attempts,
                    delivery
                        .last_error
                        .as_deref()
                        .filter(|_| delivery.status != DeliveryStatus::Delivered)
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                );
            }
            Ok(if delivery.status == DeliveryStatus::Delivered {
                0
            } else {
                exit::JOB_FAILED
            })
        }
    }
}

//! `webhooks list|retry`, and the relay that every long-running command
//! runs beside its work.

use anyhow::Result;
use pipeline_core::config::Config;
use pipeline_store::{DeliveryStatus, Store, StoreError, WebhookEndpoint};
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
                url: url.expose().to_string(),
                secret: w.secret.as_deref().map(str::to_string),
            })
            .collect(),
        timeout: Duration::from_secs(w.timeout_secs.max(1)),
        retry_period: Duration::from_secs(w.retry_period_secs.max(1)),
        allow_private_targets: w.allow_private_targets,
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
            tracing::warn!(error = %e, "webhook relay");
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
                outln!("No webhook deliveries.");
            } else {
                for d in &deliveries {
                    outln!(
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
        WebhookAction::Retry {
            id: Some(id),
            failed: false,
        } => retry_one(app, &store, id).await,
        WebhookAction::Retry {
            id: None,
            failed: true,
        } => retry_failed(app, &store).await,
        WebhookAction::Retry { .. } => Err(failure(
            exit::BAD_INPUT,
            "give a delivery id or --failed (not both)",
        )),
    }
}

/// Delivers what is due now rather than waiting for a worker: the user is
/// watching.
async fn send_now(app: &App, store: &Store) -> Result<()> {
    Relay::new(store.clone(), relay_settings(app.config()))
        .drain(Duration::from_secs(app.config().webhooks.timeout_secs + 5))
        .await
        .map_err(store_failure)
}

/// `webhooks retry ID`: exit 0 once delivered, 1 while it still fails.
async fn retry_one(app: &App, store: &Store, id: i64) -> Result<u8> {
    store
        .retry_webhook_delivery(id)
        .await
        .map_err(|e| match e {
            StoreError::NotFoundDelivery(_) | StoreError::AlreadyDelivered(_) => {
                failure(exit::BAD_INPUT, e.to_string())
            }
            e => store_failure(e),
        })?;
    send_now(app, store).await?;
    let delivery = store.webhook_delivery(id).await.map_err(store_failure)?;
    if app.json {
        app.print_json(&json!({"delivery": delivery}));
    } else {
        outln!(
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

/// `webhooks retry --failed`: exit 0 once nothing is pending.
async fn retry_failed(app: &App, store: &Store) -> Result<u8> {
    let n = store
        .retry_failed_webhook_deliveries()
        .await
        .map_err(store_failure)?;
    send_now(app, store).await?;
    let still = store
        .webhook_delivery_counts()
        .await
        .map_err(store_failure)?
        .into_iter()
        .find(|(status, _)| status == DeliveryStatus::Pending.as_str())
        .map_or(0, |(_, n)| n);
    if app.json {
        app.print_json(&json!({"retried": n, "pending": still}));
    } else {
        outln!("{n} failed deliveries sent again; {still} still pending");
    }
    Ok(if still == 0 { 0 } else { exit::JOB_FAILED })
}

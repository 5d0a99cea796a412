//! The fetcher: one task per queue that moves messages from the broker
//! into the worker's inbox, reconnecting when the broker goes away, and
//! stopping cleanly when the queue is closed.

use super::*;

impl Inner {
    /// Starts moving messages from the broker on the first claim (a
    /// process that only dispatches never consumes).
    pub(super) fn ensure_fetcher(self: &Arc<Self>, worker: &str, job_types: &[JobType]) {
        if let Ok(mut consumer) = self.consumer.lock() {
            consumer.get_or_insert_with(|| (worker.to_string(), job_types.to_vec()));
        }
        let Ok(mut fetcher) = self.fetcher.lock() else {
            return;
        };
        if fetcher.is_some() {
            return;
        }
        let Some(tx) = self.outbox.lock().ok().and_then(|mut o| o.take()) else {
            return;
        };
        let inner = self.clone();
        *fetcher = Some(tokio::spawn(async move { inner.fetch_forever(tx).await }));
    }

    /// Whether [`BrokerQueue::close`] asked the fetcher to stop.
    pub(super) fn stopped(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Moves messages from the broker into the inbox, reconnecting with
    /// backoff whenever the broker goes away.
    pub(super) async fn fetch_forever(self: Arc<Self>, tx: mpsc::Sender<Delivery>) {
        let mut failures = 0u32;
        loop {
            let result = match &self.transport {
                Transport::Redis(t) => self.fetch_redis(t, &tx, &mut failures).await,
                Transport::Amqp(t) => self.fetch_amqp(t, &tx, &mut failures).await,
            };
            if tx.is_closed() || self.stopped() {
                return;
            }
            if let Err(e) = result {
                if failures == 0 {
                    log(&format!("lost the broker ({e}); reconnecting"));
                }
            }
            failures = failures.saturating_add(1);
            let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
    }

    /// Called once connected: says so after an outage.
    pub(super) fn connected(failures: &mut u32) {
        if *failures > 0 {
            log("reconnected to the broker");
        }
        *failures = 0;
    }

    pub(super) async fn fetch_redis(
        &self,
        transport: &RedisTransport,
        tx: &mpsc::Sender<Delivery>,
        failures: &mut u32,
    ) -> Result<(), QueueError> {
        let mut conn = transport.connect().await?;
        Self::connected(failures);
        self.check_epoch().await?;
        let restore_every = (self.settings.visibility_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut last_restore = Instant::now() - restore_every;
        let owner = self
            .consumer
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .map(|(worker, _)| worker)
            .unwrap_or_default();
        // Each BRPOP waits at most a second, so a stop is seen soon; one
        // abandoned mid-wait would take the next message pushed (a
        // hand-back at close) off the list for a client that is gone.
        while !self.stopped() {
            if last_restore.elapsed() >= restore_every {
                last_restore = Instant::now();
                transport.restore_visible().await?;
            }
            match transport
                .fetch(
                    &mut conn,
                    &self.settings.consume,
                    Duration::from_secs(1),
                    &owner,
                )
                .await?
            {
                Some(Ok(d)) => {
                    let delivery = Delivery {
                        message: d.message,
                        receipt: Receipt::Redis(d.tag),
                    };
                    if let Err(returned) = tx.send(delivery).await {
                        // The worker is gone: hand the message back.
                        if let Receipt::Redis(tag) = returned.0.receipt {
                            let _ = transport.requeue(&tag).await;
                        }
                        return Ok(());
                    }
                }
                Some(Err(problem)) => log(&problem),
                None => {}
            }
        }
        Ok(())
    }

    pub(super) async fn fetch_amqp(
        &self,
        transport: &AmqpTransport,
        tx: &mpsc::Sender<Delivery>,
        failures: &mut u32,
    ) -> Result<(), QueueError> {
        let prefetch = u16::try_from(self.settings.prefetch).unwrap_or(u16::MAX);
        let mut consumer = transport.consume(&self.settings.consume, prefetch).await?;
        Self::connected(failures);
        while !self.stopped() {
            match consumer.next(Duration::from_secs(1)).await {
                Ok(Some(Ok(d))) => {
                    let delivery = Delivery {
                        message: d.message,
                        receipt: Receipt::Amqp(d.acker),
                    };
                    if tx.send(delivery).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Some(Err(problem))) => log(&problem),
                Ok(None) => {}
                Err(e) => {
                    return Err(QueueError::Broker {
                        url: pipeline_core::config::mask_url(&self.settings.url),
                        message: e,
                    })
                }
            }
        }
        Ok(())
    }
}

//! Celery over AMQP 0-9-1 (RabbitMQ): protocol 2 headers as the message's
//! application headers, the JSON body as it is, durable queues, persistent
//! messages, publisher confirms, and manual acknowledgement so a message
//! whose worker dies goes back to the queue.

use futures_util::stream::{SelectAll, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::message::TaskMessage;
use crate::QueueError;

/// A message received and not yet acknowledged.
pub struct AmqpDelivery {
    pub message: TaskMessage,
    pub acker: Acker,
}

/// Publishing on one RabbitMQ server, and consumers for workers.
pub struct AmqpTransport {
    url: String,
    connect_timeout: Duration,
    publisher: Mutex<Option<Shared>>,
}

/// A connection, its confirming channel, and the queues declared on it.
type Shared = (Connection, Channel, HashSet<String>);

/// The consuming side of one connection; dropped to reconnect.
pub struct AmqpConsumer {
    _connection: Connection,
    streams: SelectAll<Consumer>,
}

impl AmqpTransport {
    /// A transport for `url` (`amqp://user:pass@host:port/vhost`); connects lazily.
    pub fn new(url: &str, connect_timeout: Duration) -> Self {
        Self {
            url: url.to_string(),
            connect_timeout,
            publisher: Mutex::new(None),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> QueueError {
        QueueError::Broker {
            url: pipeline_core::config::mask_url(&self.url),
            message: e.to_string(),
        }
    }

    async fn connect(&self) -> Result<Connection, QueueError> {
        match tokio::time::timeout(
            self.connect_timeout,
            Connection::connect(&self.url, ConnectionProperties::default()),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(self.err(e)),
            Err(_) => Err(self.err(format!(
                "no answer within {} s",
                self.connect_timeout.as_secs_f64()
            ))),
        }
    }

    /// Declares `queue` as Celery does: durable, no arguments.
    async fn declare(&self, channel: &Channel, queue: &str) -> Result<u32, QueueError> {
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(declared.message_count())
    }

    /// Publishes persistent messages onto `queue` and waits for the
    /// broker's confirmation of each, so dispatched jobs are on disk before
    /// ingest reports them queued. All are sent before any confirmation is
    /// awaited, so a batch costs about one round trip.
    pub async fn publish(&self, queue: &str, messages: &[TaskMessage]) -> Result<(), QueueError> {
        let result = tokio::time::timeout(
            self.connect_timeout + Duration::from_secs(5 + messages.len() as u64 / 100),
            self.publish_once(queue, messages),
        )
        .await
        .unwrap_or_else(|_| Err(self.err("publish not confirmed in time")));
        if result.is_err() {
            *self.publisher.lock().await = None;
        }
        result
    }

    /// The shared connection (publishing, health checks), opened on first
    /// use and again once it is gone: a health check costs a round trip on
    /// it, never a new connection.
    async fn shared(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Shared>>, QueueError> {
        let mut slot = self.publisher.lock().await;
        let usable = slot
            .as_ref()
            .is_some_and(|(c, ch, _)| c.status().connected() && ch.status().connected());
        if !usable {
            let connection = self.connect().await?;
            let channel = connection.create_channel().await.map_err(|e| self.err(e))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.err(e))?;
            *slot = Some((connection, channel, HashSet::new()));
        }
        Ok(slot)
    }

    async fn publish_once(&self, queue: &str, messages: &[TaskMessage]) -> Result<(), QueueError> {
        let mut slot = self.shared().await?;
        let Some((_, channel, declared)) = slot.as_mut() else {
            return Err(self.err("no channel"));
        };
        if !declared.contains(queue) {
            self.declare(channel, queue).await?;
            declared.insert(queue.to_string());
        }
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let properties = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_content_encoding("utf-8".into())
                .with_correlation_id(message.id.as_str().into())
                .with_delivery_mode(2)
                .with_priority(0)
                .with_headers(to_field_table(&message.headers()));
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &message.body(),
                    properties,
                )
                .await
                .map_err(|e| self.err(e))?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.map_err(|e| self.err(e))? {
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
                Confirmation::Nack(_) => return Err(self.err("the broker refused a message")),
            }
        }
        Ok(())
    }

    /// A consumer of `queues` that holds at most `prefetch` unacked messages.
    pub async fn consume(
        &self,
        queues: &[String],
        prefetch: u16,
    ) -> Result<AmqpConsumer, QueueError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await.map_err(|e| self.err(e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.err(e))?;
        let mut streams = SelectAll::new();
        for queue in queues {
            self.declare(&channel, queue).await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    ShortString::from(format!("pipeline-{}", uuid::Uuid::new_v4().simple())),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.err(e))?;
            streams.push(consumer);
        }
        Ok(AmqpConsumer {
            _connection: connection,
            streams,
        })
    }

    /// Messages waiting in `queue` (not counting those held by consumers).
    pub async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let mut slot = self.shared().await?;
        let Some((_, channel, declared)) = slot.as_mut() else {
            return Err(self.err("no channel"));
        };
        match self.declare(channel, queue).await {
            Ok(count) => {
                declared.insert(queue.to_string());
                Ok(u64::from(count))
            }
            Err(e) => {
                *slot = None;
                Err(e)
            }
        }
    }

    /// One round trip on the shared connection (a passive declare of the
    /// default direct exchange, which every server has).
    pub async fn ping(&self) -> Result<Duration, QueueError> {
        let start = Instant::now();
        let mut slot = self.shared().await?;
        let Some((_, channel, _)) = slot.as_ref() else {
            return Err(self.err("no channel"));
        };
        let answer = channel
            .exchange_declare(
                "amq.direct".into(),
                lapin::ExchangeKind::Direct,
                lapin::options::ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if let Err(e) = answer {
            *slot = None;
            return Err(self.err(e));
        }
        Ok(start.elapsed())
    }
}

impl AmqpConsumer {
    /// The next delivery, `None` when `wait` passed; an error when the
    /// connection is gone (the caller reconnects). A message that is not a
    /// Celery task is rejected (dead-lettered) and reported, so it cannot block the queue.
    pub async fn next(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Result<AmqpDelivery, String>>, String> {
        let next = match tokio::time::timeout(wait, self.streams.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err("the broker closed the consumer".to_string()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(delivery))) => delivery,
        };
        let headers = next
            .properties
            .headers()
            .as_ref()
            .map(from_field_table)
            .unwrap_or_default();
        let content_type = next
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        match TaskMessage::from_parts(&headers, &next.data, &content_type) {
            Ok(mut message) => {
                message.redelivered = next.redelivered;
                Ok(Some(Ok(AmqpDelivery {
                    message,
                    acker: next.acker,
                })))
            }
            Err(e) => {
                // Rejected, not requeued: a dead-letter exchange the
                // operator configured on the queue keeps it.
                let _ = reject(&next.acker).await;
                Ok(Some(Err(format!(
                    "rejected a message on {} (to the queue's dead-letter exchange, if any): {e}",
                    next.routing_key
                ))))
            }
        }
    }
}

/// Acknowledges a delivery; false when its channel is gone (the broker has
/// already put it back).
pub async fn ack(acker: &Acker) -> bool {
    acker.ack(BasicAckOptions::default()).await.is_ok()
}

/// Refuses a delivery for good: the queue's dead-letter exchange, if one
/// is configured, receives it.
pub async fn reject(acker: &Acker) -> bool {
    acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .is_ok()
}

/// Hands a delivery back to the queue at once.
pub async fn requeue(acker: &Acker) -> bool {
    acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .is_ok()
}

fn to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(map) => AMQPValue::FieldTable(to_field_table(map)),
    }
}

fn to_field_table(map: &Map<String, Value>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in map {
        table.insert(key.as_str().into(), to_amqp(value));
    }
    table
}

fn from_amqp(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Float(f) => Value::from(*f),
        AMQPValue::Double(f) => Value::from(*f),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(from_amqp).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(from_field_table(table)),
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::DecimalValue(_) | AMQPValue::ByteArray(_) | AMQPValue::Void => Value::Null,
    }
}

fn from_field_table(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), from_amqp(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_survive_the_field_table() {
        let headers = TaskMessage::new("pipeline.process", "id-1", Map::new()).headers();
        let back = from_field_table(&to_field_table(&headers));
        assert_eq!(back["task"], json!("pipeline.process"));
        assert_eq!(back["timelimit"], json!([null, null]));
        assert_eq!(back["retries"], json!(0));
        assert_eq!(back["eta"], Value::Null);
    }
}

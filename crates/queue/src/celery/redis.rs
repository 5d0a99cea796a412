//! Celery over Redis the way kombu does it, so Python and Rust workers can
//! share a queue: messages are JSON envelopes LPUSHed onto a list per queue
//! (and per priority step), BRPOPed by workers, and held in kombu's
//! `unacked` hash and `unacked_index` sorted set until acknowledged. A
//! message whose worker died is pushed back by whoever runs
//! [`RedisTransport::restore_visible`] once its visibility timeout passed.

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::message::TaskMessage;
use crate::QueueError;

const UNACKED: &str = "unacked";
const UNACKED_INDEX: &str = "unacked_index";
const UNACKED_MUTEX: &str = "unacked_mutex";
/// Which of our workers holds each unacked message (kombu keeps no owner):
/// what lets a dead worker's deliveries come back at once instead of after
/// the visibility timeout. One hash per database, so that deployments
/// sharing a Redis judge only their own workers.
const UNACKED_OWNERS: &str = "pipeline:unacked_owner";
/// kombu's separator between a queue name and its priority step.
const PRIORITY_SEP: &str = "\x06\x16";
/// kombu's default priority steps; step 0 is the queue's own list.
const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

/// The start of a script on one unacked message (KEYS: `unacked`,
/// `unacked_index`, our owners hash; ARGV[1]: the tag): takes it out of
/// all three, returns 0 if it was gone, else has its `entry`.
macro_rules! take_unacked {
    () => {
        r#"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not raw then return 0 end
local entry = cjson.decode(raw)
"#
    };
}

/// Moves one unacked message back onto its queue atomically, marked
/// redelivered, as kombu's `restore_by_tag` does in a transaction.
const RESTORE_SCRIPT: &str = concat!(
    take_unacked!(),
    r#"
local message = entry[1]
local queue = entry[3]
if type(message['headers']) == 'table' then message['headers']['redelivered'] = true end
if type(message['properties']) == 'table' and type(message['properties']['delivery_info']) == 'table' then
  message['properties']['delivery_info']['redelivered'] = true
end
redis.call('RPUSH', queue, cjson.encode(message))
return 1
"#
);

/// Where refused messages of a queue go (`pipeline:dead-letter:<queue>`),
/// newest first, the last [`DEAD_LETTERS_KEPT`] kept: Redis has no
/// dead-letter exchange, and a refused task must not vanish unseen.
const DEAD_LETTER_PREFIX: &str = "pipeline:dead-letter:";
const DEAD_LETTERS_KEPT: i64 = 1000;

/// Moves one unacked message to its queue's dead-letter list atomically.
const DEAD_LETTER_SCRIPT: &str = concat!(
    take_unacked!(),
    r#"
local list = ARGV[2] .. entry[3]
redis.call('LPUSH', list, cjson.encode(entry[1]))
redis.call('LTRIM', list, 0, tonumber(ARGV[3]) - 1)
return 1
"#
);

/// The dead-letter list of `queue`.
pub fn dead_letter_list(queue: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}{queue}")
}

/// Seconds since 1970 on this machine's clock: kombu's `unacked_index`
/// scores.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A message taken from Redis and held in the unacked hash.
#[derive(Debug, Clone)]
pub struct RedisDelivery {
    pub message: TaskMessage,
    pub tag: String,
}

/// Publishing, fetching and acknowledging on one Redis server.
pub struct RedisTransport {
    client: redis::Client,
    url: String,
    config: AsyncConnectionConfig,
    commands: Mutex<Option<MultiplexedConnection>>,
    visibility_timeout: Duration,
    owners: String,
}

fn broker_error(url: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Broker {
        url: pipeline_core::config::mask_url(url),
        message: e.to_string(),
    }
}

impl RedisTransport {
    /// A transport for `url` (`redis://host:port/db`); connects lazily.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        visibility_timeout: Duration,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(|e| broker_error(url, e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // BRPOP waits up to a second; anything much longer is a dead link.
            .set_response_timeout(Some(connect_timeout + Duration::from_secs(5)));
        Ok(Self {
            client,
            url: url.to_string(),
            config,
            commands: Mutex::new(None),
            visibility_timeout,
            owners: UNACKED_OWNERS.to_string(),
        })
    }

    /// Keeps the owners of this deployment's deliveries apart from other
    /// deployments' on the same Redis (`scope` names its database).
    pub fn scope_owners(mut self, scope: &str) -> Self {
        self.owners = format!("{UNACKED_OWNERS}:{scope}");
        self
    }

    fn err(&self, e: impl std::fmt::Display) -> QueueError {
        broker_error(&self.url, e)
    }

    /// A new connection of its own (for a blocking BRPOP).
    pub async fn connect(&self) -> Result<MultiplexedConnection, QueueError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.err(e))
    }

    /// The shared connection for short commands, made on first use and
    /// again after a failure.
    async fn commands(&self) -> Result<MultiplexedConnection, QueueError> {
        let mut slot = self.commands.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self.connect().await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.commands.lock().await = None;
    }

    /// Runs `command` on the shared connection, dropping it on failure so
    /// that the next call reconnects.
    pub async fn run<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, QueueError> {
        let mut conn = self.commands().await?;
        match command.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(e) => {
                self.forget_connection().await;
                Err(self.err(e))
            }
        }
    }

    /// The lists a queue's messages wait in, highest priority first.
    fn lists(queue: &str) -> Vec<String> {
        PRIORITY_STEPS
            .iter()
            .map(|step| match step {
                0 => queue.to_string(),
                n => format!("{queue}{PRIORITY_SEP}{n}"),
            })
            .collect()
    }

    /// Pushes messages onto `queue` in one command (kombu's `_put`); the
    /// first is the first to be taken.
    pub async fn publish(&self, queue: &str, messages: &[TaskMessage]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut lpush = redis::cmd("LPUSH");
        lpush.arg(queue);
        for message in messages {
            let tag = uuid::Uuid::new_v4().to_string();
            lpush.arg(message.to_redis_envelope(queue, &tag));
        }
        let _: i64 = self.run(&lpush).await?;
        Ok(())
    }

    /// Waits up to `wait` for a message on any of `queues` and records it
    /// as unacked by `owner`. A message that is not a Celery task is
    /// returned as an error after being removed, so one bad message never
    /// blocks a queue.
    pub async fn fetch(
        &self,
        conn: &mut MultiplexedConnection,
        queues: &[String],
        wait: Duration,
        owner: &str,
    ) -> Result<Option<Result<RedisDelivery, String>>, QueueError> {
        let mut brpop = redis::cmd("BRPOP");
        for queue in queues {
            brpop.arg(Self::lists(queue));
        }
        brpop.arg(wait.as_secs_f64().max(0.01));
        let popped: Option<(String, String)> =
            brpop.query_async(conn).await.map_err(|e| self.err(e))?;
        let Some((list, raw)) = popped else {
            return Ok(None);
        };
        let queue = list
            .rsplit_once(PRIORITY_SEP)
            .map_or(list.as_str(), |(q, _)| q)
            .to_string();
        match TaskMessage::from_redis_envelope(&raw) {
            Ok((message, tag)) => {
                let envelope: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                let entry = serde_json::json!([envelope, "", queue]).to_string();
                let now = unix_seconds();
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("ZADD")
                    .arg(UNACKED_INDEX)
                    .arg(now)
                    .arg(&tag)
                    .ignore()
                    .cmd("HSET")
                    .arg(UNACKED)
                    .arg(&tag)
                    .arg(entry)
                    .ignore()
                    .cmd("HSET")
                    .arg(&self.owners)
                    .arg(&tag)
                    .arg(owner)
                    .ignore()
                    .query_async(conn)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(Some(Ok(RedisDelivery { message, tag })))
            }
            Err(e) => {
                let list = dead_letter_list(&queue);
                let _: () = redis::pipe()
                    .cmd("LPUSH")
                    .arg(&list)
                    .arg(&raw)
                    .ignore()
                    .cmd("LTRIM")
                    .arg(&list)
                    .arg(0)
                    .arg(DEAD_LETTERS_KEPT - 1)
                    .ignore()
                    .query_async(conn)
                    .await
                    .map_err(|e| self.err(e))?;
                Ok(Some(Err(format!(
                    "moved a message on {queue} that is no Celery task to {list}: {e}"
                ))))
            }
        }
    }

    /// Acknowledges a message: it leaves the unacked hash for good.
    pub async fn ack(&self, tag: &str) -> Result<(), QueueError> {
        let mut conn = self.commands().await?;
        let result: Result<(), _> = redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(UNACKED_INDEX)
            .arg(tag)
            .ignore()
            .cmd("HDEL")
            .arg(UNACKED)
            .arg(tag)
            .ignore()
            .cmd("HDEL")
            .arg(&self.owners)
            .arg(tag)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            self.forget_connection().await;
            return Err(self.err(e));
        }
        Ok(())
    }

    /// `script` (one that starts with `take_unacked!`) run on the unacked
    /// message `tag`; more arguments may follow.
    fn on_unacked(&self, script: &str, tag: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script)
            .arg(3)
            .arg(UNACKED)
            .arg(UNACKED_INDEX)
            .arg(&self.owners)
            .arg(tag);
        cmd
    }

    /// Puts a held message back onto its queue now (a worker shutting down).
    pub async fn requeue(&self, tag: &str) -> Result<(), QueueError> {
        let _: i64 = self.run(&self.on_unacked(RESTORE_SCRIPT, tag)).await?;
        Ok(())
    }

    /// Refuses a held message for good: it moves to its queue's
    /// dead-letter list.
    pub async fn dead_letter(&self, tag: &str) -> Result<(), QueueError> {
        let _: i64 = self
            .run(
                self.on_unacked(DEAD_LETTER_SCRIPT, tag)
                    .arg(DEAD_LETTER_PREFIX)
                    .arg(DEAD_LETTERS_KEPT),
            )
            .await?;
        Ok(())
    }

    /// Restores messages held unacked for longer than the visibility
    /// timeout (their worker died), under kombu's mutex so that Python and
    /// Rust workers never restore the same message twice.
    pub async fn restore_visible(&self) -> Result<usize, QueueError> {
        let token = uuid::Uuid::new_v4().to_string();
        let locked: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(UNACKED_MUTEX)
                    .arg(&token)
                    .arg("NX")
                    .arg("EX")
                    .arg(300),
            )
            .await?;
        if locked.is_none() {
            return Ok(0);
        }
        let now = unix_seconds();
        let ceiling = now - self.visibility_timeout.as_secs_f64();
        let result = async {
            let tags: Vec<String> = self
                .run(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(UNACKED_INDEX)
                        .arg("-inf")
                        .arg(ceiling)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(100),
                )
                .await?;
            for tag in &tags {
                self.requeue(tag).await?;
            }
            Ok::<usize, QueueError>(tags.len())
        }
        .await;
        // Release the mutex only if it is still ours (kombu's Mutex does the same).
        let holder: Option<String> = self.run(redis::cmd("GET").arg(UNACKED_MUTEX)).await?;
        if holder.as_deref() == Some(token.as_str()) {
            let _: i64 = self.run(redis::cmd("DEL").arg(UNACKED_MUTEX)).await?;
        }
        result
    }

    /// Puts back the messages our workers held when they died: those whose
    /// owner is not in `alive` and that were taken more than `grace` ago
    /// (a worker that has just started may not have announced itself yet).
    /// Each restore is one atomic script, so two workers restoring at once
    /// put a message back once. Returns how many were put back.
    pub async fn restore_orphans(
        &self,
        alive: &std::collections::HashSet<String>,
        grace: Duration,
    ) -> Result<usize, QueueError> {
        let owners: Vec<(String, String)> =
            self.run(redis::cmd("HGETALL").arg(&self.owners)).await?;
        let now = unix_seconds();
        let mut restored = 0;
        for (tag, owner) in owners {
            if alive.contains(&owner) {
                continue;
            }
            let taken_at: Option<f64> = self
                .run(redis::cmd("ZSCORE").arg(UNACKED_INDEX).arg(&tag))
                .await?;
            match taken_at {
                // Acknowledged or restored meanwhile: only the owner entry was left.
                None => {
                    let _: i64 = self
                        .run(redis::cmd("HDEL").arg(&self.owners).arg(&tag))
                        .await?;
                }
                Some(at) if now - at >= grace.as_secs_f64() => {
                    self.requeue(&tag).await?;
                    restored += 1;
                }
                Some(_) => {}
            }
        }
        Ok(restored)
    }

    /// Messages waiting in `queue`, over all priority steps.
    pub async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let mut total = 0u64;
        for list in Self::lists(queue) {
            let n: u64 = self.run(redis::cmd("LLEN").arg(list)).await?;
            total += n;
        }
        Ok(total)
    }

    /// Round trip time of a PING.
    pub async fn ping(&self) -> Result<Duration, QueueError> {
        let start = Instant::now();
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(start.elapsed())
    }

    /// The server's run id, which changes when Redis restarts (and, without
    /// persistence, forgets every message).
    pub async fn run_id(&self) -> Result<String, QueueError> {
        let info: String = self.run(redis::cmd("INFO").arg("server")).await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or("")
            .trim()
            .to_string())
    }

    /// Sets `key` if absent, for `ttl`; true when this call set it.
    pub async fn claim_marker(&self, key: &str, ttl: Duration) -> Result<bool, QueueError> {
        let set: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(key)
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1)),
            )
            .await?;
        Ok(set.is_some())
    }
}

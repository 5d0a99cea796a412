//! The Celery queue against the real brokers (Redis on 6379, RabbitMQ on
//! 5672) and a real SQLite store: jobs go out as messages, are claimed in
//! the database when they arrive and acknowledged with the claim, are
//! never run twice, are sent again when their worker dies, and fall back to the embedded queue when the broker is
//! out of reach.

use pipeline_core::{JobStatus, JobType, ProcessingJob};
use pipeline_queue::{BrokerQueue, BrokerSettings, JobQueue, Work};
use pipeline_store::{Lease, NewAudio, NewJob, Store};
use std::time::{Duration, Instant};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(60);

fn redis_url(db: u8) -> String {
    let base = std::env::var("PIPELINE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    format!("{base}/{db}")
}

fn amqp_url() -> String {
    std::env::var("PIPELINE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

fn settings(url: &str, queue: &str) -> BrokerSettings {
    BrokerSettings {
        url: url.to_string(),
        queue: queue.to_string(),
        consume: Vec::new(),
        connect_timeout: Duration::from_secs(3),
        visibility_timeout: Duration::from_secs(3600),
        prefetch: 8,
    }
}

struct Setup {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn store() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/pipeline.db", dir.path().display());
    let store = Store::connect(&url).await.expect("sqlite store");
    Setup { store, _dir: dir }
}

/// A file with its two jobs, carried by `transport`.
async fn ingest(store: &Store, transport: &str) -> Vec<ProcessingJob> {
    let audio = NewAudio {
        id: Uuid::new_v4(),
        original_name: "talk.wav".into(),
        sha256: Uuid::new_v4().simple().to_string(),
        size_bytes: 1000,
        container: "wav".into(),
        codec: "pcm_s16le".into(),
        duration_seconds: 3.0,
        sample_rate: 16_000,
        channels: 1,
        storage_key: "audio/x.wav".into(),
        options: serde_json::json!({}),
        settings_key: "s".into(),
        webhooks: Vec::new(),
    };
    // A file without diarization: TRANSCRIPTION, then PROCESSING.
    let jobs: Vec<NewJob> = [JobType::Transcription, JobType::Processing]
        .iter()
        .map(|t| NewJob {
            transport: transport.to_string(),
            ..NewJob::new(*t, 3)
        })
        .collect();
    store.ingest(&audio, &jobs).await.expect("ingest").1
}

fn queued(jobs: &[ProcessingJob]) -> Vec<ProcessingJob> {
    jobs.iter()
        .filter(|j| j.status == JobStatus::Queued)
        .cloned()
        .collect()
}

/// Claims until work comes or `timeout` passes.
async fn claim_within(queue: &BrokerQueue, worker: &str, timeout: Duration) -> Option<Work> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(work) = queue.claim(worker, &[], LEASE).await.expect("claim") {
            return Some(work);
        }
    }
    None
}

fn job(work: Option<Work>) -> ProcessingJob {
    match work {
        Some(Work::Job(job)) => job,
        other => panic!("expected a job, got {other:?}"),
    }
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 6379 is required for these tests")
}

/// The tags of messages of `queue` held in kombu's unacked hash (other
/// tests' queues share the hash).
async fn unacked_tags(url: &str, queue: &str) -> Vec<String> {
    let mut conn = redis_conn(url).await;
    let all: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("unacked")
        .query_async(&mut conn)
        .await
        .expect("HGETALL");
    all.into_iter()
        .filter(|(_, entry)| {
            serde_json::from_str::<serde_json::Value>(entry).is_ok_and(|e| e[2] == queue)
        })
        .map(|(tag, _)| tag)
        .collect()
}

/// What the Redis dead-letter list of `queue` holds.
async fn dead_letters(conn: &mut redis::aio::MultiplexedConnection, queue: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(pipeline_queue::celery::redis::dead_letter_list(queue))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("LRANGE")
}

async fn messages(store: &Store, job_id: Uuid) -> Vec<String> {
    store
        .events_for_job(job_id)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.message)
        .collect()
}

/// A job goes out and is claimed, and its message is acknowledged with the
/// claim (the lease fences the job from then on, so no broker timeout
/// applies to a long run); the next stage goes out after it.
async fn job_runs_and_is_acknowledged(url: &str) {
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(url, &name)).expect("queue");
    let transport = queue.name().to_string();
    let jobs = ingest(&setup.store, &transport).await;
    let dispatched = queue.dispatch(&queued(&jobs)).await.expect("dispatch");
    assert_eq!(dispatched.fell_back, None);

    let first = job(claim_within(&queue, "w1", Duration::from_secs(10)).await);
    assert_eq!(first.job_type, JobType::Transcription);
    assert_eq!(first.status, JobStatus::Running);
    assert_eq!(first.worker.as_deref(), Some("w1"));
    if transport == "redis" {
        assert!(
            unacked_tags(url, &name).await.is_empty(),
            "acknowledged once claimed"
        );
    }
    setup
        .store
        .complete(&Lease::of(&first), "done")
        .await
        .expect("complete");

    let now = setup
        .store
        .jobs_for_audio(first.audio_id)
        .await
        .expect("jobs");
    queue.dispatch(&queued(&now)).await.expect("dispatch next");
    let second = job(claim_within(&queue, "w1", Duration::from_secs(10)).await);
    assert_eq!(second.job_type, JobType::Processing);
    setup
        .store
        .complete(&Lease::of(&second), "done")
        .await
        .expect("complete");
    let health = queue.health().await.expect("health");
    assert_eq!(
        health.depth,
        vec![(name.clone(), 0)],
        "nothing left waiting"
    );
    assert!(claim_within(&queue, "w1", Duration::from_secs(1))
        .await
        .is_none());
    queue.close().await.expect("close");
}

#[tokio::test]
async fn redis_job_runs_and_is_acknowledged() {
    job_runs_and_is_acknowledged(&redis_url(2)).await;
}

#[tokio::test]
async fn amqp_job_runs_and_is_acknowledged() {
    job_runs_and_is_acknowledged(&amqp_url()).await;
}

/// The same message twice: the second, delivered while the first runs, is
/// acknowledged and noted without running the job again.
async fn duplicate_delivery_runs_once(url: &str) {
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(url, &name)).expect("queue");
    let jobs = ingest(&setup.store, queue.name()).await;
    let first_stage = queued(&jobs);
    queue.dispatch(&first_stage).await.expect("dispatch");
    queue.dispatch(&first_stage).await.expect("dispatch again");

    let running = job(claim_within(&queue, "w1", Duration::from_secs(10)).await);
    assert!(
        claim_within(&queue, "w2", Duration::from_secs(2))
            .await
            .is_none(),
        "the duplicate must not run while the first does"
    );
    let trail = messages(&setup.store, running.id).await;
    assert!(
        trail
            .iter()
            .any(|m| m.contains("delivered again while w1 runs it")),
        "the duplicate is noted: {trail:?}"
    );
    setup
        .store
        .complete(&Lease::of(&running), "done")
        .await
        .expect("complete");
    assert!(
        claim_within(&queue, "w2", Duration::from_secs(2))
            .await
            .is_none(),
        "a finished job must not run again"
    );
    let job = setup.store.job(running.id).await.expect("job");
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.attempt, 1, "ran once");
    if queue.name() == "redis" {
        assert!(unacked_tags(url, &name).await.is_empty());
    }
    let health = queue.health().await.expect("health");
    assert_eq!(health.depth, vec![(name.clone(), 0)], "nothing left");
    queue.close().await.expect("close");
}

#[tokio::test]
async fn redis_duplicate_delivery_runs_once() {
    duplicate_delivery_runs_once(&redis_url(3)).await;
}

#[tokio::test]
async fn amqp_duplicate_delivery_runs_once() {
    duplicate_delivery_runs_once(&amqp_url()).await;
}

/// A worker that dies while it runs a job (its message acknowledged with
/// the claim): once its lease has expired, the sweep of another worker sends
/// the job again and that worker takes it over, well within the broker's
/// own timeouts (Redis' visibility timeout is left at an hour here).
async fn job_of_a_dead_worker_is_sent_again(url: &str) {
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let dying = BrokerQueue::new(setup.store.clone(), settings(url, &name)).expect("queue");
    let transport = dying.name().to_string();
    let jobs = ingest(&setup.store, &transport).await;
    dying.dispatch(&queued(&jobs)).await.expect("dispatch");
    let taken = loop {
        if let Some(Work::Job(job)) = dying
            .claim("dying", &[], Duration::from_secs(1))
            .await
            .expect("claim")
        {
            break job;
        }
    };
    // The worker dies: no outcome, no more heartbeats.
    drop(dying);
    if transport == "redis" {
        assert!(unacked_tags(url, &name).await.is_empty());
    }

    let survivor = BrokerQueue::new(setup.store.clone(), settings(url, &name)).expect("queue");
    let again = job(claim_within(&survivor, "survivor", Duration::from_secs(10)).await);
    assert_eq!(again.id, taken.id);
    assert_eq!(again.attempt, 2, "a second attempt, by another worker");
    assert_eq!(again.worker.as_deref(), Some("survivor"));
    let trail = messages(&setup.store, taken.id).await;
    assert!(
        trail.iter().any(|m| m.contains("lease of dying expired")),
        "{trail:?}"
    );
    setup
        .store
        .complete(&Lease::of(&again), "done")
        .await
        .expect("complete");
    survivor.close().await.expect("close");
    if transport == "redis" {
        let left = unacked_tags(url, &name).await;
        assert!(left.is_empty(), "every copy acknowledged: {left:?}");
    }
}

#[tokio::test]
async fn redis_job_of_a_dead_worker_is_sent_again() {
    job_of_a_dead_worker_is_sent_again(&redis_url(4)).await;
}

#[tokio::test]
async fn amqp_job_of_a_dead_worker_is_sent_again() {
    job_of_a_dead_worker_is_sent_again(&amqp_url()).await;
}

/// An unreachable broker is detected within the connect timeout; the jobs
/// fall back to the embedded queue, say so in their audit trail, and are
/// still claimed by a Celery-mode worker.
async fn unreachable_broker_falls_back(url: &str) {
    let setup = store().await;
    let queue = BrokerQueue::new(setup.store.clone(), settings(url, "celery")).expect("queue");
    let jobs = ingest(&setup.store, queue.name()).await;
    let started = Instant::now();
    let dispatched = queue.dispatch(&queued(&jobs)).await.expect("dispatch");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let reason = dispatched.fell_back.expect("fell back");
    assert!(!reason.is_empty());
    let first = setup.store.job(queued(&jobs)[0].id).await.expect("job");
    assert_eq!(first.transport, "embedded");
    let trail = messages(&setup.store, first.id).await;
    assert!(
        trail
            .iter()
            .any(|m| m.contains("fell back to the embedded queue")),
        "{trail:?}"
    );
    let claimed = job(claim_within(&queue, "w1", Duration::from_secs(5)).await);
    assert_eq!(claimed.id, first.id);
}

#[tokio::test]
async fn redis_unreachable_broker_falls_back() {
    unreachable_broker_falls_back("redis://127.0.0.1:1/0").await;
}

#[tokio::test]
async fn amqp_unreachable_broker_falls_back() {
    unreachable_broker_falls_back("amqp://guest:guest@127.0.0.1:1/%2f").await;
}

/// A message that is no Celery task goes to the queue's dead-letter list
/// instead of vanishing, and a task of another app that shares the queue
/// is left on it for that app's consumers; neither blocks our jobs.
#[tokio::test]
async fn redis_garbage_is_dead_lettered_and_other_apps_tasks_stay_queued() {
    let url = redis_url(5);
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(&url, &name)).expect("queue");
    let mut conn = redis_conn(&url).await;
    let other = pipeline_queue::celery::message::TaskMessage::new(
        "other.app.add",
        "other-task-1",
        serde_json::Map::new(),
    );
    let _: i64 = redis::cmd("LPUSH")
        .arg(&name)
        .arg("this is not json")
        .arg(other.to_redis_envelope(&name, "other-tag-1"))
        .query_async(&mut conn)
        .await
        .expect("LPUSH");
    let jobs = ingest(&setup.store, "redis").await;
    queue.dispatch(&queued(&jobs)).await.expect("dispatch");
    let claimed = job(claim_within(&queue, "w1", Duration::from_secs(10)).await);
    assert_eq!(claimed.job_type, JobType::Transcription);
    let dead = dead_letters(&mut conn, &name).await;
    assert_eq!(dead, vec!["this is not json".to_string()]);
    // Stopping hands back what this worker held: the other app's task is
    // on the queue again, for its own consumers.
    queue.close().await.expect("close");
    let left: Vec<String> = redis::cmd("LRANGE")
        .arg(&name)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("LRANGE");
    assert_eq!(left.len(), 1, "{left:?}");
    let envelope: serde_json::Value = serde_json::from_str(&left[0]).expect("json");
    assert_eq!(envelope["headers"]["task"], "other.app.add", "{envelope:#}");
}

/// A `pipeline.transcribe_chunk` task that names no chunk (no index, a
/// job id that is no uuid) is dead-lettered, whole, and the jobs behind it
/// still run.
#[tokio::test]
async fn redis_a_chunk_task_that_names_no_chunk_is_dead_lettered() {
    let url = redis_url(5);
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(&url, &name)).expect("queue");
    let mut conn = redis_conn(&url).await;
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("job_id".into(), serde_json::json!("not a uuid"));
    kwargs.insert("start".into(), serde_json::json!(0.0));
    let malformed = pipeline_queue::celery::message::TaskMessage::new(
        pipeline_queue::celery::CHUNK_TASK,
        "chunk-task-1",
        kwargs,
    );
    let _: i64 = redis::cmd("LPUSH")
        .arg(&name)
        .arg(malformed.to_redis_envelope(&name, "chunk-tag-1"))
        .query_async(&mut conn)
        .await
        .expect("LPUSH");
    let jobs = ingest(&setup.store, "redis").await;
    queue.dispatch(&queued(&jobs)).await.expect("dispatch");
    let claimed = job(claim_within(&queue, "w1", Duration::from_secs(10)).await);
    assert_eq!(claimed.job_type, JobType::Transcription);
    let dead = dead_letters(&mut conn, &name).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let envelope: serde_json::Value = serde_json::from_str(&dead[0]).expect("json");
    assert_eq!(
        envelope["headers"]["task"], "pipeline.transcribe_chunk",
        "{envelope:#}"
    );
    assert_eq!(envelope["headers"]["id"], "chunk-task-1", "{envelope:#}");
    queue.close().await.expect("close");
}

/// A retry's message that arrives long before the retry is due (another
/// producer sent it early) is not held for the whole backoff, where it
/// would pin a prefetch slot: it is acknowledged, and the job is left
/// for the sweep to send when it is due.
#[tokio::test]
async fn redis_a_retry_delivered_early_is_left_to_the_sweep() {
    let url = redis_url(5);
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(&url, &name)).expect("queue");
    let jobs = ingest(&setup.store, "redis").await;
    let first = queued(&jobs).remove(0);
    let running = match setup
        .store
        .claim_jobs(&[first.id], "w0", LEASE)
        .await
        .expect("claim")
        .remove(0)
    {
        pipeline_store::JobClaim::Claimed(job) => job,
        other => panic!("{other:?}"),
    };
    let due = setup.store.now().await.expect("now") + chrono::Duration::seconds(60);
    setup
        .store
        .fail(
            &Lease::of(&running),
            &pipeline_core::JobError::retryable("storage down"),
            Some(due),
        )
        .await
        .expect("fail");
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("job_id".into(), serde_json::json!(first.id.to_string()));
    kwargs.insert(
        "audio_id".into(),
        serde_json::json!(first.audio_id.to_string()),
    );
    let early = pipeline_queue::celery::message::TaskMessage::new(
        JobType::Transcription.task_name(),
        &first.task_id,
        kwargs,
    );
    let mut conn = redis_conn(&url).await;
    let _: i64 = redis::cmd("LPUSH")
        .arg(&name)
        .arg(early.to_redis_envelope(&name, "early-tag"))
        .query_async(&mut conn)
        .await
        .expect("LPUSH");
    assert!(
        claim_within(&queue, "w1", Duration::from_secs(3))
            .await
            .is_none(),
        "not due for a minute"
    );
    assert!(unacked_tags(&url, &name).await.is_empty(), "not held");
    let waiting: i64 = redis::cmd("LLEN")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .expect("LLEN");
    assert_eq!(waiting, 0, "acknowledged, not put back");
    let unsent = setup
        .store
        .undispatched("redis", due + chrono::Duration::seconds(1), 10)
        .await
        .expect("undispatched");
    assert!(
        unsent
            .iter()
            .any(|j| j.id == first.id && j.status == JobStatus::Retrying),
        "the sweep sends it when it is due: {unsent:?}"
    );
    queue.close().await.expect("close");
}

/// A job made runnable by a worker that died before it published the
/// message (the commit went through, the publish never happened): the
/// sweep of any live worker sends it, and it runs.
async fn a_job_whose_message_was_never_sent_still_runs(url: &str) {
    let setup = store().await;
    let name = format!("test-{}", Uuid::new_v4().simple());
    let queue = BrokerQueue::new(setup.store.clone(), settings(url, &name)).expect("queue");
    let transport = if url.starts_with("redis") {
        "redis"
    } else {
        "amqp"
    };
    let jobs = ingest(&setup.store, transport).await;
    // No dispatch: the message is lost with its worker.
    let claimed = job(claim_within(&queue, "w1", Duration::from_secs(30)).await);
    assert_eq!(claimed.id, jobs[0].id);
    assert_eq!(claimed.attempt, 1);
    queue.close().await.expect("close");
}

#[tokio::test]
async fn redis_a_job_whose_message_was_never_sent_still_runs() {
    a_job_whose_message_was_never_sent_still_runs(&redis_url(5)).await;
}

#[tokio::test]
async fn amqp_a_job_whose_message_was_never_sent_still_runs() {
    a_job_whose_message_was_never_sent_still_runs(&amqp_url()).await;
}

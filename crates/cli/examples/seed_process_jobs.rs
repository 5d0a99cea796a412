//! Seeds N files whose transcription is already done, then dispatches their
//! N PROCESSING jobs through the Celery broker in one call: the workload of
//! the queue benchmark (`scripts/bench_queue.py`), where a worker only runs
//! short jobs and the broker round trip is a large part of each one.
//!
//! ```text
//! seed_process_jobs DATABASE_URL BROKER_URL QUEUE N AUDIO_FILE [--go-on-stdin]
//! ```
//!
//! Prints one JSON line at the end: `{"dispatched", "seconds",
//! "dispatch_started_at", "dispatch_started_unix", ...}`. With
//! `--go-on-stdin` it first prints `{"ready": N}` and waits for a line on
//! stdin before dispatching, so that a worker can be started (and be idle)
//! when the burst arrives rather than find a backlog.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use pipeline_core::{JobStatus, JobType, ProcessingJob, Segment, Transcript};
use pipeline_queue::{BrokerQueue, BrokerSettings, JobQueue};
use pipeline_store::{JobClaim, Lease, NewAudio, NewJob, Store};
use pipeline_worker::{ProcessOptions, Storage};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

const USAGE: &str =
    "usage: seed_process_jobs DATABASE_URL BROKER_URL QUEUE N AUDIO_FILE [--go-on-stdin]";

/// Seeding tasks at once; the store's PostgreSQL pool holds 8 connections.
const SEEDERS: usize = 8;

const SEEDER_ID: &str = "bench-seeder";

struct Args {
    database_url: String,
    broker_url: String,
    queue: String,
    count: usize,
    audio: PathBuf,
    go_on_stdin: bool,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let mut go_on_stdin = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--go-on-stdin" => go_on_stdin = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => positional.push(arg),
        }
    }
    let [database_url, broker_url, queue, count, audio] = <[String; 5]>::try_from(positional)
        .map_err(|got| anyhow::anyhow!("expected 5 arguments, got {}\n{USAGE}", got.len()))?;
    let count: usize = count
        .parse()
        .with_context(|| format!("N must be a positive integer, got {count:?}"))?;
    if count == 0 {
        bail!("N must be at least 1");
    }
    Ok(Args {
        database_url,
        broker_url,
        queue,
        count,
        audio: PathBuf::from(audio),
        go_on_stdin,
    })
}

/// What every seeded row shares: the one real file's facts.
#[derive(Clone)]
struct Template {
    sha256: String,
    size_bytes: u64,
    info: pipeline_audio::AudioInfo,
    storage_key: String,
    options: serde_json::Value,
    settings_key: String,
    transport: String,
}

fn template(audio: &Path, transport: &str) -> Result<Template> {
    let (sha256, size_bytes) = pipeline_audio::sha256_file(audio)
        .with_context(|| format!("cannot read {}", audio.display()))?;
    let info = pipeline_audio::probe(audio)
        .with_context(|| format!("{} is not audio we can decode", audio.display()))?;
    let extension = audio
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let options = ProcessOptions::default();
    Ok(Template {
        storage_key: Storage::key_for(&sha256, &extension),
        sha256,
        size_bytes,
        info,
        options: serde_json::to_value(&options).context("encoding the process options")?,
        settings_key: options.settings_key(),
        transport: transport.to_string(),
    })
}

/// A few segments, so that every output format has something to render.
fn transcript(index: usize, duration: f64) -> Transcript {
    let texts = [
        format!(" Benchmark file number {index}."),
        " The quick brown fox jumps over the lazy dog.".to_string(),
        " Short jobs measure the queue, not the engine.".to_string(),
    ];
    let step = (duration / texts.len() as f64).max(0.5);
    let segments = texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| Segment {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            start: step * i as f64,
            end: step * (i + 1) as f64,
            text,
            avg_logprob: -0.2,
            no_speech_prob: 0.01,
            compression_ratio: 1.2,
            temperature: 0.0,
            words: Vec::new(),
            speaker: None,
        })
        .collect();
    Transcript {
        language: "en".into(),
        language_probability: 1.0,
        duration: step * 3.0,
        model: "bench-seed".into(),
        segments,
        speakers: Vec::new(),
    }
}

/// One file: ingested, transcript stored, TRANSCRIPTION completed. Returns
/// its PROCESSING job as it is now (QUEUED, not yet on the broker).
async fn seed_one(store: &Store, t: &Template, index: usize) -> Result<ProcessingJob> {
    let audio = NewAudio {
        id: Uuid::new_v4(),
        original_name: format!("bench-{index:05}.wav"),
        sha256: t.sha256.clone(),
        size_bytes: t.size_bytes,
        container: t.info.container.clone(),
        codec: t.info.codec.clone(),
        duration_seconds: t.info.duration_seconds,
        sample_rate: t.info.sample_rate,
        channels: t.info.channels,
        storage_key: t.storage_key.clone(),
        options: t.options.clone(),
        settings_key: t.settings_key.clone(),
        webhooks: Vec::new(),
    };
    let jobs = [JobType::Transcription, JobType::Processing].map(|job_type| NewJob {
        transport: t.transport.clone(),
        ..NewJob::new(job_type, 3)
    });
    let (file, created) = store.ingest(&audio, &jobs).await?;
    let find = |job_type: JobType| {
        created
            .iter()
            .find(|j| j.job_type == job_type)
            .map(|j| j.id)
            .with_context(|| format!("ingest of {} created no {job_type} job", file.id))
    };
    let transcription = find(JobType::Transcription)?;
    let processing = find(JobType::Processing)?;
    store
        .save_transcript(file.id, &transcript(index, file.duration_seconds))
        .await?;
    let job = match store
        .claim_job(transcription, SEEDER_ID, Duration::from_secs(300))
        .await?
    {
        JobClaim::Claimed(job) => job,
        other => bail!("could not claim transcription {transcription}: {other:?}"),
    };
    store
        .complete(&Lease::of(&job), "seeded by the queue benchmark")
        .await?;
    let processing = store.job(processing).await?;
    if processing.status != JobStatus::Queued {
        bail!(
            "PROCESSING job {} is {} after its transcription completed, expected QUEUED",
            processing.id,
            processing.status
        );
    }
    Ok(processing)
}

async fn seed(store: &Store, t: &Template, count: usize) -> Result<Vec<ProcessingJob>> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..SEEDERS.min(count) {
        let store = store.clone();
        let t = t.clone();
        tasks.spawn(async move {
            let mut seeded = Vec::new();
            for index in (lane..count).step_by(SEEDERS) {
                seeded.push((index, seed_one(&store, &t, index).await?));
            }
            anyhow::Ok(seeded)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(result) = tasks.join_next().await {
        all.extend(result.context("a seeding task panicked")??);
    }
    // Ingest order, so that the broker sees the jobs as a client would send them.
    all.sort_by_key(|(index, _)| *index);
    Ok(all.into_iter().map(|(_, job)| job).collect())
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let store = Store::connect(&args.database_url).await.with_context(|| {
        format!(
            "database {}",
            pipeline_core::config::mask_url(&args.database_url)
        )
    })?;
    // The worker's defaults (`commands::queue`), so the producer behaves as
    // `process --detach` would.
    let queue = BrokerQueue::new(
        store.clone(),
        BrokerSettings {
            url: args.broker_url.clone(),
            queue: args.queue.clone(),
            consume: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            visibility_timeout: Duration::from_secs(3600),
            prefetch: 1,
        },
    )?;
    // Before any job exists: on a Redis that never saw this project, the
    // first dispatch finds the epoch marker missing and sends every waiting
    // job again; done now, that resend is empty instead of a second copy of
    // the whole burst. It also proves the broker answers before seeding.
    queue.dispatch(&[]).await?;
    queue.health().await.with_context(|| {
        format!(
            "broker {}",
            pipeline_core::config::mask_url(&args.broker_url)
        )
    })?;

    let t = template(&args.audio, queue.name())?;
    let seeding = Instant::now();
    let jobs = seed(&store, &t, args.count).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();

    if args.go_on_stdin {
        print_json(&serde_json::json!({"ready": jobs.len(), "seed_seconds": seed_seconds}))?;
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await
        .context("waiting for stdin")??;
        if line.trim() == "abort" {
            bail!("aborted before dispatch");
        }
    }

    let started_at = Utc::now();
    let started = Instant::now();
    let dispatched = queue.dispatch(&jobs).await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(reason) = &dispatched.fell_back {
        bail!("the broker refused the jobs, they fell back to the embedded queue: {reason}");
    }
    print_json(&serde_json::json!({
        "dispatched": jobs.len(),
        "seconds": seconds,
        "dispatch_started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "dispatch_started_unix": started_at.timestamp_micros() as f64 / 1e6,
        "seed_seconds": seed_seconds,
        "transport": queue.name(),
        "queue": args.queue,
    }))
}

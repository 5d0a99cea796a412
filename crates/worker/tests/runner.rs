//! The worker loop's lifecycle rules, with a scripted engine standing in
//! for Whisper (the real engine is exercised by the CLI's end-to-end tests):
//! retries with backoff, permanent failures, timeouts, cancellation and
//! hand-back at shutdown, each checked in the job's status and audit trail.

use pipeline_asr::{AsrError, AudioSource, DecodeOptions, TranscribeObserver, Transcriber};
use pipeline_core::{AudioStatus, JobStatus, Segment, Transcript};
use pipeline_queue::EmbeddedQueue;
use pipeline_store::Store;
use pipeline_testkit::fixture;
use pipeline_worker::{
    ingest_file, EngineLoader, ProcessOptions, RunUntil, Storage, Worker, WorkerSettings,
};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the scripted engine does on each call, in order; the last repeats.
#[derive(Clone, Copy)]
enum Step {
    Succeed,
    FailRetryable,
    FailPermanent,
    /// Reads the stream slowly, reporting progress, until told to stop.
    Stall,
}

struct ScriptedEngine {
    steps: Vec<Step>,
    calls: AtomicU32,
}

impl Transcriber for ScriptedEngine {
    fn model_name(&self) -> &str {
        "scripted"
    }

    fn transcribe(
        &self,
        audio: &mut dyn AudioSource,
        _options: &DecodeOptions,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        let step = self.steps[call.min(self.steps.len() - 1)];
        let total = audio.duration_hint().unwrap_or(1.0);
        let mut buf = vec![0f32; 16_000];
        let mut done = 0usize;
        loop {
            if observer.is_cancelled() {
                return Err(AsrError::Cancelled);
            }
            let n = audio.read(&mut buf)?;
            if n == 0 {
                if matches!(step, Step::Stall) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                break;
            }
            done += n;
            observer.on_progress(done as f64 / 16_000.0, total);
            if matches!(step, Step::Stall) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        match step {
            Step::FailRetryable => Err(AsrError::Unavailable {
                url: "scripted://engine".into(),
                message: "temporarily unavailable".into(),
            }),
            Step::FailPermanent => Err(AsrError::InvalidOption("scripted refusal".into())),
            _ => Ok(Transcript {
                language: "en".into(),
                language_probability: 1.0,
                duration: total,
                model: "scripted".into(),
                segments: vec![Segment {
                    id: 0,
                    start: 0.0,
                    end: total.min(2.0),
                    text: " Hello world.".into(),
                    avg_logprob: -0.1,
                    no_speech_prob: 0.0,
                    compression_ratio: 1.0,
                    temperature: 0.0,
                    words: Vec::new(),
                    speaker: None,
                }],
                speakers: Vec::new(),
            }),
        }
    }
}

struct Setup {
    store: Store,
    worker: Arc<Worker>,
    audio_id: uuid::Uuid,
    engine: Arc<ScriptedEngine>,
    _dir: tempfile::TempDir,
}

async fn setup(steps: Vec<Step>, timeout: Duration, file: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/p.db", dir.path().display()))
        .await
        .unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let queue = Arc::new(EmbeddedQueue::new(store.clone()));
    let ingested = ingest_file(
        &store,
        queue.as_ref(),
        &storage,
        &fixture(file),
        &ProcessOptions::default(),
        3,
        false,
    )
    .await
    .unwrap();
    let engine = Arc::new(ScriptedEngine {
        steps,
        calls: AtomicU32::new(0),
    });
    let for_loader = engine.clone();
    let loader: EngineLoader = Arc::new(move || Ok(for_loader.clone() as Arc<dyn Transcriber>));
    let settings = WorkerSettings {
        id: "test-worker".into(),
        concurrency: 1,
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(1),
        job_timeout: timeout,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(100),
        output_dir: dir.path().join("outputs"),
        data_dir: dir.path().to_path_buf(),
        poll_interval: Duration::from_millis(20),
        max_attempts: 3,
        ingest_defaults: ProcessOptions::default(),
        ingest_roots: Vec::new(),
        retention: pipeline_store::Retention::default(),
        cache_retention: None,
        chunk_seconds: 0,
        vad_files: None,
    };
    let worker = Arc::new(Worker::new(store.clone(), queue, storage, settings, loader));
    Setup {
        store,
        worker,
        audio_id: ingested.audio.id,
        engine,
        _dir: dir,
    }
}

async fn messages(store: &Store, job_id: uuid::Uuid) -> Vec<String> {
    store
        .events_for_job(job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{:?}->{} {}", e.from_status, e.to_status, e.message))
        .collect()
}

#[tokio::test]
async fn retryable_failures_are_retried_until_success() {
    let s = setup(
        vec![Step::FailRetryable, Step::FailRetryable, Step::Succeed],
        Duration::from_secs(60),
        "speech.wav",
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    assert_eq!(
        s.store.audio(s.audio_id).await.unwrap().status,
        AudioStatus::Completed
    );
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!(jobs[0].attempt, 3);
    assert_eq!(s.engine.calls.load(Ordering::SeqCst), 3);
    let trail = messages(&s.store, jobs[0].id).await;
    assert_eq!(
        trail.iter().filter(|m| m.contains("->RETRYING")).count(),
        2,
        "{trail:?}"
    );
    // The PROCESSING stage wrote every output.
    let results = s.store.results(s.audio_id).await.unwrap().expect("results");
    assert_eq!(results.outputs.len(), 5);
    for path in results.outputs.values() {
        assert!(Path::new(path).is_file(), "{path}");
    }
}

#[tokio::test]
async fn permanent_failures_fail_at_once() {
    let s = setup(
        vec![Step::FailPermanent],
        Duration::from_secs(60),
        "speech.wav",
    )
    .await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!((jobs[0].status, jobs[0].attempt), (JobStatus::Failed, 1));
    assert!(jobs[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("scripted refusal"));
    assert_eq!(jobs[1].status, JobStatus::Failed);
    assert_eq!(s.engine.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_job_past_its_timeout_is_retried_then_failed() {
    let s = setup(vec![Step::Stall], Duration::from_millis(700), "speech.wav").await;
    s.worker
        .clone()
        .run(RunUntil::Finished(vec![s.audio_id]))
        .await
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!((jobs[0].status, jobs[0].attempt), (JobStatus::Failed, 3));
    assert!(jobs[0]
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("timed out"));
}

#[tokio::test]
async fn shutdown_hands_running_jobs_back() {
    let s = setup(vec![Step::Stall], Duration::from_secs(60), "speech.wav").await;
    let run = tokio::spawn(s.worker.clone().run(RunUntil::Shutdown));
    let transcription = s.store.jobs_for_audio(s.audio_id).await.unwrap()[0].clone();
    wait_for(&s.store, transcription.id, JobStatus::Running).await;
    s.worker.shutdown_handle().trigger();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("worker stops promptly")
        .unwrap()
        .unwrap();
    let job = s.store.job(transcription.id).await.unwrap();
    assert_eq!((job.status, job.attempt), (JobStatus::Queued, 0));
    assert!(messages(&s.store, job.id)
        .await
        .iter()
        .any(|m| m.contains("handed back")));
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it() {
    let s = setup(vec![Step::Stall], Duration::from_secs(60), "speech.wav").await;
    let run = tokio::spawn(s.worker.clone().run(RunUntil::Finished(vec![s.audio_id])));
    let transcription = s.store.jobs_for_audio(s.audio_id).await.unwrap()[0].clone();
    wait_for(&s.store, transcription.id, JobStatus::Running).await;
    s.store.cancel(s.audio_id, None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("cancel is seen within a heartbeat")
        .unwrap()
        .unwrap();
    let jobs = s.store.jobs_for_audio(s.audio_id).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Cancelled);
    assert_eq!(jobs[1].status, JobStatus::Cancelled);
    assert_eq!(
        s.store.audio(s.audio_id).await.unwrap().status,
        AudioStatus::Cancelled
    );
}

async fn wait_for(store: &Store, job_id: uuid::Uuid, status: JobStatus) {
    for _ in 0..200 {
        if store.job(job_id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {job_id} never reached {status}");
}

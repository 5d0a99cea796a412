//! The worker loop: claim, run with a renewed lease, record the outcome.

use chrono::Utc;
use futures_util::StreamExt;
use pipeline_asr::{AsrError, Transcriber};
use pipeline_core::{JobError, JobType, ProcessingJob};
use pipeline_queue::celery::backend::{ResultBackend, TaskState};
use pipeline_queue::{IngestTask, JobQueue, Settle, Work};
use pipeline_store::{
    Completion, Heartbeat, Lease, NewSegment, StageOutput, Store, StoreError, WorkerInfo,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OnceCell};
use tracing::Instrument;
use uuid::Uuid;

use crate::diarize::{DiarizationEngine, DiarizerLoader};
use crate::lease::{Beat, LeaseClock};
use crate::retry::backoff;
use crate::stages::{self, StageDone, StageError, StageInputs};
use pipeline_ingest::Storage;

mod outcome;

/// Short jobs a slot claims and records together at most (see
/// `BrokerQueue`'s batching of `pipeline.process` messages); the prefetch
/// window (`broker.prefetch_multiplier` per slot) bounds it too. Batches
/// of 4 per slot were slower than one slot taking the whole window (180
/// against 335 jobs/s on Redis): the cost is per transaction, not per job.
const SHORT_JOB_BATCH: usize = 64;

/// Outcomes of a batch announced (next jobs sent, results told) at once at most.
const ANNOUNCED_AT_ONCE: usize = 16;
/// How often a worker prunes what `[retention]` no longer keeps.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How long an ingest task that failed for a passing reason (a database or
/// storage outage) waits before it is delivered again.
const INGEST_RETRY: Duration = Duration::from_secs(5);

/// Loads the speech engine; called once, on the first transcription.
pub type EngineLoader = Arc<dyn Fn() -> Result<Arc<dyn Transcriber>, AsrError> + Send + Sync>;

/// How a worker runs its jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Unique id of this worker (`host:pid:random`).
    pub id: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim holds without renewal.
    pub lease: Duration,
    /// How often presence is written for `status`.
    pub heartbeat: Duration,
    /// A job running longer is stopped and counted as a failed attempt.
    pub job_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Outputs of a file go to `<output_dir>/<audio_id>/` unless the file's options say otherwise.
    pub output_dir: PathBuf,
    /// The data directory (local files, downloaded audio).
    pub data_dir: PathBuf,
    /// Wait between claims when the queue is empty.
    pub poll_interval: Duration,
    /// Attempts of jobs created by `pipeline.ingest` tasks.
    pub max_attempts: u32,
    /// Options of files submitted by `pipeline.ingest` tasks, before the
    /// task's own keyword arguments.
    pub ingest_defaults: crate::ProcessOptions,
    /// The folders `pipeline.ingest` tasks may read (`ingest.allowed_roots`).
    pub ingest_roots: Vec<PathBuf>,
    /// What this worker prunes now and then (`[retention]`).
    pub retention: pipeline_store::Retention,
    /// Downloads from an object store kept after their last use
    /// (`retention.cache_hours`); `None` keeps them for good.
    pub cache_retention: Option<Duration>,
    /// Audio longer than this is transcribed in chunks of about this
    /// length, by any worker (`processing.chunk_seconds`); 0 never cuts.
    pub chunk_seconds: u64,
    /// The ONNX Runtime library and the Silero VAD model that find the
    /// silences to cut at; without them the quietest stretch is taken.
    pub vad_files: Option<(PathBuf, PathBuf)>,
}

/// A stop request shared by the signal handler and every running job.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(AtomicBool, Notify)>,
}

impl Shutdown {
    /// Asks the worker to stop claiming and hand back what it runs.
    pub fn trigger(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn is_triggered(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until a stop is requested.
    async fn sleep(&self, duration: Duration) {
        let notified = self.inner.1.notified();
        if self.is_triggered() {
            return;
        }
        let _ = tokio::time::timeout(duration, notified).await;
    }
}

/// When [`Worker::run`] returns.
#[derive(Debug, Clone)]
pub enum RunUntil {
    /// At shutdown (SIGINT/SIGTERM).
    Shutdown,
    /// When every one of these files has reached a final status (or at shutdown).
    Finished(Vec<Uuid>),
}

/// A worker process's job runner.
pub struct Worker {
    pub(crate) store: Store,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) storage: Storage,
    pub(crate) settings: WorkerSettings,
    engine: OnceCell<Arc<dyn Transcriber>>,
    loader: EngineLoader,
    diarizer: OnceCell<Arc<dyn DiarizationEngine>>,
    diarizer_loader: DiarizerLoader,
    shutdown: Shutdown,
    running: Mutex<Vec<Uuid>>,
    started_at: chrono::DateTime<Utc>,
    results: Option<Arc<ResultBackend>>,
}

/// What a running job's stage can see: its progress, and whether to stop.
pub(crate) struct JobControl {
    progress_bits: AtomicU64,
    /// Segments produced since the last heartbeat wrote them.
    segments: Mutex<Vec<NewSegment>>,
    /// Held while segments are taken and written, so that stopping the
    /// heartbeat never drops a batch it took.
    flushing: tokio::sync::Mutex<()>,
    pub(crate) cancel_requested: AtomicBool,
    pub(crate) lease_lost: AtomicBool,
    pub(crate) shutdown: Shutdown,
    pub(crate) deadline: Instant,
}

/// Whether a job's outcome reached the store.
enum Recorded {
    /// Written (or moot: someone else holds the job); with the file's jobs
    /// as the write left them, when it returned them.
    Written(Option<Vec<ProcessingJob>>),
    /// Not written: the lease will expire and another worker runs the job.
    NotWritten,
}

/// The span a job's log lines carry: which file, job, attempt and worker.
fn job_span(job: &ProcessingJob, worker: &str) -> tracing::Span {
    tracing::info_span!(
        "job",
        audio_id = %job.audio_id,
        job_id = %job.id,
        job_type = job.job_type.as_str(),
        attempt = job.attempt,
        worker,
    )
}

/// Why a stage stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    LeaseLost,
    Cancelled,
    Shutdown,
    TimedOut,
}

impl JobControl {
    /// Records progress (0-100); it never goes back.
    pub(crate) fn set_progress(&self, percent: f64) {
        let value = percent.clamp(0.0, 100.0);
        let _ = self
            .progress_bits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                (value > f64::from_bits(old)).then_some(value.to_bits())
            });
    }

    /// Queues a finished segment for the next heartbeat to record.
    pub(crate) fn push_segment(&self, segment: NewSegment) {
        if let Ok(mut pending) = self.segments.lock() {
            pending.push(segment);
        }
    }

    fn take_segments(&self) -> Vec<NewSegment> {
        self.segments
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }

    fn progress(&self) -> f64 {
        f64::from_bits(self.progress_bits.load(Ordering::SeqCst))
    }

    /// The reason to stop now, if any, most serious first.
    pub(crate) fn interruption(&self) -> Option<Interruption> {
        if self.lease_lost.load(Ordering::SeqCst) {
            Some(Interruption::LeaseLost)
        } else if self.cancel_requested.load(Ordering::SeqCst) {
            Some(Interruption::Cancelled)
        } else if self.shutdown.is_triggered() {
            Some(Interruption::Shutdown)
        } else if Instant::now() >= self.deadline {
            Some(Interruption::TimedOut)
        } else {
            None
        }
    }
}

impl Worker {
    /// A worker taking jobs from `queue`, recording them in `store`,
    /// reading audio from `storage`, and loading the engine with `loader`
    /// when first needed. Diarization loads the models from their default
    /// places under the data directory unless [`Worker::with_diarizer`]
    /// says otherwise.
    pub fn new(
        store: Store,
        queue: Arc<dyn JobQueue>,
        storage: Storage,
        settings: WorkerSettings,
        loader: EngineLoader,
    ) -> Self {
        let diarizer_loader = crate::diarize::diarizer_loader(
            crate::diarize::default_model_paths(&settings.data_dir),
            pipeline_diarize::Settings::default(),
        );
        Self {
            queue,
            storage,
            store,
            settings,
            engine: OnceCell::new(),
            loader,
            diarizer: OnceCell::new(),
            diarizer_loader,
            shutdown: Shutdown::default(),
            running: Mutex::new(Vec::new()),
            started_at: Utc::now(),
            results: None,
        }
    }

    /// Loads the diarization engine with `loader` when a DIARIZATION job
    /// first needs it.
    pub fn with_diarizer(mut self, loader: DiarizerLoader) -> Self {
        self.diarizer_loader = loader;
        self
    }

    /// Also writes task states to a Celery result backend, where Python's
    /// `AsyncResult` reads them.
    pub fn with_result_backend(mut self, backend: Arc<ResultBackend>) -> Self {
        self.results = Some(backend);
        self
    }

    /// Records a task state in the result backend, if one is configured; a
    /// backend that is down never stops the work.
    async fn report(&self, task_id: &str, state: TaskState) {
        if let Some(backend) = &self.results {
            if let Err(e) = backend.store(task_id, &state).await {
                tracing::warn!(task_id, error = %e, "result backend: could not record the task's state");
            }
        }
    }

    /// The handle that stops this worker.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Loads the engine now (so that the first job does not wait for it).
    pub async fn engine(&self) -> Result<Arc<dyn Transcriber>, AsrError> {
        self.engine
            .get_or_try_init(|| async {
                let loader = self.loader.clone();
                tokio::task::spawn_blocking(move || loader())
                    .await
                    .map_err(|e| AsrError::Backend(format!("model loading stopped: {e}")))?
            })
            .await
            .cloned()
    }

    /// The diarization engine, loaded once per worker on first use; a
    /// failed load is tried again by the next DIARIZATION job.
    pub async fn diarizer(
        &self,
    ) -> Result<Arc<dyn DiarizationEngine>, pipeline_diarize::DiarizeError> {
        self.diarizer
            .get_or_try_init(|| async {
                let loader = self.diarizer_loader.clone();
                tokio::task::spawn_blocking(move || loader())
                    .await
                    .map_err(|e| {
                        pipeline_diarize::DiarizeError::Inference(format!(
                            "model loading stopped: {e}"
                        ))
                    })?
            })
            .await
            .cloned()
    }

    /// Works the queue until `until` is met; jobs still running at shutdown
    /// are handed back, never left RUNNING.
    pub async fn run(self: Arc<Self>, until: RunUntil) -> Result<(), StoreError> {
        let stop = Shutdown::default();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.settings.concurrency.max(1) {
            let worker = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { worker.slot(stop).await });
        }
        let presence = {
            let worker = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { worker.announce(stop).await })
        };
        let pruning = {
            let worker = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { worker.prune(stop).await })
        };
        if let RunUntil::Finished(ids) = &until {
            let worker = self.clone();
            let stop = stop.clone();
            let ids = ids.clone();
            tasks.spawn(async move {
                worker.watch_files(&ids, &stop).await;
                Ok(())
            });
        }
        {
            let stop = stop.clone();
            let shutdown = self.shutdown.clone();
            tasks.spawn(async move {
                while !shutdown.is_triggered() && !stop.is_triggered() {
                    shutdown.sleep(Duration::from_millis(250)).await;
                }
                stop.trigger();
                Ok(())
            });
        }
        let mut first_error = None;
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(e)) = result {
                stop.trigger();
                first_error.get_or_insert(e);
            }
        }
        presence.abort();
        pruning.abort();
        let _ = self.queue.close().await;
        let _ = self.store.worker_gone(&self.settings.id).await;
        first_error.map_or(Ok(()), Err)
    }

    async fn watch_files(&self, ids: &[Uuid], stop: &Shutdown) {
        while !stop.is_triggered() {
            let mut all_final = true;
            for id in ids {
                match self.store.audio(*id).await {
                    Ok(audio) if audio.status.is_final() => {}
                    Ok(_) => all_final = false,
                    // A deleted file will not finish; a database blip is
                    // retried on the next round.
                    Err(StoreError::NotFound { .. }) => {}
                    Err(_) => all_final = false,
                }
            }
            if all_final {
                stop.trigger();
                return;
            }
            stop.sleep(Duration::from_millis(200)).await;
        }
    }

    async fn announce(&self, stop: Shutdown) {
        let host = pipeline_core::hostname();
        while !stop.is_triggered() {
            let current_jobs = self.running.lock().map(|r| r.clone()).unwrap_or_default();
            let info = WorkerInfo {
                id: self.settings.id.clone(),
                host: host.clone(),
                pid: std::process::id(),
                concurrency: u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX),
                current_jobs,
                started_at: self.started_at,
                last_seen: self.store.now().await.unwrap_or_else(|_| Utc::now()),
            };
            let _ = self.store.worker_seen(&info).await;
            stop.sleep(self.settings.heartbeat.min(Duration::from_secs(10)))
                .await;
        }
    }

    /// Prunes what `[retention]` no longer keeps, soon after start and then
    /// every [`PRUNE_EVERY`]: every worker does it, and deleting what
    /// another already deleted costs one cheap statement.
    async fn prune(&self, stop: Shutdown) {
        stop.sleep(Duration::from_secs(30)).await;
        while !stop.is_triggered() {
            if let Some(unused_for) = self.settings.cache_retention {
                let storage = self.storage.clone();
                let removed = tokio::task::spawn_blocking(move || storage.prune_cache(unused_for))
                    .await
                    .unwrap_or(0);
                if removed > 0 {
                    tracing::info!(
                        files = removed,
                        "pruned cached downloads of the object store"
                    );
                }
            }
            match self.store.prune(&self.settings.retention).await {
                Ok(pruned) if pruned != pipeline_store::Pruned::default() => tracing::info!(
                    live_segments = pruned.live_segments,
                    webhook_deliveries = pruned.webhook_deliveries,
                    "pruned what [retention] no longer keeps"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning failed; trying again later"),
            }
            stop.sleep(PRUNE_EVERY).await;
        }
    }

    async fn slot(&self, stop: Shutdown) -> Result<(), StoreError> {
        let mut failures = 0u32;
        while !stop.is_triggered() {
            match self
                .queue
                .claim_batch(&self.settings.id, &[], self.settings.lease, SHORT_JOB_BATCH)
                .await
                .map_err(pipeline_queue::QueueError::into_store_error)
            {
                Ok(works) if !works.is_empty() => {
                    failures = 0;
                    let mut jobs = Vec::new();
                    for work in works {
                        match work {
                            Work::Job(job) => jobs.push(job),
                            Work::Ingest(task) => self.ingest(task).await,
                            Work::Chunk(work) => crate::chunks::run_taken(self, work).await,
                        }
                    }
                    if !jobs.is_empty() {
                        self.execute(jobs).await;
                    }
                }
                // A broker queue's claim already waits for a message.
                Ok(_) if self.queue.name() == "embedded" => {
                    stop.sleep(self.settings.poll_interval).await
                }
                Ok(_) => {}
                Err(e) if e.is_retryable() && failures < 20 => {
                    failures += 1;
                    stop.sleep(backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(5),
                    ))
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs jobs claimed together one after the other (usually one), then
    /// records their completions in one transaction.
    async fn execute(&self, jobs: Vec<ProcessingJob>) {
        let mut preloaded = self.preload(&jobs).await;
        let mut finished = Vec::with_capacity(jobs.len());
        // A long batch must not outlive the leases its claim took: every
        // quarter lease, what is done is recorded and the leases of the jobs
        // still waiting are renewed (those lost meanwhile are skipped).
        let stale = self.settings.lease / 4;
        let mut checkpoint = Instant::now();
        let mut lost = Vec::new();
        for next in 0..jobs.len() {
            if checkpoint.elapsed() >= stale {
                self.record_and_announce(std::mem::take(&mut finished))
                    .await;
                for held in &jobs[next..] {
                    if !lost.contains(&held.id) && !self.renew(held).await {
                        lost.push(held.id);
                    }
                }
                checkpoint = Instant::now();
            }
            let job = &jobs[next];
            let outcome = if lost.contains(&job.id) {
                Err(StageError::Interrupted(Interruption::LeaseLost))
            } else {
                let inputs = preloaded.remove(&job.audio_id);
                self.run_stage(job, inputs).await
            };
            finished.push((job.clone(), outcome));
        }
        self.record_and_announce(finished).await;
    }

    /// Records the outcomes of finished jobs (together when it can), then
    /// announces each.
    async fn record_and_announce(
        &self,
        finished: Vec<(ProcessingJob, Result<StageDone, StageError>)>,
    ) {
        if finished.is_empty() {
            return;
        }
        let recorded = self.record_all(&finished).await;
        // Several at once: each publish and result is a round trip, which
        // a multiplexed connection then sends together; a few, so that
        // reads of a file's jobs leave the database pool to others.
        futures_util::stream::iter(finished.iter().zip(recorded))
            .for_each_concurrent(ANNOUNCED_AT_ONCE, |((job, _), recorded)| async move {
                self.announce_outcome(job, recorded).await;
                self.forget_running(job.id);
            })
            .await;
    }

    /// Renews the lease of a claimed job that has not started yet; false
    /// when it is no longer this worker's. A database blip counts as held:
    /// the stage's own heartbeat finds out soon enough.
    async fn renew(&self, job: &ProcessingJob) -> bool {
        !matches!(
            self.store
                .heartbeat(&Lease::of(job), None, self.settings.lease)
                .await,
            Ok(Heartbeat::Lost)
        )
    }

    /// The files and transcripts of the rendering jobs among `jobs`, in one
    /// read instead of two per job. A failed read preloads nothing: each
    /// stage then reads its own and reports what went wrong.
    async fn preload(&self, jobs: &[ProcessingJob]) -> HashMap<Uuid, StageInputs> {
        let ids: Vec<Uuid> = jobs
            .iter()
            .filter(|job| job.job_type == JobType::Processing)
            .map(|job| job.audio_id)
            .collect();
        match self.store.audio_with_transcripts(&ids).await {
            Ok(files) => files
                .into_iter()
                .map(|(audio, transcript)| (audio.id, StageInputs { audio, transcript }))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading a batch's files at once failed; each job reads its own");
                HashMap::new()
            }
        }
    }

    fn forget_running(&self, job_id: Uuid) {
        if let Ok(mut running) = self.running.lock() {
            running.retain(|id| *id != job_id);
        }
    }

    /// Runs a job's stage with its heartbeat, up to (not including) the
    /// record of its outcome.
    /// Runs one job's stage in its span, with a log line as it starts and
    /// one as it ends.
    async fn run_stage(
        &self,
        job: &ProcessingJob,
        inputs: Option<StageInputs>,
    ) -> Result<StageDone, StageError> {
        let span = job_span(job, &self.settings.id);
        async {
            tracing::info!("started");
            let started = Instant::now();
            let outcome = self.run_stage_in_span(job, inputs).await;
            let seconds = started.elapsed().as_secs_f64();
            match &outcome {
                Ok(done) => tracing::info!(seconds, "done: {}", done.message),
                Err(StageError::Failed(e)) => {
                    tracing::warn!(seconds, kind = e.kind.as_str(), "failed: {}", e.message)
                }
                Err(StageError::Interrupted(why)) => {
                    tracing::info!(seconds, "stopped: {why:?}")
                }
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn run_stage_in_span(
        &self,
        job: &ProcessingJob,
        inputs: Option<StageInputs>,
    ) -> Result<StageDone, StageError> {
        if let Ok(mut running) = self.running.lock() {
            running.push(job.id);
        }
        let control = Arc::new(JobControl {
            progress_bits: AtomicU64::new(job.progress.to_bits()),
            segments: Mutex::new(Vec::new()),
            flushing: tokio::sync::Mutex::new(()),
            cancel_requested: AtomicBool::new(job.cancel_requested),
            lease_lost: AtomicBool::new(false),
            shutdown: self.shutdown.clone(),
            deadline: Instant::now() + self.settings.job_timeout,
        });
        self.report(
            &job.task_id,
            TaskState::Started {
                worker: self.settings.id.clone(),
            },
        )
        .await;
        let beating = Arc::new(AtomicBool::new(true));
        let heartbeat = {
            let results = self.results.clone();
            let task_id = job.task_id.clone();
            let store = self.store.clone();
            let control = control.clone();
            let beating = beating.clone();
            let held = Lease::of(job);
            let lease = self.settings.lease;
            tokio::spawn(async move {
                // About one write a second: progress stays live for
                // `jobs --follow` and the lease is renewed well before it ends.
                let mut last_written = f64::NAN;
                let mut clock = LeaseClock::new(lease);
                while beating.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    let progress = control.progress();
                    {
                        let _flushing = control.flushing.lock().await;
                        let segments = control.take_segments();
                        // Live transcripts are a courtesy: a failed write
                        // must not stop the job.
                        let _ = store.add_live_segments(&held, &segments).await;
                    }
                    if progress == last_written && !clock.due() {
                        continue;
                    }
                    let answer = store
                        .heartbeat(&held, Some(progress), lease)
                        .await
                        .map(|beat| match beat {
                            Heartbeat::Held { cancel_requested } => Some(cancel_requested),
                            Heartbeat::Lost => None,
                        });
                    match clock.beat(answer) {
                        Beat::Held(cancel_requested) => {
                            if progress != last_written {
                                if let Some(backend) = &results {
                                    let _ = backend
                                        .store(&task_id, &TaskState::Progress { percent: progress })
                                        .await;
                                }
                            }
                            last_written = progress;
                            if cancel_requested {
                                control.cancel_requested.store(true, Ordering::SeqCst);
                            }
                        }
                        Beat::Lost => {
                            control.lease_lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Beat::Missed => {}
                    }
                }
            })
        };
        let outcome = stages::run(self, job, &control, inputs).await;
        beating.store(false, Ordering::SeqCst);
        {
            let _flushing = control.flushing.lock().await;
            heartbeat.abort();
        }
        let _ = self
            .store
            .add_live_segments(&Lease::of(job), &control.take_segments())
            .await;
        outcome
    }
}

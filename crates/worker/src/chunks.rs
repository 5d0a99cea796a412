//! Long transcriptions in chunks. The worker holding the TRANSCRIPTION job
//! of a long file cuts it once, at a pause near every `chunk_seconds` (the
//! Silero VAD around each cut, or the quietest stretch without it), stores
//! the chunks, tells the other workers, then works through every chunk
//! nobody holds and waits for those others hold; when the last is done it
//! merges their segments into the job's transcript. Any idle worker takes a
//! waiting chunk ([`run_taken`]). A worker that dies loses only the chunk it
//! held: its lease runs out and the next worker takes it again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_asr::{AsrError, AudioSource, TranscribeObserver};
use pipeline_core::{AudioFile, Chunk, ChunkStatus, JobError, ProcessingJob, Segment, Transcript};
use pipeline_queue::{ChunkWork, Settle};
use pipeline_store::{ChunkBeat, ChunkLease, ChunkScope, StoreError};

use crate::lease::{Beat, LeaseClock};
use crate::runner::{Interruption, JobControl, Shutdown, Worker};
use crate::stages::{
    asr_failure, engine_outcome, local_audio, DecoderSource, StageDone, StageError,
};
use pipeline_ingest::ProcessOptions;

/// Samples per second of the decoded stream.
const RATE: f64 = 16_000.0;
/// How far a cut may move from its target to find a pause.
const SEARCH_SECONDS: f64 = 30.0;
/// Samples per speech probability.
const WINDOW: usize = pipeline_vad::WINDOW_SAMPLES;
/// Speech probability under which a window is a pause (Silero's end of
/// speech at faster-whisper's threshold of 0.5).
const PAUSE: f32 = 0.35;
/// How often the holder looks at chunks other workers hold.
const WAIT_STEP: Duration = Duration::from_millis(500);

/// Whether `audio`'s transcription is cut into chunks.
pub(crate) fn is_long(worker: &Worker, audio: &AudioFile) -> bool {
    is_cut_into_chunks(audio.duration_seconds, worker.settings.chunk_seconds)
}

/// Whether a transcription of `duration_seconds` is cut into chunks of
/// `chunk_seconds` (0: never cut).
pub fn is_cut_into_chunks(duration_seconds: f64, chunk_seconds: u64) -> bool {
    chunk_seconds > 0 && duration_seconds > chunk_seconds as f64
}

/// The TRANSCRIPTION of a long file, as the job's holder runs it.
pub(crate) async fn transcribe_in_chunks(
    worker: &Worker,
    job: &ProcessingJob,
    audio: &AudioFile,
    options: &ProcessOptions,
    control: &Arc<JobControl>,
) -> Result<StageDone, StageError> {
    let started = Instant::now();
    let mut chunks = worker.store.chunks(job.id).await?;
    if chunks.is_empty() {
        let (spans, how) = plan_file(worker, audio, options, control).await?;
        let message = format!(
            "cut into {} chunks of about {} s at {how}",
            spans.len(),
            worker.settings.chunk_seconds
        );
        chunks = worker.store.create_chunks(job.id, &spans, &message).await?;
    }
    let waiting: Vec<Chunk> = chunks
        .iter()
        .filter(|c| c.status != ChunkStatus::Completed)
        .cloned()
        .collect();
    if let Err(e) = worker.queue.dispatch_chunks(job, &waiting).await {
        tracing::warn!(error = %e, "could not announce the chunks; the holder takes them all");
    }
    let total: f64 = chunks
        .iter()
        .map(Chunk::seconds)
        .sum::<f64>()
        .max(f64::EPSILON);
    loop {
        if let Some(why) = job_interruption(control) {
            return Err(StageError::Interrupted(why));
        }
        let scope = ChunkScope::Job(job.id);
        let lease = worker.settings.lease;
        if let Some(chunk) = worker
            .store
            .claim_chunk(scope, &worker.settings.id, lease)
            .await?
        {
            run_chunk(
                worker,
                audio,
                options,
                &chunk,
                job.max_attempts,
                Some(control),
            )
            .await?;
            continue;
        }
        let chunks = worker.store.chunks(job.id).await?;
        let done: f64 = chunks
            .iter()
            .filter(|c| c.status == ChunkStatus::Completed)
            .map(Chunk::seconds)
            .sum();
        control.set_progress((100.0 * done / total).min(99.0));
        if let Some(failed) = chunks.iter().find(|c| c.status == ChunkStatus::Failed) {
            return Err(StageError::Failed(JobError::permanent(format!(
                "chunk {} of {} ({:.1}-{:.1} s) failed: {} (retry runs the failed chunks again)",
                failed.index + 1,
                chunks.len(),
                failed.start,
                failed.end,
                failed.error.as_deref().unwrap_or("no reason recorded")
            ))));
        }
        if chunks.iter().all(|c| c.status == ChunkStatus::Completed) {
            let engine = worker.engine().await.map_err(asr_failure)?;
            let transcript = merge(&chunks, engine.model_name(), audio.duration_seconds);
            let workers: std::collections::BTreeSet<&str> =
                chunks.iter().filter_map(|c| c.worker.as_deref()).collect();
            return Ok(StageDone {
                message: format!(
                    "transcribed {:.1} s of audio in {:.1} s in {} chunks by {} ({} segments, language {})",
                    transcript.duration,
                    started.elapsed().as_secs_f64(),
                    chunks.len(),
                    crate::diarize::count_of(workers.len(), "worker"),
                    transcript.segments.len(),
                    transcript.language
                ),
                results: None,
                transcript: Some(transcript),
                diarization: None,
            });
        }
        tokio::time::sleep(WAIT_STEP).await;
    }
}

/// What stops the holder: its own job's lease, a cancel or a shutdown. The
/// job's timeout applies to each chunk instead, so a long file may take
/// longer than one job may.
fn job_interruption(control: &JobControl) -> Option<Interruption> {
    control
        .interruption()
        .filter(|why| *why != Interruption::TimedOut)
}

/// Runs a chunk this worker took from a queue (not as its job's holder),
/// then acknowledges the message that carried it.
pub(crate) async fn run_taken(worker: &Worker, work: ChunkWork) {
    let chunk = work.chunk;
    let outcome = async {
        let job = worker.store.job(chunk.job_id).await?;
        let audio = worker.store.audio(job.audio_id).await?;
        let options: ProcessOptions =
            serde_json::from_value(audio.options.clone()).map_err(|e| StoreError::Corrupt {
                table: "audio_files",
                message: format!("stored options of {} are unreadable: {e}", audio.id),
            })?;
        let span = tracing::info_span!(
            "chunk",
            audio_id = %audio.id,
            job_id = %job.id,
            chunk = chunk.index,
            attempt = chunk.attempt,
        );
        tracing::Instrument::instrument(
            run_chunk(worker, &audio, &options, &chunk, job.max_attempts, None),
            span,
        )
        .await
    }
    .await;
    if let Err(e) = outcome {
        // Whoever holds the job takes the chunk again once its lease ends.
        tracing::warn!(job_id = %chunk.job_id, chunk = chunk.index, error = ?e, "chunk not recorded");
    }
    if let Some(task_id) = &work.task_id {
        if let Err(e) = worker.queue.settle(task_id, Settle::Ack).await {
            tracing::warn!(task_id, error = %e, "could not acknowledge a chunk's message");
        }
    }
}

/// A chunk's stop conditions: its own lease, its job's end or cancel, the
/// worker's shutdown, the job timeout, and (for the holder) its job's lease.
struct ChunkControl {
    lost: AtomicBool,
    stop: AtomicBool,
    shutdown: Shutdown,
    deadline: Instant,
    job: Option<Arc<JobControl>>,
}

impl ChunkControl {
    fn interruption(&self) -> Option<Interruption> {
        if let Some(why) = self.job.as_deref().and_then(job_interruption) {
            Some(why)
        } else if self.lost.load(Ordering::SeqCst) {
            Some(Interruption::LeaseLost)
        } else if self.stop.load(Ordering::SeqCst) {
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

/// The engine's view of a chunk's stop conditions.
struct ChunkObserver(Arc<ChunkControl>);

impl TranscribeObserver for ChunkObserver {
    fn is_cancelled(&self) -> bool {
        self.0.interruption().is_some()
    }
}

/// Transcribes one held chunk and records how it ended. An error is the
/// store's; the chunk's own failures are recorded with it. The holder's
/// job interruptions come back as `StageError::Interrupted`.
async fn run_chunk(
    worker: &Worker,
    audio: &AudioFile,
    options: &ProcessOptions,
    chunk: &Chunk,
    max_attempts: u32,
    job: Option<&Arc<JobControl>>,
) -> Result<(), StageError> {
    let held = ChunkLease::of(chunk);
    let control = Arc::new(ChunkControl {
        lost: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        shutdown: worker.shutdown_handle(),
        deadline: Instant::now() + worker.settings.job_timeout,
        job: job.cloned(),
    });
    let heartbeat = {
        let store = worker.store.clone();
        let control = control.clone();
        let held = held.clone();
        let lease = worker.settings.lease;
        tokio::spawn(async move {
            let every = (lease / 4).min(Duration::from_secs(5));
            let mut clock = LeaseClock::new(lease);
            loop {
                tokio::time::sleep(every).await;
                let answer = store
                    .heartbeat_chunk(&held, lease)
                    .await
                    .map(|beat| match beat {
                        ChunkBeat::Held { stop } => Some(stop),
                        ChunkBeat::Lost => None,
                    });
                match clock.beat(answer) {
                    Beat::Held(stop) => control.stop.store(stop, Ordering::SeqCst),
                    Beat::Lost => {
                        control.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Beat::Missed => {}
                }
            }
        })
    };
    let started = Instant::now();
    let outcome = transcribe_chunk(worker, audio, options, chunk, &control).await;
    heartbeat.abort();
    let store = &worker.store;
    match outcome {
        Ok(transcript) => {
            if control.lost.load(Ordering::SeqCst) {
                return Ok(());
            }
            let message = format!(
                "done by {} in {:.1} s ({} segments)",
                held.worker,
                started.elapsed().as_secs_f64(),
                transcript.segments.len()
            );
            store
                .complete_chunk(
                    &held,
                    &transcript.language,
                    transcript.language_probability,
                    transcript.segments,
                    &message,
                )
                .await?;
        }
        Err(StageError::Interrupted(Interruption::TimedOut)) => {
            let error = format!(
                "timed out after {} s (processing.job_timeout_secs)",
                worker.settings.job_timeout.as_secs()
            );
            store.fail_chunk(&held, &error, true, max_attempts).await?;
        }
        Err(StageError::Interrupted(why)) => {
            if why != Interruption::LeaseLost {
                let reason = match why {
                    Interruption::Cancelled => "its job was cancelled",
                    _ => "the worker is stopping",
                };
                store.release_chunk(&held, reason).await?;
            }
            if let Some(why) = job.and_then(|c| job_interruption(c)) {
                return Err(StageError::Interrupted(why));
            }
        }
        Err(StageError::Failed(e)) => {
            store
                .fail_chunk(
                    &held,
                    &e.message,
                    e.kind == pipeline_core::ErrorKind::Retryable,
                    max_attempts,
                )
                .await?;
        }
    }
    Ok(())
}

/// The chunk's transcript, its times in the file's timeline.
async fn transcribe_chunk(
    worker: &Worker,
    audio: &AudioFile,
    options: &ProcessOptions,
    chunk: &Chunk,
    control: &Arc<ChunkControl>,
) -> Result<Transcript, StageError> {
    let engine = worker.engine().await.map_err(asr_failure)?;
    let path = local_audio(worker, audio).await?;
    let name = audio.original_name.clone();
    let decode = crate::stages::decode_options(options);
    let limits = options.limits();
    let channel = options.channel();
    let track = options.audio_track();
    let (start, end) = (chunk.start, chunk.end);
    let mut observer = ChunkObserver(control.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let inner = DecoderSource::open(&path, &name, &limits, track, channel)?;
        let mut source = RangeSource::new(inner, start, end);
        engine.transcribe(&mut source, &decode, &mut observer)
    })
    .await;
    let mut transcript = engine_outcome(joined, || control.interruption())?;
    for segment in &mut transcript.segments {
        shift(segment, start);
    }
    Ok(transcript)
}

/// Moves a chunk's segment (and its words) from the chunk's timeline to the file's.
fn shift(segment: &mut Segment, by: f64) {
    segment.start += by;
    segment.end += by;
    for word in &mut segment.words {
        word.start += by;
        word.end += by;
    }
}

/// The chunks' segments in order, as one transcript.
fn merge(chunks: &[Chunk], model: &str, duration: f64) -> Transcript {
    let mut segments = Vec::new();
    for chunk in chunks {
        for segment in &chunk.segments {
            let mut segment = segment.clone();
            segment.id = segments.len() as u32;
            segments.push(segment);
        }
    }
    // The language most of the audio was found to be in.
    let mut seconds: Vec<(&str, f64, f32)> = Vec::new();
    for chunk in chunks {
        let Some(language) = chunk.language.as_deref() else {
            continue;
        };
        match seconds.iter_mut().find(|(l, _, _)| *l == language) {
            Some(entry) => entry.1 += chunk.seconds(),
            None => seconds.push((language, chunk.seconds(), chunk.language_probability)),
        }
    }
    let (language, probability) = seconds
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(l, _, p)| (l.to_string(), *p))
        .unwrap_or_else(|| ("en".to_string(), 0.0));
    Transcript {
        language,
        language_probability: probability,
        duration,
        model: model.to_string(),
        segments,
        speakers: Vec::new(),
    }
}

/// The stretch of a decoded file from `start` to `end` seconds (to the
/// end of the stream for the last chunk, whose end is the header's guess).
struct RangeSource {
    inner: DecoderSource,
    skip: usize,
    left: usize,
    seconds: f64,
}

impl RangeSource {
    fn new(inner: DecoderSource, start: f64, end: f64) -> Self {
        let last = inner
            .duration_hint()
            .is_none_or(|duration| end >= duration - 1e-6);
        Self {
            inner,
            skip: (start * RATE).round() as usize,
            left: if last {
                usize::MAX
            } else {
                ((end - start) * RATE).round() as usize
            },
            seconds: end - start,
        }
    }
}

impl AudioSource for RangeSource {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        if self.skip > 0 {
            let mut scratch = vec![0.0f32; 1 << 16];
            while self.skip > 0 {
                let want = self.skip.min(scratch.len());
                let n = self.inner.read(&mut scratch[..want])?;
                if n == 0 {
                    self.skip = 0;
                    self.left = 0;
                    return Ok(0);
                }
                self.skip -= n;
            }
        }
        let want = self.left.min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.left = if n < want { 0 } else { self.left - n };
        Ok(n)
    }

    fn duration_hint(&self) -> Option<f64> {
        Some(self.seconds)
    }
}

/// Where to cut the file, and what found the pauses.
async fn plan_file(
    worker: &Worker,
    audio: &AudioFile,
    options: &ProcessOptions,
    control: &Arc<JobControl>,
) -> Result<(Vec<(f64, f64)>, &'static str), StageError> {
    let path = local_audio(worker, audio).await?;
    let name = audio.original_name.clone();
    let limits = options.limits();
    let channel = options.channel();
    let track = options.audio_track();
    let duration = audio.duration_seconds;
    let chunk = worker.settings.chunk_seconds as f64;
    let vad_files = worker.settings.vad_files.clone();
    let control = control.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let mut source = DecoderSource::open(&path, &name, &limits, track, channel)?;
        let stop = || job_interruption(&control).is_some();
        let silero = match &vad_files {
            Some((runtime, model)) => match pipeline_vad::Silero::load(runtime, model) {
                Ok(silero) => Some(silero),
                Err(e) => {
                    tracing::warn!(error = %e, "Silero VAD not loaded; cutting at the quietest stretches");
                    None
                }
            },
            None => None,
        };
        match &silero {
            Some(silero) => {
                let mut speech = |window: &[f32]| -> Result<Vec<f32>, AsrError> {
                    let mut stream = silero.stream();
                    let mut out = Vec::new();
                    stream.push(window, &mut out)?;
                    stream.finish(&mut out)?;
                    Ok(out)
                };
                plan(&mut source, duration, chunk, &mut speech, &stop).map(|s| (s, "pauses the VAD found"))
            }
            None => plan(&mut source, duration, chunk, &mut |w| Ok(loudness(w)), &stop)
                .map(|s| (s, "the quietest stretches")),
        }
    })
    .await
    .map_err(|e| StageError::Failed(JobError::retryable(format!("cutting stopped: {e}"))))?;
    planned.map_err(|e| match e {
        AsrError::Cancelled => StageError::Interrupted(Interruption::Cancelled),
        e => asr_failure(e),
    })
}

/// Each window's loudness against the loudest of the stretch, scaled so
/// that a window 20 dB below the loudest reads as a pause.
fn loudness(samples: &[f32]) -> Vec<f32> {
    let rms: Vec<f32> = samples
        .chunks(WINDOW)
        .map(|w| (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt())
        .collect();
    let peak = rms.iter().copied().fold(1e-6f32, f32::max);
    rms.iter().map(|r| (r / peak * 3.5).min(1.0)).collect()
}

/// Speech probabilities of a stretch of samples, one per [`WINDOW`].
type SpeechFn<'a> = dyn FnMut(&[f32]) -> Result<Vec<f32>, AsrError> + 'a;

/// Cuts `duration` seconds of `source` into spans of about `chunk` seconds:
/// each cut at the middle of the longest pause within [`SEARCH_SECONDS`]
/// of its target, by the speech probabilities `speech` gives for a stretch
/// (one per [`WINDOW`] samples). Only the stretches around the targets are
/// looked at; the rest is decoded and passed over.
fn plan(
    source: &mut dyn AudioSource,
    duration: f64,
    chunk: f64,
    speech: &mut SpeechFn<'_>,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<(f64, f64)>, AsrError> {
    let search = (chunk / 4.0).min(SEARCH_SECONDS);
    let mut cuts = vec![0.0f64];
    let mut position = 0usize;
    let mut buf = vec![0.0f32; 1 << 15];
    loop {
        let last = cuts[cuts.len() - 1];
        if duration - last <= chunk {
            break;
        }
        let from = (last + chunk - search).max(last + chunk / 2.0);
        let to = (last + chunk + search).min(duration - 1.0);
        if to <= from {
            break;
        }
        let (from_sample, to_sample) = ((from * RATE) as usize, (to * RATE) as usize);
        let mut stretch = Vec::with_capacity(to_sample - from_sample);
        let mut ended = false;
        while position < to_sample {
            if stop() {
                return Err(AsrError::Cancelled);
            }
            let want = buf.len().min(to_sample - position);
            let n = source.read(&mut buf[..want])?;
            if n == 0 {
                ended = true;
                break;
            }
            if position + n > from_sample {
                let first = from_sample.saturating_sub(position);
                stretch.extend_from_slice(&buf[first..n]);
            }
            position += n;
        }
        // Audio that ends before its header said is not cut past its end.
        if stretch.len() < 4 * WINDOW {
            break;
        }
        let probabilities = speech(&stretch)?;
        let windows = probabilities.len().min(stretch.len() / WINDOW);
        let target = ((last + chunk - from) * RATE / WINDOW as f64) as usize;
        let at = best_pause(&probabilities[..windows], target);
        cuts.push(from + (at * WINDOW) as f64 / RATE);
        if ended {
            break;
        }
    }
    let mut spans: Vec<(f64, f64)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    spans.push((cuts[cuts.len() - 1], duration));
    Ok(spans)
}

/// The window at the middle of the longest run of pause windows (the one
/// nearer `target` among equals); without any, the quietest window.
fn best_pause(probabilities: &[f32], target: usize) -> usize {
    let mut best: Option<(usize, usize)> = None; // (length, middle)
    let mut run_start = None;
    for (i, &p) in probabilities
        .iter()
        .chain(std::iter::once(&1.0))
        .enumerate()
    {
        match (p < PAUSE, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(start)) => {
                let length = i - start;
                let middle = start + length / 2;
                let better = match best {
                    None => true,
                    Some((l, m)) => {
                        length > l || (length == l && middle.abs_diff(target) < m.abs_diff(target))
                    }
                };
                if better {
                    best = Some((length, middle));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some((_, middle)) = best {
        return middle;
    }
    (0..probabilities.len())
        .min_by(|&a, &b| {
            probabilities[a]
                .total_cmp(&probabilities[b])
                .then(a.abs_diff(target).cmp(&b.abs_diff(target)))
        })
        .unwrap_or(target.min(probabilities.len().saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `seconds` of noise at `level`, with silence over `gaps`.
    struct Synthetic {
        at: usize,
        total: usize,
        gaps: Vec<(f64, f64)>,
    }

    impl AudioSource for Synthetic {
        fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
            let n = buf.len().min(self.total - self.at);
            for (i, sample) in buf[..n].iter_mut().enumerate() {
                let t = (self.at + i) as f64 / RATE;
                let silent = self.gaps.iter().any(|(a, b)| t >= *a && t < *b);
                // A deterministic buzz, loud enough to be speech.
                *sample = if silent {
                    0.0
                } else {
                    0.3 * (((self.at + i) * 7919 % 200) as f32 / 100.0 - 1.0)
                };
            }
            self.at += n;
            Ok(n)
        }

        fn duration_hint(&self) -> Option<f64> {
            Some(self.total as f64 / RATE)
        }
    }

    fn cuts_of(seconds: f64, chunk: f64, gaps: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
        let mut source = Synthetic {
            at: 0,
            total: (seconds * RATE) as usize,
            gaps,
        };
        plan(
            &mut source,
            seconds,
            chunk,
            &mut |w| Ok(loudness(w)),
            &|| false,
        )
        .unwrap()
    }

    #[test]
    fn cuts_fall_in_the_pauses_near_each_target() {
        // Pauses at 52-53 s, 118.5-119.5 s and 185-186 s; chunks of 60 s.
        let spans = cuts_of(
            240.0,
            60.0,
            vec![(52.0, 53.0), (118.5, 119.5), (185.0, 186.0)],
        );
        let cuts: Vec<f64> = spans.iter().skip(1).map(|s| s.0).collect();
        assert_eq!(spans.len(), 4, "{spans:?}");
        for (cut, pause) in cuts.iter().zip([52.5, 119.0, 185.5]) {
            assert!(
                (cut - pause).abs() < 0.1,
                "cut {cut} not in the pause at {pause}: {spans:?}"
            );
        }
        assert_eq!(spans[0].0, 0.0);
        assert_eq!(spans[3].1, 240.0);
        for pair in spans.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "spans must touch: {spans:?}");
        }
    }

    #[test]
    fn the_longest_pause_wins_and_short_files_are_one_chunk() {
        let spans = cuts_of(130.0, 60.0, vec![(45.0, 45.3), (70.0, 71.5)]);
        assert!((spans[1].0 - 70.75).abs() < 0.1, "{spans:?}");
        assert_eq!(cuts_of(59.0, 60.0, vec![]), vec![(0.0, 59.0)]);
        // No pause at all: still cut, near the target.
        let spans = cuts_of(150.0, 60.0, vec![]);
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert!((spans[0].1 - 60.0).abs() <= 15.0, "{spans:?}");
    }

    #[test]
    fn merged_segments_are_numbered_in_order() {
        let segment = |start: f64, text: &str| Segment {
            id: 0,
            start,
            end: start + 1.0,
            text: text.into(),
            avg_logprob: 0.0,
            no_speech_prob: 0.0,
            compression_ratio: 1.0,
            temperature: 0.0,
            words: Vec::new(),
            speaker: None,
        };
        let chunk = |index: u32, start: f64, segments: Vec<Segment>| Chunk {
            job_id: uuid::Uuid::nil(),
            index,
            start,
            end: start + 60.0,
            status: ChunkStatus::Completed,
            attempt: 1,
            worker: None,
            lease_expires_at: None,
            error: None,
            language: Some("en".into()),
            language_probability: 0.9,
            segments,
        };
        let merged = merge(
            &[
                chunk(0, 0.0, vec![segment(1.0, " a"), segment(5.0, " b")]),
                chunk(1, 60.0, vec![segment(61.0, " c")]),
            ],
            "tiny.en",
            120.0,
        );
        assert_eq!(merged.text(), "a b c");
        let ids: Vec<u32> = merged.segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![0, 1, 2]);
        assert_eq!(merged.language, "en");
    }
}

//! The work of each job type.

use pipeline_asr::{AsrError, AudioSource, DecodeOptions, TranscribeObserver};
use pipeline_audio::{AudioError, Decoder};
use pipeline_core::render::{self, OutputFormat};
use pipeline_core::{AudioFile, Diarization, JobError, JobType, ProcessingJob, Transcript};
use pipeline_store::{AudioResults, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pipeline_ingest::storage::write_atomically;
use pipeline_ingest::ProcessOptions;

use crate::runner::{Interruption, JobControl, Worker};

/// How a stage ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum StageError {
    /// Stopped from outside: cancel, shutdown, timeout, or lost lease.
    Interrupted(Interruption),
    /// Failed with an error whose kind decides whether to retry.
    Failed(JobError),
}

/// What a stage did: the message for the audit trail, and results to store
/// with the job's completion (one transaction instead of two).
#[derive(Debug)]
pub(crate) struct StageDone {
    pub(crate) message: String,
    pub(crate) results: Option<AudioResults>,
    /// A transcription's transcript (or PROCESSING's, with the speakers
    /// merged in), stored only if the lease still holds.
    pub(crate) transcript: Option<Transcript>,
    /// A diarization's speaker turns, stored only if the lease still holds.
    pub(crate) diarization: Option<Diarization>,
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        StageError::Failed(if e.is_retryable() {
            JobError::retryable(e.to_string())
        } else {
            JobError::permanent(e.to_string())
        })
    }
}

/// What a stage reads from the store before it starts, when a batch read
/// it already.
#[derive(Debug)]
pub(crate) struct StageInputs {
    pub(crate) audio: AudioFile,
    pub(crate) transcript: Option<Transcript>,
}

/// Runs the stage of `job`, reading its file (and, for rendering, its
/// transcript) unless `inputs` holds them.
pub(crate) async fn run(
    worker: &Worker,
    job: &ProcessingJob,
    control: &Arc<JobControl>,
    inputs: Option<StageInputs>,
) -> Result<StageDone, StageError> {
    let (audio, transcript) = match inputs {
        Some(StageInputs { audio, transcript }) => (audio, Some(transcript)),
        None => (worker.store.audio(job.audio_id).await?, None),
    };
    let options: ProcessOptions = serde_json::from_value(audio.options.clone()).map_err(|e| {
        StageError::Failed(JobError::permanent(format!(
            "stored options of {} are unreadable: {e}",
            audio.id
        )))
    })?;
    match job.job_type {
        JobType::Transcription if crate::chunks::is_long(worker, &audio) => {
            crate::chunks::transcribe_in_chunks(worker, job, &audio, &options, control).await
        }
        JobType::Transcription => transcribe(worker, &audio, &options, control).await,
        JobType::Diarization => crate::diarize::diarize(worker, &audio, &options, control).await,
        JobType::Processing => {
            let transcript = match transcript {
                Some(preloaded) => preloaded,
                None => worker.store.transcript(audio.id).await?,
            };
            // A diarized file's PROCESSING ran only after its DIARIZATION
            // completed, which stored the turns with its completion.
            let diarization = if options.diarize {
                let stored = worker.store.diarization(audio.id).await?;
                Some(stored.ok_or_else(|| {
                    StageError::Failed(JobError::permanent(format!(
                        "no speaker turns stored for {}: retry its DIARIZATION job",
                        audio.id
                    )))
                })?)
            } else {
                None
            };
            render_outputs(
                worker,
                &audio,
                transcript,
                diarization.as_ref(),
                &options,
                control,
            )
            .await
        }
    }
}

/// The file's audio on this machine (fetched from an object store when
/// it lives in one).
pub(crate) async fn local_audio(worker: &Worker, audio: &AudioFile) -> Result<PathBuf, StageError> {
    worker
        .storage
        .local_copy(&audio.storage_key)
        .await
        .map_err(|e| {
            let message = format!("audio of {}: {e}", audio.original_name);
            StageError::Failed(if e.is_retryable() {
                JobError::retryable(message)
            } else {
                JobError::permanent(message)
            })
        })
}

async fn transcribe(
    worker: &Worker,
    audio: &AudioFile,
    options: &ProcessOptions,
    control: &Arc<JobControl>,
) -> Result<StageDone, StageError> {
    let engine = worker.engine().await.map_err(asr_failure)?;
    let path = local_audio(worker, audio).await?;
    let name = audio.original_name.clone();
    let decode = decode_options(options);
    let limits = options.limits();
    let channel = options.channel();
    let track = options.audio_track();
    let control_for_engine = control.clone();
    let started = Instant::now();
    let joined = tokio::task::spawn_blocking(move || {
        let mut source = DecoderSource::open(&path, &name, &limits, track, channel)?;
        let mut observer = ControlObserver {
            control: control_for_engine,
        };
        engine.transcribe(&mut source, &decode, &mut observer)
    })
    .await;
    let mut transcript = engine_outcome(joined, || control.interruption())?;
    if let Some(reason) = control.interruption() {
        // The lease may have been lost while the last window decoded.
        if reason == Interruption::LeaseLost {
            return Err(StageError::Interrupted(reason));
        }
    }
    if transcript.duration <= 0.0 {
        transcript.duration = audio.duration_seconds;
    }
    Ok(StageDone {
        message: format!(
            "transcribed {:.1} s of audio in {:.1} s ({} segments, language {})",
            transcript.duration,
            started.elapsed().as_secs_f64(),
            transcript.segments.len(),
            transcript.language
        ),
        results: None,
        transcript: Some(transcript),
        diarization: None,
    })
}

async fn render_outputs(
    worker: &Worker,
    audio: &AudioFile,
    transcript: Option<Transcript>,
    diarization: Option<&Diarization>,
    options: &ProcessOptions,
    control: &Arc<JobControl>,
) -> Result<StageDone, StageError> {
    let mut transcript = transcript.ok_or_else(|| {
        StageError::Failed(JobError::permanent(format!(
            "no transcript stored for {}",
            audio.id
        )))
    })?;
    if let Some(diarization) = diarization {
        pipeline_core::speakers::assign_speakers(&mut transcript, diarization);
    }
    let dir = options
        .output_dir
        .clone()
        .unwrap_or_else(|| worker.settings.output_dir.join(audio.id.to_string()));
    let formats = if options.formats.is_empty() {
        OutputFormat::DEFAULT.to_vec()
    } else {
        options.formats.clone()
    };
    // The recording's name in RTTM.
    let recording = Path::new(&audio.original_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut outputs = BTreeMap::new();
    for (i, (format, path)) in output_paths(&dir, &audio.original_name, &formats)
        .into_iter()
        .enumerate()
    {
        if let Some(reason) = control.interruption() {
            if reason != Interruption::TimedOut {
                return Err(StageError::Interrupted(reason));
            }
        }
        let rendered = match (format, diarization) {
            // The turns as the diarization found them, not as segments cut them.
            (OutputFormat::Rttm, Some(d)) => render::render_turns_rttm(&d.turns, &recording),
            (OutputFormat::Rttm, None) => render::render_rttm(&transcript, &recording),
            _ => render::render(&transcript, format),
        };
        write_atomically(&path, rendered.as_bytes()).map_err(|e| {
            StageError::Failed(JobError::retryable(format!(
                "cannot write {}: {e}",
                path.display()
            )))
        })?;
        // With an object store, outputs are shared with every machine too.
        if !worker.storage.is_local() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("transcript.{}", format.extension()));
            worker
                .storage
                .put_bytes(
                    &format!("outputs/{}/{name}", audio.id),
                    rendered.into_bytes(),
                )
                .await
                .map_err(|e| StageError::Failed(JobError::retryable(e.to_string())))?;
        }
        outputs.insert(format.extension().to_string(), path.display().to_string());
        control.set_progress(100.0 * (i + 1) as f64 / formats.len() as f64);
    }
    let stats = render::stats(&transcript);
    let speakers = match diarization {
        Some(_) => format!(
            ", {}",
            crate::diarize::count_of(transcript.speakers.len(), "speaker")
        ),
        None => String::new(),
    };
    let message = format!(
        "wrote {} to {} ({} words, {:.1} s of speech, {:.0} words per minute{speakers})",
        formats
            .iter()
            .map(|f| f.extension())
            .collect::<Vec<_>>()
            .join(", "),
        dir.display(),
        stats.words,
        stats.speech_seconds,
        stats.words_per_minute
    );
    Ok(StageDone {
        message,
        results: Some(AudioResults {
            outputs,
            words: stats.words,
            speech_seconds: stats.speech_seconds,
            words_per_minute: stats.words_per_minute,
        }),
        // With its speakers, the transcript replaces the stored one, so
        // that `transcript` and the API show them too.
        transcript: diarization.map(|_| transcript),
        diarization: None,
    })
}

/// The engine's options for a file's settings.
pub fn decode_options(options: &ProcessOptions) -> DecodeOptions {
    DecodeOptions {
        language: options.language.clone(),
        task: options.task,
        beam_size: options.beam_size.max(1),
        word_timestamps: options.word_timestamps,
        vad_filter: options.vad_filter,
        mode: options.mode,
        batch_size: options.batch_size.max(1),
        temperatures: pipeline_core::decoding::temperature_schedule(options.temperature_increment),
        vad: options.vad.clone(),
        initial_prompt: options.initial_prompt.clone(),
        hotwords: options.hotwords.clone(),
        ..DecodeOptions::default()
    }
}

/// Where each format of a file's outputs is written.
pub fn output_paths(
    dir: &Path,
    original_name: &str,
    formats: &[OutputFormat],
) -> Vec<(OutputFormat, PathBuf)> {
    let stem = Path::new(original_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Only the name's safe characters: it came from a user.
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = if stem.trim_matches('.').is_empty() {
        "transcript".to_string()
    } else {
        stem
    };
    formats
        .iter()
        .map(|f| (*f, dir.join(format!("{stem}.{}", f.extension()))))
        .collect()
}

fn audio_failure(name: &str, e: &AudioError) -> AsrError {
    // The decoder names the storage path (a content hash); users know the
    // file by the name they submitted.
    let message = e.to_string();
    let message = if e.file().is_empty() {
        format!("{name}: {message}")
    } else {
        message.replacen(e.file(), name, 1)
    };
    AsrError::Audio {
        message,
        retryable: e.is_retryable(),
    }
}

/// What the engine's blocking task ended with, as a stage's outcome: a
/// cancelled transcription is the interruption that stopped it.
pub(crate) fn engine_outcome(
    joined: Result<Result<Transcript, AsrError>, tokio::task::JoinError>,
    interruption: impl Fn() -> Option<Interruption>,
) -> Result<Transcript, StageError> {
    match joined {
        Ok(Ok(transcript)) => Ok(transcript),
        Ok(Err(AsrError::Cancelled)) => Err(StageError::Interrupted(
            interruption().unwrap_or(Interruption::Cancelled),
        )),
        Ok(Err(e)) => Err(asr_failure(e)),
        Err(e) => Err(StageError::Failed(JobError::retryable(format!(
            "transcription stopped: {e}"
        )))),
    }
}

pub(crate) fn asr_failure(e: AsrError) -> StageError {
    StageError::Failed(if e.is_retryable() {
        JobError::retryable(e.to_string())
    } else {
        JobError::permanent(e.to_string())
    })
}

/// A decoded file as the engine's sample stream; errors name the file by
/// `name` (what the user submitted) rather than by where it is stored.
pub struct DecoderSource {
    decoder: Decoder,
    name: String,
}

impl DecoderSource {
    /// Opens `path` for decoding `channel` of `track` within `limits`.
    pub fn open(
        path: &Path,
        name: &str,
        limits: &pipeline_audio::Limits,
        track: pipeline_audio::Track,
        channel: pipeline_audio::Channel,
    ) -> Result<Self, AsrError> {
        let mut decoder =
            Decoder::open_track(path, limits, track).map_err(|e| audio_failure(name, &e))?;
        decoder
            .select_channel(channel)
            .map_err(|e| audio_failure(name, &e))?;
        Ok(Self {
            decoder,
            name: name.to_string(),
        })
    }
}

impl AudioSource for DecoderSource {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        self.decoder
            .read(buf)
            .map_err(|e| audio_failure(&self.name, &e))
    }

    fn duration_hint(&self) -> Option<f64> {
        let duration = self.decoder.info().duration_seconds;
        (duration > 0.0).then_some(duration)
    }
}

/// Forwards the engine's progress to the job and its stop conditions back.
struct ControlObserver {
    control: Arc<JobControl>,
}

impl TranscribeObserver for ControlObserver {
    fn on_progress(&mut self, done_seconds: f64, total_seconds: f64) {
        if total_seconds > 0.0 {
            // 99 at most until the transcript is stored: 100 means done.
            self.control
                .set_progress((100.0 * done_seconds / total_seconds).min(99.0));
        }
    }

    fn on_segment(&mut self, segment: &pipeline_core::Segment) {
        self.control
            .push_segment((segment.id, segment.start, segment.end, segment.text.clone()));
    }

    fn is_cancelled(&self) -> bool {
        self.control.interruption().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_step_sets_the_temperatures_and_the_settings_key() {
        let default = ProcessOptions::default();
        assert_eq!(
            decode_options(&default).temperatures,
            DecodeOptions::default().temperatures
        );
        let once = ProcessOptions {
            temperature_increment: 0.0,
            ..ProcessOptions::default()
        };
        assert_eq!(decode_options(&once).temperatures, vec![0.0]);
        // Another step may give other words: no reuse across it.
        assert_ne!(once.settings_key(), default.settings_key());
    }
}

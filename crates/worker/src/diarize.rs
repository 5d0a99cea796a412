//! The DIARIZATION stage: who speaks when, from the file's audio, run
//! beside TRANSCRIPTION; PROCESSING merges the turns into the transcript.

use pipeline_asr::{AsrError, AudioSource};
use pipeline_core::speakers::speaker_label;
use pipeline_core::{AudioFile, Diarization, JobError, SpeakerTurn};
use pipeline_diarize::{DiarizeError, Diarizer, ModelPaths, Observer, Output, Samples, Settings};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::runner::{Interruption, JobControl, Worker};
use crate::stages::{asr_failure, local_audio, DecoderSource, StageDone, StageError};
use pipeline_ingest::ProcessOptions;

pub use pipeline_diarize::Diarize as DiarizationEngine;

/// Loads the diarization engine; called on a worker's first DIARIZATION
/// job (and again on the next one if loading failed).
pub type DiarizerLoader =
    Arc<dyn Fn() -> Result<Arc<dyn DiarizationEngine>, DiarizeError> + Send + Sync>;

/// Where the runtime and the models are when nothing is configured: the
/// VAD's ONNX Runtime and the models scripts/install-diarization.sh puts
/// under `data_dir`.
pub fn default_model_paths(data_dir: &Path) -> ModelPaths {
    ModelPaths::under(data_dir)
}

/// A loader of the [`Diarizer`] from `paths` with `settings`.
pub fn diarizer_loader(paths: ModelPaths, settings: Settings) -> DiarizerLoader {
    Arc::new(move || {
        Diarizer::load(&paths, &settings).map(|d| Arc::new(d) as Arc<dyn DiarizationEngine>)
    })
}

/// The engine's turns as stored: speakers labelled `SPEAKER_00`, ... in
/// order of first appearance (the engine's numbering), turns by start.
pub fn to_diarization(output: &Output, model: &str) -> Diarization {
    let mut turns: Vec<SpeakerTurn> = output
        .turns
        .iter()
        .map(|t| SpeakerTurn {
            start: t.start,
            end: t.end,
            speaker: speaker_label(t.speaker),
        })
        .collect();
    turns.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.end.total_cmp(&b.end)));
    Diarization {
        turns,
        model: model.to_string(),
    }
}

/// Runs the DIARIZATION stage of `audio`.
pub(crate) async fn diarize(
    worker: &Worker,
    audio: &AudioFile,
    options: &ProcessOptions,
    control: &Arc<JobControl>,
) -> Result<StageDone, StageError> {
    let engine = worker
        .diarizer()
        .await
        .map_err(|e| diarize_failure(e, None))?;
    let path = local_audio(worker, audio).await?;
    let name = audio.original_name.clone();
    let limits = options.limits();
    // The channel the transcript is of, so that the turns fit its words.
    let channel = options.channel();
    let track = options.audio_track();
    let count = options.speaker_count();
    let observer_control = control.clone();
    let started = Instant::now();
    let ran = tokio::task::spawn_blocking(move || {
        let source = DecoderSource::open(&path, &name, &limits, track, channel)?;
        let mut samples = DecoderSamples {
            source,
            failure: None,
        };
        let mut observer = DiarizeObserver {
            control: observer_control,
        };
        let outcome = engine.diarize(&mut samples, &count, &mut observer);
        Ok::<_, AsrError>((outcome, samples.failure, engine))
    })
    .await
    .map_err(|e| StageError::Failed(JobError::retryable(format!("diarization stopped: {e}"))))?;
    let (outcome, audio_failure, engine) = ran.map_err(asr_failure)?;
    let output = match outcome {
        Ok(output) => output,
        Err(DiarizeError::Cancelled) => {
            return Err(StageError::Interrupted(
                control.interruption().unwrap_or(Interruption::Cancelled),
            ))
        }
        Err(e) => return Err(diarize_failure(e, audio_failure)),
    };
    // The lease may have been lost while the last window ran.
    if control.interruption() == Some(Interruption::LeaseLost) {
        return Err(StageError::Interrupted(Interruption::LeaseLost));
    }
    let diarization = to_diarization(&output, engine.model_name());
    let seconds = if output.duration > 0.0 {
        output.duration
    } else {
        audio.duration_seconds
    };
    Ok(StageDone {
        message: format!(
            "diarized {seconds:.1} s of audio in {:.1} s ({}, {})",
            started.elapsed().as_secs_f64(),
            count_of(output.speakers, "speaker"),
            count_of(diarization.turns.len(), "turn")
        ),
        results: None,
        transcript: None,
        diarization: Some(diarization),
    })
}

/// `1 speaker`, `2 speakers`.
pub(crate) fn count_of(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What becomes of a failed diarization:
/// - a missing or broken runtime or model, or an option out of range, fails
///   at once: trying again meets the same file;
/// - audio that cannot be read fails as the decoder says (undecodable is
///   permanent, a read that may pass is retried);
/// - an inference failure is retried: ONNX Runtime fails for passing
///   reasons too (memory, a thread pool), and `max_attempts` bounds the
///   cost of retrying one that does not pass.
fn diarize_failure(e: DiarizeError, audio_failure: Option<AsrError>) -> StageError {
    match (e, audio_failure) {
        (DiarizeError::Audio(_), Some(audio)) => asr_failure(audio),
        (e @ DiarizeError::Inference(_), _) => {
            StageError::Failed(JobError::retryable(e.to_string()))
        }
        (e, _) => StageError::Failed(JobError::permanent(e.to_string())),
    }
}

/// The decoded file as the diarizer's sample stream; the decoder's own
/// error is kept, so that its kind decides the job's fate.
struct DecoderSamples {
    source: DecoderSource,
    failure: Option<AsrError>,
}

impl Samples for DecoderSamples {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, DiarizeError> {
        self.source.read(buf).map_err(|e| {
            let message = e.to_string();
            self.failure = Some(e);
            DiarizeError::Audio(message)
        })
    }

    fn duration_hint(&self) -> Option<f64> {
        self.source.duration_hint()
    }
}

/// Forwards the diarizer's progress to the job and its stop conditions back.
struct DiarizeObserver {
    control: Arc<JobControl>,
}

impl Observer for DiarizeObserver {
    fn on_progress(&mut self, done_seconds: f64, total_seconds: f64) {
        if total_seconds > 0.0 {
            // 99 at most until the turns are stored: 100 means done.
            self.control
                .set_progress((100.0 * done_seconds / total_seconds).min(99.0));
        }
    }

    fn is_cancelled(&self) -> bool {
        self.control.interruption().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_diarize::Turn;

    #[test]
    fn turns_are_labelled_and_ordered() {
        let output = Output {
            turns: vec![
                Turn {
                    start: 3.0,
                    end: 5.0,
                    speaker: 1,
                },
                Turn {
                    start: 0.5,
                    end: 3.2,
                    speaker: 0,
                },
            ],
            speakers: 2,
            duration: 5.0,
        };
        let d = to_diarization(&output, "m");
        assert_eq!(d.model, "m");
        let labels: Vec<(f64, &str)> = d
            .turns
            .iter()
            .map(|t| (t.start, t.speaker.as_str()))
            .collect();
        assert_eq!(labels, vec![(0.5, "SPEAKER_00"), (3.0, "SPEAKER_01")]);
    }

    #[test]
    fn only_inference_failures_are_retried() {
        let kind = |e: DiarizeError| match diarize_failure(e, None) {
            StageError::Failed(error) => error.kind,
            other => panic!("{other:?}"),
        };
        use pipeline_core::ErrorKind::*;
        assert_eq!(kind(DiarizeError::Inference("oom".into())), Retryable);
        assert_eq!(kind(DiarizeError::InvalidOption("x".into())), Permanent);
        assert_eq!(
            kind(DiarizeError::Model {
                path: "/m.onnx".into(),
                reason: "missing".into()
            }),
            Permanent
        );
        assert_eq!(kind(DiarizeError::Audio("bad".into())), Permanent);
        let passing = AsrError::Audio {
            message: "read failed".into(),
            retryable: true,
        };
        match diarize_failure(DiarizeError::Audio("x".into()), Some(passing)) {
            StageError::Failed(error) => assert_eq!(error.kind, Retryable),
            other => panic!("{other:?}"),
        }
    }
}

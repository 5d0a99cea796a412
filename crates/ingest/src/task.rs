//! The `pipeline.ingest` task a broker delivers: its arguments, checked as
//! hostile input (anyone who can publish to the queue can send one).

use pipeline_core::decoding::{DecodeMode, Task};
use pipeline_core::render::OutputFormat;
use pipeline_queue::JobQueue;
use pipeline_store::Store;
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::ingest::{check_speaker_count, ingest_file, IngestError, Ingested, ProcessOptions};
use crate::storage::Storage;

/// The longest prompt or hotword list a task may carry.
const MAX_PROMPT_CHARS: usize = 2_000;

/// What a `pipeline.ingest` task may set: the file and the options a user
/// chooses. Where outputs go, which model runs and the limits that protect
/// the worker are the operator's, never the task's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestArgs {
    /// A path (or `file://` URL) under `ingest.allowed_roots`.
    source: String,
    #[serde(default)]
    force: bool,
    language: Option<String>,
    task: Option<Task>,
    beam_size: Option<usize>,
    word_timestamps: Option<bool>,
    vad_filter: Option<bool>,
    mode: Option<DecodeMode>,
    batch_size: Option<usize>,
    initial_prompt: Option<String>,
    hotwords: Option<String>,
    channel: Option<String>,
    audio_track: Option<usize>,
    formats: Option<Vec<OutputFormat>>,
    /// Adds a DIARIZATION job (the operator's `diarization.enabled` when
    /// not given; a speaker count implies it).
    diarize: Option<bool>,
    speakers: Option<u32>,
    min_speakers: Option<u32>,
    max_speakers: Option<u32>,
}

/// Whether `code` looks like a Whisper language code (`en`, `de`, `yue`).
pub fn is_language_code(code: &str) -> bool {
    (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase())
}

/// Why a task was refused before anything was read or stored.
fn refused(path: impl Into<PathBuf>, message: impl Into<String>) -> IngestError {
    IngestError::Unreadable {
        path: path.into(),
        message: message.into(),
    }
}

/// `path` resolved (symlinks included) if it lies under one of `roots`.
pub fn within_roots(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if roots.is_empty() {
        return Err(
            "pipeline.ingest tasks are refused: no ingest.allowed_roots is configured".into(),
        );
    }
    let real = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    let inside = roots
        .iter()
        .filter_map(|root| root.canonicalize().ok())
        .any(|root| real.starts_with(&root));
    if inside {
        Ok(real)
    } else {
        Err(format!(
            "outside ingest.allowed_roots ({})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The file's options: `defaults` with the task's choices, each checked.
fn options(
    args: &IngestArgs,
    defaults: &ProcessOptions,
    path: &Path,
) -> Result<ProcessOptions, IngestError> {
    let bad = |message: String| refused(path, message);
    let mut options = defaults.clone();
    if let Some(language) = &args.language {
        if !is_language_code(language) {
            return Err(bad(format!(
                "language {language:?} is not a language code (en, de, yue, ...)"
            )));
        }
        options.language = Some(language.clone());
    }
    if let Some(task) = args.task {
        options.task = task;
    }
    if let Some(beam_size) = args.beam_size {
        options.beam_size = beam_size.clamp(1, 10);
    }
    if let Some(on) = args.word_timestamps {
        options.word_timestamps = on;
    }
    if let Some(on) = args.vad_filter {
        options.vad_filter = on;
    }
    if let Some(mode) = args.mode {
        options.mode = mode;
    }
    if let Some(batch_size) = args.batch_size {
        options.batch_size = batch_size.clamp(1, 32);
    }
    for (name, value, slot) in [
        (
            "initial_prompt",
            &args.initial_prompt,
            &mut options.initial_prompt,
        ),
        ("hotwords", &args.hotwords, &mut options.hotwords),
    ] {
        if let Some(text) = value {
            if text.chars().count() > MAX_PROMPT_CHARS {
                return Err(bad(format!(
                    "{name} is longer than {MAX_PROMPT_CHARS} characters"
                )));
            }
            *slot = Some(text.clone());
        }
    }
    if let Some(channel) = &args.channel {
        channel
            .parse::<pipeline_audio::Channel>()
            .map_err(|e| bad(format!("channel: {e}")))?;
        options.channel = channel.clone();
    }
    if let Some(track) = args.audio_track {
        track
            .to_string()
            .parse::<pipeline_audio::Track>()
            .map_err(|e| bad(format!("audio_track: {e}")))?;
        options.audio_track = Some(track);
    }
    if let Some(formats) = &args.formats {
        options.formats = formats.clone();
    }
    let count = pipeline_diarize::SpeakerCount {
        speakers: args.speakers,
        min_speakers: args.min_speakers,
        max_speakers: args.max_speakers,
    };
    let counted = count != pipeline_diarize::SpeakerCount::default();
    check_speaker_count(&count).map_err(bad)?;
    if counted && args.diarize == Some(false) {
        return Err(bad(
            "speakers, min_speakers and max_speakers need diarize (they were given with diarize false)"
                .to_string(),
        ));
    }
    // A count the task gives replaces the operator's defaults whole.
    let diarize = counted || args.diarize.unwrap_or(defaults.diarize);
    let count = if counted {
        count
    } else {
        defaults.speaker_count()
    };
    options.set_diarization(diarize, count, args.formats.is_some());
    Ok(options)
}

/// Runs a `pipeline.ingest` task from a Celery client: the file must lie
/// under `roots` (after resolving symlinks), unknown arguments are refused,
/// and nothing is read before both checks pass.
pub async fn ingest_task(
    store: &Store,
    queue: &dyn JobQueue,
    storage: &Storage,
    kwargs: &serde_json::Map<String, serde_json::Value>,
    defaults: &ProcessOptions,
    roots: &[PathBuf],
    max_attempts: u32,
) -> Result<Ingested, IngestError> {
    let args: IngestArgs = serde_json::from_value(serde_json::Value::Object(kwargs.clone()))
        .map_err(|e| refused("(task)", format!("bad pipeline.ingest arguments: {e}")))?;
    let given = PathBuf::from(args.source.strip_prefix("file://").unwrap_or(&args.source));
    let path = within_roots(&given, roots).map_err(|message| refused(&given, message))?;
    let options = options(&args, defaults, &given)?;
    ingest_file(
        store,
        queue,
        storage,
        &path,
        &options,
        max_attempts,
        args.force,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_a_root_pass_and_symlinks_cannot_escape() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let inside = root.path().join("talk.wav");
        std::fs::write(&inside, b"x").unwrap();
        let secret = outside.path().join("secret.wav");
        std::fs::write(&secret, b"x").unwrap();
        let link = root.path().join("link.wav");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let roots = vec![root.path().to_path_buf()];
        assert!(within_roots(&inside, &roots).is_ok());
        for bad in [
            secret.clone(),
            link,
            root.path()
                .join("../")
                .join(outside.path().file_name().unwrap())
                .join("secret.wav"),
            PathBuf::from("/etc/passwd"),
        ] {
            let why = within_roots(&bad, &roots).unwrap_err();
            assert!(
                why.contains("outside ingest.allowed_roots"),
                "{bad:?}: {why}"
            );
        }
        let none = within_roots(&inside, &[]).unwrap_err();
        assert!(none.contains("no ingest.allowed_roots"), "{none}");
    }

    #[test]
    fn the_operator_s_settings_are_not_the_task_s() {
        for kwargs in [
            serde_json::json!({"source": "/x.wav", "output_dir": "/etc"}),
            serde_json::json!({"source": "/x.wav", "model": "large-v3"}),
            serde_json::json!({"source": "/x.wav", "max_duration_secs": 1e12}),
            serde_json::json!({"path": "/x.wav"}),
        ] {
            assert!(
                serde_json::from_value::<IngestArgs>(kwargs.clone()).is_err(),
                "{kwargs}"
            );
        }
        let args: IngestArgs = serde_json::from_value(
            serde_json::json!({"source": "/x.wav", "beam_size": 100000, "language": "en"}),
        )
        .unwrap();
        let options = options(&args, &ProcessOptions::default(), Path::new("/x.wav")).unwrap();
        assert_eq!(options.beam_size, 10);
        let long: IngestArgs = serde_json::from_value(
            serde_json::json!({"source": "/x.wav", "language": "x".repeat(50_000_000 / 1000)}),
        )
        .unwrap();
        assert!(options_err(&long).contains("not a language code"));
    }

    #[test]
    fn an_audio_track_is_taken_and_checked() {
        let args =
            |kwargs: serde_json::Value| -> IngestArgs { serde_json::from_value(kwargs).unwrap() };
        let o = options(
            &args(serde_json::json!({"source": "/x.mkv", "audio_track": 1})),
            &ProcessOptions::default(),
            Path::new("/x.mkv"),
        )
        .unwrap();
        assert_eq!(o.audio_track(), pipeline_audio::Track::Index(1));
        assert_ne!(o.settings_key(), ProcessOptions::default().settings_key());
        let too_far = args(serde_json::json!({"source": "/x.mkv", "audio_track": 100000}));
        assert!(options_err(&too_far).contains("audio_track"));
        assert!(serde_json::from_value::<IngestArgs>(
            serde_json::json!({"source": "/x.mkv", "audio_track": -1})
        )
        .is_err());
    }

    #[test]
    fn diarization_arguments_are_checked_and_a_count_implies_it() {
        let args =
            |kwargs: serde_json::Value| -> IngestArgs { serde_json::from_value(kwargs).unwrap() };
        let o = options(
            &args(serde_json::json!({"source": "/x.wav", "speakers": 2})),
            &ProcessOptions::default(),
            Path::new("/x.wav"),
        )
        .unwrap();
        assert!(o.diarize);
        assert_eq!(o.speakers, Some(2));
        assert!(o.formats.contains(&OutputFormat::Rttm));
        assert_eq!(
            o.job_types(),
            vec![
                pipeline_core::JobType::Transcription,
                pipeline_core::JobType::Diarization,
                pipeline_core::JobType::Processing
            ]
        );
        let o = options(
            &args(serde_json::json!({"source": "/x.wav", "diarize": true, "formats": ["txt"]})),
            &ProcessOptions::default(),
            Path::new("/x.wav"),
        )
        .unwrap();
        assert_eq!(o.formats, vec![OutputFormat::Txt], "chosen formats stay");
        let plain = options(
            &args(serde_json::json!({"source": "/x.wav"})),
            &ProcessOptions::default(),
            Path::new("/x.wav"),
        )
        .unwrap();
        assert!(!plain.diarize);
        assert_eq!(plain.job_types().len(), 2);
        assert_eq!(plain, ProcessOptions::default());
        for (kwargs, why) in [
            (
                serde_json::json!({"source": "/x.wav", "speakers": 0}),
                "between 1 and 64",
            ),
            (
                serde_json::json!({"source": "/x.wav", "max_speakers": 65}),
                "between 1 and 64",
            ),
            (
                serde_json::json!({"source": "/x.wav", "min_speakers": 4, "max_speakers": 2}),
                "above max_speakers",
            ),
            (
                serde_json::json!({"source": "/x.wav", "speakers": 2, "min_speakers": 1}),
                "either speakers or min_speakers/max_speakers",
            ),
            (
                serde_json::json!({"source": "/x.wav", "speakers": 2, "diarize": false}),
                "need diarize",
            ),
        ] {
            let err = options_err(&args(kwargs.clone()));
            assert!(err.contains(why), "{kwargs}: {err}");
        }
        assert!(serde_json::from_value::<IngestArgs>(
            serde_json::json!({"source": "/x.wav", "speakers": -1})
        )
        .is_err());
    }

    fn options_err(args: &IngestArgs) -> String {
        options(args, &ProcessOptions::default(), Path::new("/x.wav"))
            .unwrap_err()
            .to_string()
    }
}

//! Turning a file on disk into a tracked AudioFile with its jobs.

use pipeline_core::decoding::{DecodeMode, Task};
use pipeline_core::render::OutputFormat;
use pipeline_core::{AudioFile, JobError, JobType, ProcessingJob};
use pipeline_diarize::SpeakerCount;
use pipeline_queue::{JobQueue, QueueError};
use pipeline_store::{NewAudio, NewJob, Store, StoreError, WebhookEndpoint};
use pipeline_vad::VadOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use uuid::Uuid;

use crate::storage::Storage;

/// The options a file is submitted with; stored with it and replayed on retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessOptions {
    /// Name of the model, recorded so that a different model is not deduplicated.
    pub model: String,
    pub language: Option<String>,
    pub task: Task,
    pub beam_size: usize,
    pub word_timestamps: bool,
    pub vad_filter: bool,
    /// Sequential windows or batches of speech chunks.
    pub mode: DecodeMode,
    /// Chunks per batch in batched mode.
    pub batch_size: usize,
    /// The temperature fallback's step; 0 decodes each window once.
    pub temperature_increment: f32,
    /// The speech detector's settings in batched mode.
    pub vad: VadOptions,
    /// Text every window sees as what was said before it.
    pub initial_prompt: Option<String>,
    /// Names and jargon put in every window's prompt.
    pub hotwords: Option<String>,
    /// The longest audio taken, checked before the file is stored and again
    /// while it is decoded (a header can lie).
    pub max_duration_secs: f64,
    /// `mix` (all channels), `left`, `right` or a channel number from 0.
    pub channel: String,
    /// The audio track transcribed, from 0 among the file's audio tracks;
    /// `None` takes the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_track: Option<usize>,
    pub formats: Vec<OutputFormat>,
    /// Whether a DIARIZATION job finds who speaks when (beside
    /// TRANSCRIPTION) and the outputs name the speakers.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub diarize: bool,
    /// Exactly this many speakers (diarized files only; `None` lets the
    /// clustering decide within the bounds below).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speakers: Option<u32>,
    /// At least this many speakers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_speakers: Option<u32>,
    /// At most this many speakers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_speakers: Option<u32>,
    /// Where outputs go; `None` means `<output_dir>/<audio_id>`.
    pub output_dir: Option<PathBuf>,
    /// Endpoints told of this file's events besides the global ones; kept
    /// in their own table (with their secrets), never in the stored options.
    #[serde(skip)]
    pub webhooks: Vec<WebhookEndpoint>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            model: "tiny.en".into(),
            language: None,
            task: Task::Transcribe,
            beam_size: 5,
            word_timestamps: false,
            vad_filter: false,
            mode: DecodeMode::Sequential,
            batch_size: 8,
            temperature_increment: pipeline_core::decoding::DEFAULT_TEMPERATURE_INCREMENT,
            vad: VadOptions::default(),
            initial_prompt: None,
            hotwords: None,
            max_duration_secs: pipeline_audio::Limits::default().max_duration_secs,
            channel: "mix".into(),
            audio_track: None,
            formats: OutputFormat::DEFAULT.to_vec(),
            diarize: false,
            speakers: None,
            min_speakers: None,
            max_speakers: None,
            output_dir: None,
            webhooks: Vec::new(),
        }
    }
}

/// Checks a speaker count a user asked for: each from 1 to
/// [`pipeline_diarize::MAX_SPEAKERS`], the minimum not above the maximum,
/// and an exact count not mixed with bounds. The error names the fields
/// as the upload form and the `pipeline.ingest` task call them.
pub fn check_speaker_count(count: &SpeakerCount) -> Result<(), String> {
    if count.speakers.is_some() && (count.min_speakers.is_some() || count.max_speakers.is_some()) {
        return Err(
            "speakers is an exact count: give either speakers or min_speakers/max_speakers"
                .to_string(),
        );
    }
    count.validate().map_err(|e| e.to_string())
}

impl ProcessOptions {
    /// The channel transcribed (checked when the options were made).
    pub fn channel(&self) -> pipeline_audio::Channel {
        self.channel.parse().unwrap_or_default()
    }

    /// The audio track transcribed.
    pub fn audio_track(&self) -> pipeline_audio::Track {
        self.audio_track
            .map_or(pipeline_audio::Track::Default, pipeline_audio::Track::Index)
    }

    /// How many speakers the diarization looks for.
    pub fn speaker_count(&self) -> SpeakerCount {
        SpeakerCount {
            speakers: self.speakers,
            min_speakers: self.min_speakers,
            max_speakers: self.max_speakers,
        }
    }

    /// Turns diarization on (looking for `count` speakers) or off. Unless
    /// the file chose its formats itself (`formats_chosen`), a diarized file
    /// also gets an RTTM file of its speaker turns and one that is not
    /// diarized gets none.
    pub fn set_diarization(&mut self, diarize: bool, count: SpeakerCount, formats_chosen: bool) {
        self.diarize = diarize;
        let count = if diarize {
            count
        } else {
            SpeakerCount::default()
        };
        self.speakers = count.speakers;
        self.min_speakers = count.min_speakers;
        self.max_speakers = count.max_speakers;
        if !formats_chosen {
            let has_rttm = self.formats.contains(&OutputFormat::Rttm);
            if diarize && !has_rttm {
                self.formats.push(OutputFormat::Rttm);
            } else if !diarize && has_rttm {
                self.formats.retain(|f| *f != OutputFormat::Rttm);
            }
        }
    }

    /// The jobs a file with these options gets, in pipeline order:
    /// DIARIZATION only when it is diarized.
    pub fn job_types(&self) -> Vec<JobType> {
        JobType::ALL
            .into_iter()
            .filter(|t| *t != JobType::Diarization || self.diarize)
            .collect()
    }

    /// The bounds a file of these options is decoded within.
    pub fn limits(&self) -> pipeline_audio::Limits {
        pipeline_audio::Limits {
            max_duration_secs: self.max_duration_secs,
        }
    }

    /// A digest of everything that changes the result: the same content
    /// with the same key may reuse a finished transcript.
    pub fn settings_key(&self) -> String {
        let mut relevant = serde_json::json!({
            "model": self.model,
            "language": self.language,
            "task": self.task,
            "beam_size": self.beam_size,
            "word_timestamps": self.word_timestamps,
            "vad_filter": self.vad_filter,
            "mode": self.mode,
            "initial_prompt": self.initial_prompt,
            "hotwords": self.hotwords,
            "channel": self.channel().to_string(),
            // Batches group chunks differently, which may change a digit of
            // the arithmetic; the detector decides what is decoded at all.
            "batch_size": (self.mode == DecodeMode::Batched).then_some(self.batch_size),
            "vad": (self.mode == DecodeMode::Batched).then_some(&self.vad),
            "formats": self.formats,
            "output_dir": self.output_dir,
        });
        // Only when chosen or diarized: the keys of other files stay as they were.
        if let Some(track) = self.audio_track {
            relevant["audio_track"] = serde_json::json!(track);
        }
        if self.temperature_increment != pipeline_core::decoding::DEFAULT_TEMPERATURE_INCREMENT {
            relevant["temperature_increment"] = serde_json::json!(self.temperature_increment);
        }
        if self.diarize {
            relevant["diarization"] = serde_json::json!(self.speaker_count());
        }
        hex::encode(Sha256::digest(relevant.to_string().as_bytes()))
    }
}

/// Why a file could not be ingested at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The path does not exist, is not a file, or cannot be read.
    #[error("{path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    /// The file could not be copied into storage.
    #[error("{path}: cannot store a copy in {storage}: {message}")]
    Storage {
        path: PathBuf,
        storage: String,
        message: String,
    },
    /// The database refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The jobs could not be handed to the queue.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl IngestError {
    /// Whether the fault is the input's (exit code 2) rather than a service's.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, IngestError::Unreadable { .. })
    }

    /// Whether trying again later may succeed (a service was down).
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Unreadable { .. } => false,
            IngestError::Storage { .. } | IngestError::Queue(_) => true,
            IngestError::Store(e) => e.is_retryable(),
        }
    }
}

/// What happened to one submitted file.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub audio: AudioFile,
    pub jobs: Vec<ProcessingJob>,
    /// A finished result for the same content and settings was reused.
    pub deduplicated: bool,
    /// The file was recorded but refused: its jobs are FAILED with this reason.
    pub rejected: Option<String>,
    /// The broker could not take the jobs; they went to the embedded queue.
    pub fell_back: Option<String>,
}

/// Probes, hashes and stores a file, then records it with its jobs in one
/// transaction. Content that is not decodable audio is recorded with FAILED
/// jobs that say why, so that the refusal is visible like any other outcome.
pub async fn ingest_file(
    store: &Store,
    queue: &dyn JobQueue,
    storage: &Storage,
    path: &Path,
    options: &ProcessOptions,
    max_attempts: u32,
    force: bool,
) -> Result<Ingested, IngestError> {
    let unreadable = |message: String| IngestError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => unreadable("no such file".into()),
        _ => unreadable(e.to_string()),
    })?;
    if metadata.is_dir() {
        return Err(unreadable("a folder with no audio files in it".into()));
    }
    if !metadata.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let owned = path.to_path_buf();
    let limits = options.limits();
    let track = options.audio_track();
    let (hash, probed) = tokio::task::spawn_blocking(move || {
        (
            pipeline_audio::sha256_file(&owned),
            pipeline_audio::probe_track(&owned, &limits, track),
        )
    })
    .await
    .map_err(|e| unreadable(format!("probe stopped: {e}")))?;
    let (sha256, size_bytes) = hash.map_err(|e| unreadable(e.to_string()))?;
    let settings_key = options.settings_key();
    // A file with its own endpoint runs, so that its endpoint hears the events.
    if !force && options.webhooks.is_empty() {
        if let Some(done) = store
            .find_completed_duplicate(&sha256, &settings_key)
            .await?
        {
            let jobs = store.jobs_for_audio(done.id).await?;
            return Ok(Ingested {
                audio: done,
                jobs,
                deduplicated: true,
                rejected: None,
                fell_back: None,
            });
        }
    }
    let original_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    // Only audio is kept: refused content is recorded (name, size, digest,
    // reason) but never stored, so it can never be served back.
    let storage_key = if probed.is_ok() {
        let key = Storage::key_for(&sha256, extension);
        storage
            .put_file(&key, path)
            .await
            .map_err(|e| IngestError::Storage {
                path: path.to_path_buf(),
                storage: storage.describe().to_string(),
                message: e.to_string(),
            })?;
        key
    } else {
        String::new()
    };
    let (info, rejected) = match probed {
        Ok(info) => (Some(info), None),
        // The reason names the file as it was submitted, never a spool path
        // of the server that received it.
        Err(e) => (
            None,
            Some(
                e.to_string()
                    .replace(&path.display().to_string(), &original_name),
            ),
        ),
    };
    let new_audio = NewAudio {
        id: Uuid::new_v4(),
        original_name,
        sha256,
        size_bytes,
        container: info
            .as_ref()
            .map_or("unknown".into(), |i| i.container.clone()),
        codec: info.as_ref().map_or("unknown".into(), |i| i.codec.clone()),
        duration_seconds: info.as_ref().map_or(0.0, |i| i.duration_seconds),
        sample_rate: info.as_ref().map_or(0, |i| i.sample_rate),
        channels: info.as_ref().map_or(0, |i| i.channels),
        storage_key,
        options: serde_json::to_value(options).unwrap_or_default(),
        settings_key,
        webhooks: options.webhooks.clone(),
    };
    let jobs: Vec<NewJob> = options
        .job_types()
        .iter()
        .map(|t| NewJob {
            transport: queue.name().to_string(),
            ..NewJob::new(*t, max_attempts.max(1))
        })
        .collect();
    let (audio, jobs) = match &rejected {
        None => store.ingest(&new_audio, &jobs).await?,
        Some(reason) => {
            store
                .ingest_rejected(&new_audio, &jobs, &JobError::permanent(reason.clone()))
                .await?
        }
    };
    let queued: Vec<ProcessingJob> = jobs
        .iter()
        .filter(|j| j.status == pipeline_core::JobStatus::Queued)
        .cloned()
        .collect();
    let dispatched = queue.dispatch(&queued).await?;
    Ok(Ingested {
        audio,
        jobs,
        deduplicated: false,
        rejected,
        fell_back: dispatched.fell_back,
    })
}

/// The audio files under `path`: the file itself, or a folder's audio files
/// (by extension, sorted, not recursive into hidden folders nor through
/// symbolic links, which can loop). A folder with none stays in the list,
/// so that it is reported rather than silently dropped.
pub fn expand_inputs(paths: &[PathBuf]) -> Vec<PathBuf> {
    const AUDIO: [&str; 10] = [
        "wav", "mp3", "flac", "ogg", "oga", "m4a", "mp4", "aac", "opus", "webm",
    ];
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = walk(path)
                .into_iter()
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| AUDIO.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                files.push(path.clone());
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        // The entry's own type: a link to a folder is not followed.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

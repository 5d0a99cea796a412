//! One module per group of commands.

pub mod inspect;
pub mod process;
pub mod serve;
pub mod status;
pub mod transcribe;
pub mod webhooks;
pub mod worker;

use anyhow::Result;
use pipeline_asr::openai::{OpenAiEngine, OpenAiOptions};
use pipeline_asr::{AsrError, DecodeMode, EngineOptions, Transcriber, VadOptions};
use pipeline_core::config::Config;
use pipeline_worker::{DiarizerLoader, EngineLoader, ProcessOptions, SpeakerCount, WorkerSettings};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::{Cli, Command};

/// Runs the command; the result is the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let app = App::load(&cli)?;
    match cli.command {
        Command::Process(args) => process::run(&app, args).await,
        Command::CheckStatus { audio_id } => inspect::check_status(&app, &audio_id).await,
        Command::Jobs {
            audio_id,
            follow,
            events,
            remote,
        } => match remote.api_url {
            Some(url) => {
                let remote = crate::remote::Remote::new(&url, remote.api_key)?;
                inspect::remote_jobs(&app, &audio_id, follow, remote).await
            }
            None => inspect::jobs(&app, &audio_id, follow, events).await,
        },
        Command::Status => status::run(&app).await,
        Command::ListRecent { limit, status } => {
            inspect::list_recent(&app, limit, status.as_deref()).await
        }
        Command::Transcript { audio_id, format } => {
            inspect::transcript(&app, &audio_id, &format).await
        }
        Command::Retry { id } => inspect::retry(&app, &id).await,
        Command::Cancel { id } => inspect::cancel(&app, &id).await,
        Command::Worker {
            concurrency,
            queues,
        } => worker::run(&app, concurrency, &queues).await,
        Command::Transcribe(args) => transcribe::run(&app, args).await,
        Command::Model { action: None } => status::model(&app).await,
        Command::Model {
            action: Some(crate::ModelAction::Download { repo_id, revision }),
        } => status::download_model(&app, &repo_id, &revision).await,
        Command::Model {
            action: Some(crate::ModelAction::Install { name }),
        } => status::install_model(&app, &name).await,
        Command::Serve { bind, workers } => serve::run(&app, bind, workers).await,
        Command::ApiKey { action } => serve::api_key(&app, action).await,
        Command::Webhooks { action } => webhooks::run(&app, action).await,
    }
}

/// The engine options the configuration asks for, for `jobs_at_once`
/// transcriptions in parallel: one model replica per job, and the cores
/// shared between them (oversubscribed CTranslate2 threads busy-wait and
/// run several times slower).
pub fn engine_options(config: &Config, jobs_at_once: usize) -> EngineOptions {
    let jobs_at_once = jobs_at_once.max(1);
    let cores = pipeline_core::cores();
    EngineOptions {
        compute_type: config.model.compute_type.clone(),
        threads: match config.model.threads {
            0 => (cores / jobs_at_once).max(1),
            n => n,
        },
        replicas: jobs_at_once,
        device: config.model.device.clone(),
        onnxruntime: Some(config.vad_runtime()),
        vad_model: Some(config.vad_model()),
    }
}

/// The configured engine: the OpenAI-compatible endpoint when
/// `model.endpoint` is set, else the local Whisper model.
pub fn load_engine(config: &Config, jobs_at_once: usize) -> Result<Arc<dyn Transcriber>, AsrError> {
    match &config.model.endpoint {
        Some(endpoint) => Ok(Arc::new(OpenAiEngine::new(OpenAiOptions {
            base_url: endpoint.expose().to_string(),
            model: config.model.name.clone(),
            api_key: config.model.api_key.as_deref().map(str::to_string),
            timeout: config.processing.job_timeout(),
        }))),
        None => {
            pipeline_asr::load_whisper(&config.model_dir(), &engine_options(config, jobs_at_once))
        }
    }
}

/// Loads the configured engine when a worker first needs it.
pub fn engine_loader(config: &Config, jobs_at_once: usize) -> EngineLoader {
    let config = config.clone();
    Arc::new(move || load_engine(&config, jobs_at_once))
}

/// Where the diarization's runtime and models are: the VAD's ONNX Runtime
/// and `[diarization]`'s two models.
pub fn diarization_paths(config: &Config) -> pipeline_diarize::ModelPaths {
    pipeline_diarize::ModelPaths {
        onnxruntime: config.vad_runtime(),
        segmentation: config.diarization_segmentation_model(),
        embedding: config.diarization_embedding_model(),
    }
}

/// Loads the diarizer `[diarization]` describes when a worker first needs
/// it, for `jobs_at_once` jobs in parallel (the cores shared between them
/// unless `diarization.threads` says otherwise).
pub fn diarizer_loader(config: &Config, jobs_at_once: usize) -> DiarizerLoader {
    pipeline_worker::diarizer_loader(
        diarization_paths(config),
        diarizer_settings(config, jobs_at_once),
    )
}

/// The engine settings `[diarization]` gives, for `jobs_at_once` jobs in
/// parallel.
pub fn diarizer_settings(config: &Config, jobs_at_once: usize) -> pipeline_diarize::Settings {
    let d = &config.diarization;
    let cores = pipeline_core::cores();
    pipeline_diarize::Settings {
        threads: match d.threads {
            0 => (cores / jobs_at_once.max(1)).max(1),
            n => n,
        },
        step_seconds: d.step_seconds,
        threshold: d.threshold as f32,
        min_embedding_seconds: d.min_embedding_seconds,
    }
}

/// The speaker count `[diarization]` gives files that name none.
pub fn default_speaker_count(config: &Config) -> SpeakerCount {
    SpeakerCount {
        speakers: config.diarization.speakers,
        min_speakers: config.diarization.min_speakers,
        max_speakers: config.diarization.max_speakers,
    }
}

/// The queue jobs travel through: the Celery broker when `broker.url` is
/// set (reading `consume`, or `broker.queue` when empty), else the embedded
/// one (the jobs table).
pub fn queue(
    config: &Config,
    store: &pipeline_store::Store,
    consume: &[String],
) -> Result<Arc<dyn pipeline_queue::JobQueue>> {
    let Some(url) = &config.broker.url else {
        return Ok(Arc::new(pipeline_queue::EmbeddedQueue::new(store.clone())));
    };
    let settings = pipeline_queue::BrokerSettings {
        url: url.expose().to_string(),
        queue: config.broker.queue.clone(),
        consume: consume.to_vec(),
        connect_timeout: Duration::from_secs(config.broker.connect_timeout_secs.max(1)),
        visibility_timeout: Duration::from_secs(config.broker.visibility_timeout_secs.max(1)),
        prefetch: prefetch_window(config),
    };
    pipeline_queue::BrokerQueue::new(store.clone(), settings)
        .map(|q| Arc::new(q) as Arc<dyn pipeline_queue::JobQueue>)
        .map_err(|e| crate::app::failure(crate::app::exit::BAD_INPUT, format!("broker.url: {e}")))
}

/// Messages a worker holds unacknowledged: one window per slot, as Celery's
/// prefetch count is its concurrency times `worker_prefetch_multiplier`.
fn prefetch_window(config: &Config) -> usize {
    let multiplier = usize::try_from(config.broker.prefetch_multiplier.max(1)).unwrap_or(1);
    config
        .processing
        .concurrency
        .max(1)
        .saturating_mul(multiplier)
        .min(usize::from(u16::MAX))
}

/// Audio and output storage: the data directory, or the object store at
/// `storage.url`.
pub fn storage(config: &Config) -> Result<pipeline_worker::Storage> {
    let s = &config.storage;
    let storage = match &s.url {
        None => pipeline_worker::Storage::local(&s.data_dir),
        Some(url) => pipeline_worker::Storage::object_store(
            &pipeline_worker::ObjectStoreSettings {
                url: url.expose().to_string(),
                endpoint: s.endpoint.as_deref().map(str::to_string),
                region: s.region.clone(),
                access_key_id: s.access_key_id.clone(),
                secret_access_key: s.secret_access_key.as_deref().map(str::to_string),
            },
            &s.data_dir,
        ),
    };
    storage.map_err(|e| crate::app::failure(crate::app::exit::BAD_INPUT, e.to_string()))
}

/// The Celery result backend, when `broker.result_backend` is set.
pub fn result_backend(
    config: &Config,
) -> Result<Option<Arc<pipeline_queue::celery::backend::ResultBackend>>> {
    let Some(url) = &config.broker.result_backend else {
        return Ok(None);
    };
    pipeline_queue::celery::backend::ResultBackend::new(
        url,
        Duration::from_secs(config.broker.connect_timeout_secs.max(1)),
    )
    .map(|b| Some(Arc::new(b)))
    .map_err(|e| {
        crate::app::failure(
            crate::app::exit::BAD_INPUT,
            format!("broker.result_backend: {e}"),
        )
    })
}

/// The options files get unless the command line says otherwise.
pub fn default_process_options(config: &Config) -> ProcessOptions {
    let mut options = ProcessOptions {
        model: config.model.name.clone(),
        language: config.model.language.clone(),
        beam_size: config.model.beam_size,
        word_timestamps: config.model.word_timestamps,
        vad_filter: config.model.vad_filter,
        mode: config_mode(config),
        batch_size: config.model.batch_size,
        temperature_increment: config.model.temperature_increment as f32,
        vad: vad_options(config),
        initial_prompt: config.model.initial_prompt.clone(),
        hotwords: config.model.hotwords.clone(),
        max_duration_secs: config.processing.max_duration_secs as f64,
        formats: config.processing.formats.clone(),
        ..ProcessOptions::default()
    };
    options.set_diarization(
        config.diarization.enabled,
        default_speaker_count(config),
        false,
    );
    options
}

/// `model.mode` (checked when the configuration was loaded).
pub fn config_mode(config: &Config) -> DecodeMode {
    config.model.mode.parse().unwrap_or_default()
}

/// The speech detector's settings from `[vad]`, the rest faster-whisper's
/// batched defaults.
pub fn vad_options(config: &Config) -> VadOptions {
    VadOptions {
        threshold: config.vad.threshold as f32,
        min_silence_duration_ms: config.vad.min_silence_ms,
        speech_pad_ms: config.vad.speech_pad_ms,
        ..VadOptions::default()
    }
}

/// How to decode, shared by `transcribe` and `process`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModeArgs {
    /// Text the model takes as what was said before (names, spellings,
    /// style) [default: model.initial_prompt].
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Names and jargon to spell as given, put in every window's prompt
    /// [default: model.hotwords].
    #[arg(long, value_name = "WORDS")]
    pub hotwords: Option<String>,
    /// The channel to transcribe: mix (all), left, right, or a number from
    /// 0 (a call recorded with one speaker per side) [default: mix].
    #[arg(long, value_name = "CHANNEL", value_parser = parse_channel)]
    pub channel: Option<String>,
    /// The audio track to transcribe, from 0 among the file's audio tracks
    /// (a film's languages, one track per microphone) [default: the file's
    /// default audio track, else its first].
    #[arg(long, value_name = "N", value_parser = parse_audio_track)]
    pub audio_track: Option<usize>,
    /// sequential (30 s windows in turn, each conditioned on the text before)
    /// or batched (speech found by the Silero VAD, decoded in batches of
    /// chunks) [default: model.mode].
    #[arg(long, value_parser = ["sequential", "batched"])]
    pub mode: Option<String>,
    /// Chunks decoded at once in batched mode [default: model.batch_size].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub batch_size: Option<u64>,
}

fn parse_channel(value: &str) -> Result<String, String> {
    value
        .parse::<pipeline_audio::Channel>()
        .map(|c| c.to_string())
}

fn parse_audio_track(value: &str) -> Result<usize, String> {
    match value.parse::<pipeline_audio::Track>()? {
        pipeline_audio::Track::Index(n) => Ok(n),
        pipeline_audio::Track::Default => Err("a track number from 0".to_string()),
    }
}

impl ModeArgs {
    /// Puts the flags given over `options` (the configuration's, from
    /// [`default_process_options`]); clap has checked their values.
    pub fn apply(&self, options: &mut ProcessOptions) {
        if let Some(mode) = self.mode.as_deref().and_then(|m| m.parse().ok()) {
            options.mode = mode;
        }
        if let Some(batch) = self.batch_size {
            options.batch_size = batch as usize;
        }
        if let Some(prompt) = &self.prompt {
            options.initial_prompt = Some(prompt.clone());
        }
        if let Some(hotwords) = &self.hotwords {
            options.hotwords = Some(hotwords.clone());
        }
        if let Some(channel) = &self.channel {
            options.channel = channel.clone();
        }
        if let Some(track) = self.audio_track {
            options.audio_track = Some(track);
        }
    }
}

/// A worker's settings from the configuration.
pub fn worker_settings(config: &Config, concurrency: Option<usize>) -> WorkerSettings {
    let p = &config.processing;
    WorkerSettings {
        id: format!(
            "{}:{}:{}",
            pipeline_worker::hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
        concurrency: concurrency.unwrap_or(p.concurrency).max(1),
        lease: p.lease(),
        heartbeat: p.heartbeat(),
        job_timeout: p.job_timeout(),
        retry_base: Duration::from_secs_f64(p.retry_base_secs.max(0.0)),
        retry_max: Duration::from_secs_f64(p.retry_max_secs.max(0.0)),
        output_dir: config.output_dir(),
        data_dir: config.storage.data_dir.clone(),
        poll_interval: Duration::from_millis(250),
        max_attempts: p.max_attempts.max(1),
        ingest_defaults: default_process_options(config),
        ingest_roots: config.ingest.allowed_roots.clone(),
        retention: retention(config),
        cache_retention: (config.retention.cache_hours > 0).then(|| {
            std::time::Duration::from_secs(config.retention.cache_hours.saturating_mul(3600))
        }),
        chunk_seconds: p.chunk_seconds,
        vad_files: Some((config.vad_runtime(), config.vad_model()))
            .filter(|(runtime, model)| runtime.is_file() && model.is_file()),
    }
}

/// The store's retention from `[retention]` (0 keeps for good).
pub fn retention(config: &Config) -> pipeline_store::Retention {
    let r = &config.retention;
    let keep = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
    pipeline_store::Retention {
        live_segments: keep(r.live_segments_hours.saturating_mul(3600)),
        delivered_webhooks: keep(r.delivered_webhooks_days.saturating_mul(86_400)),
        failed_webhooks: keep(r.failed_webhooks_days.saturating_mul(86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diarization_defaults_are_the_engine_s() {
        let config = Config::defaults("/data".into());
        let engine = pipeline_diarize::Settings::default();
        let ours = diarizer_settings(&config, 1);
        assert_eq!(
            (
                ours.step_seconds,
                ours.threshold,
                ours.min_embedding_seconds
            ),
            (
                engine.step_seconds,
                engine.threshold,
                engine.min_embedding_seconds
            )
        );
        // The same places the engine and the VAD default to.
        assert_eq!(
            diarization_paths(&config),
            pipeline_worker::default_model_paths(std::path::Path::new("/data"))
        );
    }
}

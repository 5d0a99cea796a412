//! One module per group of commands.

pub mod inspect;
pub mod process;
pub mod status;
pub mod transcribe;
pub mod worker;

use anyhow::Result;
use pipeline_asr::openai::{OpenAiEngine, OpenAiOptions};
use pipeline_asr::{AsrError, EngineOptions, Transcriber};
use pipeline_core::config::Config;
use pipeline_worker::{EngineLoader, WorkerSettings};
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
        } => inspect::jobs(&app, &audio_id, follow, events).await,
        Command::Status => status::run(&app).await,
        Command::ListRecent { limit, status } => {
            inspect::list_recent(&app, limit, status.as_deref()).await
        }
        Command::Transcript { audio_id, format } => {
            inspect::transcript(&app, &audio_id, &format).await
        }
        Command::Retry { id } => inspect::retry(&app, &id).await,
        Command::Cancel { id } => inspect::cancel(&app, &id).await,
        Command::Worker { concurrency } => worker::run(&app, concurrency).await,
        Command::Transcribe(args) => transcribe::run(&app, args).await,
        Command::Model { action: None } => status::model(&app).await,
        Command::Model {
            action: Some(crate::ModelAction::Download { repo_id, revision }),
        } => status::download_model(&app, &repo_id, &revision).await,
    }
}

/// The engine options the configuration asks for, for `jobs_at_once`
/// transcriptions in parallel: one model replica per job, and the cores
/// shared between them (oversubscribed CTranslate2 threads busy-wait and
/// run several times slower).
pub fn engine_options(config: &Config, jobs_at_once: usize) -> EngineOptions {
    let jobs_at_once = jobs_at_once.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    EngineOptions {
        compute_type: config.model.compute_type.clone(),
        threads: match config.model.threads {
            0 => (cores / jobs_at_once).max(1),
            n => n,
        },
        replicas: jobs_at_once,
    }
}

/// The configured engine: the OpenAI-compatible endpoint when
/// `model.endpoint` is set, else the local Whisper model.
pub fn load_engine(config: &Config, jobs_at_once: usize) -> Result<Arc<dyn Transcriber>, AsrError> {
    match &config.model.endpoint {
        Some(endpoint) => Ok(Arc::new(OpenAiEngine::new(OpenAiOptions {
            base_url: endpoint.clone(),
            model: config.model.name.clone(),
            api_key: config.model.api_key.clone(),
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

/// The queue jobs travel through: the embedded one (the jobs table).
pub fn queue(store: &pipeline_store::Store) -> Arc<dyn pipeline_queue::JobQueue> {
    Arc::new(pipeline_queue::EmbeddedQueue::new(store.clone()))
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
    }
}

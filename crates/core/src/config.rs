//! Layered configuration: defaults < `pipeline.toml` < `PIPELINE_*` environment
//! variables < command-line flags, remembering where every value came from.
//!
//! A key is its field below: the sections are serde structs, so the file,
//! the environment (`PIPELINE_<SECTION>_<KEY>`), the flags and `status` all
//! reach a field added there. figment merges the layers and keeps each
//! value's source; how text becomes a value follows the field's type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::render::OutputFormat;

mod diarization;
mod fields;
mod layers;
mod masking;
mod present;
mod rules;

use layers::{Layer, Shape};
pub use masking::{mask_url, Secret, SecretUrl};

pub use diarization::{
    DiarizationConfig, DEFAULT_EMBEDDING_MODEL, DEFAULT_SEGMENTATION_MODEL, MAX_SPEAKERS,
};

/// Jobs a worker runs at once unless told: one per core, at most
/// [`MAX_DEFAULT_CONCURRENCY`]. With `model.threads = 0` each replica then
/// gets one thread: on two cores, two replicas of one thread took 21 short
/// files in 0.93 of the time of one replica of two threads (sequential
/// mode; 0.89 batched, BENCHMARKS.md). `process` takes fewer when its own
/// files give fewer jobs, since a lone file runs faster on every core.
pub fn default_concurrency() -> usize {
    crate::host::cores().clamp(1, MAX_DEFAULT_CONCURRENCY)
}

/// The most replicas the default loads: each is a copy of the model in
/// memory, and more than four were not measured.
pub const MAX_DEFAULT_CONCURRENCY: usize = 4;

/// Name of the configuration file looked for in the working directory.
pub const CONFIG_FILE_NAME: &str = "pipeline.toml";
/// Environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "PIPELINE_CONFIG";
/// Prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "PIPELINE_";
/// What masked secrets are replaced with.
pub const MASK: &str = "****";

/// The sections, in the order `status` lists them.
const SECTIONS: &[&str] = &[
    "database",
    "broker",
    "storage",
    "model",
    "processing",
    "webhooks",
    "server",
    "vad",
    "ingest",
    "retention",
    "diarization",
];

/// Short environment variables that the design promises every command honours.
const ALIASES: &[(&str, &str)] = &[
    ("PIPELINE_DATA_DIR", "storage.data_dir"),
    ("PIPELINE_RESULT_BACKEND", "broker.result_backend"),
    ("PIPELINE_MODEL", "model.path"),
    // PIPELINE_DATABASE_URL and PIPELINE_BROKER_URL are already the long names.
];

/// The effective configuration of every part of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where jobs and transcripts are stored.
    pub database: DatabaseConfig,
    /// The Celery broker, or the embedded queue when none.
    pub broker: BrokerConfig,
    /// Where audio and outputs are kept.
    pub storage: StorageConfig,
    /// The speech recognition model and how to run it.
    pub model: ModelConfig,
    /// Retries, timeouts and concurrency of job processing.
    pub processing: ProcessingConfig,
    /// Endpoints told about job transitions.
    pub webhooks: WebhooksConfig,
    /// The HTTP API.
    pub server: ServerConfig,
    /// The speech detector of batched transcription.
    pub vad: VadConfig,
    /// What `pipeline.ingest` tasks from a broker may read.
    pub ingest: IngestConfig,
    /// How long rows that only serve a while are kept.
    pub retention: RetentionConfig,
    /// Who speaks when: the DIARIZATION job.
    pub diarization: DiarizationConfig,
}

/// `[retention]`: what workers prune, and after how long (0 keeps for good).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Live transcript segments, this long after their job ended.
    pub live_segments_hours: u64,
    /// Delivered webhook deliveries, this long after delivery.
    pub delivered_webhooks_days: u64,
    /// Failed webhook deliveries, this long after they were created.
    pub failed_webhooks_days: u64,
    /// Downloads cached from an object store, this long after their last use.
    pub cache_hours: u64,
}

/// `[ingest]`: the folders a broker's `pipeline.ingest` task may name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// A task's `source` must be (after resolving symlinks) under one of
    /// these; none configured refuses every such task.
    pub allowed_roots: Vec<PathBuf>,
}

/// `[vad]`: the Silero voice activity detector that batched mode runs first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VadConfig {
    /// The ONNX Runtime library; `None` means `<data_dir>/lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub onnxruntime: Option<PathBuf>,
    /// The Silero VAD v6 model; `None` means `<data_dir>/models/silero-vad-v6.onnx`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub model: Option<PathBuf>,
    /// Speech probability at or above which a 32 ms window is speech.
    pub threshold: f64,
    /// Silence that ends a speech, in milliseconds.
    pub min_silence_ms: u32,
    /// Audio kept on each side of a speech, in milliseconds.
    pub speech_pad_ms: u32,
}

/// `[database]`: the store of audio files, jobs and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://...` or `postgres://...`; `None` means the SQLite file in the data directory.
    pub url: Option<SecretUrl>,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
}

/// `[broker]`: the Celery transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://` or `redis://` URL; `None` means the embedded queue.
    pub url: Option<SecretUrl>,
    /// Celery result backend URL, so Python's `AsyncResult` can read task states.
    pub result_backend: Option<SecretUrl>,
    /// Queue (routing key) tasks are sent to and consumed from.
    pub queue: String,
    /// How long to wait for the broker before falling back to the embedded queue.
    pub connect_timeout_secs: u64,
    /// Redis: seconds a message may stay unacknowledged before it is
    /// delivered again (kombu's `visibility_timeout`).
    pub visibility_timeout_secs: u64,
    /// Messages a worker holds unacknowledged per slot (Celery's
    /// `worker_prefetch_multiplier`); short jobs held together are claimed
    /// and completed together.
    pub prefetch_multiplier: u64,
}

/// `[storage]`: where files live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Root of everything the pipeline keeps locally.
    #[serde(deserialize_with = "fields::path")]
    pub data_dir: PathBuf,
    /// Where rendered outputs go; `None` means `<data_dir>/outputs`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub output_dir: Option<PathBuf>,
    /// S3-compatible object store URL; `None` means the local data directory.
    pub url: Option<SecretUrl>,
    /// The object store's endpoint (MinIO, moto, Ceph...); AWS when `None`.
    pub endpoint: Option<SecretUrl>,
    /// The object store's region.
    pub region: String,
    /// Credentials for the object store (else the environment's AWS_* ones).
    pub access_key_id: Option<String>,
    /// The object store's secret key.
    pub secret_access_key: Option<Secret>,
    /// The user's default data directory, where the install scripts put
    /// models and libraries when no data directory is named: looked in for
    /// them when `data_dir` has none (not a key; it follows `$HOME`).
    #[serde(skip)]
    pub install_dir: PathBuf,
}

/// `[model]`: the speech recognition model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model directory (CTranslate2 format); `None` means `<data_dir>/models/<name>`.
    #[serde(deserialize_with = "fields::opt_path")]
    pub path: Option<PathBuf>,
    /// Short name (`tiny.en`) or Hugging Face repo id (`Systran/faster-whisper-base`).
    pub name: String,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// CTranslate2 compute type (`int8`, `float16`, ...).
    pub compute_type: String,
    /// Beam width of the decoder.
    pub beam_size: usize,
    /// Threads per model replica; 0 means one per core.
    pub threads: usize,
    /// Language code; `None` detects it.
    pub language: Option<String>,
    /// Whether to compute word-level timestamps.
    pub word_timestamps: bool,
    /// Whether to skip silence with voice activity detection before decoding.
    pub vad_filter: bool,
    /// `sequential` (30 s windows in turn) or `batched` (speech chunks, `batch_size` at a time).
    pub mode: String,
    /// Chunks decoded at once in batched mode.
    pub batch_size: usize,
    /// Temperature added at each step of the fallback that decodes a window
    /// again when its text fails the compression-ratio or log-probability
    /// check (openai-whisper's `temperature_increment_on_fallback`), up to
    /// 1.0; 0 decodes once, as faster-whisper's batched pipeline does.
    pub temperature_increment: f64,
    /// Text every window sees as what was said before it.
    pub initial_prompt: Option<String>,
    /// Names and jargon put in every window's prompt.
    pub hotwords: Option<String>,
    /// An OpenAI-compatible server (`http://gpu-box:8000`) that transcribes
    /// instead of the local model; `None` runs the model here.
    pub endpoint: Option<SecretUrl>,
    /// Bearer token for `endpoint`.
    pub api_key: Option<Secret>,
}

/// `[processing]`: how jobs are run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Attempts per job before it fails for good (the first run counts).
    pub max_attempts: u32,
    /// Attempts a job may lose with its worker (killed, out of memory, a
    /// lost machine) before it is FAILED; counted apart from `max_attempts`.
    pub max_lost_leases: u32,
    /// A TRANSCRIPTION of audio longer than this is cut at silences into
    /// chunks of about this length that any worker may take; 0 never cuts.
    pub chunk_seconds: u64,
    /// Delay before the first retry; later ones double.
    pub retry_base_secs: f64,
    /// Upper bound of the retry delay.
    pub retry_max_secs: f64,
    /// The longest audio taken, in seconds (checked from the header and while decoding).
    pub max_duration_secs: u64,
    /// A job running longer than this is stopped and counted as a failed attempt.
    pub job_timeout_secs: u64,
    /// How long a claimed job stays with its worker without a heartbeat.
    pub lease_secs: u64,
    /// How often a worker renews its leases.
    pub heartbeat_secs: u64,
    /// Jobs one worker runs at once, each on a model replica of its own
    /// (see [`default_concurrency`]).
    pub concurrency: usize,
    /// Outputs the PROCESSING job writes.
    #[serde(deserialize_with = "fields::formats")]
    pub formats: Vec<OutputFormat>,
}

/// `[webhooks]`: notifications of job transitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Endpoints that receive every event.
    pub urls: Vec<SecretUrl>,
    /// HMAC-SHA256 signing key; `None` sends unsigned requests.
    pub secret: Option<Secret>,
    /// Time allowed for one delivery.
    pub timeout_secs: u64,
    /// How long a delivery is retried (with exponential backoff) before it
    /// is marked FAILED.
    pub retry_period_secs: u64,
    /// Whether endpoints may be loopback, private or link-local addresses
    /// (off: an upload cannot make the server call its own network).
    pub allow_private_targets: bool,
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Whether requests must carry an API token.
    pub auth: bool,
    /// Largest accepted upload.
    #[serde(deserialize_with = "fields::bytes")]
    pub max_upload_bytes: u64,
    /// How long a client may go without sending a byte of its request
    /// body before it is answered 408 and cut off.
    pub body_timeout_secs: u64,
    /// Where `/metrics` is served instead of `bind` (for example a port
    /// only Prometheus reaches); none serves it on `bind`.
    pub metrics_bind: Option<String>,
    /// Web origins (`https://app.example.com`) whose pages may call the
    /// API from a browser (CORS); none by default.
    pub cors_origins: Vec<String>,
}

impl Config {
    /// The built-in defaults, with everything derived from `data_dir`.
    pub fn defaults(data_dir: PathBuf) -> Config {
        Config {
            database: DatabaseConfig {
                url: None,
                max_connections: 5,
            },
            broker: BrokerConfig {
                url: None,
                result_backend: None,
                queue: "celery".to_string(),
                connect_timeout_secs: 5,
                visibility_timeout_secs: 3600,
                prefetch_multiplier: 4,
            },
            storage: StorageConfig {
                install_dir: data_dir.clone(),
                data_dir,
                output_dir: None,
                url: None,
                endpoint: None,
                region: "us-east-1".to_string(),
                access_key_id: None,
                secret_access_key: None,
            },
            model: ModelConfig {
                path: None,
                name: "tiny.en".to_string(),
                device: "cpu".to_string(),
                compute_type: "int8".to_string(),
                beam_size: 5,
                threads: 0,
                language: None,
                word_timestamps: false,
                vad_filter: false,
                mode: "sequential".to_string(),
                batch_size: 8,
                temperature_increment: f64::from(crate::decoding::DEFAULT_TEMPERATURE_INCREMENT),
                initial_prompt: None,
                hotwords: None,
                endpoint: None,
                api_key: None,
            },
            processing: ProcessingConfig {
                max_attempts: 3,
                max_lost_leases: 20,
                chunk_seconds: 300,
                retry_base_secs: 2.0,
                retry_max_secs: 300.0,
                job_timeout_secs: 3600,
                max_duration_secs: 12 * 3600,
                lease_secs: 60,
                heartbeat_secs: 10,
                concurrency: default_concurrency(),
                formats: OutputFormat::DEFAULT.to_vec(),
            },
            webhooks: WebhooksConfig {
                urls: Vec::new(),
                secret: None,
                timeout_secs: 10,
                retry_period_secs: 24 * 3600,
                allow_private_targets: false,
            },
            server: ServerConfig {
                bind: "127.0.0.1:8000".to_string(),
                auth: true,
                max_upload_bytes: 2 * 1024 * 1024 * 1024,
                body_timeout_secs: 30,
                metrics_bind: None,
                cors_origins: Vec::new(),
            },
            vad: VadConfig {
                onnxruntime: None,
                model: None,
                threshold: 0.5,
                min_silence_ms: 160,
                speech_pad_ms: 400,
            },
            ingest: IngestConfig::default(),
            retention: RetentionConfig {
                live_segments_hours: 24,
                cache_hours: 24,
                delivered_webhooks_days: 7,
                failed_webhooks_days: 30,
            },
            diarization: DiarizationConfig::default(),
        }
    }

    /// The database URL, defaulting to `sqlite://<data_dir>/pipeline.db`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose().to_string(),
            None => format!(
                "sqlite://{}",
                self.storage.data_dir.join("pipeline.db").display()
            ),
        }
    }

    /// The ONNX Runtime library of the speech detector, defaulting to where
    /// scripts/install-vad.sh puts it under the data directory.
    pub fn vad_runtime(&self) -> PathBuf {
        self.vad
            .onnxruntime
            .clone()
            .unwrap_or_else(|| self.installed("lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"))
    }

    /// The Silero VAD model, defaulting to `<data_dir>/models/silero-vad-v6.onnx`.
    pub fn vad_model(&self) -> PathBuf {
        self.vad
            .model
            .clone()
            .unwrap_or_else(|| self.installed("models/silero-vad-v6.onnx"))
    }

    /// The diarization's segmentation model, defaulting to
    /// `<data_dir>/models/pyannote-segmentation-3.0.onnx`.
    pub fn diarization_segmentation_model(&self) -> PathBuf {
        self.diarization
            .segmentation_model
            .clone()
            .unwrap_or_else(|| self.installed(diarization::DEFAULT_SEGMENTATION_MODEL))
    }

    /// The diarization's speaker embedding model, defaulting to
    /// `<data_dir>/models/campplus-cn-en-common.onnx`.
    pub fn diarization_embedding_model(&self) -> PathBuf {
        self.diarization
            .embedding_model
            .clone()
            .unwrap_or_else(|| self.installed(diarization::DEFAULT_EMBEDDING_MODEL))
    }

    /// The model directory, defaulting to `<data_dir>/models/<name>`.
    pub fn model_dir(&self) -> PathBuf {
        match &self.model.path {
            Some(path) => path.clone(),
            // A repo id's slash would nest directories; `--` keeps one folder
            // per model, as the Hugging Face cache does.
            None => self.installed(Path::new("models").join(self.model.name.replace('/', "--"))),
        }
    }

    /// What an install script puts at `relative` under the data directory:
    /// there, or under the user's default data directory when only that
    /// has it (installed before `PIPELINE_DATA_DIR` was set); the data
    /// directory's path when neither has it, so errors name where it goes.
    fn installed(&self, relative: impl AsRef<Path>) -> PathBuf {
        let here = self.storage.data_dir.join(relative.as_ref());
        if here.exists() || self.storage.install_dir == self.storage.data_dir {
            return here;
        }
        let there = self.storage.install_dir.join(relative.as_ref());
        if there.exists() {
            there
        } else {
            here
        }
    }

    /// The directory rendered outputs are written to.
    pub fn output_dir(&self) -> PathBuf {
        match &self.storage.output_dir {
            Some(dir) => dir.clone(),
            None => self.storage.data_dir.join("outputs"),
        }
    }

    /// Whether jobs go through the embedded queue rather than a Celery broker.
    pub fn uses_embedded_queue(&self) -> bool {
        self.broker.url.is_none()
    }
}

impl ProcessingConfig {
    /// [`Self::job_timeout_secs`] as a duration.
    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    /// [`Self::lease_secs`] as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// [`Self::heartbeat_secs`] as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

impl BrokerConfig {
    /// [`Self::connect_timeout_secs`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Source {
    /// The built-in default (or a value derived from other settings).
    Default,
    /// The configuration file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded; every variant names the file,
/// variable or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file exists (or was asked for) but cannot be read.
    #[error("cannot read config file {} (from {origin}): {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Who named the file: `--config`, `PIPELINE_CONFIG` or the working directory.
        origin: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: invalid TOML: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that the configuration does not have.
    #[error("{origin}: unknown key \"{key}\"{}", layers::suggest(keys(), .key))]
    UnknownKey {
        /// The key as written (`section.key`).
        key: String,
        /// Where it was written.
        origin: Source,
    },
    /// A value of the wrong type.
    #[error("{origin}: {key} must be {expected}, got {found}")]
    WrongType {
        /// The key (`section.key`).
        key: String,
        /// Where the value came from.
        origin: Source,
        /// What the key takes.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A value of the right type that is not allowed.
    #[error("{origin}: invalid {key}: {reason}")]
    Invalid {
        /// The key (`section.key`).
        key: String,
        /// Where the value came from.
        origin: Source,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// One line of the effective configuration, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigEntry {
    /// `section.key`.
    pub key: String,
    /// The value for display, derived defaults filled in and secrets masked.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
}

/// The configuration together with the origin of each value.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The effective values.
    pub config: Config,
    /// Origin of every key (`section.key`), defaults included.
    pub sources: BTreeMap<String, Source>,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
}

impl LoadedConfig {
    /// Loads defaults, then the file (`explicit_file`, else `PIPELINE_CONFIG`,
    /// else `./pipeline.toml` when present), then the environment read through
    /// `env`, then `flags` as `(section.key, value, flag name)` in order.
    pub fn load(
        explicit_file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &[(&str, String, &str)],
    ) -> Result<LoadedConfig, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let home = env("HOME").map(PathBuf::from);
        let defaults = Config::defaults(layers::default_data_dir(&env));
        let shape = Shape::of(&defaults);
        let mut layers = vec![Layer::new(
            Source::Default,
            serde_json::to_value(&defaults).unwrap_or_default(),
        )];

        let mut file = None;
        if let Some((path, origin)) = layers::find_file(explicit_file, &env) {
            let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
                path: path.clone(),
                origin,
                error,
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.clone(),
                message: e.to_string().trim_end().to_string(),
            })?;
            let data = shape.file_data(&path, table)?;
            layers.push(Layer::new(Source::File(path.clone()), data));
            file = Some(path);
        }

        for key in shape.keys() {
            // Aliases first, so the long name wins when both are set.
            let names = ALIASES
                .iter()
                .filter(|(_, k)| *k == key)
                .map(|(alias, _)| alias.to_string())
                .chain(std::iter::once(env_var_name(key)));
            for name in names {
                if let Some(text) = env(&name) {
                    layers.push(Layer::one(Source::Env(name), key, shape.typed(key, &text)));
                }
            }
        }

        for (key, text, flag) in flags {
            let origin = Source::Flag(flag.to_string());
            if !shape.contains(key) {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    origin,
                });
            }
            layers.push(Layer::one(origin, key, shape.typed(key, text)));
        }

        let origins: layers::Origins = layers
            .iter()
            .map(|l| (l.source().to_string(), l.source().clone()))
            .collect();
        let figment = layers
            .into_iter()
            .fold(Figment::new(), |figment, layer| figment.merge(layer));
        let mut config: Config = fields::with_home(home, || {
            figment
                .extract()
                .map_err(|e| layers::from_figment(e, &origins))
        })?;
        config.storage.install_dir = defaults.storage.install_dir;
        let sources = shape
            .keys()
            .map(|key| {
                let source = figment
                    .find_metadata(key)
                    .and_then(|m| origins.get(m.name.as_ref()))
                    .cloned()
                    .unwrap_or(Source::Default);
                (key.to_string(), source)
            })
            .collect();
        let mut loaded = LoadedConfig {
            config,
            sources,
            file,
        };
        loaded.normalize();
        loaded.validate()?;
        Ok(loaded)
    }

    /// [`LoadedConfig::load`] with the process environment.
    pub fn from_process_env(
        explicit_file: Option<&Path>,
        flags: &[(&str, String, &str)],
    ) -> Result<LoadedConfig, ConfigError> {
        Self::load(explicit_file, &|name| std::env::var(name).ok(), flags)
    }

    /// Every key with its display value (secrets masked) and origin, in the
    /// order the sections are documented.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        let tree = self.config.masked_json();
        keys()
            .map(|key| {
                let (section, name) = key.split_once('.').unwrap_or(("", key));
                let value = tree
                    .get(section)
                    .and_then(|s| s.get(name))
                    .cloned()
                    .unwrap_or_default();
                ConfigEntry {
                    key: key.to_string(),
                    value: present::display(key, &value),
                    source: self.source(key),
                }
            })
            .collect()
    }

    /// Where the value of `key` (`section.key`) came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

/// The names of `PIPELINE_*` variables among `names` that the configuration
/// does not read, so a command can warn about a likely typo.
pub fn unrecognized_env_vars<I>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = String>,
{
    names
        .into_iter()
        .filter(|n| n.starts_with(ENV_PREFIX) && n != CONFIG_ENV)
        .filter(|n| {
            !keys().any(|k| env_var_name(k) == *n) && !ALIASES.iter().any(|(alias, _)| alias == n)
        })
        .collect()
}

/// The environment variable that sets `key` (`processing.max_attempts` →
/// `PIPELINE_PROCESSING_MAX_ATTEMPTS`).
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every configuration key (`section.key`), in documentation order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    static KEYS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        Shape::of(&Config::defaults(PathBuf::new()))
            .keys()
            .map(|k| &*Box::leak(k.to_string().into_boxed_str()))
            .collect()
    });
    KEYS.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::fields::parse_bytes;
    use super::layers::Kind;
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed when dropped; std only, to keep core's
    /// dev-dependencies empty.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "pipeline-core-config-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }

        fn file(&self, text: &str) -> PathBuf {
            let path = self.0.join(CONFIG_FILE_NAME);
            std::fs::write(&path, text).expect("write config");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("HOME".to_string(), "/home/u".to_string())])
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(
        file: Option<&Path>,
        env: &[(&str, &str)],
        flags: &[(&str, String, &str)],
    ) -> Result<LoadedConfig, ConfigError> {
        LoadedConfig::load(file, &env_of(env), flags)
    }

    /// Models installed into the default data directory are found from a
    /// custom one that lacks them; the custom one's own copy comes first,
    /// and what neither has is looked for in the custom one.
    #[test]
    fn installed_models_are_found_from_another_data_dir() {
        let dir = Scratch::new();
        let xdg = dir.0.join("xdg");
        let installed = xdg.join("pipeline-manager");
        let custom = dir.0.join("custom");
        std::fs::create_dir_all(installed.join("models/tiny.en")).unwrap();
        std::fs::write(installed.join("models/silero-vad-v6.onnx"), b"onnx").unwrap();
        let env = [
            ("XDG_DATA_HOME", xdg.to_str().unwrap()),
            ("PIPELINE_DATA_DIR", custom.to_str().unwrap()),
        ];
        let c = load(None, &env, &[]).expect("load").config;
        assert_eq!(c.storage.data_dir, custom);
        assert_eq!(c.model_dir(), installed.join("models/tiny.en"));
        assert_eq!(c.vad_model(), installed.join("models/silero-vad-v6.onnx"));
        assert_eq!(
            c.diarization_segmentation_model(),
            custom.join(diarization::DEFAULT_SEGMENTATION_MODEL),
            "installed nowhere: named where it goes"
        );
        std::fs::create_dir_all(custom.join("models/tiny.en")).unwrap();
        assert_eq!(c.model_dir(), custom.join("models/tiny.en"));
    }

    #[test]
    fn defaults_come_from_home_and_are_marked_default() {
        let c = load(None, &[], &[]).expect("defaults load");
        let data = PathBuf::from("/home/u/.local/share/pipeline-manager");
        assert_eq!(c.config, Config::defaults(data.clone()));
        assert_eq!(c.file, None);
        assert!(c.sources.values().all(|s| *s == Source::Default));
        assert_eq!(c.sources.len(), keys().count());
        assert_eq!(
            c.config.database_url(),
            "sqlite:///home/u/.local/share/pipeline-manager/pipeline.db"
        );
        assert_eq!(c.config.model_dir(), data.join("models/tiny.en"));
        assert_eq!(c.config.output_dir(), data.join("outputs"));
        assert!(c.config.uses_embedded_queue());
        assert_eq!(c.config.processing.formats, OutputFormat::DEFAULT.to_vec());
        assert_eq!(c.config.server.max_upload_bytes, 2 << 30);
    }

    #[test]
    fn xdg_data_home_wins_over_home_when_absolute() {
        let c = load(None, &[("XDG_DATA_HOME", "/xdg")], &[]).expect("load");
        assert_eq!(
            c.config.storage.data_dir,
            Path::new("/xdg/pipeline-manager")
        );
        let c = load(None, &[("XDG_DATA_HOME", "relative")], &[]).expect("load");
        assert_eq!(
            c.config.storage.data_dir,
            Path::new("/home/u/.local/share/pipeline-manager")
        );
    }

    #[test]
    fn layers_override_in_order_and_report_their_source() {
        let dir = Scratch::new();
        let file = dir.file(
            "[processing]\nmax_attempts = 4\nconcurrency = 2\nretry_base_secs = 1\n\
             [broker]\nqueue = \"from-file\"\n",
        );
        let c = load(
            Some(&file),
            &[
                ("PIPELINE_PROCESSING_MAX_ATTEMPTS", "5"),
                ("PIPELINE_BROKER_QUEUE", "from-env"),
            ],
            &[("processing.max_attempts", "6".to_string(), "--max-attempts")],
        )
        .expect("load");
        assert_eq!(c.file.as_deref(), Some(file.as_path()));
        // flag > env > file
        assert_eq!(c.config.processing.max_attempts, 6);
        assert_eq!(
            c.source("processing.max_attempts"),
            Source::Flag("--max-attempts".into())
        );
        // env > file
        assert_eq!(c.config.broker.queue, "from-env");
        assert_eq!(
            c.source("broker.queue"),
            Source::Env("PIPELINE_BROKER_QUEUE".into())
        );
        // file > default
        assert_eq!(c.config.processing.concurrency, 2);
        assert_eq!(
            c.source("processing.concurrency"),
            Source::File(file.clone())
        );
        assert_eq!(c.config.processing.retry_base_secs, 1.0);
        // default
        assert_eq!(c.config.processing.lease_secs, 60);
        assert_eq!(c.source("processing.lease_secs"), Source::Default);

        let entry = c
            .entries()
            .into_iter()
            .find(|e| e.key == "processing.max_attempts")
            .expect("entry");
        assert_eq!(entry.value, "6");
        assert_eq!(entry.source, Source::Flag("--max-attempts".into()));
    }

    #[test]
    fn config_file_is_found_through_pipeline_config() {
        let dir = Scratch::new();
        let file = dir.file("[model]\nbeam_size = 2\n");
        let env_path = file.display().to_string();
        let c = load(None, &[(CONFIG_ENV, &env_path)], &[]).expect("load");
        assert_eq!(c.file.as_deref(), Some(file.as_path()));
        assert_eq!(c.config.model.beam_size, 2);
        // --config wins over PIPELINE_CONFIG.
        let other = Scratch::new();
        let explicit = other.file("[model]\nbeam_size = 3\n");
        let c = load(Some(&explicit), &[(CONFIG_ENV, &env_path)], &[]).expect("load");
        assert_eq!(c.config.model.beam_size, 3);
    }

    #[test]
    fn missing_explicit_file_is_an_error_naming_it() {
        let err = load(Some(Path::new("/nonexistent/pipeline.toml")), &[], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read config file /nonexistent/pipeline.toml (from --config):"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let dir = Scratch::new();
        let file = dir.file("[processing]\nmax_attempt = 5\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: unknown key \"processing.max_attempt\" (did you mean \"processing.max_attempts\"?)",
                file.display()
            )
        );
        let file = dir.file("[databse]\nurl = \"sqlite://x\"\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: unknown key \"databse.url\" (did you mean \"database.url\"?)",
                file.display()
            )
        );
        let file = dir.file("colour = true\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: unknown key \"colour\"", file.display())
        );
    }

    #[test]
    fn file_relative_to_working_directory_is_named_as_found() {
        let err = ConfigError::UnknownKey {
            key: "processing.max_attempt".into(),
            origin: Source::File(PathBuf::from("pipeline.toml")),
        };
        assert!(err
            .to_string()
            .starts_with("pipeline.toml: unknown key \"processing.max_attempt\""));
    }

    #[test]
    fn wrong_types_name_key_source_and_expected_type() {
        let dir = Scratch::new();
        let file = dir.file("[processing]\nmax_attempts = \"five\"\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: processing.max_attempts must be a non-negative integer, got string \"five\"",
                file.display()
            )
        );
        let file = dir.file("[server]\nauth = 1\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { ref key, .. } if key == "server.auth"));
        let file = dir.file("[processing]\nlease_secs = -1\n");
        assert!(load(Some(&file), &[], &[]).is_err());
        let file = dir.file("processing = 3\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { ref key, .. } if key == "processing"));

        let err = load(None, &[("PIPELINE_SERVER_AUTH", "maybe")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable PIPELINE_SERVER_AUTH: server.auth must be a boolean (true or false), got \"maybe\""
        );
        let err = load(None, &[("PIPELINE_PROCESSING_RETRY_MAX_SECS", "-3")], &[]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::WrongType { ref key, origin: Source::Env(ref var), .. }
                if key == "processing.retry_max_secs" && var == "PIPELINE_PROCESSING_RETRY_MAX_SECS"
        ));
        let err = load(
            None,
            &[],
            &[(
                "processing.concurrency",
                "many".to_string(),
                "--concurrency",
            )],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag --concurrency: processing.concurrency must be a non-negative integer, got \"many\""
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let dir = Scratch::new();
        let file = dir.file("[processing\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: invalid TOML:", file.display())),
            "{err}"
        );
    }

    #[test]
    fn unknown_flag_key_is_an_error() {
        let err = load(
            None,
            &[],
            &[("processing.workers", "2".into(), "--workers")],
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("flag --workers: unknown key \"processing.workers\""));
    }

    #[test]
    fn unknown_env_vars_are_ignored_and_reported_on_request() {
        let c = load(None, &[("PIPELINE_PROCESING_MAX_ATTEMPTS", "9")], &[]).expect("load");
        assert_eq!(c.config.processing.max_attempts, 3);
        let unknown = unrecognized_env_vars(
            [
                "PIPELINE_PROCESING_MAX_ATTEMPTS",
                "PIPELINE_DATA_DIR",
                "PIPELINE_CONFIG",
                "PIPELINE_SERVER_BIND",
                "HOME",
            ]
            .map(String::from),
        );
        assert_eq!(unknown, vec!["PIPELINE_PROCESING_MAX_ATTEMPTS".to_string()]);
    }

    #[test]
    fn short_aliases_set_their_keys_and_long_names_win() {
        let c = load(
            None,
            &[
                ("PIPELINE_DATA_DIR", "/srv/pm"),
                ("PIPELINE_DATABASE_URL", "postgres://u:p@db/pm"),
                ("PIPELINE_BROKER_URL", "amqp://guest:guest@mq//"),
                ("PIPELINE_RESULT_BACKEND", "redis://r:6379/1"),
                ("PIPELINE_MODEL", "/models/base"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(c.config.storage.data_dir, Path::new("/srv/pm"));
        assert_eq!(
            c.source("storage.data_dir"),
            Source::Env("PIPELINE_DATA_DIR".into())
        );
        assert_eq!(c.config.database_url(), "postgres://u:p@db/pm");
        assert_eq!(
            c.config.broker.url.as_deref(),
            Some("amqp://guest:guest@mq//")
        );
        assert!(!c.config.uses_embedded_queue());
        assert_eq!(
            c.config.broker.result_backend.as_deref(),
            Some("redis://r:6379/1")
        );
        assert_eq!(
            c.source("broker.result_backend"),
            Source::Env("PIPELINE_RESULT_BACKEND".into())
        );
        assert_eq!(c.config.model_dir(), Path::new("/models/base"));
        assert_eq!(c.source("model.path"), Source::Env("PIPELINE_MODEL".into()));

        let c = load(
            None,
            &[
                ("PIPELINE_DATA_DIR", "/short"),
                ("PIPELINE_STORAGE_DATA_DIR", "/long"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(c.config.storage.data_dir, Path::new("/long"));
        assert_eq!(
            c.source("storage.data_dir"),
            Source::Env("PIPELINE_STORAGE_DATA_DIR".into())
        );
    }

    #[test]
    fn derived_defaults_follow_data_dir() {
        let dir = Scratch::new();
        let file = dir.file("[storage]\ndata_dir = \"state\"\n");
        let c = load(Some(&file), &[], &[]).expect("load");
        // Relative paths in the file are relative to the file.
        let data = dir.0.join("state");
        assert_eq!(c.config.storage.data_dir, data);
        assert_eq!(
            c.config.database_url(),
            format!("sqlite://{}", data.join("pipeline.db").display())
        );
        assert_eq!(c.config.model_dir(), data.join("models").join("tiny.en"));
        assert_eq!(c.config.output_dir(), data.join("outputs"));

        let c = load(
            None,
            &[
                ("PIPELINE_DATA_DIR", "~/pm"),
                ("PIPELINE_MODEL_NAME", "Systran/faster-whisper-base"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(c.config.storage.data_dir, Path::new("/home/u/pm"));
        assert_eq!(c.config.database_url(), "sqlite:///home/u/pm/pipeline.db");
        assert_eq!(
            c.config.model_dir(),
            Path::new("/home/u/pm/models/Systran--faster-whisper-base")
        );
        // Derived values are shown as defaults; explicit ones override them.
        let entries = c.entries();
        let output = entries
            .iter()
            .find(|e| e.key == "storage.output_dir")
            .expect("entry");
        assert_eq!(output.value, "/home/u/pm/outputs");
        assert_eq!(output.source, Source::Default);

        let c = load(
            None,
            &[
                ("PIPELINE_DATA_DIR", "/pm"),
                ("PIPELINE_STORAGE_OUTPUT_DIR", "/out"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(c.config.output_dir(), Path::new("/out"));
    }

    #[test]
    fn lists_come_comma_separated_from_env() {
        let c = load(
            None,
            &[
                ("PIPELINE_PROCESSING_FORMATS", "srt, VTT,,srt"),
                ("PIPELINE_WEBHOOKS_URLS", "https://a/hook, http://b/hook"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(
            c.config.processing.formats,
            vec![OutputFormat::Srt, OutputFormat::Vtt]
        );
        assert_eq!(
            c.config.webhooks.urls,
            vec!["https://a/hook", "http://b/hook"]
        );
        let err = load(None, &[("PIPELINE_PROCESSING_FORMATS", "srt,docx")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable PIPELINE_PROCESSING_FORMATS: invalid processing.formats: \
             unknown output format \"docx\" (expected one of: txt, srt, vtt, json, tsv, rttm)"
        );
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let dir = Scratch::new();
        let file = dir.file("[broker]\nurl = \"redis://r\"\n");
        let c = load(Some(&file), &[("PIPELINE_BROKER_URL", "")], &[]).expect("load");
        assert_eq!(c.config.broker.url.as_deref(), Some("redis://r"));
        // A flag can still clear an optional value.
        let c = load(
            Some(&file),
            &[],
            &[("broker.url", String::new(), "--broker-url")],
        )
        .expect("load");
        assert_eq!(c.config.broker.url, None);
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        let ok = load(
            None,
            &[(
                "PIPELINE_SERVER_CORS_ORIGINS",
                "https://app.example.com,http://localhost:3000",
            )],
            &[],
        )
        .expect("load");
        assert_eq!(
            ok.config.server.cors_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        for bad in ["app.example.com", "https://app.example.com/path", "*"] {
            let err = load(None, &[("PIPELINE_SERVER_CORS_ORIGINS", bad)], &[]).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { ref key, .. } if key == "server.cors_origins"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn cross_key_rules_are_checked_after_all_layers() {
        let err = load(None, &[("PIPELINE_PROCESSING_HEARTBEAT_SECS", "60")], &[]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid { ref key, origin: Source::Env(_), .. } if key == "processing.heartbeat_secs"
        ));
        // A file's short lease is fine once the environment raises it.
        let dir = Scratch::new();
        let file = dir.file("[processing]\nlease_secs = 5\n");
        assert!(load(Some(&file), &[], &[]).is_err());
        load(
            Some(&file),
            &[("PIPELINE_PROCESSING_LEASE_SECS", "30")],
            &[],
        )
        .expect("load");

        for (var, value) in [
            ("PIPELINE_PROCESSING_MAX_ATTEMPTS", "0"),
            ("PIPELINE_PROCESSING_RETRY_BASE_SECS", "400"),
            ("PIPELINE_DATABASE_URL", "mysql://x/y"),
            ("PIPELINE_BROKER_URL", "kafka://x"),
            ("PIPELINE_MODEL_DEVICE", "tpu"),
            ("PIPELINE_MODEL_COMPUTE_TYPE", "int4"),
            ("PIPELINE_MODEL_NAME", "../../etc"),
            ("PIPELINE_WEBHOOKS_URLS", "ftp://x"),
            ("PIPELINE_MODEL_BEAM_SIZE", "99999999999999999999"),
        ] {
            let err = load(None, &[(var, value)], &[]).expect_err(var);
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
        let err = load(
            None,
            &[("PIPELINE_DATABASE_URL", "mysql://root:pw@x/y")],
            &[],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn masks_passwords_in_urls() {
        assert_eq!(
            mask_url("postgres://user:secret@host/db"),
            "postgres://user:****@host/db"
        );
        assert_eq!(
            mask_url("redis://:hunter2@r:6379/0"),
            "redis://:****@r:6379/0"
        );
        assert_eq!(mask_url("amqp://guest@mq//"), "amqp://guest@mq//");
        assert_eq!(mask_url("sqlite:///var/pm.db"), "sqlite:///var/pm.db");
        assert_eq!(
            mask_url("postgres://h/db?user=u&password=pw&sslmode=require#x"),
            "postgres://h/db?user=u&password=****&sslmode=require#x"
        );
        assert_eq!(
            mask_url("https://hooks.example/x?token=abc"),
            "https://hooks.example/x?token=****"
        );
        // An @ in the path is not a password.
        assert_eq!(mask_url("https://h/a:b@c"), "https://h/a:b@c");
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn entries_and_debug_mask_secrets() {
        let c = load(
            None,
            &[
                ("PIPELINE_DATABASE_URL", "postgres://user:secret@host/db"),
                ("PIPELINE_BROKER_URL", "amqp://guest:brokerpw@mq//"),
                ("PIPELINE_WEBHOOKS_SECRET", "hmac-key"),
                ("PIPELINE_WEBHOOKS_URLS", "https://u:hookpw@h/x"),
            ],
            &[],
        )
        .expect("load");
        let entries = c.entries();
        let value = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
                .expect(key)
        };
        assert_eq!(value("database.url"), "postgres://user:****@host/db");
        assert_eq!(value("broker.url"), "amqp://guest:****@mq//");
        assert_eq!(value("webhooks.secret"), "****");
        assert_eq!(value("webhooks.urls"), "https://u:****@h/x");
        assert_eq!(value("broker.result_backend"), "none");
        let json = c.config.masked_json().to_string();
        let debug = format!("{c:?}");
        let listing = format!("{entries:?}");
        for secret in ["secret@", "brokerpw", "hmac-key", "hookpw"] {
            assert!(!json.contains(secret), "json leaks {secret}: {json}");
            assert!(!debug.contains(secret), "debug leaks {secret}: {debug}");
            assert!(!listing.contains(secret), "entries leak {secret}");
        }
        assert_eq!(
            c.config.masked_json()["database"]["url"],
            "postgres://user:****@host/db"
        );
        assert_eq!(c.config.masked_json()["processing"]["max_attempts"], 3);
        // The real values are still there for the code that connects.
        assert_eq!(c.config.database_url(), "postgres://user:secret@host/db");
    }

    /// A key and how its text is read, for the tests that set every key.
    struct KeySpec {
        key: &'static str,
        kind: Kind,
    }

    /// Every key, as the configuration reads it off its defaults.
    fn key_specs() -> Vec<KeySpec> {
        let shape = Shape::of(&Config::defaults(PathBuf::from("/d")));
        keys()
            .map(|key| KeySpec {
                key,
                kind: shape.kind(key).expect("kind"),
            })
            .collect()
    }

    /// A valid text value for every key, to set each one through each layer.
    fn sample(key: &str) -> &'static str {
        let shape = Shape::of(&Config::defaults(PathBuf::from("/d")));
        match shape.kind(key) {
            _ if key == "database.url" => "postgres://u@h/db",
            _ if key == "broker.url" => "redis://r",
            _ if key == "storage.url" => "s3://bucket/prefix",
            _ if key == "webhooks.urls" => "https://h/x",
            _ if key == "server.cors_origins" => "https://app.example.com",
            _ if key == "model.device" => "cuda",
            _ if key == "model.compute_type" => "float16",
            _ if key == "model.mode" => "batched",
            _ if key == "vad.threshold" => "0.3",
            _ if key == "model.temperature_increment" => "0.5",
            _ if key == "processing.heartbeat_secs" => "7",
            _ if key == "processing.retry_base_secs" => "1.5",
            _ if key == "processing.formats" => "json",
            _ if key == "server.max_upload_bytes" => "1048576",
            _ if key == "diarization.threshold" => "0.5",
            _ if key == "diarization.step_seconds" => "2.5",
            _ if key == "diarization.min_embedding_seconds" => "0.5",
            _ if key.starts_with("diarization.") && key.ends_with("speakers") => "42",
            Some(Kind::Text | Kind::OptText) => "value",
            Some(Kind::UInt | Kind::Float) => "42",
            // The opposite of every boolean default but server.auth's.
            _ if key == "server.auth" => "false",
            Some(Kind::Bool) => "true",
            Some(Kind::List) => "a,b",
            None => "",
        }
    }

    #[test]
    fn every_key_is_settable_from_env_file_and_flag() {
        let defaults = load(None, &[], &[]).expect("defaults").entries();
        for spec in key_specs() {
            let var = env_var_name(spec.key);
            let c = load(None, &[(&var, sample(spec.key))], &[])
                .unwrap_or_else(|e| panic!("{}: {e}", spec.key));
            assert_eq!(c.source(spec.key), Source::Env(var.clone()), "{}", spec.key);
            let changed = c.entries();
            let before = defaults.iter().find(|e| e.key == spec.key).expect("entry");
            let after = changed.iter().find(|e| e.key == spec.key).expect("entry");
            assert_ne!(before.value, after.value, "{} did not change", spec.key);

            let c = load(
                None,
                &[],
                &[(spec.key, sample(spec.key).to_string(), "--x")],
            )
            .unwrap_or_else(|e| panic!("{}: {e}", spec.key));
            assert_eq!(c.source(spec.key), Source::Flag("--x".into()));
        }
        // One file with every key in it.
        let mut text = String::new();
        for section in SECTIONS {
            text.push_str(&format!("[{section}]\n"));
            for spec in key_specs()
                .into_iter()
                .filter(|k| k.key.starts_with(&format!("{section}.")))
            {
                let name = &spec.key[section.len() + 1..];
                let value = match spec.kind {
                    Kind::UInt | Kind::Float | Kind::Bool => sample(spec.key).to_string(),
                    Kind::List => format!("[\"{}\"]", sample(spec.key)),
                    _ => format!("\"{}\"", sample(spec.key)),
                };
                text.push_str(&format!("{name} = {value}\n"));
            }
        }
        let dir = Scratch::new();
        let file = dir.file(&text);
        let c = load(Some(&file), &[], &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for spec in key_specs() {
            assert_eq!(
                c.source(spec.key),
                Source::File(file.clone()),
                "{}",
                spec.key
            );
        }
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2 GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("1.5kb"), Some(1500));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
        let dir = Scratch::new();
        let file = dir.file("[server]\nmax_upload_bytes = \"100MB\"\n");
        let c = load(Some(&file), &[], &[]).expect("load");
        assert_eq!(c.config.server.max_upload_bytes, 100_000_000);
    }

    #[test]
    fn diarization_is_off_by_default_and_checked() {
        let c = load(None, &[], &[]).expect("defaults");
        let data = PathBuf::from("/home/u/.local/share/pipeline-manager");
        assert!(!c.config.diarization.enabled);
        assert_eq!(
            c.config.diarization_segmentation_model(),
            data.join("models/pyannote-segmentation-3.0.onnx")
        );
        assert_eq!(
            c.config.diarization_embedding_model(),
            data.join("models/campplus-cn-en-common.onnx")
        );
        let c = load(
            None,
            &[
                ("PIPELINE_DIARIZATION_ENABLED", "true"),
                ("PIPELINE_DIARIZATION_MIN_SPEAKERS", "2"),
                ("PIPELINE_DIARIZATION_MAX_SPEAKERS", "4"),
                ("PIPELINE_DIARIZATION_SPEAKERS", "0"),
            ],
            &[],
        )
        .expect("load");
        let d = &c.config.diarization;
        assert!(d.enabled);
        assert_eq!(
            (d.speakers, d.min_speakers, d.max_speakers),
            (None, Some(2), Some(4))
        );
        for (env, key) in [
            (
                vec![
                    ("PIPELINE_DIARIZATION_MIN_SPEAKERS", "5"),
                    ("PIPELINE_DIARIZATION_MAX_SPEAKERS", "2"),
                ],
                "diarization.min_speakers",
            ),
            (
                vec![("PIPELINE_DIARIZATION_SPEAKERS", "65")],
                "diarization.speakers",
            ),
            (
                vec![("PIPELINE_DIARIZATION_THRESHOLD", "3")],
                "diarization.threshold",
            ),
            (
                vec![("PIPELINE_DIARIZATION_STEP_SECONDS", "0")],
                "diarization.step_seconds",
            ),
        ] {
            let err = load(None, &env, &[]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
                "{env:?}: {err}"
            );
        }
    }

    #[test]
    fn workers_run_one_job_per_core_by_default_up_to_four() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = load(None, &[], &[]).expect("defaults load");
        assert_eq!(c.config.processing.concurrency, cores.clamp(1, 4));
        assert_eq!(c.source("processing.concurrency"), Source::Default);
    }

    #[test]
    fn chunks_shorter_than_half_a_minute_are_refused() {
        for refused in ["1", "29"] {
            let err =
                load(None, &[("PIPELINE_PROCESSING_CHUNK_SECONDS", refused)], &[]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == "processing.chunk_seconds"),
                "{refused}: {err}"
            );
            assert!(err.to_string().contains("at least 30"), "{err}");
        }
        for taken in [0, 30, 3600] {
            let value = taken.to_string();
            let loaded = load(
                None,
                &[("PIPELINE_PROCESSING_CHUNK_SECONDS", value.as_str())],
                &[],
            )
            .expect("load");
            assert_eq!(loaded.config.processing.chunk_seconds, taken);
        }
    }

    #[test]
    fn the_fallback_step_is_taken_up_to_one_and_negative_is_refused() {
        let env = [("PIPELINE_MODEL_TEMPERATURE_INCREMENT", "0")];
        let loaded = load(None, &env, &[]).expect("load");
        assert_eq!(loaded.config.model.temperature_increment, 0.0);
        let err = load(
            None,
            &[("PIPELINE_MODEL_TEMPERATURE_INCREMENT", "1.5")],
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "model.temperature_increment"),
            "{err}"
        );
        // TOML has a float that is not a number; it is no step either.
        let scratch = Scratch::new();
        let file = scratch.file("[model]\ntemperature_increment = nan\n");
        let err = load(Some(&file), &[], &[]).unwrap_err();
        assert!(
            err.to_string().contains("model.temperature_increment"),
            "{err}"
        );
        let err = load(
            None,
            &[("PIPELINE_MODEL_TEMPERATURE_INCREMENT", "-0.2")],
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("model.temperature_increment"),
            "{err}"
        );
    }

    /// Source: the defaults. Nothing set: every value is the default's and
    /// says so, secrets included.
    #[test]
    fn the_default_source_is_reported_for_what_nothing_set() {
        let c = load(None, &[], &[]).expect("load");
        for entry in c.entries() {
            assert_eq!(entry.source, Source::Default, "{}", entry.key);
        }
        assert_eq!(c.config.webhooks.secret, None);
        assert_eq!(c.config.processing.formats, OutputFormat::DEFAULT.to_vec());
    }

    /// Source: the file. Each value it sets names the file; a relative path
    /// is relative to the file, `~` the home directory; values it leaves
    /// out stay defaults.
    #[test]
    fn the_file_source_is_reported_for_what_it_set() {
        let dir = Scratch::new();
        let file = dir.file(
            "[model]\npath = \"models/mine\"\n[vad]\nmodel = \"~/vad.onnx\"\n\
             [webhooks]\nsecret = \"k\"\n[server]\nmax_upload_bytes = 1024\n",
        );
        let c = load(Some(&file), &[], &[]).expect("load");
        assert_eq!(c.config.model.path, Some(dir.0.join("models/mine")));
        assert_eq!(c.config.vad.model, Some(PathBuf::from("/home/u/vad.onnx")));
        assert_eq!(c.config.webhooks.secret.as_deref(), Some("k"));
        assert_eq!(c.config.server.max_upload_bytes, 1024);
        for key in [
            "model.path",
            "vad.model",
            "webhooks.secret",
            "server.max_upload_bytes",
        ] {
            assert_eq!(c.source(key), Source::File(file.clone()), "{key}");
        }
        assert_eq!(c.source("model.name"), Source::Default);
    }

    /// Source: the environment. Each variable names itself, the short
    /// alias included, and text is read by the key's type.
    #[test]
    fn the_environment_source_is_reported_for_what_it_set() {
        let c = load(
            None,
            &[
                ("PIPELINE_MODEL", "~/m"),
                ("PIPELINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "yes"),
                ("PIPELINE_SERVER_MAX_UPLOAD_BYTES", "2MiB"),
                ("PIPELINE_DIARIZATION_SPEAKERS", "3"),
            ],
            &[],
        )
        .expect("load");
        assert_eq!(c.config.model.path, Some(PathBuf::from("/home/u/m")));
        assert!(c.config.webhooks.allow_private_targets);
        assert_eq!(c.config.server.max_upload_bytes, 2 << 20);
        assert_eq!(c.config.diarization.speakers, Some(3));
        for (key, var) in [
            ("model.path", "PIPELINE_MODEL"),
            (
                "webhooks.allow_private_targets",
                "PIPELINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS",
            ),
            (
                "server.max_upload_bytes",
                "PIPELINE_SERVER_MAX_UPLOAD_BYTES",
            ),
            ("diarization.speakers", "PIPELINE_DIARIZATION_SPEAKERS"),
        ] {
            assert_eq!(c.source(key), Source::Env(var.into()), "{key}");
        }
    }

    /// Source: the flags. A flag names itself and wins over the file and
    /// the environment; the last of two flags for one key wins.
    #[test]
    fn the_flag_source_is_reported_for_what_it_set() {
        let dir = Scratch::new();
        let file = dir.file("[model]\nbeam_size = 2\n");
        let c = load(
            Some(&file),
            &[("PIPELINE_MODEL_BEAM_SIZE", "3")],
            &[
                ("model.beam_size", "4".into(), "--beam-size"),
                ("model.language", "de".into(), "--language"),
                ("model.language", "fr".into(), "--lang"),
            ],
        )
        .expect("load");
        assert_eq!(c.config.model.beam_size, 4);
        assert_eq!(
            c.source("model.beam_size"),
            Source::Flag("--beam-size".into())
        );
        assert_eq!(c.config.model.language.as_deref(), Some("fr"));
        assert_eq!(c.source("model.language"), Source::Flag("--lang".into()));
    }

    #[test]
    fn an_empty_string_in_the_file_unsets_an_optional_value() {
        let dir = Scratch::new();
        let file = dir.file("[model]\npath = \"\"\nlanguage = \" \"\n");
        let c = load(Some(&file), &[], &[]).expect("load");
        assert_eq!(c.config.model.path, None);
        assert_eq!(c.config.model.language, None);
    }

    #[test]
    fn sources_serialize_with_kind_and_name() {
        assert_eq!(
            serde_json::to_value(Source::Env("PIPELINE_X".into())).expect("json"),
            json!({"kind": "env", "name": "PIPELINE_X"})
        );
        assert_eq!(
            serde_json::to_value(Source::Default).expect("json"),
            json!({"kind": "default"})
        );
    }
}

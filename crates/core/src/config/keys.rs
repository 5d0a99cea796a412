//! The key table: every configuration key once (its type, whether it is a
//! secret, what unset means), how text and TOML values parse into it, and
//! how a value is set on and read from a [`Config`].

use super::*;

pub(super) const SECTIONS: &[&str] = &[
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

pub(super) const DEVICES: &[&str] = &["cpu", "cuda", "auto"];
pub(super) const MODES: &[&str] = &["sequential", "batched"];

/// What CTranslate2 accepts as `compute_type`.
pub(super) const COMPUTE_TYPES: &[&str] = &[
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
];

/// Short environment variables that the design promises every command honours.
pub(super) const ALIASES: &[(&str, &str)] = &[
    ("PIPELINE_DATA_DIR", "storage.data_dir"),
    ("PIPELINE_RESULT_BACKEND", "broker.result_backend"),
    ("PIPELINE_MODEL", "model.path"),
    // PIPELINE_DATABASE_URL and PIPELINE_BROKER_URL are already the long names.
];

/// The type of a key, which decides how text and TOML values are parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Text,
    OptText,
    Path,
    OptPath,
    UInt,
    Float,
    Bool,
    List,
    Formats,
    Bytes,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Text | Kind::OptText => "a string",
            Kind::Path | Kind::OptPath => "a path (string)",
            Kind::UInt => "a non-negative integer",
            Kind::Float => "a non-negative number",
            Kind::Bool => "a boolean (true or false)",
            Kind::List => "a list of strings",
            Kind::Formats => "a list of output formats (txt, srt, vtt, json, tsv, rttm)",
            Kind::Bytes => "a size in bytes (an integer, or a string such as \"512MiB\")",
        }
    }
}

/// How a value is shown by `entries()` and `masked_json()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Secrecy {
    Public,
    /// A URL (or list of URLs) whose password is masked.
    Url,
    /// Masked whole.
    Whole,
}

pub(super) struct KeySpec {
    pub(super) key: &'static str,
    pub(super) kind: Kind,
    pub(super) secrecy: Secrecy,
    /// What an unset optional value means, shown instead of nothing.
    pub(super) unset: &'static str,
}

pub(super) const fn spec(key: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        key,
        kind,
        secrecy: Secrecy::Public,
        unset: "none",
    }
}

pub(super) const fn opt(
    key: &'static str,
    kind: Kind,
    secrecy: Secrecy,
    unset: &'static str,
) -> KeySpec {
    KeySpec {
        key,
        kind,
        secrecy,
        unset,
    }
}

pub(super) const KEYS: &[KeySpec] = &[
    opt("database.url", Kind::OptText, Secrecy::Url, "none"),
    spec("database.max_connections", Kind::UInt),
    opt(
        "broker.url",
        Kind::OptText,
        Secrecy::Url,
        "none (embedded queue)",
    ),
    opt("broker.result_backend", Kind::OptText, Secrecy::Url, "none"),
    spec("broker.queue", Kind::Text),
    spec("broker.connect_timeout_secs", Kind::UInt),
    spec("broker.visibility_timeout_secs", Kind::UInt),
    spec("broker.prefetch_multiplier", Kind::UInt),
    spec("storage.data_dir", Kind::Path),
    opt("storage.output_dir", Kind::OptPath, Secrecy::Public, "none"),
    opt(
        "storage.url",
        Kind::OptText,
        Secrecy::Url,
        "none (local directory)",
    ),
    opt(
        "storage.endpoint",
        Kind::OptText,
        Secrecy::Url,
        "none (AWS)",
    ),
    spec("storage.region", Kind::Text),
    opt(
        "storage.access_key_id",
        Kind::OptText,
        Secrecy::Public,
        "none (AWS_ACCESS_KEY_ID)",
    ),
    opt(
        "storage.secret_access_key",
        Kind::OptText,
        Secrecy::Whole,
        "none (AWS_SECRET_ACCESS_KEY)",
    ),
    opt("model.path", Kind::OptPath, Secrecy::Public, "none"),
    spec("model.name", Kind::Text),
    spec("model.device", Kind::Text),
    spec("model.compute_type", Kind::Text),
    spec("model.beam_size", Kind::UInt),
    spec("model.threads", Kind::UInt),
    opt(
        "model.language",
        Kind::OptText,
        Secrecy::Public,
        "none (detect)",
    ),
    spec("model.word_timestamps", Kind::Bool),
    spec("model.vad_filter", Kind::Bool),
    spec("model.mode", Kind::Text),
    spec("model.batch_size", Kind::UInt),
    opt(
        "model.initial_prompt",
        Kind::OptText,
        Secrecy::Public,
        "none",
    ),
    opt("model.hotwords", Kind::OptText, Secrecy::Public, "none"),
    opt(
        "model.endpoint",
        Kind::OptText,
        Secrecy::Url,
        "none (run the model locally)",
    ),
    opt("model.api_key", Kind::OptText, Secrecy::Whole, "none"),
    spec("processing.max_attempts", Kind::UInt),
    spec("processing.max_lost_leases", Kind::UInt),
    spec("processing.chunk_seconds", Kind::UInt),
    spec("processing.retry_base_secs", Kind::Float),
    spec("processing.retry_max_secs", Kind::Float),
    spec("processing.job_timeout_secs", Kind::UInt),
    spec("processing.max_duration_secs", Kind::UInt),
    spec("processing.lease_secs", Kind::UInt),
    spec("processing.heartbeat_secs", Kind::UInt),
    spec("processing.concurrency", Kind::UInt),
    spec("processing.formats", Kind::Formats),
    opt("webhooks.urls", Kind::List, Secrecy::Url, "none"),
    spec("retention.live_segments_hours", Kind::UInt),
    spec("retention.cache_hours", Kind::UInt),
    spec("retention.delivered_webhooks_days", Kind::UInt),
    spec("retention.failed_webhooks_days", Kind::UInt),
    opt(
        "ingest.allowed_roots",
        Kind::List,
        Secrecy::Public,
        "none (broker ingest tasks refused)",
    ),
    opt(
        "webhooks.secret",
        Kind::OptText,
        Secrecy::Whole,
        "none (unsigned)",
    ),
    spec("webhooks.timeout_secs", Kind::UInt),
    spec("webhooks.retry_period_secs", Kind::UInt),
    spec("webhooks.allow_private_targets", Kind::Bool),
    spec("server.bind", Kind::Text),
    spec("server.auth", Kind::Bool),
    spec("server.max_upload_bytes", Kind::Bytes),
    spec("server.body_timeout_secs", Kind::UInt),
    opt(
        "server.metrics_bind",
        Kind::OptText,
        Secrecy::Public,
        "none (served on server.bind)",
    ),
    opt("server.cors_origins", Kind::List, Secrecy::Public, "none"),
    opt(
        "vad.onnxruntime",
        Kind::OptPath,
        Secrecy::Public,
        "<data_dir>/lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1",
    ),
    opt(
        "vad.model",
        Kind::OptPath,
        Secrecy::Public,
        "<data_dir>/models/silero-vad-v6.onnx",
    ),
    spec("vad.threshold", Kind::Float),
    spec("vad.min_silence_ms", Kind::UInt),
    spec("vad.speech_pad_ms", Kind::UInt),
    spec("diarization.enabled", Kind::Bool),
    opt(
        "diarization.segmentation_model",
        Kind::OptPath,
        Secrecy::Public,
        "<data_dir>/models/pyannote-segmentation-3.0.onnx",
    ),
    opt(
        "diarization.embedding_model",
        Kind::OptPath,
        Secrecy::Public,
        "<data_dir>/models/campplus-cn-en-common.onnx",
    ),
    spec("diarization.threads", Kind::UInt),
    spec("diarization.step_seconds", Kind::Float),
    spec("diarization.threshold", Kind::Float),
    spec("diarization.min_embedding_seconds", Kind::Float),
    opt(
        "diarization.speakers",
        Kind::UInt,
        Secrecy::Public,
        "none (the clustering decides)",
    ),
    opt(
        "diarization.min_speakers",
        Kind::UInt,
        Secrecy::Public,
        "none",
    ),
    opt(
        "diarization.max_speakers",
        Kind::UInt,
        Secrecy::Public,
        "none",
    ),
];

pub(super) fn lookup(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == key)
}

/// A value parsed according to its key's [`Kind`]; `Path` and `Text` carry
/// `None` for the optional kinds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Parsed {
    Text(Option<String>),
    Path(Option<PathBuf>),
    UInt(u64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    Formats(Vec<OutputFormat>),
}

/// ` (did you mean "x"?)` when a known key is close to the unknown one.
pub(super) fn suggestion(unknown: &str) -> String {
    let best = KEYS
        .iter()
        .map(|k| (edit_distance(unknown, k.key), k.key))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, key)) if d <= 3 => format!(" (did you mean \"{key}\"?)"),
        _ => String::new(),
    }
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `$XDG_DATA_HOME/pipeline-manager`, else `$HOME/.local/share/pipeline-manager`,
/// else a folder in the working directory when neither is set (a bare
/// container), which is still a usable place rather than an error.
pub(super) fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = env("XDG_DATA_HOME").map(PathBuf::from) {
        if xdg.is_absolute() {
            return xdg.join("pipeline-manager");
        }
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/pipeline-manager"),
        None => PathBuf::from(".pipeline-manager"),
    }
}

/// The configuration file to read and who named it.
pub(super) fn find_file(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, String)> {
    if let Some(path) = explicit {
        return Some((path.to_path_buf(), "--config".to_string()));
    }
    if let Some(path) = env(CONFIG_ENV) {
        return Some((PathBuf::from(path), CONFIG_ENV.to_string()));
    }
    let local = PathBuf::from(CONFIG_FILE_NAME);
    local
        .is_file()
        .then(|| (local, "the working directory".to_string()))
}

pub(super) fn expand_home(text: &str, home: Option<&Path>) -> PathBuf {
    match (text.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(text),
    }
}

pub(super) fn describe_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("string \"{s}\""),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(f) => format!("float {f}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("datetime {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

pub(super) fn parse_toml(
    spec: &KeySpec,
    raw: &toml::Value,
    origin: &Source,
    home: Option<&Path>,
) -> Result<Parsed, ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: spec.key.to_string(),
        origin: origin.clone(),
        expected: spec.kind.expected(),
        found: describe_toml(raw),
    };
    let strings = |items: &Vec<toml::Value>| -> Result<Vec<String>, ConfigError> {
        items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(wrong))
            .collect()
    };
    match (spec.kind, raw) {
        (Kind::Text | Kind::OptText | Kind::Path | Kind::OptPath, toml::Value::String(s)) => {
            parse_text(spec, s, origin, home)
        }
        (Kind::UInt, toml::Value::Integer(i)) => {
            u64::try_from(*i).map(Parsed::UInt).map_err(|_| wrong())
        }
        (Kind::Bytes, toml::Value::Integer(i)) => {
            u64::try_from(*i).map(Parsed::UInt).map_err(|_| wrong())
        }
        (Kind::Bytes, toml::Value::String(s)) => parse_text(spec, s, origin, home),
        // TOML distinguishes 2 from 2.0; a person writing seconds does not.
        (Kind::Float, toml::Value::Integer(i)) if *i >= 0 => Ok(Parsed::Float(*i as f64)),
        (Kind::Float, toml::Value::Float(f)) if f.is_finite() && *f >= 0.0 => Ok(Parsed::Float(*f)),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Parsed::Bool(*b)),
        (Kind::List, toml::Value::Array(items)) => strings(items).map(Parsed::List),
        (Kind::Formats, toml::Value::Array(items)) => parse_formats(spec, strings(items)?, origin),
        _ => Err(wrong()),
    }
}

/// Parses a value given as text (environment, flags, or a TOML string).
pub(super) fn parse_text(
    spec: &KeySpec,
    text: &str,
    origin: &Source,
    home: Option<&Path>,
) -> Result<Parsed, ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: spec.key.to_string(),
        origin: origin.clone(),
        expected: spec.kind.expected(),
        found: format!("\"{text}\""),
    };
    let trimmed = text.trim();
    let list = || -> Vec<String> {
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    match spec.kind {
        Kind::Text => Ok(Parsed::Text(Some(text.to_string()))),
        Kind::OptText => Ok(Parsed::Text(
            (!trimmed.is_empty()).then(|| trimmed.to_string()),
        )),
        Kind::Path => Ok(Parsed::Path(Some(expand_home(trimmed, home)))),
        Kind::OptPath => Ok(Parsed::Path(
            (!trimmed.is_empty()).then(|| expand_home(trimmed, home)),
        )),
        Kind::UInt => trimmed
            .parse::<u64>()
            .map(Parsed::UInt)
            .map_err(|_| wrong()),
        Kind::Float => match trimmed.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Ok(Parsed::Float(f)),
            _ => Err(wrong()),
        },
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Parsed::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Parsed::Bool(false)),
            _ => Err(wrong()),
        },
        Kind::List => Ok(Parsed::List(list())),
        Kind::Formats => parse_formats(spec, list(), origin),
        Kind::Bytes => parse_bytes(trimmed).map(Parsed::UInt).ok_or_else(wrong),
    }
}

pub(super) fn parse_formats(
    spec: &KeySpec,
    names: Vec<String>,
    origin: &Source,
) -> Result<Parsed, ConfigError> {
    let mut formats: Vec<OutputFormat> = Vec::new();
    for name in names {
        let format = name
            .parse::<OutputFormat>()
            .map_err(|e| ConfigError::Invalid {
                key: spec.key.to_string(),
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        // Listing a format twice would write the same file twice.
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    Ok(Parsed::Formats(formats))
}

/// `1048576`, `512MiB`, `2 GiB`, `1.5GB`; binary and decimal units.
pub(super) fn parse_bytes(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(multiplier);
    }
    let n: f64 = number.parse().ok()?;
    let bytes = (n * multiplier as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

pub(super) fn check_scheme(url: &str, schemes: &[&str]) -> Result<(), String> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme {
        Some(s) if schemes.contains(&s.as_str()) => Ok(()),
        _ => Err(format!(
            "\"{}\" must start with one of: {}",
            mask_url(url),
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub(super) fn narrow<T: TryFrom<u64>>(value: u64) -> Result<T, String> {
    T::try_from(value).map_err(|_| format!("{value} is too large"))
}

/// Stores a parsed value in its field; the error is the reason a value of the
/// right type still does not fit.
pub(super) fn apply(c: &mut Config, key: &str, value: Parsed) -> Result<(), String> {
    use Parsed as P;
    match (key, value) {
        ("database.url", P::Text(v)) => c.database.url = v,
        ("database.max_connections", P::UInt(v)) => c.database.max_connections = narrow(v)?,
        ("broker.url", P::Text(v)) => c.broker.url = v,
        ("broker.result_backend", P::Text(v)) => c.broker.result_backend = v,
        ("broker.queue", P::Text(Some(v))) => c.broker.queue = v,
        ("broker.connect_timeout_secs", P::UInt(v)) => c.broker.connect_timeout_secs = v,
        ("broker.visibility_timeout_secs", P::UInt(v)) => c.broker.visibility_timeout_secs = v,
        ("broker.prefetch_multiplier", P::UInt(v)) => c.broker.prefetch_multiplier = v,
        ("storage.data_dir", P::Path(Some(v))) => c.storage.data_dir = v,
        ("storage.output_dir", P::Path(v)) => c.storage.output_dir = v,
        ("storage.url", P::Text(v)) => c.storage.url = v,
        ("storage.endpoint", P::Text(v)) => c.storage.endpoint = v,
        ("storage.region", P::Text(Some(v))) => c.storage.region = v,
        ("storage.access_key_id", P::Text(v)) => c.storage.access_key_id = v,
        ("storage.secret_access_key", P::Text(v)) => c.storage.secret_access_key = v,
        ("model.path", P::Path(v)) => c.model.path = v,
        ("model.name", P::Text(Some(v))) => c.model.name = v,
        ("model.device", P::Text(Some(v))) => c.model.device = v.to_ascii_lowercase(),
        ("model.compute_type", P::Text(Some(v))) => c.model.compute_type = v.to_ascii_lowercase(),
        ("model.beam_size", P::UInt(v)) => c.model.beam_size = narrow(v)?,
        ("model.threads", P::UInt(v)) => c.model.threads = narrow(v)?,
        ("model.language", P::Text(v)) => c.model.language = v,
        ("model.word_timestamps", P::Bool(v)) => c.model.word_timestamps = v,
        ("model.vad_filter", P::Bool(v)) => c.model.vad_filter = v,
        ("model.mode", P::Text(Some(v))) => c.model.mode = v.trim().to_ascii_lowercase(),
        ("model.batch_size", P::UInt(v)) => c.model.batch_size = narrow(v)?,
        ("model.initial_prompt", P::Text(v)) => c.model.initial_prompt = v,
        ("model.hotwords", P::Text(v)) => c.model.hotwords = v,
        ("model.endpoint", P::Text(v)) => c.model.endpoint = v,
        ("model.api_key", P::Text(v)) => c.model.api_key = v,
        ("processing.max_attempts", P::UInt(v)) => c.processing.max_attempts = narrow(v)?,
        ("processing.max_lost_leases", P::UInt(v)) => c.processing.max_lost_leases = narrow(v)?,
        ("processing.chunk_seconds", P::UInt(v)) => c.processing.chunk_seconds = v,
        ("processing.retry_base_secs", P::Float(v)) => c.processing.retry_base_secs = v,
        ("processing.retry_max_secs", P::Float(v)) => c.processing.retry_max_secs = v,
        ("processing.job_timeout_secs", P::UInt(v)) => c.processing.job_timeout_secs = v,
        ("processing.max_duration_secs", P::UInt(v)) => c.processing.max_duration_secs = v,
        ("processing.lease_secs", P::UInt(v)) => c.processing.lease_secs = v,
        ("processing.heartbeat_secs", P::UInt(v)) => c.processing.heartbeat_secs = v,
        ("processing.concurrency", P::UInt(v)) => c.processing.concurrency = narrow(v)?,
        ("processing.formats", P::Formats(v)) => c.processing.formats = v,
        ("webhooks.urls", P::List(v)) => c.webhooks.urls = v,
        ("retention.live_segments_hours", P::UInt(v)) => c.retention.live_segments_hours = v,
        ("retention.cache_hours", P::UInt(v)) => c.retention.cache_hours = v,
        ("retention.delivered_webhooks_days", P::UInt(v)) => {
            c.retention.delivered_webhooks_days = v
        }
        ("retention.failed_webhooks_days", P::UInt(v)) => c.retention.failed_webhooks_days = v,
        ("ingest.allowed_roots", P::List(v)) => {
            c.ingest.allowed_roots = v.into_iter().map(PathBuf::from).collect()
        }
        ("webhooks.secret", P::Text(v)) => c.webhooks.secret = v,
        ("webhooks.timeout_secs", P::UInt(v)) => c.webhooks.timeout_secs = v,
        ("webhooks.retry_period_secs", P::UInt(v)) => c.webhooks.retry_period_secs = v,
        ("webhooks.allow_private_targets", P::Bool(v)) => c.webhooks.allow_private_targets = v,
        ("server.bind", P::Text(Some(v))) => c.server.bind = v,
        ("server.auth", P::Bool(v)) => c.server.auth = v,
        ("server.max_upload_bytes", P::UInt(v)) => c.server.max_upload_bytes = v,
        ("server.body_timeout_secs", P::UInt(v)) => c.server.body_timeout_secs = v,
        ("server.metrics_bind", P::Text(v)) => c.server.metrics_bind = v,
        ("server.cors_origins", P::List(v)) => c.server.cors_origins = v,
        ("vad.onnxruntime", P::Path(v)) => c.vad.onnxruntime = v,
        ("vad.model", P::Path(v)) => c.vad.model = v,
        ("vad.threshold", P::Float(v)) => c.vad.threshold = v,
        ("vad.min_silence_ms", P::UInt(v)) => c.vad.min_silence_ms = narrow(v)?,
        ("vad.speech_pad_ms", P::UInt(v)) => c.vad.speech_pad_ms = narrow(v)?,
        ("diarization.enabled", P::Bool(v)) => c.diarization.enabled = v,
        ("diarization.segmentation_model", P::Path(v)) => c.diarization.segmentation_model = v,
        ("diarization.embedding_model", P::Path(v)) => c.diarization.embedding_model = v,
        ("diarization.threads", P::UInt(v)) => c.diarization.threads = narrow(v)?,
        ("diarization.step_seconds", P::Float(v)) => c.diarization.step_seconds = v,
        ("diarization.threshold", P::Float(v)) => c.diarization.threshold = v,
        ("diarization.min_embedding_seconds", P::Float(v)) => {
            c.diarization.min_embedding_seconds = v
        }
        ("diarization.speakers", P::UInt(v)) => c.diarization.speakers = diarization::count(v)?,
        ("diarization.min_speakers", P::UInt(v)) => {
            c.diarization.min_speakers = diarization::count(v)?
        }
        ("diarization.max_speakers", P::UInt(v)) => {
            c.diarization.max_speakers = diarization::count(v)?
        }
        // Only a mismatch between KEYS and this table gets here; the tests
        // set every key through every layer to keep them in step.
        (key, value) => return Err(format!("internal: no field for {key} = {value:?}")),
    }
    Ok(())
}

/// The effective value of a key as JSON, derived defaults filled in.
pub(super) fn get(c: &Config, key: &str) -> Json {
    let path = |p: &Path| Json::String(p.display().to_string());
    match key {
        "database.url" => json!(c.database_url()),
        "database.max_connections" => json!(c.database.max_connections),
        "broker.url" => json!(c.broker.url),
        "broker.result_backend" => json!(c.broker.result_backend),
        "broker.queue" => json!(c.broker.queue),
        "broker.connect_timeout_secs" => json!(c.broker.connect_timeout_secs),
        "broker.visibility_timeout_secs" => json!(c.broker.visibility_timeout_secs),
        "broker.prefetch_multiplier" => json!(c.broker.prefetch_multiplier),
        "storage.data_dir" => path(&c.storage.data_dir),
        "storage.output_dir" => path(&c.output_dir()),
        "storage.url" => json!(c.storage.url),
        "storage.endpoint" => json!(c.storage.endpoint),
        "storage.region" => json!(c.storage.region),
        "storage.access_key_id" => json!(c.storage.access_key_id),
        "storage.secret_access_key" => json!(c.storage.secret_access_key),
        "model.path" => path(&c.model_dir()),
        "model.name" => json!(c.model.name),
        "model.device" => json!(c.model.device),
        "model.compute_type" => json!(c.model.compute_type),
        "model.beam_size" => json!(c.model.beam_size),
        "model.threads" => json!(c.model.threads),
        "model.language" => json!(c.model.language),
        "model.word_timestamps" => json!(c.model.word_timestamps),
        "model.vad_filter" => json!(c.model.vad_filter),
        "model.mode" => json!(c.model.mode),
        "model.batch_size" => json!(c.model.batch_size),
        "model.initial_prompt" => json!(c.model.initial_prompt),
        "model.hotwords" => json!(c.model.hotwords),
        "model.endpoint" => json!(c.model.endpoint),
        "model.api_key" => json!(c.model.api_key),
        "processing.max_attempts" => json!(c.processing.max_attempts),
        "processing.max_lost_leases" => json!(c.processing.max_lost_leases),
        "processing.chunk_seconds" => json!(c.processing.chunk_seconds),
        "processing.retry_base_secs" => json!(c.processing.retry_base_secs),
        "processing.retry_max_secs" => json!(c.processing.retry_max_secs),
        "processing.job_timeout_secs" => json!(c.processing.job_timeout_secs),
        "processing.max_duration_secs" => json!(c.processing.max_duration_secs),
        "processing.lease_secs" => json!(c.processing.lease_secs),
        "processing.heartbeat_secs" => json!(c.processing.heartbeat_secs),
        "processing.concurrency" => json!(c.processing.concurrency),
        "processing.formats" => json!(c.processing.formats),
        "webhooks.urls" => json!(c.webhooks.urls),
        "ingest.allowed_roots" => json!(c.ingest.allowed_roots),
        "retention.live_segments_hours" => json!(c.retention.live_segments_hours),
        "retention.cache_hours" => json!(c.retention.cache_hours),
        "retention.delivered_webhooks_days" => json!(c.retention.delivered_webhooks_days),
        "retention.failed_webhooks_days" => json!(c.retention.failed_webhooks_days),
        "webhooks.secret" => json!(c.webhooks.secret),
        "webhooks.timeout_secs" => json!(c.webhooks.timeout_secs),
        "webhooks.retry_period_secs" => json!(c.webhooks.retry_period_secs),
        "webhooks.allow_private_targets" => json!(c.webhooks.allow_private_targets),
        "server.bind" => json!(c.server.bind),
        "server.auth" => json!(c.server.auth),
        "server.max_upload_bytes" => json!(c.server.max_upload_bytes),
        "server.body_timeout_secs" => json!(c.server.body_timeout_secs),
        "server.metrics_bind" => json!(c.server.metrics_bind),
        "server.cors_origins" => json!(c.server.cors_origins),
        "vad.onnxruntime" => path(&c.vad_runtime()),
        "vad.model" => path(&c.vad_model()),
        "vad.threshold" => json!(c.vad.threshold),
        "vad.min_silence_ms" => json!(c.vad.min_silence_ms),
        "vad.speech_pad_ms" => json!(c.vad.speech_pad_ms),
        "diarization.enabled" => json!(c.diarization.enabled),
        "diarization.segmentation_model" => path(&c.diarization_segmentation_model()),
        "diarization.embedding_model" => path(&c.diarization_embedding_model()),
        "diarization.threads" => json!(c.diarization.threads),
        "diarization.step_seconds" => json!(c.diarization.step_seconds),
        "diarization.threshold" => json!(c.diarization.threshold),
        "diarization.min_embedding_seconds" => json!(c.diarization.min_embedding_seconds),
        "diarization.speakers" => json!(c.diarization.speakers),
        "diarization.min_speakers" => json!(c.diarization.min_speakers),
        "diarization.max_speakers" => json!(c.diarization.max_speakers),
        _ => Json::Null,
    }
}

pub(super) fn masked(spec: &KeySpec, value: Json) -> Json {
    match (spec.secrecy, value) {
        (Secrecy::Public, v) | (_, v @ Json::Null) => v,
        (Secrecy::Whole, _) => Json::String(MASK.to_string()),
        (Secrecy::Url, Json::String(s)) => Json::String(mask_url(&s)),
        (Secrecy::Url, Json::Array(items)) => Json::Array(
            items
                .into_iter()
                .map(|v| match v {
                    Json::String(s) => Json::String(mask_url(&s)),
                    other => other,
                })
                .collect(),
        ),
        (Secrecy::Url, v) => v,
    }
}

pub(super) fn display(spec: &KeySpec, value: &Json) -> String {
    match value {
        Json::Null => spec.unset.to_string(),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.is_empty() => spec.unset.to_string(),
        Json::Array(items) => items
            .iter()
            .map(|v| match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

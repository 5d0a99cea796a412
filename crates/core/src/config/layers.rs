//! The layers as figment providers (the defaults, the file, one per
//! environment variable and one per flag, each tagged with where it came
//! from), the keys the configuration has (read off the defaults), and the
//! mapping of figment's errors to [`ConfigError`]s that name the key and
//! its source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde_json::Value as Json;

use super::fields::{BYTES_EXPECTED, FORMATS_EXPECTED};
use super::{Config, ConfigError, Source, SECTIONS};

/// One layer: values from a single source.
pub(super) struct Layer {
    source: Source,
    /// `{section: {key: value}}`.
    data: Json,
}

impl Layer {
    pub(super) fn new(source: Source, data: Json) -> Self {
        Self { source, data }
    }

    /// Where the layer's values came from.
    pub(super) fn source(&self) -> &Source {
        &self.source
    }

    /// A layer that sets one key (`section.key`).
    pub(super) fn one(source: Source, key: &str, value: Json) -> Self {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        Self::new(source, serde_json::json!({ section: { name: value } }))
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.source.to_string());
        match &self.source {
            // A file's metadata names the file, so that relative paths in it
            // resolve against its directory (figment's RelativePathBuf).
            Source::File(path) => metadata.source(figment::Source::File(path.clone())),
            _ => metadata,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        match Value::serialize(&self.data)? {
            Value::Dict(_, dict) => Ok(Profile::Default.collect(dict)),
            _ => Ok(Map::new()),
        }
    }
}

/// How text from the environment or a flag becomes a value: by the type
/// of the key's default, so no key has to say it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    /// A string, or an optional value unset by default (text as given).
    Text,
    /// An optional value unset by default.
    OptText,
    UInt,
    Float,
    Bool,
    /// A list: comma-separated text.
    List,
}

/// Every key with its default, in section order.
pub(super) struct Shape {
    keys: Vec<(String, Json)>,
}

impl Shape {
    /// The keys of `defaults`, read off its serialized form.
    pub(super) fn of(defaults: &Config) -> Self {
        let tree = serde_json::to_value(defaults).unwrap_or(Json::Null);
        let mut keys = Vec::new();
        for section in SECTIONS {
            if let Some(Json::Object(fields)) = tree.get(section) {
                for (name, value) in fields {
                    keys.push((format!("{section}.{name}"), value.clone()));
                }
            }
        }
        Self { keys }
    }

    /// Every key (`section.key`).
    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == key)
    }

    pub(super) fn kind(&self, key: &str) -> Option<Kind> {
        let (_, default) = self.keys.iter().find(|(k, _)| k == key)?;
        Some(match default {
            Json::Bool(_) => Kind::Bool,
            Json::Number(n) if n.is_f64() => Kind::Float,
            Json::Number(_) => Kind::UInt,
            Json::Array(_) => Kind::List,
            Json::Null => Kind::OptText,
            _ => Kind::Text,
        })
    }

    /// The value `text` (from the environment or a flag) sets `key` to.
    /// Text that does not read as the key's type is passed on as text, for
    /// the key's type to refuse with its name and source.
    pub(super) fn typed(&self, key: &str, text: &str) -> Json {
        let trimmed = text.trim();
        match self.kind(key) {
            Some(Kind::UInt) => trimmed
                .parse::<u64>()
                .map_or_else(|_| Json::from(trimmed), Json::from),
            Some(Kind::Float) => match trimmed.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => Json::from(f),
                _ => Json::from(trimmed),
            },
            Some(Kind::Bool) => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Json::Bool(true),
                "false" | "0" | "no" | "off" => Json::Bool(false),
                _ => Json::from(trimmed),
            },
            Some(Kind::List) => Json::Array(
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Json::from)
                    .collect(),
            ),
            // An empty flag clears an optional value.
            Some(Kind::OptText) if trimmed.is_empty() => Json::Null,
            _ => Json::from(trimmed),
        }
    }

    /// The file's table as a layer's data, refusing keys the configuration
    /// does not have and sections that are not tables.
    pub(super) fn file_data(&self, path: &Path, table: toml::Table) -> Result<Json, ConfigError> {
        let origin = Source::File(path.to_path_buf());
        let mut data = serde_json::Map::new();
        for (section, body) in table {
            let toml::Value::Table(body) = body else {
                if SECTIONS.contains(&section.as_str()) {
                    return Err(ConfigError::WrongType {
                        key: section,
                        origin,
                        expected: "a table ([section])".to_string(),
                        found: describe_toml(&body),
                    });
                }
                return Err(ConfigError::UnknownKey {
                    key: section,
                    origin,
                });
            };
            let mut fields = serde_json::Map::new();
            for (name, value) in body {
                let key = format!("{section}.{name}");
                if !self.contains(&key) {
                    return Err(ConfigError::UnknownKey { key, origin });
                }
                let value = match toml_to_json(value) {
                    // An empty string for an optional value means unset,
                    // as an empty flag does.
                    Json::String(s)
                        if s.trim().is_empty() && self.kind(&key) == Some(Kind::OptText) =>
                    {
                        Json::Null
                    }
                    value => value,
                };
                fields.insert(name, value);
            }
            data.insert(section, Json::Object(fields));
        }
        Ok(Json::Object(data))
    }
}

/// ` (did you mean "x"?)` when a known key is close to the unknown one.
pub(super) fn suggest<'a>(keys: impl Iterator<Item = &'a str>, unknown: &str) -> String {
    let best = keys
        .map(|k| (edit_distance(unknown, k), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, key)) if d <= 3 => format!(" (did you mean \"{key}\"?)"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
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

/// TOML's values as JSON, keeping integers apart from floats (a datetime
/// becomes its text, which no key takes).
fn toml_to_json(value: toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s),
        toml::Value::Integer(i) => Json::from(i),
        toml::Value::Float(f) => Json::from(f),
        toml::Value::Boolean(b) => Json::Bool(b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Json::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn describe_toml(value: &toml::Value) -> String {
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

/// The origin of every layer, by its metadata's name.
pub(super) type Origins = BTreeMap<String, Source>;

/// figment's first error as a [`ConfigError`] naming the key and its source.
pub(super) fn from_figment(error: figment::Error, origins: &Origins) -> ConfigError {
    let error = error
        .into_iter()
        .next()
        .unwrap_or_else(|| figment::Error::from("unknown error".to_string()));
    let origin = error
        .metadata
        .as_ref()
        .and_then(|m| origins.get(m.name.as_ref()))
        .cloned()
        .unwrap_or(Source::Default);
    let key = error.path.join(".");
    use figment::error::Kind as K;
    match error.kind {
        K::InvalidType(actual, expected) | K::InvalidValue(actual, expected) => {
            ConfigError::WrongType {
                found: found(&actual, &origin),
                expected: expected_text(&expected),
                key,
                origin,
            }
        }
        K::UnknownField(field, _) => ConfigError::UnknownKey {
            key: if key.is_empty() {
                field
            } else {
                format!("{key}.{field}")
            },
            origin,
        },
        K::Message(reason) => ConfigError::Invalid {
            key,
            origin,
            reason,
        },
        other => ConfigError::Invalid {
            key,
            origin,
            reason: figment::Error::from(other).to_string(),
        },
    }
}

/// What was given, as the source wrote it: TOML's values by type, text
/// from the environment or a flag quoted.
fn found(actual: &figment::error::Actual, origin: &Source) -> String {
    use figment::error::Actual as A;
    let text = match actual {
        A::Str(s) => s.clone(),
        A::Unsigned(n) => n.to_string(),
        A::Signed(n) => n.to_string(),
        A::Float(f) => f.to_string(),
        A::Bool(b) => b.to_string(),
        other => other.to_string(),
    };
    if !matches!(origin, Source::File(_)) {
        return format!("\"{text}\"");
    }
    match actual {
        A::Str(s) => format!("string \"{s}\""),
        A::Unsigned(_) | A::Signed(_) => format!("integer {text}"),
        A::Float(_) => format!("float {text}"),
        A::Bool(_) => format!("boolean {text}"),
        A::Seq => "an array".to_string(),
        A::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

/// serde's words for a type, in the words the configuration's errors use.
fn expected_text(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i64" => "a non-negative integer",
        "f32" | "f64" => "a non-negative number",
        "a boolean" => "a boolean (true or false)",
        "a string" | "string" => "a string",
        "path string" | "a path" => "a path (string)",
        "a sequence" => "a list of strings",
        other if other.starts_with("struct ") || other == "a map" => "a table ([section])",
        FORMATS_EXPECTED => FORMATS_EXPECTED,
        BYTES_EXPECTED => BYTES_EXPECTED,
        other => other,
    }
    .to_string()
}

/// Paths named by the flags and variables that choose the file.
pub(super) fn find_file(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, String)> {
    if let Some(path) = explicit {
        return Some((path.to_path_buf(), "--config".to_string()));
    }
    if let Some(path) = env(super::CONFIG_ENV) {
        return Some((PathBuf::from(path), super::CONFIG_ENV.to_string()));
    }
    let local = PathBuf::from(super::CONFIG_FILE_NAME);
    local
        .is_file()
        .then(|| (local, "the working directory".to_string()))
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

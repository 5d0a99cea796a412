//! How `status` shows the configuration: derived defaults filled in (the
//! database, model and output paths that follow `data_dir`), secrets
//! masked by their types, and what an unset value means in words.

use serde_json::Value as Json;

use super::Config;

/// What an unset value means, where "none" would not say enough. Only
/// words for `status`: a key works without an entry here.
const UNSET: &[(&str, &str)] = &[
    ("broker.url", "none (embedded queue)"),
    ("storage.url", "none (local directory)"),
    ("storage.endpoint", "none (AWS)"),
    ("storage.access_key_id", "none (AWS_ACCESS_KEY_ID)"),
    ("storage.secret_access_key", "none (AWS_SECRET_ACCESS_KEY)"),
    ("model.language", "none (detect)"),
    ("model.endpoint", "none (run the model locally)"),
    ("ingest.allowed_roots", "none (broker ingest tasks refused)"),
    ("webhooks.secret", "none (unsigned)"),
    ("server.metrics_bind", "none (served on server.bind)"),
    ("diarization.speakers", "none (the clustering decides)"),
];

impl Config {
    /// The configuration as nested JSON (`{"database": {"url": ...}}`) with
    /// derived values filled in and secrets masked, for `status --json`.
    pub fn masked_json(&self) -> Json {
        let mut tree = serde_json::to_value(self).unwrap_or(Json::Null);
        let path = |p: std::path::PathBuf| Json::String(p.display().to_string());
        let derived = [
            (
                "database",
                "url",
                Json::String(super::mask_url(&self.database_url())),
            ),
            ("storage", "output_dir", path(self.output_dir())),
            ("model", "path", path(self.model_dir())),
            ("vad", "onnxruntime", path(self.vad_runtime())),
            ("vad", "model", path(self.vad_model())),
            (
                "diarization",
                "segmentation_model",
                path(self.diarization_segmentation_model()),
            ),
            (
                "diarization",
                "embedding_model",
                path(self.diarization_embedding_model()),
            ),
        ];
        for (section, key, value) in derived {
            if let Some(Json::Object(fields)) = tree.get_mut(section) {
                fields.insert(key.to_string(), value);
            }
        }
        tree
    }
}

/// A value of `key` for display: lists joined, unset values in words.
pub(super) fn display(key: &str, value: &Json) -> String {
    let unset = || {
        UNSET
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("none", |(_, words)| words)
            .to_string()
    };
    match value {
        Json::Null => unset(),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.is_empty() => unset(),
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

//! The rules between values, checked once every layer is applied (so that
//! a file's value may be corrected by the environment): bounds, schemes,
//! names, and the pairs that must agree.

use super::*;

const DEVICES: &[&str] = &["cpu", "cuda", "auto"];
const MODES: &[&str] = &["sequential", "batched"];

/// What CTranslate2 accepts as `compute_type`.
const COMPUTE_TYPES: &[&str] = &[
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

fn check_scheme(url: &str, schemes: &[&str]) -> Result<(), String> {
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

impl LoadedConfig {
    pub(super) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: self.source(key),
            reason: reason.into(),
        }
    }

    /// Spellings that mean the same value made one: names of devices,
    /// compute types and modes in any case.
    pub(super) fn normalize(&mut self) {
        let m = &mut self.config.model;
        m.device = m.device.trim().to_ascii_lowercase();
        m.compute_type = m.compute_type.trim().to_ascii_lowercase();
        m.mode = m.mode.trim().to_ascii_lowercase();
    }

    /// Checks the rules between values, once all layers are applied, so that
    /// e.g. a file's retry_max may be raised by the environment.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.no_negative_numbers()?;
        let c = &self.config;
        let at_least_one = [
            (
                "database.max_connections",
                c.database.max_connections as u64,
            ),
            ("model.beam_size", c.model.beam_size as u64),
            ("model.batch_size", c.model.batch_size as u64),
            ("processing.max_attempts", c.processing.max_attempts as u64),
            (
                "processing.max_lost_leases",
                c.processing.max_lost_leases as u64,
            ),
            ("processing.job_timeout_secs", c.processing.job_timeout_secs),
            (
                "processing.max_duration_secs",
                c.processing.max_duration_secs,
            ),
            ("processing.lease_secs", c.processing.lease_secs),
            ("processing.heartbeat_secs", c.processing.heartbeat_secs),
            ("processing.concurrency", c.processing.concurrency as u64),
            ("webhooks.timeout_secs", c.webhooks.timeout_secs),
            ("webhooks.retry_period_secs", c.webhooks.retry_period_secs),
            ("server.max_upload_bytes", c.server.max_upload_bytes),
            ("server.body_timeout_secs", c.server.body_timeout_secs),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(self.invalid(key, "must be at least 1"));
            }
        }
        if c.processing.heartbeat_secs >= c.processing.lease_secs {
            return Err(self.invalid(
                "processing.heartbeat_secs",
                format!(
                    "{} s must be shorter than processing.lease_secs ({} s), or leases expire between heartbeats",
                    c.processing.heartbeat_secs, c.processing.lease_secs
                ),
            ));
        }
        if c.model.temperature_increment > 1.0 {
            return Err(self.invalid(
                "model.temperature_increment",
                format!(
                    "{} is above 1.0, the highest temperature of the fallback",
                    c.model.temperature_increment
                ),
            ));
        }
        if (1..30).contains(&c.processing.chunk_seconds) {
            return Err(self.invalid(
                "processing.chunk_seconds",
                "must be 0 (never cut) or at least 30: a chunk holds whole sentences",
            ));
        }
        if c.processing.retry_base_secs > c.processing.retry_max_secs {
            return Err(self.invalid(
                "processing.retry_base_secs",
                format!(
                    "{} s is longer than processing.retry_max_secs ({} s)",
                    c.processing.retry_base_secs, c.processing.retry_max_secs
                ),
            ));
        }
        for (key, value) in [
            ("broker.queue", &c.broker.queue),
            ("model.name", &c.model.name),
            ("server.bind", &c.server.bind),
        ] {
            if value.trim().is_empty() {
                return Err(self.invalid(key, "must not be empty"));
            }
        }
        if let Some(url) = &c.database.url {
            check_scheme(url.expose(), &["sqlite", "postgres", "postgresql"])
                .map_err(|r| self.invalid("database.url", r))?;
        }
        if let Some(url) = &c.broker.url {
            check_scheme(
                url.expose(),
                &["amqp", "amqps", "pyamqp", "redis", "rediss"],
            )
            .map_err(|r| self.invalid("broker.url", r))?;
        }
        if let Some(url) = &c.storage.url {
            check_scheme(url.expose(), &["s3"]).map_err(|r| self.invalid("storage.url", r))?;
        }
        for origin in &c.server.cors_origins {
            let bare = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
            });
            if !bare {
                return Err(self.invalid(
                    "server.cors_origins",
                    format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                ));
            }
        }
        for url in &c.webhooks.urls {
            check_scheme(url.expose(), &["http", "https"])
                .map_err(|r| self.invalid("webhooks.urls", r))?;
        }
        if !DEVICES.contains(&c.model.device.as_str()) {
            return Err(self.invalid(
                "model.device",
                format!(
                    "\"{}\" is not one of: {}",
                    c.model.device,
                    DEVICES.join(", ")
                ),
            ));
        }
        if !MODES.contains(&c.model.mode.as_str()) {
            return Err(self.invalid(
                "model.mode",
                format!("\"{}\" is not one of: {}", c.model.mode, MODES.join(", ")),
            ));
        }
        if !(0.0..=1.0).contains(&c.vad.threshold) {
            return Err(self.invalid("vad.threshold", "must be between 0 and 1"));
        }
        if c.vad.speech_pad_ms > 10_000 {
            return Err(self.invalid("vad.speech_pad_ms", "must be at most 10000"));
        }
        if c.vad.min_silence_ms > 60_000 {
            return Err(self.invalid("vad.min_silence_ms", "must be at most 60000"));
        }
        c.diarization
            .check()
            .map_err(|(key, reason)| self.invalid(key, reason))?;
        if !COMPUTE_TYPES.contains(&c.model.compute_type.as_str()) {
            return Err(self.invalid(
                "model.compute_type",
                format!(
                    "\"{}\" is not one of: {}",
                    c.model.compute_type,
                    COMPUTE_TYPES.join(", ")
                ),
            ));
        }
        // The name becomes a directory under models/ when no path is given,
        // so it must not climb out of it.
        let name_ok =
            c.model.name.split('/').all(|part| {
                !part.is_empty() && part != "." && part != ".." && !part.contains('\\')
            });
        if !name_ok {
            return Err(self.invalid(
                "model.name",
                format!(
                    "\"{}\" is neither a short name (tiny.en) nor a repo id (Systran/faster-whisper-base)",
                    c.model.name
                ),
            ));
        }
        Ok(())
    }
}

impl LoadedConfig {
    /// Every number the configuration has is a count, a size or a time, so
    /// a negative one is the wrong type whatever its key.
    fn no_negative_numbers(&self) -> Result<(), ConfigError> {
        let tree = serde_json::to_value(&self.config).unwrap_or_default();
        for key in keys() {
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            let value = tree.get(section).and_then(|s| s.get(name));
            if let Some(n) = value.and_then(|v| v.as_f64()).filter(|n| *n < 0.0) {
                let origin = self.source(key);
                let found = match origin {
                    Source::File(_) => format!("float {n}"),
                    _ => format!("\"{n}\""),
                };
                return Err(ConfigError::WrongType {
                    key: key.to_string(),
                    origin,
                    expected: "a non-negative number".to_string(),
                    found,
                });
            }
        }
        Ok(())
    }
}

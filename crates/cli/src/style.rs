//! Human output: emoji and colour on a terminal, plain words elsewhere.

use pipeline_core::JobStatus;
use std::io::IsTerminal;

/// How to decorate human output.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Emoji and colour are allowed.
    pub fancy: bool,
}

impl Style {
    /// Fancy on a terminal unless `NO_COLOR` is set; `CLICOLOR_FORCE=1` forces it.
    pub fn detect() -> Self {
        let forced = std::env::var("CLICOLOR_FORCE").is_ok_and(|v| v != "0" && !v.is_empty());
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            fancy: forced || (!no_color && std::io::stdout().is_terminal()),
        }
    }

    /// `✅ text` on a terminal, `text` elsewhere.
    pub fn ok(&self, text: &str) -> String {
        self.mark("✅", text)
    }

    /// `❌ text` on a terminal, `text` elsewhere.
    pub fn fail(&self, text: &str) -> String {
        self.mark("❌", text)
    }

    /// The seed's job marker: ✅ done, ❌ failed or cancelled, ⏳ otherwise.
    pub fn job(&self, status: JobStatus, text: &str) -> String {
        match status {
            JobStatus::Completed => self.ok(text),
            JobStatus::Failed | JobStatus::Cancelled => self.fail(text),
            _ => self.mark("⏳", text),
        }
    }

    fn mark(&self, emoji: &str, text: &str) -> String {
        if self.fancy {
            format!("{emoji} {text}")
        } else {
            text.to_string()
        }
    }
}

/// A timestamp as the seed prints it (UTC, to the second).
pub fn seed_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A timestamp for JSON: RFC 3339 UTC.
pub fn json_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

//! What every command needs: the configuration, the store, the output style.

use anyhow::Result;
use pipeline_core::config::{Config, LoadedConfig};
use pipeline_store::{Store, StoreError};
use std::fmt;
use uuid::Uuid;

use crate::style::Style;
use crate::Cli;

/// Exit codes of the CLI contract.
pub mod exit {
    /// A job failed.
    pub const JOB_FAILED: u8 = 1;
    /// Bad usage or bad input.
    pub const BAD_INPUT: u8 = 2;
    /// A required service is unreachable.
    pub const UNREACHABLE: u8 = 3;
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error with an exit code.
pub fn failure(code: u8, message: impl Into<String>) -> anyhow::Error {
    Failure {
        code,
        message: message.into(),
    }
    .into()
}

/// A store error with its exit code: 3 when the database is out of reach.
pub fn store_failure(e: StoreError) -> anyhow::Error {
    match &e {
        StoreError::NotFound { .. } => failure(exit::BAD_INPUT, e.to_string()),
        _ if e.is_unreachable() => failure(
            exit::UNREACHABLE,
            format!(
                "{e}; check database.url (PIPELINE_DATABASE_URL) and that the server is running"
            ),
        ),
        _ => failure(exit::JOB_FAILED, e.to_string()),
    }
}

/// The loaded configuration and output settings of one invocation.
pub struct App {
    pub loaded: LoadedConfig,
    pub style: Style,
    pub json: bool,
}

impl App {
    /// Loads the configuration: file, then environment, then `cli`'s flags.
    pub fn load(cli: &Cli) -> Result<App> {
        let mut flags: Vec<(&str, String, &str)> = Vec::new();
        if let Some(dir) = &cli.data_dir {
            flags.push(("storage.data_dir", dir.display().to_string(), "--data-dir"));
        }
        if let Some(url) = &cli.database_url {
            flags.push(("database.url", url.clone(), "--database-url"));
        }
        if let Some(model) = &cli.model {
            flags.push(("model.path", model.display().to_string(), "--model"));
        }
        let loaded = LoadedConfig::from_process_env(cli.config.as_deref(), &flags)
            .map_err(|e| failure(exit::BAD_INPUT, e.to_string()))?;
        Ok(App {
            loaded,
            style: Style::detect(),
            json: cli.json,
        })
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// Connects to the database (exit code 3 when it is unreachable).
    pub async fn store(&self) -> Result<Store> {
        let store = Store::connect(&self.config().database_url())
            .await
            .map_err(store_failure)?;
        Ok(store
            .with_webhooks_for_all_files(!self.config().webhooks.urls.is_empty())
            .with_max_lost_leases(self.config().processing.max_lost_leases))
    }

    /// Prints a JSON document on stdout.
    pub fn print_json(&self, value: &serde_json::Value) {
        outln!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    }
}

/// Parses an id given on the command line.
pub fn parse_id(text: &str) -> Result<Uuid> {
    text.trim().parse().map_err(|_| {
        failure(
            exit::BAD_INPUT,
            format!("{text:?} is not an id (expected a UUID such as 123e4567-e89b-12d3-a456-426614174000)"),
        )
    })
}

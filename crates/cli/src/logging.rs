//! Where the libraries' `tracing` events go: lines on stderr, as text or
//! as JSON, filtered by target and level. Only the binary installs this;
//! the libraries just emit.

use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// How log lines are written (`--log-format`, `PIPELINE_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event: time, level, spans with their fields, target, message.
    Text,
    /// One JSON object per event, with the job's or request's span fields.
    Json,
}

/// What a service (`worker`, `serve`) logs unless told otherwise: our own
/// crates' and the HTTP layer's events from `info` up, and only warnings
/// of the libraries under them (database, brokers, HTTP client).
const SERVICE_FILTER: &str = "warn,pipeline=info,tower_http=info";
/// What the other commands log: warnings and errors only, so that their
/// output stays theirs.
const COMMAND_FILTER: &str = "warn";

/// Installs the subscriber. `filter` is a list of `target=level` with an
/// optional bare default level (`info`, `warn,pipeline_worker=debug`).
/// A service writes JSON when its stdout is not a terminal (a log file or
/// a log collector), text otherwise.
pub fn init(format: Option<LogFormat>, filter: Option<&str>, service: bool) -> Result<(), String> {
    let format = format.unwrap_or(if service && !std::io::stdout().is_terminal() {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    let filter = filter
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .unwrap_or(if service {
            SERVICE_FILTER
        } else {
            COMMAND_FILTER
        });
    let targets: Targets = filter.parse().map_err(|e| {
        format!("log filter {filter:?} (--log-level, PIPELINE_LOG): {e}; expected for example \"info\" or \"warn,pipeline_worker=debug\"")
    })?;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(lines.with_filter(targets))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                lines
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(targets),
            )
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_ones_are_named() {
        for good in [
            SERVICE_FILTER,
            COMMAND_FILTER,
            "debug",
            "warn,pipeline_worker=trace",
        ] {
            assert!(good.parse::<Targets>().is_ok(), "{good}");
        }
        let err = init(Some(LogFormat::Text), Some("pipeline=loud"), false).expect_err("bad");
        assert!(
            err.contains("pipeline=loud") && err.contains("PIPELINE_LOG"),
            "{err}"
        );
    }
}

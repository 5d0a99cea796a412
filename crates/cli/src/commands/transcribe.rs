//! `transcribe`: the legacy one-shot mode, with no database and no queue.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pipeline_asr::{AsrError, TranscribeObserver};
use pipeline_core::render::{self, OutputFormat};
use pipeline_worker::DecoderSource;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::app::{exit, failure, App};
use crate::commands::load_engine;

/// Options of `transcribe`.
#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// The audio file.
    pub file: PathBuf,
    /// Formats to produce, comma-separated: txt, srt, vtt, json, tsv, rttm [default: txt].
    #[arg(long, value_delimiter = ',')]
    pub format: Vec<String>,
    /// Write `<name>.<format>` files here instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Language code; detected when not given (multilingual models).
    #[arg(long)]
    pub language: Option<String>,
    /// Add word-level timestamps.
    #[arg(long)]
    pub word_timestamps: bool,
    #[command(flatten)]
    pub decoding: super::ModeArgs,
}

/// `transcribe FILE`.
pub async fn run(app: &App, args: TranscribeArgs) -> Result<u8> {
    let config = app.config().clone();
    let formats: Vec<OutputFormat> = if args.format.is_empty() {
        vec![OutputFormat::Txt]
    } else {
        args.format
            .iter()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: render::ParseFormatError| failure(exit::BAD_INPUT, e.to_string()))?
    };
    let name = args.file.display().to_string();
    // The same settings a tracked file gets, without the tracking.
    let mut settings = super::default_process_options(&config);
    settings.language = args.language.clone().or(settings.language);
    settings.word_timestamps |= args.word_timestamps;
    args.decoding.apply(&mut settings);
    let mut source = DecoderSource::open(
        &args.file,
        &name,
        &settings.limits(),
        settings.audio_track(),
        settings.channel(),
    )
    .map_err(|e| failure(exit::BAD_INPUT, e.to_string()))?;
    let options = pipeline_worker::decode_options(&settings);
    let show_bar = std::io::stderr().is_terminal() && !app.json;
    let transcript = tokio::task::spawn_blocking(move || {
        let engine = load_engine(&config, 1)?;
        let bar = show_bar.then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("[{bar:40}] {pos:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        let mut observer = Bar { bar: bar.clone() };
        let result = engine.transcribe(&mut source, &options, &mut observer);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    })
    .await?;
    let transcript = transcript.map_err(|e| match e {
        AsrError::Audio { .. } => failure(exit::BAD_INPUT, e.to_string()),
        AsrError::ModelNotFound { .. } | AsrError::InvalidModel { .. } => failure(
            exit::BAD_INPUT,
            format!(
                "{e}; `pipeline-manager model install` installs tiny.en, or set PIPELINE_MODEL"
            ),
        ),
        other => failure(exit::JOB_FAILED, other.to_string()),
    })?;
    match &args.output_dir {
        Some(dir) => {
            let paths = pipeline_worker::output_paths(
                dir,
                &args
                    .file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                &formats,
            );
            let mut written = serde_json::Map::new();
            for (format, path) in paths {
                pipeline_ingest::storage::write_atomically(
                    &path,
                    render::render(&transcript, format).as_bytes(),
                )
                .map_err(|e| {
                    failure(
                        exit::JOB_FAILED,
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
                written.insert(format.extension().into(), path.display().to_string().into());
                if !app.json {
                    outln!("{}", app.style.ok(&format!("Wrote {}", path.display())));
                }
            }
            if app.json {
                app.print_json(&serde_json::json!({"file": args.file.display().to_string(), "outputs": written}));
            }
        }
        None => {
            for format in formats {
                out!("{}", render::render(&transcript, format));
            }
        }
    }
    Ok(0)
}

struct Bar {
    bar: Option<ProgressBar>,
}

impl TranscribeObserver for Bar {
    fn on_progress(&mut self, done: f64, total: f64) {
        if let (Some(bar), true) = (&self.bar, total > 0.0) {
            bar.set_position((100.0 * done / total) as u64);
            bar.set_message(format!("{done:.0}/{total:.0} s"));
        }
    }
}

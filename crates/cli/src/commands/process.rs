//! `process`: ingest files, then (unless detached) work the queue until they are done.

use anyhow::Result;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipeline_core::config::Source;
use pipeline_core::render::OutputFormat;
use pipeline_core::{AudioStatus, JobError, JobStatus};
use pipeline_store::WebhookEndpoint;
use pipeline_worker::{
    check_speaker_count, expand_inputs, ingest_file, ProcessOptions, RunUntil, SpeakerCount, Worker,
};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::app::{exit, failure, store_failure, App};
use crate::commands::{diarizer_loader, engine_loader, worker_settings};
use crate::views::{self, Tally};

/// Options of `process`.
#[derive(Args, Debug)]
pub struct ProcessArgs {
    /// Audio files or folders of audio files.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub inputs: Vec<PathBuf>,
    /// Only enqueue: print how to follow each file and exit.
    #[arg(long)]
    pub detach: bool,
    /// Process again even when the same content was already transcribed with the same settings.
    #[arg(long)]
    pub force: bool,
    /// Where to write the outputs [default: <data_dir>/outputs/<audio_id>].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Output formats, comma-separated: txt, srt, vtt, json, tsv, rttm [default: processing.formats].
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Language code (e.g. en); detected when not given (multilingual models).
    #[arg(long)]
    pub language: Option<String>,
    /// transcribe, or translate to English (multilingual models only).
    #[arg(long, value_parser = ["transcribe", "translate"])]
    pub task: Option<String>,
    /// Add word-level timestamps.
    #[arg(long)]
    pub word_timestamps: bool,
    /// Beam width [default: model.beam_size].
    #[arg(long)]
    pub beam_size: Option<usize>,
    #[command(flatten)]
    pub decoding: super::ModeArgs,
    #[command(flatten)]
    pub diarization: DiarizeArgs,
    /// Jobs run at once by the in-process worker [default: processing.concurrency, or fewer when these files give fewer jobs].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also send this file's events to this URL (besides webhooks.urls).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Key that signs the events sent to --webhook-url [default: webhooks.secret].
    #[arg(long, value_name = "KEY", requires = "webhook_url")]
    pub webhook_secret: Option<String>,
    #[command(flatten)]
    pub remote: crate::RemoteArgs,
}

/// Who speaks when: the DIARIZATION job.
#[derive(Args, Debug, Clone, Default)]
pub struct DiarizeArgs {
    /// Also find who speaks when: a DIARIZATION job runs beside
    /// TRANSCRIPTION, every output names the speakers, and an .rttm file of
    /// the speaker turns is written unless --formats is given
    /// [default: diarization.enabled].
    #[arg(long)]
    pub diarize: bool,
    /// Do not diarize, even when diarization.enabled is set.
    #[arg(
        long,
        conflicts_with_all = ["diarize", "speakers", "min_speakers", "max_speakers"]
    )]
    pub no_diarize: bool,
    /// Exactly N speakers (1 to 64); implies --diarize [default:
    /// diarization.speakers, else the clustering decides].
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..=64),
        conflicts_with_all = ["min_speakers", "max_speakers"]
    )]
    pub speakers: Option<u32>,
    /// At least A speakers (1 to 64); implies --diarize.
    #[arg(long, value_name = "A", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub min_speakers: Option<u32>,
    /// At most B speakers (1 to 64); implies --diarize.
    #[arg(long, value_name = "B", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_speakers: Option<u32>,
}

impl DiarizeArgs {
    /// The speaker count the flags give (all `None` when none is given).
    pub fn count(&self) -> SpeakerCount {
        SpeakerCount {
            speakers: self.speakers,
            min_speakers: self.min_speakers,
            max_speakers: self.max_speakers,
        }
    }

    /// Checks the count (clap has checked each flag's range and the
    /// conflicts; this is the minimum against the maximum).
    pub fn check(&self) -> Result<()> {
        check_speaker_count(&self.count()).map_err(|e| {
            failure(
                exit::BAD_INPUT,
                format!("--speakers/--min-speakers/--max-speakers: {e}"),
            )
        })
    }

    /// Puts the flags over `options` (the configuration's): a speaker count
    /// implies --diarize and replaces the configured count whole.
    pub fn apply(&self, options: &mut ProcessOptions, formats_chosen: bool) {
        let count = self.count();
        let counted = count != SpeakerCount::default();
        let diarize = !self.no_diarize && (self.diarize || counted || options.diarize);
        let count = if counted {
            count
        } else {
            options.speaker_count()
        };
        options.set_diarization(diarize, count, formats_chosen);
    }
}

/// The outcome of one input, as `process --json` prints it.
struct FileOutcome {
    path: PathBuf,
    audio_id: Option<Uuid>,
    deduplicated: bool,
    error: Option<String>,
}

/// Jobs at once for this command's own files when nobody chose how many:
/// no more than they give work for, so that a lone short file gets one
/// replica of every core instead of a replica of one core beside an idle
/// one (0.60 of the time on two cores, BENCHMARKS.md). Files long enough
/// to be cut into chunks keep the default, whose replicas share the chunks.
fn lone_work_concurrency(app: &App, seconds: &[f64], options: &ProcessOptions) -> Option<usize> {
    let config = app.config();
    if app.loaded.source("processing.concurrency") != Source::Default {
        return None;
    }
    jobs_worth_a_replica(
        seconds,
        config.processing.chunk_seconds,
        jobs_side_by_side(options),
        config.processing.concurrency,
    )
}

/// How many of a file's jobs run side by side: those that wait for none.
fn jobs_side_by_side(options: &ProcessOptions) -> usize {
    options
        .job_types()
        .into_iter()
        .filter(|t| t.depends_on().is_empty())
        .count()
}

/// How many jobs files of `seconds`, each with `per_file` jobs that run
/// side by side, give at once, at most `default`; `None` when one of them
/// is cut into chunks.
fn jobs_worth_a_replica(
    seconds: &[f64],
    chunk_seconds: u64,
    per_file: usize,
    default: usize,
) -> Option<usize> {
    if seconds.is_empty()
        || seconds
            .iter()
            .any(|&d| pipeline_worker::is_cut_into_chunks(d, chunk_seconds))
    {
        return None;
    }
    Some((seconds.len() * per_file).clamp(1, default.max(1)))
}

/// `process`.
pub async fn run(app: &App, args: ProcessArgs) -> Result<u8> {
    if let Some(url) = &args.webhook_url {
        pipeline_webhooks::check_target(url, app.config().webhooks.allow_private_targets)
            .map_err(|e| failure(exit::BAD_INPUT, format!("--webhook-url {url:?}: {e}")))?;
    }
    args.diarization.check()?;
    if let Some(url) = &args.remote.api_url {
        let remote = crate::remote::Remote::new(url, args.remote.api_key.clone())?;
        return run_remote(app, &args, remote).await;
    }
    let config = app.config();
    let formats: Vec<OutputFormat> = if args.formats.is_empty() {
        config.processing.formats.clone()
    } else {
        args.formats
            .iter()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: pipeline_core::render::ParseFormatError| {
                failure(exit::BAD_INPUT, e.to_string())
            })?
    };
    let output_dir = args
        .output_dir
        .as_ref()
        .map(|dir| std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    let defaults = super::default_process_options(config);
    let mut options = ProcessOptions {
        language: args.language.clone().or(defaults.language.clone()),
        task: match &args.task {
            Some(task) => task
                .parse()
                .map_err(|e: String| failure(exit::BAD_INPUT, e))?,
            None => defaults.task,
        },
        beam_size: args.beam_size.unwrap_or(defaults.beam_size),
        word_timestamps: args.word_timestamps || defaults.word_timestamps,
        formats,
        output_dir,
        webhooks: args
            .webhook_url
            .iter()
            .map(|url| WebhookEndpoint {
                url: url.clone(),
                secret: args
                    .webhook_secret
                    .clone()
                    .or_else(|| config.webhooks.secret.as_deref().map(str::to_string)),
            })
            .collect(),
        ..defaults
    };
    args.decoding.apply(&mut options);
    args.diarization
        .apply(&mut options, !args.formats.is_empty());
    let store = app.store().await?;
    let storage = super::storage(config)?;
    let queue = super::queue(config, &store, &[])?;
    let inputs = expand_inputs(&args.inputs);
    if inputs.is_empty() {
        return Err(failure(
            exit::BAD_INPUT,
            format!(
                "no audio files found in {}",
                args.inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut outcomes = Vec::new();
    // Seconds of each file this command will transcribe, for how many
    // jobs at once are worth a replica.
    let mut to_work = Vec::new();
    let mut bad_input = false;
    let mut warned_fallback = false;
    for path in inputs {
        match ingest_file(
            &store,
            queue.as_ref(),
            &storage,
            &path,
            &options,
            config.processing.max_attempts,
            args.force,
        )
        .await
        {
            Ok(ingested) => {
                if let (Some(reason), false) = (&ingested.fell_back, warned_fallback) {
                    warned_fallback = true;
                    eprintln!(
                        "{}",
                        app.style.fail(&format!(
                            "Warning: broker unavailable ({reason}); jobs fell back to the embedded queue"
                        ))
                    );
                }
                if let Some(reason) = &ingested.rejected {
                    bad_input = true;
                    if !app.json {
                        eprintln!("{}", app.style.fail(&format!("Refused: {reason}")));
                        eprintln!(
                            "   Recorded as FAILED: pipeline-manager jobs {}",
                            ingested.audio.id
                        );
                    }
                } else if !app.json {
                    if ingested.deduplicated {
                        outln!(
                            "{}",
                            app.style.ok(&format!(
                                "Already processed with the same settings: {} (use --force to process again)",
                                ingested.audio.id
                            ))
                        );
                    } else {
                        outln!(
                            "{}",
                            app.style.ok(&format!(
                                "Successfully started processing: {}",
                                ingested.audio.id
                            ))
                        );
                    }
                    outln!(
                        "You can check status with: pipeline-manager check-status {}",
                        ingested.audio.id
                    );
                    outln!(
                        "You can monitor jobs with: pipeline-manager jobs {}",
                        ingested.audio.id
                    );
                }
                if !ingested.deduplicated && ingested.rejected.is_none() {
                    to_work.push(ingested.audio.duration_seconds);
                }
                outcomes.push(FileOutcome {
                    path,
                    audio_id: Some(ingested.audio.id),
                    deduplicated: ingested.deduplicated,
                    error: ingested.rejected,
                });
            }
            Err(e) => {
                if !e.is_bad_input() {
                    match e {
                        pipeline_worker::IngestError::Store(e) => return Err(store_failure(e)),
                        pipeline_worker::IngestError::Queue(e) => {
                            return Err(store_failure(e.into_store_error()))
                        }
                        _ => {}
                    }
                    return Err(failure(exit::JOB_FAILED, e.to_string()));
                }
                bad_input = true;
                if !app.json {
                    eprintln!("{}", app.style.fail(&e.to_string()));
                }
                outcomes.push(FileOutcome {
                    path,
                    audio_id: None,
                    deduplicated: false,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let ids: Vec<Uuid> = outcomes.iter().filter_map(|o| o.audio_id).collect();
    if !args.detach && !ids.is_empty() {
        let concurrency = args
            .concurrency
            .or_else(|| lone_work_concurrency(app, &to_work, &options));
        work_until_done(app, &store, &ids, concurrency).await?;
    }
    let mut any_failed = false;
    let mut files = Vec::new();
    for outcome in &outcomes {
        let status = match outcome.audio_id {
            Some(id) => Some(store.audio(id).await.map_err(store_failure)?.status),
            None => None,
        };
        if matches!(status, Some(AudioStatus::Failed | AudioStatus::Cancelled))
            && outcome.error.is_none()
        {
            any_failed = true;
        }
        // A FAILED file says why: its failed job's error, as `jobs` shows
        // it; a file refused before ingest has no job, so its reason.
        let error = match (outcome.audio_id, status) {
            (Some(id), Some(AudioStatus::Failed)) => {
                let jobs = store.jobs_for_audio(id).await.map_err(store_failure)?;
                views::file_error(&jobs).cloned()
            }
            _ => None,
        }
        .or_else(|| outcome.error.clone().map(JobError::permanent));
        files.push(json!({
            "path": outcome.path.display().to_string(),
            "audio_id": outcome.audio_id,
            "status": status.map(|s| s.as_str()),
            "deduplicated": outcome.deduplicated,
            "error": error.as_ref().map(views::error_json),
        }));
    }
    if app.json {
        app.print_json(&json!({"files": files}));
    } else if !args.detach {
        print_summary(app, &store, &outcomes).await?;
    }
    Ok(if bad_input {
        exit::BAD_INPUT
    } else if any_failed {
        exit::JOB_FAILED
    } else {
        0
    })
}

/// Runs an in-process worker until every file has ended, with a progress
/// bar per file on a terminal. Ctrl-C hands running jobs back.
async fn work_until_done(
    app: &App,
    store: &pipeline_store::Store,
    ids: &[Uuid],
    concurrency: Option<usize>,
) -> Result<()> {
    let config = app.config();
    let settings = worker_settings(config, concurrency);
    let loader = engine_loader(config, settings.concurrency);
    let diarizer = diarizer_loader(config, settings.concurrency);
    let mut worker = Worker::new(
        store.clone(),
        super::queue(config, store, &[])?,
        super::storage(config)?,
        settings,
        loader,
    )
    .with_diarizer(diarizer);
    if let Some(backend) = super::result_backend(config)? {
        worker = worker.with_result_backend(backend);
    }
    let worker = Arc::new(worker);
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shutdown.trigger();
        }
    });
    let show_bars = !app.json && std::io::stderr().is_terminal();
    let bars = show_bars.then(|| progress_bars(store, ids));
    let relay = super::webhooks::RunningRelay::start(config, store);
    let run = tokio::spawn(worker.clone().run(RunUntil::Finished(ids.to_vec())));
    if let Some(bars) = bars {
        let (multi, bars) = bars.await;
        while !run.is_finished() {
            for (id, bar) in &bars {
                if let Ok(jobs) = store.jobs_for_audio(*id).await {
                    let total: f64 = jobs.iter().map(|j| j.progress).sum();
                    let position = if jobs.is_empty() {
                        0.0
                    } else {
                        total / jobs.len() as f64
                    };
                    bar.set_position(position as u64);
                    let running = jobs
                        .iter()
                        .find(|j| matches!(j.status, JobStatus::Running | JobStatus::Retrying));
                    let tally = Tally::of(&jobs);
                    bar.set_message(match running {
                        Some(job) => format!("{} {}", job.job_type, job.status),
                        None => format!("{}/{} jobs done", tally.completed, tally.total),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for (_, bar) in &bars {
            bar.finish_and_clear();
        }
        let _ = multi.clear();
    }
    let outcome = run.await;
    // The last events (job.completed, audio.completed) go out before exit.
    relay
        .finish(Duration::from_secs(config.webhooks.timeout_secs + 5))
        .await;
    outcome
        .map_err(|e| failure(exit::JOB_FAILED, format!("worker stopped: {e}")))?
        .map_err(store_failure)?;
    Ok(())
}

async fn progress_bars(
    store: &pipeline_store::Store,
    ids: &[Uuid],
) -> (MultiProgress, Vec<(Uuid, ProgressBar)>) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:20!} [{bar:30}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars = Vec::new();
    for id in ids {
        let name = store
            .audio(*id)
            .await
            .map(|a| a.original_name)
            .unwrap_or_else(|_| id.to_string());
        let bar = multi.add(ProgressBar::new(100));
        bar.set_style(style.clone());
        bar.set_prefix(name);
        bars.push((*id, bar));
    }
    (multi, bars)
}

async fn print_summary(
    app: &App,
    store: &pipeline_store::Store,
    outcomes: &[FileOutcome],
) -> Result<()> {
    for outcome in outcomes {
        let Some(id) = outcome.audio_id else { continue };
        if outcome.error.is_some() {
            continue;
        }
        let audio = store.audio(id).await.map_err(store_failure)?;
        let jobs = store.jobs_for_audio(id).await.map_err(store_failure)?;
        outln!();
        let line = format!("{} - {} ({id})", audio.original_name, audio.status);
        match audio.status {
            AudioStatus::Completed => outln!("{}", app.style.ok(&line)),
            _ => outln!("{}", app.style.fail(&line)),
        }
        for job in &jobs {
            if let Some(error) = &job.error {
                outln!("   {} error: {}", job.job_type, error.message);
            }
        }
        if let Some(results) = store.results(id).await.map_err(store_failure)? {
            outln!(
                "   {} words, {:.1} s of speech, {:.0} words per minute",
                results.words,
                results.speech_seconds,
                results.words_per_minute
            );
            for (format, path) in &results.outputs {
                outln!("   {format}: {path}");
            }
        }
    }
    Ok(())
}

/// `process --api-url URL`: each file is uploaded to that server and, unless
/// `--detach`, followed there until its jobs end.
async fn run_remote(app: &App, args: &ProcessArgs, remote: crate::remote::Remote) -> Result<u8> {
    if args.output_dir.is_some() || args.word_timestamps || args.beam_size.is_some() {
        return Err(failure(
            exit::BAD_INPUT,
            "--output-dir, --word-timestamps and --beam-size are the server's settings with --api-url",
        ));
    }
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(language) = &args.language {
        fields.push(("language", language.clone()));
    }
    if let Some(task) = &args.task {
        fields.push(("task", task.clone()));
    }
    if let Some(prompt) = &args.decoding.prompt {
        fields.push(("initial_prompt", prompt.clone()));
    }
    if let Some(hotwords) = &args.decoding.hotwords {
        fields.push(("hotwords", hotwords.clone()));
    }
    if let Some(channel) = &args.decoding.channel {
        fields.push(("channel", channel.clone()));
    }
    if let Some(track) = args.decoding.audio_track {
        fields.push(("audio_track", track.to_string()));
    }
    if let Some(mode) = &args.decoding.mode {
        fields.push(("mode", mode.clone()));
    }
    if let Some(batch) = args.decoding.batch_size {
        fields.push(("batch_size", batch.to_string()));
    }
    if !args.formats.is_empty() {
        fields.push(("formats", args.formats.join(",")));
    }
    if let Some(url) = &args.webhook_url {
        fields.push(("webhook_url", url.clone()));
    }
    if let Some(secret) = &args.webhook_secret {
        fields.push(("webhook_secret", secret.clone()));
    }
    // The server applies its own diarization.enabled unless told.
    let d = &args.diarization;
    if d.diarize {
        fields.push(("diarize", "true".to_string()));
    }
    if d.no_diarize {
        fields.push(("diarize", "false".to_string()));
    }
    for (name, value) in [
        ("speakers", d.speakers),
        ("min_speakers", d.min_speakers),
        ("max_speakers", d.max_speakers),
    ] {
        if let Some(n) = value {
            fields.push((name, n.to_string()));
        }
    }
    // A folder with no audio in it is left out here (the server would
    // only be sent nothing).
    let inputs: Vec<PathBuf> = expand_inputs(&args.inputs)
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect();
    if inputs.is_empty() {
        return Err(failure(exit::BAD_INPUT, "no audio files found"));
    }
    let mut ids = Vec::new();
    let mut outcomes = Vec::new();
    let mut bad_input = false;
    for path in inputs {
        let client = remote.clone();
        let upload = {
            let (path, fields) = (path.clone(), fields.clone());
            tokio::task::spawn_blocking(move || client.upload(&path, &fields)).await?
        };
        match upload {
            Ok(doc) => {
                let id = doc["id"].as_str().and_then(|id| Uuid::parse_str(id).ok());
                let Some(id) = id else {
                    return Err(failure(
                        exit::JOB_FAILED,
                        "the server's answer has no file id",
                    ));
                };
                if !app.json {
                    outln!(
                        "{}",
                        app.style
                            .ok(&format!("Successfully started processing: {id}"))
                    );
                    outln!("You can monitor jobs with: pipeline-manager jobs {id} --follow --api-url {}", args.remote.api_url.as_deref().unwrap_or(""));
                }
                ids.push(id);
                outcomes.push(json!({"input": path, "audio_id": id}));
            }
            Err(e) => {
                // A refused file is reported and the others still go.
                let code = e.downcast_ref::<crate::app::Failure>().map(|f| f.code);
                if code != Some(exit::BAD_INPUT) {
                    return Err(e);
                }
                bad_input = true;
                if !app.json {
                    eprintln!("{}", app.style.fail(&format!("{e}")));
                }
                let error = JobError::permanent(e.to_string());
                outcomes.push(json!({"input": path, "error": views::error_json(&error)}));
            }
        }
    }
    let mut failed = false;
    if !args.detach {
        for (id, outcome) in ids
            .iter()
            .zip(outcomes.iter_mut().filter(|o| o.get("audio_id").is_some()))
        {
            let code =
                super::inspect::follow_remote(app, *id, true, remote.clone(), !app.json).await?;
            failed |= code != 0;
            outcome["status"] = json!(if code == 0 { "COMPLETED" } else { "FAILED" });
            if code != 0 {
                let client = remote.clone();
                let id = *id;
                let (jobs, _) = tokio::task::spawn_blocking(move || client.jobs(id)).await??;
                outcome["error"] = json!(views::file_error(&jobs).map(views::error_json));
            }
        }
    }
    if app.json {
        app.print_json(&json!({"files": outcomes}));
    }
    Ok(if failed {
        exit::JOB_FAILED
    } else if bad_input {
        exit::BAD_INPUT
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::{jobs_side_by_side, jobs_worth_a_replica, ProcessOptions};

    #[test]
    fn a_lone_short_file_gets_one_replica_and_chunked_files_the_default() {
        assert_eq!(jobs_worth_a_replica(&[42.0], 300, 1, 2), Some(1));
        assert_eq!(jobs_worth_a_replica(&[42.0], 300, 2, 2), Some(2));
        assert_eq!(jobs_worth_a_replica(&[42.0, 10.0, 5.0], 300, 1, 2), Some(2));
        assert_eq!(jobs_worth_a_replica(&[42.0, 3600.0], 300, 1, 2), None);
        assert_eq!(
            jobs_worth_a_replica(&[3600.0], 0, 1, 4),
            Some(1),
            "never cut"
        );
        assert_eq!(jobs_worth_a_replica(&[], 300, 1, 2), None);
    }

    #[test]
    fn a_diarized_file_runs_two_jobs_side_by_side() {
        let mut options = ProcessOptions::default();
        assert_eq!(jobs_side_by_side(&options), 1);
        options.diarize = true;
        assert_eq!(jobs_side_by_side(&options), 2);
    }
}

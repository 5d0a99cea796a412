//! Commands that read or nudge tracked files: check-status, jobs,
//! list-recent, transcript, retry, cancel.

use anyhow::Result;
use pipeline_core::render::{self, OutputFormat};
use pipeline_core::{AudioStatus, JobStatus};
use pipeline_store::{Store, StoreError};
use serde_json::json;
use std::io::IsTerminal;
use std::time::Duration;
use uuid::Uuid;

use crate::app::{exit, failure, parse_id, store_failure, App};
use crate::remote::Remote;
use crate::style::seed_time;
use crate::views;

/// `check-status ID`.
pub async fn check_status(app: &App, id: &str) -> Result<u8> {
    let id = parse_id(id)?;
    let store = app.store().await?;
    let audio = store.audio(id).await.map_err(store_failure)?;
    let jobs = store.jobs_for_audio(id).await.map_err(store_failure)?;
    let results = store.results(id).await.map_err(store_failure)?;
    let chunks = chunk_counts(&store, &jobs).await?;
    if app.json {
        let mut doc = views::audio_json(&audio, &jobs);
        doc["jobs"] = jobs
            .iter()
            .map(|j| views::job_json_with(j, &chunks))
            .collect();
        doc["outputs"] = json!(results
            .as_ref()
            .map(|r| r.outputs.clone())
            .unwrap_or_default());
        doc["stats"] = match &results {
            Some(r) => {
                json!({"words": r.words, "speech_seconds": r.speech_seconds, "words_per_minute": r.words_per_minute})
            }
            None => serde_json::Value::Null,
        };
        app.print_json(&doc);
    } else {
        out!(
            "{}",
            views::status_text(&app.style, &audio, &jobs, &chunks, results.as_ref())
        );
    }
    Ok(0)
}

/// `jobs ID [--follow] [--events]`.
pub async fn jobs(app: &App, id: &str, follow: bool, events: bool) -> Result<u8> {
    let id = parse_id(id)?;
    let store = app.store().await?;
    store.audio(id).await.map_err(store_failure)?;
    let redraw = follow && !app.json && std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let jobs = store.jobs_for_audio(id).await.map_err(store_failure)?;
        let finished = jobs.iter().all(|j| j.status.is_final());
        if !follow || finished || !app.json {
            let chunks = chunk_counts(&store, &jobs).await?;
            let text = if app.json {
                let mut doc = views::jobs_json(id, &jobs, &chunks);
                if events {
                    let mut all = Vec::new();
                    for job in &jobs {
                        for event in store.events_for_job(job.id).await.map_err(store_failure)? {
                            all.push(views::event_json(&event));
                        }
                    }
                    doc["events"] = serde_json::Value::Array(all);
                }
                serde_json::to_string_pretty(&doc)?
            } else {
                let mut text = views::jobs_text(&app.style, id, &jobs, &chunks);
                if events {
                    text.push_str(&events_text(&store, &jobs).await?);
                }
                text
            };
            draw(app, text, &mut last, redraw)?;
        }
        if !follow {
            return Ok(0);
        }
        if finished {
            // Following is waiting for an outcome, so the outcome is the
            // exit code, as with `process`.
            return Ok(outcome_code(&jobs));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The chunk counts of a file's chunked jobs.
async fn chunk_counts(
    store: &Store,
    jobs: &[pipeline_core::ProcessingJob],
) -> Result<views::Chunks> {
    let ids: Vec<Uuid> = jobs
        .iter()
        .filter(|j| j.job_type == pipeline_core::JobType::Transcription)
        .map(|j| j.id)
        .collect();
    store.chunk_counts(&ids).await.map_err(store_failure)
}

/// Prints `text` unless it is what was printed last.
fn draw(app: &App, text: String, last: &mut String, redraw: bool) -> Result<()> {
    if text == *last {
        return Ok(());
    }
    if redraw {
        // Clear the screen and home the cursor, then draw anew.
        out!("\x1b[2J\x1b[H");
    } else if !last.is_empty() {
        outln!();
    }
    out!("{text}");
    if app.json {
        outln!();
    }
    crate::out::flush();
    *last = text;
    Ok(())
}

/// The exit code of a followed file: 1 if a job failed.
fn outcome_code(jobs: &[pipeline_core::ProcessingJob]) -> u8 {
    if jobs.iter().any(|j| j.status == JobStatus::Failed) {
        exit::JOB_FAILED
    } else {
        0
    }
}

/// `jobs ID [--follow] --api-url URL`: the same view, from a remote server,
/// redrawn as its event stream reports changes.
pub async fn remote_jobs(app: &App, id: &str, follow: bool, remote: Remote) -> Result<u8> {
    follow_remote(app, parse_id(id)?, follow, remote, true).await
}

/// Follows a file on a remote server until its jobs end (printing them
/// as they change when `print`); the exit code of its outcome.
pub async fn follow_remote(
    app: &App,
    id: Uuid,
    follow: bool,
    remote: Remote,
    print: bool,
) -> Result<u8> {
    let (changed, mut news) = tokio::sync::mpsc::unbounded_channel();
    if follow {
        remote.watch(id, changed);
    }
    let redraw = follow && !app.json && std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let client = remote.clone();
        let (jobs, chunks) = tokio::task::spawn_blocking(move || client.jobs(id)).await??;
        let finished = jobs.iter().all(|j| j.status.is_final());
        if print && (!follow || finished || !app.json) {
            let text = if app.json {
                serde_json::to_string_pretty(&views::jobs_json(id, &jobs, &chunks))?
            } else {
                views::jobs_text(&app.style, id, &jobs, &chunks)
            };
            draw(app, text, &mut last, redraw)?;
        }
        if !follow {
            return Ok(0);
        }
        if finished {
            return Ok(outcome_code(&jobs));
        }
        // Redraw on news, and every 2 s anyway: a dropped stream is no
        // reason to stop following.
        let heard = tokio::time::timeout(Duration::from_secs(2), news.recv()).await;
        if let Ok(None) = heard {
            // The stream ended: keep looking, at a calmer pace.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        while news.try_recv().is_ok() {}
    }
}

async fn events_text(store: &Store, jobs: &[pipeline_core::ProcessingJob]) -> Result<String> {
    let mut out = String::from("\n=== Audit Trail ===\n");
    for job in jobs {
        for event in store.events_for_job(job.id).await.map_err(store_failure)? {
            out.push_str(&format!(
                "{} {} {} -> {} (attempt {}{}) {}\n",
                seed_time(event.at),
                job.job_type,
                event.from_status.map_or("-".to_string(), |s| s.to_string()),
                event.to_status,
                event.attempt,
                event
                    .worker
                    .as_deref()
                    .map(|w| format!(", {w}"))
                    .unwrap_or_default(),
                event.message
            ));
        }
    }
    Ok(out)
}

/// `list-recent [--limit N] [--status S]`.
pub async fn list_recent(app: &App, limit: u32, status: Option<&str>) -> Result<u8> {
    let status = status
        .map(|s| s.parse::<AudioStatus>())
        .transpose()
        .map_err(|e| failure(exit::BAD_INPUT, e.to_string()))?;
    let store = app.store().await?;
    let files = store
        .list_recent(limit, status)
        .await
        .map_err(store_failure)?;
    if app.json {
        let mut rows = Vec::with_capacity(files.len());
        for audio in &files {
            // Only a FAILED file's jobs are asked for: they say why.
            let jobs = match audio.status {
                AudioStatus::Failed => store
                    .jobs_for_audio(audio.id)
                    .await
                    .map_err(store_failure)?,
                _ => Vec::new(),
            };
            rows.push(views::audio_json(audio, &jobs));
        }
        app.print_json(&json!({ "files": rows }));
        return Ok(0);
    }
    if files.is_empty() {
        outln!("No files processed yet.");
        return Ok(0);
    }
    outln!("=== Recent Files ===");
    for audio in &files {
        let line = format!(
            "{}  {:<10}  {}  {:>7.1} s  {}",
            audio.id,
            audio.status,
            seed_time(audio.created_at),
            audio.duration_seconds,
            audio.original_name
        );
        let status = match audio.status {
            AudioStatus::Completed => JobStatus::Completed,
            AudioStatus::Failed | AudioStatus::Cancelled => JobStatus::Failed,
            _ => JobStatus::Running,
        };
        outln!("{}", app.style.job(status, &line));
    }
    Ok(0)
}

/// `transcript ID --format F`.
pub async fn transcript(app: &App, id: &str, format: &str) -> Result<u8> {
    let id = parse_id(id)?;
    let format: OutputFormat = format
        .parse()
        .map_err(|e: render::ParseFormatError| failure(exit::BAD_INPUT, e.to_string()))?;
    let store = app.store().await?;
    let audio = store.audio(id).await.map_err(store_failure)?;
    let Some(transcript) = store.transcript(id).await.map_err(store_failure)? else {
        return Err(failure(
            exit::JOB_FAILED,
            format!(
                "{} ({}) has no transcript yet: its status is {}; see `pipeline-manager jobs {id}`",
                id, audio.original_name, audio.status
            ),
        ));
    };
    let text = match format {
        OutputFormat::Rttm => {
            // The turns as the diarization found them, when it ran.
            let recording = std::path::Path::new(&audio.original_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match store.diarization(id).await.map_err(store_failure)? {
                Some(d) => render::render_turns_rttm(&d.turns, &recording),
                None => render::render_rttm(&transcript, &recording),
            }
        }
        _ => render::render(&transcript, format),
    };
    if app.json && format != OutputFormat::Json {
        app.print_json(&json!({"audio_id": id, "format": format.extension(), "content": text}));
    } else {
        out!("{text}");
    }
    Ok(0)
}

/// Finds the file an id names: an audio id, or the id of one of its jobs.
async fn resolve(store: &Store, id: Uuid) -> Result<(Uuid, Option<Uuid>)> {
    match store.audio(id).await {
        Ok(audio) => Ok((audio.id, None)),
        Err(StoreError::NotFound { .. }) => match store.job(id).await {
            Ok(job) => Ok((job.audio_id, Some(job.id))),
            Err(StoreError::NotFound { .. }) => Err(failure(
                exit::BAD_INPUT,
                format!("no audio file or job with id {id}"),
            )),
            Err(e) => Err(store_failure(e)),
        },
        Err(e) => Err(store_failure(e)),
    }
}

/// `retry ID`.
pub async fn retry(app: &App, id: &str) -> Result<u8> {
    let id = parse_id(id)?;
    let store = app.store().await?;
    let (audio_id, job) = resolve(&store, id).await?;
    let changed = store.retry(audio_id, job).await.map_err(store_failure)?;
    // Jobs carried by a broker need their message again.
    let queue = super::queue(app.config(), &store, &[])?;
    let dispatched = queue
        .dispatch(&changed)
        .await
        .map_err(|e| store_failure(e.into_store_error()))?;
    if let Some(reason) = dispatched.fell_back {
        eprintln!(
            "{}",
            app.style.fail(&format!(
                "Warning: broker unavailable ({reason}); jobs fell back to the embedded queue"
            ))
        );
    }
    report_changes(
        app,
        audio_id,
        &changed,
        "retried",
        "Nothing to retry: no job failed or was cancelled",
    )
}

/// `cancel ID`.
pub async fn cancel(app: &App, id: &str) -> Result<u8> {
    let id = parse_id(id)?;
    let store = app.store().await?;
    let (audio_id, job) = resolve(&store, id).await?;
    let changed = store.cancel(audio_id, job).await.map_err(store_failure)?;
    report_changes(
        app,
        audio_id,
        &changed,
        "cancelled",
        "Nothing to cancel: every job has ended",
    )
}

fn report_changes(
    app: &App,
    audio_id: Uuid,
    changed: &[pipeline_core::ProcessingJob],
    verb: &str,
    nothing: &str,
) -> Result<u8> {
    if app.json {
        app.print_json(&json!({
            "audio_id": audio_id,
            "jobs": changed.iter().map(views::job_json).collect::<Vec<_>>(),
        }));
        return Ok(0);
    }
    if changed.is_empty() {
        outln!("{nothing}.");
        return Ok(0);
    }
    for job in changed {
        let what = if job.status == JobStatus::Running && job.cancel_requested {
            format!(
                "{} {}: cancel requested; it stops at its next progress point",
                job.job_type, job.id
            )
        } else {
            format!("{} {} {verb}: now {}", job.job_type, job.id, job.status)
        };
        outln!("{}", app.style.ok(&what));
    }
    outln!("You can monitor jobs with: pipeline-manager jobs {audio_id}");
    Ok(0)
}

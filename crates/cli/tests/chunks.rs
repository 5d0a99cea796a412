//! One long file over several workers: its TRANSCRIPTION cut into chunks
//! that two `pipeline-manager worker` processes take from PostgreSQL and a
//! Celery broker, one of them killed with SIGKILL mid-file. The real model
//! on six minutes of speech that never repeats.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Chunked and unchunked transcripts of the same audio may differ by this
/// much WER at most (the cuts fall in pauses, so few words change).
const WER_MARGIN: f64 = 0.02;

/// The messages of a job's audit trail.
fn trail_of(sb: &Sandbox, id: &str, job_id: &Value) -> Vec<String> {
    let events = sb.json(&["jobs", id, "--events"]);
    events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["job_id"] == *job_id)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `chunk 3 of 7 (...) taken by W (attempt N...)` as (index, worker).
fn taken(message: &str) -> Option<(u32, String)> {
    let rest = message.strip_prefix("chunk ")?;
    let (index, rest) = rest.split_once(" of ")?;
    let (_, rest) = rest.split_once(" taken by ")?;
    let (worker, _) = rest.split_once(" (attempt")?;
    Some((index.parse().ok()?, worker.to_string()))
}

/// `chunk 3 of 7 (...) done by W in ...` as (index, worker).
fn done(message: &str) -> Option<(u32, String)> {
    let rest = message.strip_prefix("chunk ")?;
    let (index, rest) = rest.split_once(" of ")?;
    let (_, rest) = rest.split_once(" done by ")?;
    let (worker, _) = rest.split_once(" in ")?;
    Some((index.parse().ok()?, worker.to_string()))
}

#[test]
fn redis_a_long_file_in_chunks_survives_a_killed_worker() {
    long_file_in_chunks_survives_a_killed_worker("redis://127.0.0.1:6379/14");
}

#[test]
fn amqp_a_long_file_in_chunks_survives_a_killed_worker() {
    long_file_in_chunks_survives_a_killed_worker("amqp://guest:guest@127.0.0.1:5672/%2f");
}

/// Two workers on PostgreSQL and `broker` share a file cut into chunks;
/// the one holding the job is killed with SIGKILL mid-file. The file
/// completes once, every chunk is finished once, only the dead worker's
/// chunk runs twice, and the merged transcript is as good as one piece's.
fn long_file_in_chunks_survives_a_killed_worker(broker: &str) {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let audio = long_fixture("licence-6min.wav");
    let reference = std::fs::read_to_string(long_fixture("licence-6min.txt")).expect("reference");
    let queue = format!("q-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sb = sb
        .env("PIPELINE_DATABASE_URL", &postgres_url())
        .env("PIPELINE_BROKER_URL", broker)
        .env("PIPELINE_BROKER_QUEUE", &queue)
        .env("PIPELINE_PROCESSING_CHUNK_SECONDS", "60")
        .env("PIPELINE_PROCESSING_LEASE_SECS", "4")
        .env("PIPELINE_PROCESSING_HEARTBEAT_SECS", "1")
        .env("PIPELINE_BROKER_VISIBILITY_TIMEOUT_SECS", "6")
        .env("PIPELINE_MODEL_THREADS", "1");

    // The whole file in one piece, for comparison.
    let whole = sb.run(&["transcribe", path(&audio)]);
    whole.expect_code(0);
    let whole_wer = pipeline_core::wer::word_error_rate(&reference, &whole.stdout);

    let id = detach(&sb, &[&audio]).remove(0);
    let first = sb.spawn_worker("first");
    let second = sb.spawn_worker("second");
    // Mid-file: some chunks done, most not.
    let (holder, total) = wait_for(
        Duration::from_secs(240),
        Duration::from_millis(200),
        "a chunk done",
        || {
            let job = sb.job(&id, "TRANSCRIPTION");
            let total = job["chunks_total"].as_u64().unwrap_or(0);
            let finished = job["chunks_done"].as_u64().unwrap_or(0);
            assert!(
                total == 0 || finished < total,
                "finished before the kill: {job:#}\n{}",
                first.log()
            );
            (finished >= 1).then(|| (job["worker"].as_str().unwrap_or("").to_string(), total))
        },
    );
    assert!(total >= 5, "six minutes in chunks of about 60 s: {total}");
    // Kill the worker that holds the job (the one that merges): worker
    // ids are `host:pid:random`.
    let holder_pid = holder.split(':').nth(1).unwrap_or_default().to_string();
    let (mut victim, survivor) = if holder_pid == second.child.id().to_string() {
        (second, first)
    } else {
        (first, second)
    };
    victim.signal(libc::SIGKILL);
    victim
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the worker");
    let doc = wait_final(&sb, &id, Duration::from_secs(600), &survivor);

    let transcription = find_job(&doc, "TRANSCRIPTION");
    assert_eq!(transcription["chunks_total"], total, "{transcription:#}");
    assert_eq!(transcription["chunks_done"], total, "{transcription:#}");
    let events = sb.json(&["jobs", &id, "--events"]);
    let completions = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["job_id"] == transcription["id"]
                && e["to_status"] == "COMPLETED"
                && e["from_status"] != "COMPLETED"
        })
        .count();
    assert_eq!(completions, 1, "COMPLETED once: {events:#}");

    let trail = trail_of(&sb, &id, &transcription["id"]);
    let mut runs: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut finished: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for message in &trail {
        if let Some((index, worker)) = taken(message) {
            runs.entry(index).or_default().push(worker);
        }
        if let Some((index, worker)) = done(message) {
            finished.entry(index).or_default().push(worker);
        }
    }
    let trail_text = trail.join("\n");
    eprintln!("{trail_text}");
    for index in 1..=total as u32 {
        let done_by = finished.get(&index).cloned().unwrap_or_default();
        assert_eq!(
            done_by.len(),
            1,
            "chunk {index} finished once:\n{trail_text}"
        );
        // Taken again only when its worker was lost with it.
        for n in 1..runs[&index].len() {
            assert!(
                trail
                    .iter()
                    .any(|m| m.starts_with(&format!("chunk {index} of "))
                        && m.contains(&format!("(attempt {}, after ", n + 1))
                        && m.ends_with("was lost with it)")),
                "chunk {index} run again without a lost worker:\n{trail_text}"
            );
        }
    }
    let workers: BTreeSet<&String> = runs.values().flatten().collect();
    assert!(
        workers.len() >= 2,
        "both workers took chunks:\n{trail_text}"
    );
    let lost = trail
        .iter()
        .filter(|m| m.ends_with("was lost with it)"))
        .count();
    assert!(
        lost >= 1,
        "the killed worker's chunk was taken again:\n{trail_text}"
    );

    let txt = doc["outputs"]["txt"].as_str().expect("txt output");
    let merged = std::fs::read_to_string(txt).expect("transcript");
    let merged_wer = pipeline_core::wer::word_error_rate(&reference, &merged);
    eprintln!("WER chunked {merged_wer:.3}, whole {whole_wer:.3}");
    assert!(
        merged_wer <= whole_wer + WER_MARGIN,
        "chunked WER {merged_wer:.3} against {whole_wer:.3} unchunked"
    );
    // The merged segments are in time order.
    let srt = std::fs::read_to_string(doc["outputs"]["srt"].as_str().expect("srt")).unwrap();
    assert!(check_srt(&srt) > 20, "{srt}");

    // A server on the same database shows the same counts, and so does the
    // CLI of another machine that asks it.
    let (_, key) = common::server::new_key(&sb);
    let server = common::server::start(&sb, &["--workers", "0"]);
    let (status, jobs) = server.get(&format!("/api/v1/audio/{id}/jobs"), Some(&key));
    assert_eq!(status, 200, "{jobs:#}");
    let served = find_job(&jobs, "TRANSCRIPTION");
    assert_eq!(served["chunks_total"], total, "{served:#}");
    assert_eq!(served["chunks_done"], total, "{served:#}");
    assert_eq!(find_job(&jobs, "PROCESSING")["chunks_total"], 0, "{jobs:#}");
    let remote = Sandbox::new().json(&[
        "--json",
        "jobs",
        &id,
        "--api-url",
        &server.base,
        "--api-key",
        &key,
    ]);
    let shown = find_job(&remote, "TRANSCRIPTION");
    assert_eq!(shown["chunks_total"], total, "{remote:#}");
    assert_eq!(shown["chunks_done"], total, "{remote:#}");
}

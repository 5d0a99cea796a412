//! The queue seen from outside: `process --detach`, a separate `worker`
//! process, cancel/retry, signals, timeouts, retries and expired leases.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn detached_files_are_queued_then_done_by_a_separate_worker() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let wav = fixture("speech.wav");
    let flac = fixture("speech.flac");
    let ids = detach(&sb, &[wav, flac]);
    assert_ne!(ids[0], ids[1]);

    for id in &ids {
        let jobs = sb.jobs(id);
        assert_eq!(jobs["total_jobs"], 2, "{jobs:#}");
        assert_eq!(jobs["completed"], 0, "{jobs:#}");
        assert_eq!(jobs["progress_percent"].as_f64(), Some(0.0), "{jobs:#}");
        let transcription = find_job(&jobs, "TRANSCRIPTION");
        let processing = find_job(&jobs, "PROCESSING");
        assert_eq!(status_of(&transcription), "QUEUED", "{jobs:#}");
        assert_eq!(status_of(&processing), "PENDING", "{jobs:#}");
        for job in [&transcription, &processing] {
            assert_eq!(job["attempt"], 0, "{job:#}");
            assert!(
                job["started_at"].is_null() && job["worker"].is_null(),
                "{job:#}"
            );
        }
        assert_eq!(sb.check_status(id)["status"], "QUEUED");
    }

    let mut worker = sb.spawn_worker("worker");
    let started = Instant::now();
    for id in &ids {
        wait_final(&sb, id, Duration::from_secs(180), &worker);
    }
    eprintln!(
        "worker finished two files in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    worker.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("worker still running 20 s after SIGTERM:\n{}", worker.log()));
    eprintln!(
        "idle worker stopped {:.2} s after SIGTERM",
        stopped.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "worker exit status {status}:\n{}",
        worker.log()
    );

    for id in &ids {
        let jobs = sb.jobs(id);
        assert_eq!(jobs["completed"], 2, "{jobs:#}");
        for job in jobs["jobs"].as_array().expect("jobs") {
            assert_eq!(status_of(job), "COMPLETED", "{job:#}");
            assert_eq!(job["attempt"], 1, "{job:#}");
        }
        let txt = sb.run(&["transcript", id, "--format", "txt"]);
        txt.expect_code(0);
        let wer = speech_wer(&txt.stdout);
        assert!(wer < WER_BOUND, "WER {wer:.3}:\n{txt}");
    }
}

#[test]
fn cancel_then_retry_requeues_with_fresh_attempts() {
    let sb = Sandbox::new();
    let wav = fixture("speech.wav");
    let id = detach(&sb, &[wav]).remove(0);

    let out = sb.run(&["cancel", &id]);
    out.expect_code(0);
    let jobs = sb.jobs(&id);
    for job in jobs["jobs"].as_array().expect("jobs") {
        assert_eq!(status_of(job), "CANCELLED", "{jobs:#}");
        assert!(job["completed_at"].is_string(), "{job:#}");
    }
    assert_eq!(jobs["completed"], 0, "{jobs:#}");
    assert_eq!(sb.check_status(&id)["status"], "CANCELLED");
    // Nothing left to cancel: says so, and is not an error.
    sb.run(&["cancel", &id]).expect_code(0);

    let out = sb.run(&["retry", &id]);
    out.expect_code(0);
    let jobs = sb.jobs(&id);
    let transcription = find_job(&jobs, "TRANSCRIPTION");
    let processing = find_job(&jobs, "PROCESSING");
    assert_eq!(status_of(&transcription), "QUEUED", "{jobs:#}");
    assert_eq!(status_of(&processing), "PENDING", "{jobs:#}");
    for job in [&transcription, &processing] {
        assert_eq!(job["attempt"], 0, "{job:#}");
        assert!(
            job["error"].is_null() && job["completed_at"].is_null(),
            "{job:#}"
        );
    }
    assert_eq!(sb.check_status(&id)["status"], "QUEUED");

    // An unknown or malformed id is bad input, and says which id.
    let unknown = "123e4567-e89b-12d3-a456-426614174000";
    for args in [
        ["retry", unknown],
        ["cancel", unknown],
        ["jobs", unknown],
        ["check-status", unknown],
        ["jobs", "not-an-id"],
    ] {
        let out = sb.run(&args);
        out.expect_code(2);
        assert!(out.stderr.contains(args[1]), "{out}");
    }
}

#[test]
fn sigterm_hands_a_running_job_back_and_another_worker_finishes_it() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let long = long_fixture("long-1min.wav");
    let id = detach(&sb, &[long]).remove(0);

    let mut first = sb.spawn_worker("first");
    wait_running(&sb, &id, &first);
    first.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = first
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("worker still running 20 s after SIGTERM:\n{}", first.log()));
    eprintln!(
        "busy worker stopped {:.2} s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        first.log()
    );

    let jobs = sb.jobs(&id);
    let transcription = find_job(&jobs, "TRANSCRIPTION");
    assert_eq!(
        status_of(&transcription),
        "QUEUED",
        "{jobs:#}\nworker log:\n{}",
        first.log()
    );
    assert_eq!(
        transcription["attempt"], 0,
        "a handed-back run must not use up an attempt: {jobs:#}"
    );
    assert!(transcription["worker"].is_null(), "{jobs:#}");
    assert_eq!(
        status_of(&find_job(&jobs, "PROCESSING")),
        "PENDING",
        "{jobs:#}"
    );
    let trail = audit_trail(&sb, &id);
    assert!(
        trail
            .lines()
            .any(|l| l.contains("TRANSCRIPTION RUNNING -> QUEUED") && l.contains("handed back")),
        "no hand-back event in the audit trail:\n{trail}"
    );

    let second = sb.spawn_worker("second");
    let started = Instant::now();
    let doc = wait_final(&sb, &id, Duration::from_secs(300), &second);
    eprintln!(
        "second worker finished long-1min.wav in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let transcription = find_job(&doc, "TRANSCRIPTION");
    assert_eq!(transcription["attempt"], 1, "{doc:#}");
    assert_eq!(
        status_of(&find_job(&doc, "PROCESSING")),
        "COMPLETED",
        "{doc:#}"
    );
}

#[test]
fn a_job_over_its_timeout_is_retried_then_fails() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let sb = sb
        .env("PIPELINE_PROCESSING_JOB_TIMEOUT_SECS", "1")
        .env("PIPELINE_PROCESSING_MAX_ATTEMPTS", "2")
        .env("PIPELINE_PROCESSING_RETRY_BASE_SECS", "0.1")
        .env("PIPELINE_PROCESSING_RETRY_MAX_SECS", "0.2");
    let long = long_fixture("long-1min.wav");

    let out = sb.run(&["process", path(&long)]);
    eprintln!("process with a 1 s timeout took {:.1} s", out.seconds);
    out.expect_code(1);
    let id = id_after(&out.stdout, "Successfully started processing: ");
    assert!(
        out.stdout.contains("timed out"),
        "the summary does not say why:\n{out}"
    );

    let jobs = sb.jobs(&id);
    let transcription = find_job(&jobs, "TRANSCRIPTION");
    assert_eq!(status_of(&transcription), "FAILED", "{jobs:#}");
    assert_eq!(transcription["attempt"], 2, "{jobs:#}");
    assert_eq!(transcription["max_attempts"], 2, "{jobs:#}");
    let message = transcription["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("timed out"), "error {message:?}");
    assert_eq!(
        status_of(&find_job(&jobs, "PROCESSING")),
        "FAILED",
        "{jobs:#}"
    );
    assert_eq!(jobs["failed"], 2, "{jobs:#}");
    assert_eq!(sb.check_status(&id)["status"], "FAILED");

    let trail = audit_trail(&sb, &id);
    assert!(
        trail
            .lines()
            .any(|l| l.contains("RUNNING -> RETRYING (attempt 1")),
        "first attempt was not retried:\n{trail}"
    );
    assert!(
        trail
            .lines()
            .any(|l| l.contains("RUNNING -> FAILED (attempt 2")),
        "second attempt did not fail for good:\n{trail}"
    );
}

#[test]
fn an_expired_lease_is_reclaimed_by_another_worker() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let sb = sb
        .env("PIPELINE_PROCESSING_LEASE_SECS", "3")
        .env("PIPELINE_PROCESSING_HEARTBEAT_SECS", "1");
    let long = long_fixture("long-1min.wav");
    let id = detach(&sb, &[long]).remove(0);

    let mut first = sb.spawn_worker("first");
    let running = wait_running(&sb, &id, &first);
    let holder = running["worker"].as_str().expect("worker id").to_string();
    first.signal(libc::SIGKILL);
    first
        .wait_exit(Duration::from_secs(10))
        .expect("SIGKILL ends the worker");
    // Killed outright, it could not hand anything back.
    assert_eq!(status_of(&sb.job(&id, "TRANSCRIPTION")), "RUNNING");

    let second = sb.spawn_worker("second");
    let started = Instant::now();
    let doc = wait_final(&sb, &id, Duration::from_secs(300), &second);
    eprintln!(
        "second worker finished long-1min.wav in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let transcription = find_job(&doc, "TRANSCRIPTION");
    assert_eq!(transcription["attempt"], 2, "{doc:#}");
    assert_ne!(transcription["worker"], holder.as_str(), "{doc:#}");
    let trail = audit_trail(&sb, &id);
    assert!(
        trail
            .lines()
            .any(|l| l.contains("TRANSCRIPTION RUNNING -> QUEUED")
                && l.contains("lease")
                && l.contains("expired")
                && l.contains(&holder)),
        "no expired-lease event naming {holder}:\n{trail}"
    );
}

/// A worker's log lines, as JSON (`PIPELINE_LOG_FORMAT=json`): each line of
/// a job carries the job's span (file, job, type, attempt, worker), the
/// job's start and end are logged, and no secret of the configuration (the
/// database password, the webhook signing key) is ever printed.
#[test]
fn a_job_s_log_lines_carry_its_ids_and_no_secret() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let database = postgres_url().replacen("postgres@", "postgres:hunter2-db@", 1);
    let sb = sb
        .env("PIPELINE_DATABASE_URL", &database)
        .env("PIPELINE_WEBHOOKS_SECRET", "hunter2-signing")
        .env("PIPELINE_LOG_FORMAT", "json");
    let ids = detach(&sb, &[fixture("speech.wav")]);
    let worker = sb.spawn_worker("worker");
    wait_final(&sb, &ids[0], Duration::from_secs(120), &worker);
    let transcription = sb.job(&ids[0], "TRANSCRIPTION");
    // The worker logs the job's end after it is recorded: give it a moment.
    let lines = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(200),
        "the job's last log line",
        || {
            let events: Vec<serde_json::Value> = worker
                .log()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
            let of_job: Vec<serde_json::Value> = events
                .into_iter()
                .filter(|e| e["span"]["job_id"] == transcription["id"])
                .collect();
            of_job
                .iter()
                .any(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("done: "))
                })
                .then_some(of_job)
        },
    );
    let messages: Vec<&str> = lines.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(messages.contains(&"started"), "{messages:?}");
    for line in &lines {
        let span = &line["span"];
        assert_eq!(span["name"], "job", "{line}");
        assert_eq!(span["audio_id"], ids[0].as_str(), "{line}");
        assert_eq!(span["job_type"], "TRANSCRIPTION", "{line}");
        assert_eq!(span["attempt"], 1, "{line}");
        assert!(
            span["worker"].as_str().is_some_and(|w| !w.is_empty()),
            "{line}"
        );
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    let log = worker.log();
    assert!(
        log.contains("worker ") && log.contains(" started: "),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "a secret reached the log:\n{log}");
}

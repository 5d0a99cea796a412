//! `process`, `jobs`, `check-status`, `transcript`, `list-recent` and the
//! legacy `transcribe`, end to end: the real binary, model, SQLite and audio.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The three lines the seed prints for each file `process` accepts.
fn seed_lines(id: &str, fancy: bool) -> [String; 3] {
    [
        format!(
            "{}Successfully started processing: {id}",
            if fancy { "✅ " } else { "" }
        ),
        format!("You can check status with: pipeline-manager check-status {id}"),
        format!("You can monitor jobs with: pipeline-manager jobs {id}"),
    ]
}

#[test]
fn process_mp3_tracks_transcribes_and_writes_every_output() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let mp3 = fixture("speech.mp3");

    let out = sb.run(&["process", path(&mp3)]);
    out.expect_code(0);
    eprintln!("process speech.mp3 took {:.1} s", out.seconds);
    let id = id_after(&out.stdout, "Successfully started processing: ");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert_eq!(lines[..3], seed_lines(&id, false), "{out}");

    let status = sb.check_status(&id);
    assert_eq!(status["id"], id.as_str(), "{status:#}");
    assert_eq!(status["status"], "COMPLETED", "{status:#}");
    assert_eq!(status["original_name"], "speech.mp3", "{status:#}");
    let duration = status["duration_seconds"]
        .as_f64()
        .expect("duration_seconds");
    // speech.wav is 16.33 s; an mp3 encoder adds at most a frame or two of padding.
    assert!((duration - 16.33).abs() < 0.3, "duration {duration}");
    assert_eq!(
        status["sha256"].as_str().map(|s| s.len()),
        Some(64),
        "{status:#}"
    );

    let jobs = sb.jobs(&id);
    assert_eq!(jobs["audio_id"], id.as_str(), "{jobs:#}");
    assert_eq!(jobs["total_jobs"], 2, "{jobs:#}");
    assert_eq!(jobs["completed"], 2, "{jobs:#}");
    assert_eq!(jobs["failed"], 0, "{jobs:#}");
    assert_eq!(jobs["progress_percent"].as_f64(), Some(100.0), "{jobs:#}");
    let list = jobs["jobs"].as_array().expect("jobs array");
    let types: Vec<&str> = list
        .iter()
        .map(|j| j["job_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["TRANSCRIPTION", "PROCESSING"], "pipeline order");
    for job in list {
        assert_eq!(job["status"], "COMPLETED", "{job:#}");
        assert_eq!(job["attempt"], 1, "{job:#}");
        assert_eq!(job["progress"].as_f64(), Some(100.0), "{job:#}");
        assert!(job["error"].is_null(), "{job:#}");
        assert!(
            job["task_id"].as_str().is_some_and(|t| !t.is_empty()),
            "{job:#}"
        );
        assert!(
            job["worker"].as_str().is_some_and(|w| !w.is_empty()),
            "{job:#}"
        );
        let (created, started, completed) = (
            time(&job["created_at"]),
            time(&job["started_at"]),
            time(&job["completed_at"]),
        );
        assert!(created <= started && started <= completed, "{job:#}");
    }
    assert!(
        time(&list[0]["completed_at"]) <= time(&list[1]["started_at"]),
        "PROCESSING started before TRANSCRIPTION completed: {jobs:#}"
    );
    // check-status carries the same jobs.
    assert_eq!(status["jobs"], jobs["jobs"]);

    let txt = sb.run(&["transcript", &id, "--format", "txt"]);
    txt.expect_code(0);
    let wer = speech_wer(&txt.stdout);
    assert!(wer < WER_BOUND, "WER {wer:.3} >= {WER_BOUND}:\n{txt}");

    let outputs = status["outputs"].as_object().expect("outputs object");
    let mut formats: Vec<&str> = outputs.keys().map(String::as_str).collect();
    formats.sort_unstable();
    assert_eq!(formats, ["json", "srt", "tsv", "txt", "vtt"], "{status:#}");
    let read = |format: &str| {
        let file = Path::new(outputs[format].as_str().expect("output path"));
        assert!(
            file.starts_with(&sb.data),
            "{format} output {} is outside the data dir {}",
            file.display(),
            sb.data.display()
        );
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    };
    let txt_file = read("txt");
    assert_eq!(
        txt_file, txt.stdout,
        "txt output file and `transcript --format txt` differ"
    );
    let json: Value = serde_json::from_str(&read("json")).expect("json output parses");
    let segments = json["segments"].as_array().expect("segments");
    let spoken: Vec<&Value> = segments
        .iter()
        .filter(|s| !s["text"].as_str().unwrap_or("").trim().is_empty())
        .collect();
    assert!(!spoken.is_empty(), "no segments with text: {json:#}");
    for s in segments {
        let (start, end) = (s["start"].as_f64(), s["end"].as_f64());
        assert!(
            matches!((start, end), (Some(a), Some(b)) if 0.0 <= a && a <= b && b <= duration + 1.0),
            "bad segment times: {s}"
        );
    }
    let json_text: String = segments
        .iter()
        .map(|s| s["text"].as_str().unwrap_or(""))
        .collect();
    assert!(speech_wer(&json_text) < WER_BOUND);
    let cues = check_srt(&read("srt"));
    assert_eq!(cues, spoken.len(), "one srt cue per spoken segment");
    assert_eq!(check_vtt(&read("vtt")), cues, "vtt and srt cues");
    let tsv = read("tsv");
    let mut rows = tsv.lines();
    assert_eq!(rows.next(), Some("start\tend\ttext"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), cues, "tsv rows:\n{tsv}");
    for row in rows {
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(
            cols.len() == 3 && cols[0].parse::<u64>().is_ok() && cols[1].parse::<u64>().is_ok(),
            "bad tsv row {row:?}"
        );
    }
    let words = status["stats"]["words"].as_u64().expect("stats.words");
    assert!((40..=60).contains(&words), "{} words counted", words);
}

#[test]
fn jobs_follows_the_seed_layout_with_emoji_only_when_asked() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let wav = fixture("speech.wav");
    let out = sb.run_env(
        &["process", path(&wav)],
        &[("NO_COLOR", ""), ("CLICOLOR_FORCE", "1")],
    );
    out.expect_code(0);
    let id = id_after(&out.stdout, "Successfully started processing: ");
    assert_eq!(
        out.stdout.lines().take(3).collect::<Vec<_>>(),
        seed_lines(&id, true),
        "{out}"
    );

    let doc = sb.jobs(&id);
    let seed_time = |v: &Value| time(v).format("%Y-%m-%dT%H:%M:%S").to_string();
    let block = |job: &Value, mark: &str| {
        format!(
            "{mark}{} - COMPLETED\n   ID: {}\n   Started: {}\n   Completed: {}\n",
            job["job_type"].as_str().unwrap_or(""),
            job["id"].as_str().unwrap_or(""),
            seed_time(&job["started_at"]),
            seed_time(&job["completed_at"]),
        )
    };
    let expected = |mark: &str| {
        format!(
            "=== Job Progress for {id} ===\nTotal Jobs: 2\nCompleted: 2\nFailed: 0\n\
             Progress: 2/2 (100.0%)\n\n=== Job Details ===\n{}\n{}",
            block(&find_job(&doc, "TRANSCRIPTION"), mark),
            block(&find_job(&doc, "PROCESSING"), mark),
        )
    };

    let fancy = sb.run_env(&["jobs", &id], &[("NO_COLOR", ""), ("CLICOLOR_FORCE", "1")]);
    fancy.expect_code(0);
    assert_eq!(fancy.stdout, expected("✅ "), "{fancy}");

    let plain = sb.run_env(&["jobs", &id], &[("NO_COLOR", "1")]);
    plain.expect_code(0);
    assert_eq!(plain.stdout, expected(""), "{plain}");
    assert!(plain.stdout.is_ascii(), "emoji despite NO_COLOR:\n{plain}");

    // Piped output is not a terminal: plain even when NO_COLOR is not set.
    let piped = sb.run_env(&["jobs", &id], &[("NO_COLOR", "")]);
    piped.expect_code(0);
    assert!(piped.stdout.is_ascii(), "emoji on a pipe:\n{piped}");
}

#[test]
fn undecodable_and_missing_inputs_exit_2_and_do_not_stop_good_files() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let garbage = fixture("garbage.mp3");
    let text = fixture("not-audio.txt");
    let wav = fixture("speech.wav");
    let missing = sb.root().join("no-such-file.wav");

    // A missing path alone: refused, nothing recorded.
    let out = sb.run(&["process", path(&missing)]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(path(&missing)),
        "stderr does not name the file:\n{out}"
    );
    let recent = sb.json(&["list-recent"]);
    assert_eq!(
        recent["files"].as_array().map(Vec::len),
        Some(0),
        "{recent:#}"
    );

    // Broken content is recorded as FAILED, with the reason on its job.
    for (file, name) in [(&garbage, "garbage.mp3"), (&text, "not-audio.txt")] {
        let out = sb.run(&["process", path(file)]);
        out.expect_code(2);
        assert!(
            out.stderr.contains(name),
            "stderr does not name {name}:\n{out}"
        );
        let recent = sb.json(&["list-recent"]);
        let entry = recent["files"]
            .as_array()
            .and_then(|files| files.iter().find(|f| f["original_name"] == name))
            .unwrap_or_else(|| panic!("{name} not in list-recent: {recent:#}"))
            .clone();
        assert_eq!(entry["status"], "FAILED", "{entry:#}");
        let id = entry["id"].as_str().expect("id").to_string();
        let jobs = sb.jobs(&id);
        assert_eq!(jobs["failed"], 2, "{jobs:#}");
        let transcription = find_job(&jobs, "TRANSCRIPTION");
        assert_eq!(transcription["status"], "FAILED", "{jobs:#}");
        assert_eq!(transcription["error"]["kind"], "permanent", "{jobs:#}");
        let reason = transcription["error"]["message"]
            .as_str()
            .expect("error message");
        let human = sb.run(&["jobs", &id]);
        human.expect_code(0);
        assert!(
            human.stdout.contains(&format!("   Error: {reason}")),
            "jobs does not show the reason {reason:?}:\n{human}"
        );
        assert!(human.stdout.contains("TRANSCRIPTION - FAILED"), "{human}");
        // Following waits for an outcome, so the outcome is its exit code.
        sb.run(&["jobs", &id, "--follow"]).expect_code(1);
    }

    // A mixed batch: the bad ones are reported, the good one is still done.
    let out = sb.run(&[
        "process",
        "--json",
        path(&garbage),
        path(&missing),
        path(&wav),
    ]);
    out.expect_code(2);
    let doc = out.json();
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), 3, "{doc:#}");
    let by_path = |p: &Path| {
        files
            .iter()
            .find(|f| f["path"] == path(p))
            .unwrap_or_else(|| panic!("{} not reported: {doc:#}", p.display()))
            .clone()
    };
    let missing_entry = by_path(&missing);
    assert!(missing_entry["audio_id"].is_null(), "{doc:#}");
    assert!(
        missing_entry["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-file.wav")),
        "{doc:#}"
    );
    assert_eq!(missing_entry["error"]["kind"], "permanent", "{doc:#}");
    let garbage_entry = by_path(&garbage);
    assert_eq!(garbage_entry["status"], "FAILED", "{doc:#}");
    assert_eq!(garbage_entry["error"]["kind"], "permanent", "{doc:#}");
    assert!(garbage_entry["error"]["message"].is_string(), "{doc:#}");
    let good = by_path(&wav);
    assert_eq!(good["status"], "COMPLETED", "{doc:#}");
    assert!(good["error"].is_null(), "{doc:#}");
    let good_id = good["audio_id"].as_str().expect("audio_id");
    assert_eq!(sb.check_status(good_id)["status"], "COMPLETED");
}

/// A FAILED file says why wherever `--json` shows it: `process`,
/// `list-recent` and `check-status` carry its failed job's error kind and
/// message (the cause, not PROCESSING's "TRANSCRIPTION failed"); other
/// files carry `"error": null`. No model is needed: a missing one is the
/// failure.
#[test]
fn a_failed_file_says_why_in_process_list_recent_and_check_status() {
    let sb = Sandbox::new();
    let no_model = sb.root().join("no-such-model");
    let sb = sb.env("PIPELINE_MODEL", path(&no_model));
    let wav = fixture("speech.wav");
    let text = fixture("not-audio.txt");

    // Failed while it ran: the model is missing (exit 1).
    let out = sb.run(&["process", "--json", path(&wav)]);
    out.expect_code(1);
    let doc = out.json();
    let failed = doc["files"][0].clone();
    assert_eq!(failed["status"], "FAILED", "{doc:#}");
    assert_eq!(failed["error"]["kind"], "permanent", "{doc:#}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(path(&no_model))),
        "the error does not name the missing model:\n{doc:#}"
    );
    let failed_id = failed["audio_id"].as_str().expect("audio_id").to_string();
    let cause = sb.job(&failed_id, "TRANSCRIPTION")["error"].clone();
    assert_eq!(failed["error"], cause, "{doc:#}");

    // Refused at ingest: not audio (exit 2), recorded as FAILED.
    let out = sb.run(&["process", "--json", path(&text)]);
    out.expect_code(2);
    let doc = out.json();
    let refused = doc["files"][0].clone();
    assert_eq!(refused["status"], "FAILED", "{doc:#}");
    assert_eq!(refused["error"]["kind"], "permanent", "{doc:#}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not-audio.txt")),
        "{doc:#}"
    );
    let refused_id = refused["audio_id"].as_str().expect("audio_id").to_string();

    // Not failed (yet): no error.
    let queued = sb.json(&["process", "--detach", path(&fixture("speech.flac"))]);
    assert!(queued["files"][0]["error"].is_null(), "{queued:#}");
    let queued_id = queued["files"][0]["audio_id"]
        .as_str()
        .expect("audio_id")
        .to_string();

    let recent = sb.json(&["list-recent"]);
    let row = |id: &str| {
        recent["files"]
            .as_array()
            .and_then(|files| files.iter().find(|f| f["id"] == id))
            .unwrap_or_else(|| panic!("{id} not in list-recent: {recent:#}"))
            .clone()
    };
    for (id, error) in [
        (&failed_id, &failed["error"]),
        (&refused_id, &refused["error"]),
    ] {
        let row = row(id);
        assert_eq!(row["status"], "FAILED", "{row:#}");
        assert_eq!(&row["error"], error, "list-recent row of {id}: {row:#}");
        let status = sb.check_status(id);
        assert_eq!(&status["error"], error, "check-status of {id}: {status:#}");
    }
    let only_failed = sb.json(&["list-recent", "--status", "FAILED"]);
    let files = only_failed["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "{only_failed:#}");
    assert!(
        files.iter().all(|f| f["error"]["message"].is_string()),
        "{only_failed:#}"
    );
    assert!(row(&queued_id)["error"].is_null(), "{recent:#}");
    assert!(sb.check_status(&queued_id)["error"].is_null());
}

#[test]
fn same_content_is_deduplicated_unless_forced() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let wav = fixture("speech.wav");

    let first = sb.json(&["process", path(&wav)]);
    let entry = &first["files"][0];
    assert_eq!(entry["status"], "COMPLETED", "{first:#}");
    assert_eq!(entry["deduplicated"], false, "{first:#}");
    let id = entry["audio_id"].as_str().expect("audio_id").to_string();

    let again = sb.run(&["process", path(&wav)]);
    again.expect_code(0);
    assert!(
        again.stdout.contains("Already processed") && again.stdout.contains(&id),
        "second run does not say it was already processed as {id}:\n{again}"
    );
    assert!(
        again.seconds < 15.0,
        "a deduplicated file took {:.1} s: was it transcribed again?",
        again.seconds
    );

    let again = sb.json(&["process", path(&wav)]);
    assert_eq!(again["files"][0]["deduplicated"], true, "{again:#}");
    assert_eq!(again["files"][0]["audio_id"], id.as_str(), "{again:#}");
    assert_eq!(again["files"][0]["status"], "COMPLETED", "{again:#}");

    let forced = sb.json(&["process", "--force", path(&wav)]);
    let entry = &forced["files"][0];
    assert_eq!(entry["deduplicated"], false, "{forced:#}");
    assert_eq!(entry["status"], "COMPLETED", "{forced:#}");
    let new_id = entry["audio_id"].as_str().expect("audio_id");
    assert_ne!(new_id, id, "--force reused the audio id");
    let jobs = sb.jobs(new_id);
    assert_eq!(jobs["completed"], 2, "{jobs:#}");

    let recent = sb.json(&["list-recent"]);
    let ids: Vec<&str> = recent["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [new_id, id.as_str()],
        "newest first, no duplicate rows"
    );
}

#[test]
fn legacy_transcribe_needs_no_database() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let wav = fixture("speech.wav");
    let data = sb.data.clone();
    let data = path(&data);

    let out = sb.run(&["--data-dir", data, "transcribe", path(&wav)]);
    out.expect_code(0);
    eprintln!("transcribe speech.wav took {:.1} s", out.seconds);
    let wer = speech_wer(&out.stdout);
    assert!(wer < WER_BOUND, "WER {wer:.3} >= {WER_BOUND}:\n{out}");
    let leftovers: Vec<_> = walk(&sb.data);
    assert!(
        leftovers.is_empty(),
        "transcribe wrote into the data dir: {leftovers:?}"
    );

    // Works with an unreachable database, too: it never connects.
    let out = sb.run_env(
        &["transcribe", path(&wav)],
        &[(
            "PIPELINE_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )],
    );
    out.expect_code(0);

    let garbage = fixture("garbage.mp3");
    let out = sb.run(&["transcribe", path(&garbage)]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("garbage.mp3"),
        "stderr does not name the file:\n{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            found.extend(walk(&p));
        } else {
            found.push(p);
        }
    }
    found
}

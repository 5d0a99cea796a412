//! `process --diarize` and the upload's diarization fields, without the
//! models: which jobs a file gets, what its stored options say, and how bad
//! speaker counts are refused (exit 2 on the command line; 400 for a
//! malformed field and 422 for a contradictory count over HTTP), before
//! anything is stored. Diarizing with the real models is the diarization
//! crate's end-to-end tests' business.

mod common;

use common::server::*;
use common::*;
use serde_json::Value;

fn job_types(jobs: &Value) -> Vec<String> {
    jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_type"].as_str().unwrap_or("").to_string())
        .collect()
}

fn detached_id(out: &Out) -> String {
    out.expect_code(0);
    out.json()["files"][0]["audio_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no audio id:\n{out}"))
        .to_string()
}

#[test]
fn bad_speaker_counts_exit_2_and_record_nothing() {
    let sb = Sandbox::new();
    let wav = fixture("speech.wav");
    for (args, why) in [
        (
            vec!["--speakers", "2", "--min-speakers", "1"],
            "cannot be used with",
        ),
        (
            vec!["--speakers", "2", "--max-speakers", "3"],
            "cannot be used with",
        ),
        (vec!["--speakers", "0"], "not in 1..=64"),
        (vec!["--max-speakers", "65"], "not in 1..=64"),
        (vec!["--min-speakers", "two"], "invalid value"),
        (
            vec!["--min-speakers", "5", "--max-speakers", "2"],
            "min_speakers (5) is above max_speakers (2)",
        ),
        (vec!["--no-diarize", "--diarize"], "cannot be used with"),
        (
            vec!["--no-diarize", "--speakers", "2"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["process", "--detach"];
        all.extend(args.iter().copied());
        all.push(path(&wav));
        let out = sb.run(&all);
        out.expect_code(2);
        assert!(
            out.stderr.contains(why),
            "{args:?}: expected {why:?}:\n{out}"
        );
    }
    let recent = sb.json(&["list-recent"]);
    assert_eq!(
        recent["files"].as_array().map(Vec::len),
        Some(0),
        "{recent:#}"
    );
    let help = sb.run(&["process", "--help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("--diarize"), "{help}");
    assert!(help.stdout.contains("implies --diarize"), "{help}");
}

#[test]
fn diarized_files_get_a_third_job_and_others_keep_two() {
    let sb = Sandbox::new();
    let wav = fixture("speech.wav");

    let plain = detached_id(&sb.run(&["process", "--detach", "--json", path(&wav)]));
    let jobs = sb.jobs(&plain);
    assert_eq!(jobs["total_jobs"], 2, "{jobs:#}");
    assert_eq!(job_types(&jobs), vec!["TRANSCRIPTION", "PROCESSING"]);

    // A count implies --diarize; --force: the same content again.
    let counted = detached_id(&sb.run(&[
        "process",
        "--detach",
        "--json",
        "--force",
        "--speakers",
        "2",
        path(&wav),
    ]));
    let jobs = sb.jobs(&counted);
    assert_eq!(jobs["total_jobs"], 3, "{jobs:#}");
    assert_eq!(
        job_types(&jobs),
        vec!["TRANSCRIPTION", "DIARIZATION", "PROCESSING"]
    );
    assert_eq!(status_of(&find_job(&jobs, "DIARIZATION")), "QUEUED");
    assert_eq!(status_of(&find_job(&jobs, "PROCESSING")), "PENDING");
    let options = &sb.check_status(&counted)["options"];
    assert_eq!(options["diarize"], true, "{options:#}");
    assert_eq!(options["speakers"], 2);
    assert!(
        options["formats"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "rttm")),
        "rttm joins the default formats: {options:#}"
    );
    let text = sb.run(&["jobs", &counted]);
    text.expect_code(0);
    assert!(text.stdout.contains("Total Jobs: 3"), "{text}");
    assert!(text.stdout.contains("DIARIZATION - QUEUED"), "{text}");

    // Chosen formats stay as chosen; bounds are kept.
    let bounded = detached_id(&sb.run(&[
        "process",
        "--detach",
        "--json",
        "--force",
        "--diarize",
        "--min-speakers",
        "2",
        "--max-speakers",
        "4",
        "--formats",
        "txt",
        path(&wav),
    ]));
    let options = &sb.check_status(&bounded)["options"];
    assert_eq!(
        (&options["min_speakers"], &options["max_speakers"]),
        (&serde_json::json!(2), &serde_json::json!(4))
    );
    assert_eq!(options["formats"], serde_json::json!(["txt"]));

    // diarization.enabled diarizes every file unless --no-diarize.
    let env = [("PIPELINE_DIARIZATION_ENABLED", "true")];
    let out = sb.run_env(
        &["process", "--detach", "--json", "--force", path(&wav)],
        &env,
    );
    assert_eq!(sb.jobs(&detached_id(&out))["total_jobs"], 3);
    let out = sb.run_env(
        &[
            "process",
            "--detach",
            "--json",
            "--force",
            "--no-diarize",
            path(&wav),
        ],
        &env,
    );
    let id = detached_id(&out);
    assert_eq!(sb.jobs(&id)["total_jobs"], 2);
    let options = &sb.check_status(&id)["options"];
    assert!(options.get("diarize").is_none(), "{options:#}");

    // Cancelling the file cancels all three jobs.
    let out = sb.run(&["cancel", &counted, "--json"]);
    out.expect_code(0);
    let jobs = sb.jobs(&counted);
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "CANCELLED"),
        "{jobs:#}"
    );

    // status says where the models are expected.
    let status = sb.run_env(&["status", "--json"], &env);
    let doc = status.json();
    assert_eq!(doc["diarization"]["enabled"], true, "{doc:#}");
    assert!(doc["diarization"]["segmentation_model"]
        .as_str()
        .is_some_and(|p| p.ends_with("models/pyannote-segmentation-3.0.onnx")));
}

#[test]
fn uploads_check_their_diarization_fields() {
    let sb = Sandbox::new();
    let (_, key) = new_key(&sb);
    let server = start(&sb, &["--workers", "0"]);
    let speech = std::fs::read(fixture("speech.wav")).expect("fixture");

    for (fields, code, status) in [
        (vec![("speakers", "0")], "bad_request", 400),
        (vec![("speakers", "65")], "bad_request", 400),
        (vec![("min_speakers", "two")], "bad_request", 400),
        (vec![("max_speakers", "+3")], "bad_request", 400),
        (vec![("diarize", "maybe")], "bad_request", 400),
        (
            vec![("min_speakers", "5"), ("max_speakers", "2")],
            "invalid_speakers",
            422,
        ),
        (
            vec![("speakers", "2"), ("min_speakers", "1")],
            "invalid_speakers",
            422,
        ),
        (
            vec![("speakers", "2"), ("diarize", "false")],
            "invalid_speakers",
            422,
        ),
    ] {
        let (got, doc) = server.upload_with("speech.wav", &speech, &key, &fields);
        assert_eq!(
            (got, doc["error"]["code"].as_str()),
            (status, Some(code)),
            "{fields:?}: {doc:#}"
        );
        let message = doc["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("speakers") || message.contains("diarize"),
            "{message}"
        );
    }
    let (_, listed) = server.get("/api/v1/audio", Some(&key));
    assert_eq!(
        listed["files"].as_array().map(Vec::len),
        Some(0),
        "nothing stored for refused forms: {listed:#}"
    );

    let (status, doc) = server.upload_with(
        "speech.wav",
        &speech,
        &key,
        &[("speakers", " 3 "), ("formats", "txt,rttm")],
    );
    assert_eq!(status, 202, "{doc:#}");
    assert_eq!(
        job_types(&doc),
        vec!["TRANSCRIPTION", "DIARIZATION", "PROCESSING"]
    );
    assert_eq!(doc["options"]["speakers"], 3);
    assert_eq!(
        doc["options"]["formats"],
        serde_json::json!(["txt", "rttm"])
    );

    let (status, doc) = server.upload_with("speech.wav", &speech, &key, &[("diarize", "no")]);
    assert!(status == 200 || status == 202, "{doc:#}");
    assert_eq!(job_types(&doc), vec!["TRANSCRIPTION", "PROCESSING"]);

    // The document describes the fields.
    let (_, document) = server.get("/api/v1/openapi.json", None);
    let form = &document["components"]["schemas"]["UploadForm"]["properties"];
    for field in ["diarize", "speakers", "min_speakers", "max_speakers"] {
        assert!(form.get(field).is_some(), "{field} undocumented: {form:#}");
    }

    // process --api-url sends the same fields.
    let client = Sandbox::new();
    let out = client.run(&[
        "process",
        "--detach",
        "--json",
        "--min-speakers",
        "2",
        path(&fixture("speech.wav")),
        "--api-url",
        &server.base,
        "--api-key",
        &key,
    ]);
    out.expect_code(0);
    let id = out.json()["files"][0]["audio_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let (_, jobs) = server.get(&format!("/api/v1/audio/{id}/jobs"), Some(&key));
    assert_eq!(
        job_types(&jobs),
        vec!["TRANSCRIPTION", "DIARIZATION", "PROCESSING"]
    );
}

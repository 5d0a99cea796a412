//! `process --diarize` with the real models (Whisper tiny.en, segmentation-3.0
//! and CAM++) on a real two-person telephone call with a published
//! reference (scripts/fetch-diarization-samples.sh): three tracked jobs,
//! and the speakers in every output, scored against the reference.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;

fn installed() -> PathBuf {
    pipeline_testkit::data_dir()
}

/// A sandbox with the speech model and the diarization models installed
/// under the user's data directory (the sandbox has its own).
fn sandbox() -> Option<Sandbox> {
    let sb = Sandbox::with_model()?;
    let data = installed();
    let file = |p: PathBuf| {
        assert!(
            p.is_file(),
            "{} is missing; run scripts/install-diarization.sh",
            p.display()
        );
        p.to_string_lossy().into_owned()
    };
    Some(
        sb.env(
            "PIPELINE_DIARIZATION_SEGMENTATION_MODEL",
            &file(data.join("models/pyannote-segmentation-3.0.onnx")),
        )
        .env(
            "PIPELINE_DIARIZATION_EMBEDDING_MODEL",
            &file(data.join("models/campplus-cn-en-common.onnx")),
        )
        .env(
            "PIPELINE_VAD_ONNXRUNTIME",
            &file(data.join("lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")),
        ),
    )
}

fn phone_call() -> PathBuf {
    let wav = installed().join("samples/diarization/pyannote-sample.wav");
    assert!(
        wav.is_file(),
        "{} is missing; run scripts/fetch-diarization-samples.sh",
        wav.display()
    );
    wav
}

fn read(status: &Value, format: &str) -> String {
    let path = status["outputs"][format]
        .as_str()
        .unwrap_or_else(|| panic!("no {format} output: {status:#}"));
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn speakers_in(rttm: &str) -> std::collections::BTreeSet<String> {
    rttm.lines()
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
        .collect()
}

/// pyannote.metrics' DER (collar 0.25 s) of `rttm` against the reference.
fn der(rttm: &str, wav: &std::path::Path) -> f64 {
    let root = pipeline_testkit::repo_root();
    let hyp = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(hyp.path(), rttm).expect("write rttm");
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/der.py"))
        .arg(wav.with_extension("rttm"))
        .arg(hyp.path())
        .arg(wav.with_extension("uem"))
        .output()
        .expect("run scripts/der.py (scripts/setup-python.sh makes .venv)");
    assert!(
        out.status.success(),
        "der.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("der.py JSON");
    v["der"].as_f64().expect("der")
}

#[test]
fn a_diarized_phone_call_has_both_speakers_in_every_output() {
    let Some(sb) = sandbox() else {
        return;
    };
    let wav = phone_call();
    let out = sb.run(&["process", "--diarize", path(&wav)]);
    out.expect_code(0);
    let id = id_after(&out.stdout, "Successfully started processing: ");

    let jobs = sb.jobs(&id);
    assert_eq!(jobs["total_jobs"], 3, "{jobs:#}");
    assert_eq!(jobs["completed"], 3, "{jobs:#}");
    let types: Vec<&str> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["TRANSCRIPTION", "DIARIZATION", "PROCESSING"]);
    let diarization = find_job(&jobs, "DIARIZATION");
    assert_eq!(diarization["progress"].as_f64(), Some(100.0), "{jobs:#}");
    let trail = audit_trail(&sb, &id);
    assert!(trail.contains("2 speakers"), "{trail}");

    let status = sb.check_status(&id);
    assert_eq!(status["status"], "COMPLETED", "{status:#}");

    let json: Value = serde_json::from_str(&read(&status, "json")).expect("json output");
    let listed: Vec<&str> = json["speakers"]
        .as_array()
        .expect("speakers list")
        .iter()
        .map(|s| s["speaker"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(listed, ["SPEAKER_00", "SPEAKER_01"], "{json:#}");
    for s in json["speakers"].as_array().into_iter().flatten() {
        assert!(s["speaking_seconds"].as_f64().unwrap_or(0.0) > 2.0, "{s}");
    }
    let segments = json["segments"].as_array().expect("segments");
    assert!(
        segments.iter().all(|s| s["speaker"].is_string()),
        "every segment has a speaker: {json:#}"
    );

    let srt = read(&status, "srt");
    check_srt(&srt);
    assert!(
        srt.contains("[SPEAKER_00] ") && srt.contains("[SPEAKER_01] "),
        "{srt}"
    );
    let vtt = read(&status, "vtt");
    check_vtt(&vtt);
    assert!(
        vtt.contains("<v SPEAKER_00>") && vtt.contains("<v SPEAKER_01>"),
        "{vtt}"
    );
    let tsv = read(&status, "tsv");
    assert!(tsv.starts_with("start\tend\tspeaker\ttext\n"), "{tsv}");
    let txt = read(&status, "txt");
    assert!(
        txt.lines().any(|l| l.starts_with("SPEAKER_00: "))
            && txt.lines().any(|l| l.starts_with("SPEAKER_01: ")),
        "{txt}"
    );

    let rttm = read(&status, "rttm");
    assert_eq!(speakers_in(&rttm).len(), 2, "{rttm}");
    let der = der(&rttm, &wav);
    eprintln!(
        "pyannote-sample through the pipeline: DER {:.1} %",
        der * 100.0
    );
    // The engine alone measured 2.2 % on this call.
    assert!(der < 0.08, "DER {der}");
    let printed = sb.run(&["transcript", &id, "--format", "rttm"]);
    printed.expect_code(0);
    assert_eq!(
        speakers_in(&printed.stdout),
        speakers_in(&rttm),
        "{printed}"
    );
}

#[test]
fn a_given_speaker_count_reaches_the_outputs() {
    let Some(sb) = sandbox() else {
        return;
    };
    let out = sb.run(&["process", "--speakers", "1", path(&phone_call())]);
    out.expect_code(0);
    let id = id_after(&out.stdout, "Successfully started processing: ");
    let status = sb.check_status(&id);
    assert_eq!(status["status"], "COMPLETED", "{status:#}");
    let json: Value = serde_json::from_str(&read(&status, "json")).expect("json");
    assert_eq!(
        json["speakers"].as_array().map(Vec::len),
        Some(1),
        "{json:#}"
    );
    assert_eq!(speakers_in(&read(&status, "rttm")).len(), 1);
}

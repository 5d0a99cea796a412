//! `process --task translate` and `--language` end to end on the real
//! multilingual model (`scripts/install-model.sh base`).

mod common;

use common::*;
use std::path::PathBuf;

/// The multilingual model; `None` (SKIPPED) outside CI when it is missing.
fn multilingual_model() -> Option<PathBuf> {
    pipeline_testkit::multilingual_model_dir()
}

#[test]
fn german_speech_is_transcribed_or_translated_as_asked() {
    let Some(model) = multilingual_model() else {
        return;
    };
    let sb = Sandbox::new().env("PIPELINE_MODEL", model.to_str().expect("utf-8"));
    let german = fixture("german.wav");

    let out = sb.run(&["--json", "process", path(&german), "--formats", "txt"]);
    out.expect_code(0);
    let id = out.json()["files"][0]["audio_id"]
        .as_str()
        .expect("id")
        .to_string();
    let doc = sb.json(&["--json", "transcript", &id, "--format", "json"]);
    assert_eq!(doc["language"], "de", "{doc:#}");
    let reference = std::fs::read_to_string(fixture("german.txt")).expect("german.txt");
    let text = sb.run(&["transcript", &id]).stdout;
    let wer = pipeline_core::wer::word_error_rate(&reference, &text);
    assert!(wer < 0.35, "WER {wer:.3}: {text}");

    // The same file translated is another result, not a duplicate.
    let out = sb.run(&[
        "--json",
        "process",
        path(&german),
        "--task",
        "translate",
        "--formats",
        "txt",
    ]);
    out.expect_code(0);
    let translated = out.json()["files"][0]["audio_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_ne!(translated, id);
    let english = sb.run(&["transcript", &translated]).stdout.to_lowercase();
    let found = [
        "today", "weather", "sun", "park", "dog", "evening", "soup", "family", "tomorrow", "train",
    ]
    .iter()
    .filter(|w| english.contains(*w))
    .count();
    assert!(found >= 6, "not English: {english}");
    assert!(
        !english.contains("heute") && !english.contains("wetter"),
        "{english}"
    );
    assert!(!english.contains("<|"), "{english}");

    let bad = sb.run(&["process", path(&german), "--task", "summarize"]);
    bad.expect_code(2);
}

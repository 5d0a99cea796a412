//! The malformed and hostile corpus (crates/audio/tests/common/hostile.rs,
//! made at test time from the fixtures) through one `process` call beside a
//! good file: every hostile file is refused by name, the good one is
//! transcribed, the call exits 2 (bad input: README's exit codes), and the
//! process's peak memory stays that of one ordinary transcription.

mod common;
#[path = "../../audio/tests/common/hostile.rs"]
mod hostile;

use common::*;

const MIB: u64 = 1024 * 1024;

#[test]
fn hostile_files_fail_by_name_in_bounded_memory_and_the_good_file_completes() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let good = fixture("speech.wav");
    let fixtures = good.parent().expect("fixtures dir").to_path_buf();
    let corpus = sb.root().join("corpus");
    let hostile = hostile::must_fail(&fixtures, &corpus);
    assert!(hostile.len() >= 25, "{} hostile files", hostile.len());

    // The baseline: the good file alone, in its own data directory.
    let alone = Sandbox::with_model().expect("model");
    let out = alone.run(&["process", "--json", path(&good)]);
    out.expect_code(0);
    let alone_rss = out.peak_rss;

    let mut args = vec!["process", "--json"];
    args.extend(hostile.iter().map(|p| path(p)));
    args.push(path(&good));
    let out = sb.run(&args);
    let peak = out.peak_rss;
    eprintln!(
        "peak RSS {:.1} MiB with {} hostile files, {:.1} MiB for the good file alone; {:.1} s",
        peak as f64 / MIB as f64,
        hostile.len(),
        alone_rss as f64 / MIB as f64,
        out.seconds
    );
    // A refusal is bad input, which outranks a failed job: README's 2.
    out.expect_code(2);
    let doc = out.json();
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), hostile.len() + 1, "{doc:#}");
    for (file, input) in files.iter().zip(hostile.iter().chain([&good])) {
        assert_eq!(file["path"], path(input), "{doc:#}");
    }
    let good_entry = files.last().expect("good file");
    assert_eq!(good_entry["status"], "COMPLETED", "{good_entry:#}\n{out}");
    assert!(good_entry["error"].is_null(), "{good_entry:#}");

    for (file, input) in files.iter().zip(&hostile) {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let error = file["error"]["message"].as_str().unwrap_or("");
        assert!(
            error.contains(&name),
            "{name}: reason {error:?} does not name it: {file:#}"
        );
        match file["audio_id"].as_str() {
            // Recorded: a FAILED file whose jobs say why.
            Some(id) => {
                assert_eq!(file["status"], "FAILED", "{file:#}");
                let job = sb.job(id, "TRANSCRIPTION");
                assert_eq!(job["status"], "FAILED", "{name}: {job:#}");
                let message = job["error"]["message"].as_str().unwrap_or("");
                assert!(message.contains(&name), "{name}: job error {job:#}");
            }
            // Nothing to read, so nothing to record: only a folder and a
            // link that points at itself.
            None => assert!(
                ["folder.wav", "loop.mp3"].contains(&name.as_str()),
                "{name} refused before ingest: {file:#}"
            ),
        }
    }
    let transcript = sb.run(&[
        "transcript",
        good_entry["audio_id"].as_str().expect("id"),
        "--format",
        "txt",
    ]);
    transcript.expect_code(0);
    assert!(speech_wer(&transcript.stdout) <= WER_BOUND, "{transcript}");

    // The hostile files may cost a few MiB of parser state and allocator
    // slack over the good file alone; believing one header (a 2^48-byte
    // block, 65535 channels, the 1 Hz WAV's 2.6 GB) would cost GiBs.
    assert!(
        peak < alone_rss + 64 * MIB,
        "peak RSS {} MiB with the corpus, {} MiB without",
        peak / MIB,
        alone_rss / MIB
    );
    // And in absolute terms: tiny.en and one file's decoding.
    assert!(peak < 1024 * MIB, "peak RSS {} MiB", peak / MIB);
}

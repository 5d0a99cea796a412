//! The malformed and hostile corpus (crates/audio/tests/common/hostile.rs,
//! made at test time from the fixtures) through one `process` call beside a
//! good file: every hostile file is refused by name, the good one is
//! transcribed, the call exits 2 (bad input: README's exit codes), and the
//! process's peak memory stays that of one ordinary transcription.

mod common;
#[path = "../../audio/tests/common/hostile.rs"]
mod hostile;

use common::*;
use std::io::Read;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` to its end (killed after `timeout`); its output and its peak
/// RSS in bytes, from wait4's rusage of the child itself.
// wait4 reaps the child, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: std::process::Command, timeout: Duration) -> (Out, u64) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pipeline-manager");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: wait4 on our own child, with valid pointers to locals;
        // Child is not waited on elsewhere, so the pid is not reused.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(rc >= 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if rc == pid {
            break;
        }
        if started.elapsed() >= timeout && !timed_out {
            timed_out = true;
            let _ = child.kill();
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = Out {
        args: Vec::new(),
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
    };
    assert!(!timed_out, "still running after {timeout:?}:\n{out}");
    // ru_maxrss is in KiB on Linux.
    (out, u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

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
    let (out, alone_rss) = run_measured(
        alone.command(&["process", "--json", path(&good)], &[]),
        Duration::from_secs(300),
    );
    out.expect_code(0);

    let mut args = vec!["process", "--json"];
    args.extend(hostile.iter().map(|p| path(p)));
    args.push(path(&good));
    let (out, peak) = run_measured(sb.command(&args, &[]), Duration::from_secs(300));
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

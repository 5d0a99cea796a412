//! A reader that closes stdout early (`pipeline-manager jobs ID --json |
//! head`) ends any command quietly, as Unix tools do: exit 0, no panic, no
//! "Broken pipe" on stderr.

mod common;

use common::*;
use std::io::Read;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `args` with stdout on a pipe that is closed after `read` bytes
/// (at once when 0, before the command has written anything); its exit
/// status and stderr.
fn closed_after(sb: &Sandbox, args: &[&str], read: usize) -> (ExitStatus, String) {
    let mut child = sb
        .command(args, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipeline-manager");
    let mut stdout = child.stdout.take().expect("stdout");
    if read > 0 {
        let mut head = vec![0; read];
        stdout.read_exact(&mut head).expect("the first bytes");
    }
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} did not end after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    (status, stderr)
}

fn assert_quiet(args: &[&str], (status, stderr): (ExitStatus, String)) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe") && stderr.is_empty(),
        "{args:?} on a closed stdout wrote on stderr:\n{stderr}"
    );
    assert_eq!(status.code(), Some(0), "{args:?}: {status}");
}

/// A 0.1 s, 16 kHz mono WAV whose samples depend on `seed` (so no two
/// files share their content).
fn tiny_wav(path: &Path, seed: u32) {
    let samples: Vec<i16> = (0..1600u32)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed * 7919) >> 20) as i16) - 2048)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&16_000u32.to_le_bytes());
    bytes.extend_from_slice(&32_000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write wav");
}

#[test]
fn every_command_ends_quietly_when_its_reader_closes_at_once() {
    let sb = Sandbox::new();
    let ids = detach(&sb, &[fixture("speech.wav")]);
    let id = ids[0].as_str();
    for args in [
        &["jobs", id, "--json"][..],
        &["jobs", id, "--events", "--json"],
        &["jobs", id],
        &["check-status", id, "--json"],
        &["check-status", id],
        &["list-recent"],
        &["list-recent", "--json"],
        &["status", "--json"],
        &["webhooks", "list"],
    ] {
        assert_quiet(args, closed_after(&sb, args, 0));
    }
    // An error document too (`--json` prints it on stdout).
    let args = ["jobs", "not-an-id", "--json"];
    let (status, stderr) = closed_after(&sb, &args, 0);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(stderr.contains("not an id"), "{stderr}");
    assert_eq!(status.code(), Some(2), "{status}");
}

#[test]
fn list_recent_ends_quietly_when_its_reader_stops_after_a_few_bytes() {
    // More than a pipe holds (64 KiB), human and JSON, so the command is
    // still writing when the reader goes, as under `| head`.
    const FILES: usize = 800;
    let sb = Sandbox::new();
    let dir = sb.root().join("many");
    std::fs::create_dir_all(&dir).expect("dir");
    for n in 0..FILES {
        tiny_wav(&dir.join(format!("clip-{n:03}.wav")), n as u32);
    }
    let out = sb.run(&["process", "--detach", "--json", path(&dir)]);
    out.expect_code(0);
    assert_eq!(out.json()["files"].as_array().map(Vec::len), Some(FILES));
    let limit = FILES.to_string();
    for args in [
        &["list-recent", "--limit", &limit, "--json"][..],
        &["list-recent", "--limit", &limit],
    ] {
        let all = sb.run(args);
        all.expect_code(0);
        assert!(all.stdout.len() > 64 * 1024, "{} bytes", all.stdout.len());
        assert_quiet(args, closed_after(&sb, args, 16));
    }
}

//! The malformed and hostile corpus (tests/common/hostile.rs) through probe
//! and a whole decode, in process: each file ends, within seconds, in
//! samples or an error that names it; none panics or hangs, and the peak
//! memory of the whole run stays bounded. Each test is its own process
//! under nextest, so the peak is this corpus's own.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pipeline_audio::{probe, Decoder};

const MIB: u64 = 1024 * 1024;

/// Peak resident memory of this process so far, in bytes (Linux's VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// What probing and decoding `path` to its end gave: the samples, or the error.
fn decode(path: &Path) -> Result<u64, String> {
    probe(path).map_err(|e| e.to_string())?;
    let mut d = Decoder::open(path).map_err(|e| e.to_string())?;
    let mut buf = vec![0.0f32; 16_000];
    let mut total = 0;
    loop {
        match d.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// [`decode`] on its own thread: a panic or a run past `limit` fails the test
/// naming the file.
fn decode_bounded(path: &Path, limit: Duration) -> Result<u64, String> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let started = Instant::now();
    quiet_decode_panics();
    std::thread::Builder::new()
        .name("decode".into())
        .spawn(move || {
            let _ = tx.send(decode(&owned));
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(outcome) => {
            eprintln!(
                "{:>6.3} s {:>6.1} MiB {}: {outcome:?}",
                started.elapsed().as_secs_f64(),
                peak_rss() as f64 / MIB as f64,
                path.display()
            );
            outcome
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{}: decoding panicked", path.display())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{}: still decoding after {limit:?}", path.display())
        }
    }
}

/// symphonia's panics, which the decoder turns into errors, are not
/// printed with a backtrace each (symbolizing one costs tens of MiB of peak
/// memory); every other thread's panic is, as usual.
fn quiet_decode_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some("decode") {
                default(info);
            }
        }));
    });
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_hostile_file_is_refused_by_name_quickly_and_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = hostile::must_fail(&common::fixtures(), dir.path());
    assert!(files.len() >= 25, "{} files", files.len());
    // Regression cases, with what each once did: a panic in symphonia's
    // WAV reader (a zero time base), an "I/O error" for a seek to 2^48.
    let reasons = [
        ("rate-0hz.wav", "unsupported sample rate 0 Hz"),
        ("rate-1hz.wav", "unsupported sample rate 1 Hz"),
        ("huge-block.mkv", "no decodable audio"),
        ("zero-bytes.wav", "file is empty"),
        ("folder.wav", "not a regular file"),
        ("loop.mp3", "symbolic links"),
    ];
    let before = peak_rss();
    let mut decoded = Vec::new();
    for file in &files {
        match decode_bounded(file, Duration::from_secs(20)) {
            Ok(samples) => decoded.push(format!("{}: {samples} samples", name(file))),
            Err(e) => {
                assert!(e.contains(&name(file)), "{}: {e}", name(file));
                if let Some((_, reason)) = reasons.iter().find(|(n, _)| *n == name(file)) {
                    assert!(e.contains(reason), "{}: {e}, not {reason:?}", name(file));
                }
            }
        }
    }
    assert!(
        decoded.is_empty(),
        "decoded instead of refused: {decoded:#?}"
    );
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS grew by {:.1} MiB over {} files",
        grown as f64 / MIB as f64,
        files.len()
    );
    // Measured: under 2 MiB. The largest legitimate buffer is a decoder's
    // few hundred KiB; a header believed (a 2^48-byte block, 65535
    // channels) would be GiBs.
    assert!(grown < 32 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

#[test]
fn files_cut_or_bit_flipped_anywhere_decode_or_fail_but_never_panic_or_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = hostile::sweep(&common::fixtures(), &dir.path().join(".sources"), 24, 24);
    let before = peak_rss();
    let (mut ok, mut failed) = (0, 0);
    for (file, bytes) in &cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).expect("write");
        match decode_bounded(&path, Duration::from_secs(20)) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.contains(file.as_str()), "{file}: {e}");
                failed += 1;
            }
        }
        std::fs::remove_file(&path).expect("remove");
    }
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "{} cases: {ok} decoded, {failed} refused; peak RSS grew by {:.1} MiB",
        cases.len(),
        grown as f64 / MIB as f64
    );
    assert!(grown < 32 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

/// What the fuzzer found (crates/audio/tests/fuzz-regressions/, kept once
/// fixed) decodes or fails naming the file, within seconds, never panics.
#[test]
fn inputs_the_fuzzer_found_decode_or_fail_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let dir_entries = std::fs::read_dir(&dir).expect("the regressions folder");
    let mut files: Vec<PathBuf> = dir_entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    let before = peak_rss();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if let Err(e) = decode_bounded(path, Duration::from_secs(20)) {
            assert!(e.contains(name.as_ref()), "{name}: {e}");
        }
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 64 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

/// An M4A whose sample-size table claims 4.2 GB for one AAC frame (found by
/// the fuzzer): symphonia would allocate that before reading the frame,
/// which aborts the process wherever the address space is limited. It is
/// refused by name before anything is read.
#[test]
fn an_mp4_sample_larger_than_its_file_is_refused_before_it_is_read() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/m4a-sample-size-4gb");
    let err = pipeline_audio::probe(&path).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("m4a-sample-size-4gb")
            && message.contains("a sample of 4211081467 bytes in a file of 155858"),
        "{message}"
    );
    assert!(Decoder::open(&path).is_err());
}

/// The corpus's builders make good files when told sane values, so that
/// what the hostile ones fail on is their one wrong field.
#[test]
fn the_corpus_builders_make_decodable_files_from_sane_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("sane.wav");
    std::fs::write(
        &wav,
        hostile::wav(1, 1, 16_000, 16, 32_000, &hostile::noise(32_000, 1)),
    )
    .unwrap();
    assert_eq!(decode_bounded(&wav, Duration::from_secs(20)), Ok(16_000));
    let mkv = dir.path().join("sane.mkv");
    std::fs::write(&mkv, hostile::mkv_opus(50)).unwrap();
    let samples = decode_bounded(&mkv, Duration::from_secs(20)).expect("opus in matroska decodes");
    assert!(samples > 8_000, "{samples} samples from 50 Opus frames");
}

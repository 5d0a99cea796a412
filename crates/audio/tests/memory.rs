//! Memory stays flat however long the file: decoding ten minutes must not
//! raise the process's peak RSS much beyond what one minute did. This is its
//! own test binary with a single test, so nothing else moves the peak.

mod common;

use std::path::Path;
use std::time::Instant;

use pipeline_audio::{Decoder, TARGET_SAMPLE_RATE};

/// Peak resident memory of this process so far, in bytes (Linux's VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

/// Decodes the whole file through a 30-second buffer (what an ASR engine
/// takes at once); returns the sample count and the seconds it took.
fn decode_through(path: &Path) -> (u64, f64) {
    let started = Instant::now();
    let mut d = Decoder::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut buf = vec![0.0f32; 30 * TARGET_SAMPLE_RATE as usize];
    let mut total = 0u64;
    loop {
        let n = d.read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total, started.elapsed().as_secs_f64())
}

const MIB: u64 = 1024 * 1024;

#[test]
fn peak_memory_does_not_grow_with_file_length() {
    let dir = common::long_fixtures();
    let short = dir.join("long-1min.wav");
    let long = dir.join("long-10min.wav");

    // The first run warms up the allocator, the resampler's FFT plans and the
    // reused buffers; the baseline is what one minute needs.
    let (n1, _) = decode_through(&short);
    assert_eq!(n1, 60 * 16_000, "1-minute file");
    let after_short = peak_rss();

    let (n10, secs) = decode_through(&long);
    let after_long = peak_rss();
    let growth = after_long.saturating_sub(after_short);
    eprintln!(
        "peak RSS: {:.1} MiB after 1 min, {:.1} MiB after 10 min (+{:.2} MiB); 10 min decoded in {secs:.2} s = {:.0}x realtime",
        after_short as f64 / MIB as f64,
        after_long as f64 / MIB as f64,
        growth as f64 / MIB as f64,
        600.0 / secs
    );
    assert_eq!(n10, 600 * 16_000, "10-minute file");
    // The 10-minute file is 25 MiB of PCM and 37 MiB as 16 kHz f32: a
    // decoder that held either would add far more than this.
    assert!(
        growth < 4 * MIB,
        "decoding 10 minutes raised peak RSS by {:.1} MiB over 1 minute",
        growth as f64 / MIB as f64
    );

    // The measurement itself must be able to see a whole-file buffer, or the
    // check above proves nothing: holding the decoded 10 minutes must show.
    let mut hoard: Vec<f32> = Vec::with_capacity(n10 as usize);
    let mut d = Decoder::open(&long).unwrap();
    let mut buf = vec![0.0f32; 16_000];
    loop {
        let n = d.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hoard.extend_from_slice(&buf[..n]);
    }
    let hoarded = peak_rss().saturating_sub(after_long);
    assert!(
        hoarded > 30 * MIB,
        "holding {} samples raised peak RSS by only {:.1} MiB: the measurement is blind",
        hoard.len(),
        hoarded as f64 / MIB as f64
    );
}

//! Probes and decodes files, printing what they hold and how fast they decode:
//! `cargo run -p pipeline-audio --example decode -- FILE...`

use std::path::Path;
use std::time::Instant;

use pipeline_audio::{Decoder, TARGET_SAMPLE_RATE};

fn main() {
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        let started = Instant::now();
        match decode(Path::new(&arg)) {
            Ok((info, samples, skipped)) => {
                let secs = started.elapsed().as_secs_f64();
                let audio = samples as f64 / f64::from(TARGET_SAMPLE_RATE);
                println!(
                    "{arg}: {} {} {} Hz {} ch {:.3} s -> {samples} samples ({audio:.3} s), {skipped} damaged packets skipped, {secs:.2} s = {:.0}x realtime",
                    info.container, info.codec, info.sample_rate, info.channels, info.duration_seconds,
                    audio / secs
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("{e} (retryable: {})", e.is_retryable());
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn decode(
    path: &Path,
) -> Result<(pipeline_audio::AudioInfo, u64, u64), pipeline_audio::AudioError> {
    let mut d = Decoder::open(path)?;
    let mut buf = vec![0.0f32; 30 * TARGET_SAMPLE_RATE as usize];
    let mut total = 0u64;
    loop {
        let n = d.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((d.info().clone(), total, d.skipped_packets()))
}

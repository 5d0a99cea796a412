//! Diarizes one audio file and prints RTTM: the engine alone, for the
//! benchmark (scripts/bench_diarization.py) and for trying settings.
//!
//!   cargo run --release -p pipeline-diarize --example diarize -- FILE [SPEAKERS]
//!
//! Models from `$PIPELINE_DATA_DIR` (default ~/.local/share/pipeline-manager);
//! settings from `DIARIZE_STEP`, `DIARIZE_THRESHOLD`, `DIARIZE_THREADS`.

use std::path::PathBuf;
use std::time::Instant;

use pipeline_audio::Decoder;
use pipeline_diarize::{
    DiarizeError, Diarizer, ModelPaths, Observer, Samples, Settings, SpeakerCount,
};

struct File(Decoder);

impl Samples for File {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, DiarizeError> {
        self.0
            .read(buf)
            .map_err(|e| DiarizeError::Audio(e.to_string()))
    }
    fn duration_hint(&self) -> Option<f64> {
        Some(self.0.info().duration_seconds)
    }
}

struct Quiet;
impl Observer for Quiet {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: diarize FILE [SPEAKERS]")?);
    let speakers = args.next().map(|s| s.parse()).transpose()?;
    let data = std::env::var_os("PIPELINE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".local/share/pipeline-manager")
        });
    let paths = ModelPaths::under(&data);
    let mut settings = Settings::default();
    let env = |name: &str| std::env::var(name).ok();
    if let Some(v) = env("DIARIZE_STEP") {
        settings.step_seconds = v.parse()?;
    }
    if let Some(v) = env("DIARIZE_THRESHOLD") {
        settings.threshold = v.parse()?;
    }
    if let Some(v) = env("DIARIZE_THREADS") {
        settings.threads = v.parse()?;
    }
    let loaded = Instant::now();
    let diarizer = Diarizer::load(&paths, &settings)?;
    let started = Instant::now();
    let count = SpeakerCount {
        speakers,
        ..Default::default()
    };
    let out = diarizer.diarize(&mut File(Decoder::open(&path)?), &count, &mut Quiet)?;
    let uri = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for t in &out.turns {
        println!(
            "SPEAKER {uri} 1 {:.3} {:.3} <NA> <NA> SPEAKER_{:02} <NA> <NA>",
            t.start,
            t.end - t.start,
            t.speaker
        );
    }
    eprintln!(
        "{} speakers, {} turns, {:.1} s of audio in {:.2} s (load {:.2} s)",
        out.speakers,
        out.turns.len(),
        out.duration,
        started.elapsed().as_secs_f64(),
        (started - loaded).as_secs_f64()
    );
    Ok(())
}

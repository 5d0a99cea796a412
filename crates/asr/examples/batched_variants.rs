//! Times batched decoding of one file under variations of its settings, to
//! see where the time goes: `batched_variants MODEL_DIR SAMPLES.f32 ORT_LIB VAD_MODEL`
//! (16 kHz mono f32le samples, as `ffmpeg -ar 16000 -ac 1 -f f32le` writes).

use std::time::Instant;

use pipeline_asr::{
    AsrError, AudioSource, DecodeMode, DecodeOptions, EngineOptions, NoObserver, Transcriber,
    WhisperEngine,
};

struct Samples(Vec<f32>, usize);

impl AudioSource for Samples {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
    fn duration_hint(&self) -> Option<f64> {
        Some(self.0.len() as f64 / 16_000.0)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, raw, ort, vad] = &args[..] else {
        return Err("usage: batched_variants MODEL_DIR SAMPLES.f32 ORT_LIB VAD_MODEL".into());
    };
    let samples: Vec<f32> = std::fs::read(raw)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let engine = WhisperEngine::load(
        model.as_ref(),
        &EngineOptions {
            onnxruntime: Some(ort.into()),
            vad_model: Some(vad.into()),
            ..EngineOptions::default()
        },
    )?;
    let base = DecodeOptions {
        mode: DecodeMode::Batched,
        ..DecodeOptions::default()
    };
    let variants = [
        ("batched, batch 8", base.clone()),
        (
            "no temperature fallback",
            DecodeOptions {
                temperatures: vec![0.0],
                ..base.clone()
            },
        ),
        (
            "without timestamps",
            DecodeOptions {
                without_timestamps: true,
                ..base.clone()
            },
        ),
        (
            "batch 4",
            DecodeOptions {
                batch_size: 4,
                ..base.clone()
            },
        ),
        (
            "batch 16",
            DecodeOptions {
                batch_size: 16,
                ..base.clone()
            },
        ),
    ];
    // BATCHED_VARIANTS=substring runs only the variants whose label has it.
    let only = std::env::var("BATCHED_VARIANTS").unwrap_or_default();
    for (label, options) in variants.into_iter().filter(|(l, _)| l.contains(&only)) {
        let started = Instant::now();
        let t = engine.transcribe(&mut Samples(samples.clone(), 0), &options, &mut NoObserver)?;
        let words = t.text().split_whitespace().count();
        println!(
            "{label}: {:.1} s, {} segments, {words} words",
            started.elapsed().as_secs_f64(),
            t.segments.len()
        );
    }
    Ok(())
}

//! Our log-mel front end against faster-whisper's own `FeatureExtractor`,
//! run from the venv that `scripts/setup-python.sh` creates.

use std::path::Path;
use std::process::Command;

use pipeline_asr::mel::MelFrontEnd;

const SCRIPT: &str = r#"
import importlib.util, pathlib, sys
import numpy as np
spec = importlib.util.find_spec("faster_whisper")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "feature_extractor.py"
# Loaded by path so that faster_whisper/__init__.py (av, ctranslate2) never runs.
module_spec = importlib.util.spec_from_file_location("fw_feature_extractor", path)
module = importlib.util.module_from_spec(module_spec)
module_spec.loader.exec_module(module)
samples = np.fromfile(sys.argv[1], dtype=np.float32)
n_mels = int(sys.argv[3])
features = module.FeatureExtractor(feature_size=n_mels)(samples, padding=0)
np.ascontiguousarray(features, dtype=np.float32).tofile(sys.argv[2])
"#;

/// Speech-like test signal: harmonics with a moving pitch, noise and silence.
fn signal(len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32 - 0.5) * 0.02;
            let t = i as f32 / 16_000.0;
            let f0 = 120.0 + 40.0 * (t * 0.7).sin();
            let voiced = (1..6)
                .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                .sum::<f32>();
            let envelope = if (t % 2.0) < 1.4 { 0.3 } else { 0.0 };
            voiced * envelope + noise
        })
        .collect()
}

fn reference(python: &Path, samples: &[f32], n_mels: usize) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.f32");
    let output = dir.path().join("out.f32");
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&input, bytes).expect("write input");
    let status = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(&input)
        .arg(&output)
        .arg(n_mels.to_string())
        .status()
        .expect("run the venv's python");
    assert!(
        status.success(),
        "faster-whisper's feature extractor failed"
    );
    std::fs::read(&output)
        .expect("read reference")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn features_match_faster_whisper() {
    let Some(python) = pipeline_testkit::venv_python() else {
        return;
    };
    for (n_mels, len) in [(80, 16_000 * 7 + 123), (128, 16_000 * 12)] {
        let samples = signal(len);
        let front_end = MelFrontEnd::new(n_mels);

        // A 30 s window: zero-padded audio, as the engine feeds the encoder.
        let mut padded = samples.clone();
        padded.resize(pipeline_asr::mel::WINDOW_SAMPLES, 0.0);
        for (ours, input) in [
            (front_end.window_features(&samples), &padded),
            (front_end.log_mel(&samples), &samples),
        ] {
            let theirs = reference(&python, input, n_mels);
            assert_eq!(ours.len(), theirs.len(), "shape differs for {n_mels} mels");
            let max_diff = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            eprintln!(
                "{n_mels} mels, {} frames: max abs diff {max_diff:e}",
                ours.len() / n_mels
            );
            assert!(max_diff < 1e-3, "max abs diff {max_diff} for {n_mels} mels");
        }
    }
}

//! Our Kaldi filterbank against `kaldi-native-fbank` (k2-fsa's packaging of
//! Kaldi's `compute-fbank-feats`), run from the venv that
//! `scripts/setup-python.sh` creates.

use std::path::PathBuf;
use std::process::Command;

use pipeline_diarize::fbank::{num_frames, Fbank, MEL_BINS};

const SCRIPT: &str = r#"
import sys
import numpy as np
import kaldi_native_fbank as knf
samples = np.fromfile(sys.argv[1], dtype=np.float32)
opts = knf.FbankOptions()
opts.frame_opts.dither = 0.0
opts.frame_opts.samp_freq = 16000
opts.mel_opts.num_bins = 80
fbank = knf.OnlineFbank(opts)
fbank.accept_waveform(16000, samples.tolist())
fbank.input_finished()
frames = [fbank.get_frame(i) for i in range(fbank.num_frames_ready)]
np.ascontiguousarray(np.array(frames, dtype=np.float32)).tofile(sys.argv[2])
"#;

/// The venv's Python: always needed here (kaldi-native-fbank is the reference).
fn venv_python() -> PathBuf {
    let python = pipeline_testkit::repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "no Python venv at {}; run scripts/setup-python.sh",
        python.display()
    );
    python
}

/// Speech-like test signal: harmonics with a moving pitch, noise, silence
/// and one stretch of digital silence (where the log floor matters).
fn signal(len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state as f32 / u32::MAX as f32 - 0.5) * 0.01;
            let t = i as f32 / 16_000.0;
            if (2.0..2.5).contains(&t) {
                return 0.0;
            }
            let f0 = 110.0 + 60.0 * (t * 0.9).sin();
            let voiced = (1..8)
                .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                .sum::<f32>();
            let envelope = if (t % 1.7) < 1.1 { 0.25 } else { 0.002 };
            voiced * envelope + noise
        })
        .collect()
}

fn reference(samples: &[f32]) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.f32");
    let output = dir.path().join("out.f32");
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&input, bytes).expect("write input");
    let status = Command::new(venv_python())
        .args(["-c", SCRIPT])
        .arg(&input)
        .arg(&output)
        .status()
        .expect("run the venv's python");
    assert!(status.success(), "kaldi-native-fbank failed");
    std::fs::read(&output)
        .expect("read reference")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn filterbank_matches_kaldi() {
    for len in [400, 16_000 * 3 + 77, 16_000 * 6] {
        let samples = signal(len);
        let expected = reference(&samples);
        let mut ours = Vec::new();
        Fbank::new().compute(&samples, &mut ours);
        assert_eq!(
            ours.len(),
            num_frames(len) * MEL_BINS,
            "frames for {len} samples"
        );
        assert_eq!(
            ours.len(),
            expected.len(),
            "frames for {len} samples vs Kaldi"
        );
        let mut worst = 0.0f32;
        for (a, b) in ours.iter().zip(&expected) {
            worst = worst.max((a - b).abs());
        }
        eprintln!("{len} samples: largest difference {worst}");
        // Log energies: 5e-4 absolute is 0.05 % in energy, float rounding
        // of a 512-point FFT summed in a different order (measured 1.2e-4).
        assert!(worst < 5e-4, "{len} samples: largest difference {worst}");
    }
}

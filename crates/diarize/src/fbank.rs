//! Kaldi's log mel filterbank (`compute-fbank-feats` defaults, as
//! `torchaudio.compliance.kaldi.fbank` and `kaldi-native-fbank` compute
//! it), the front end CAM++ was trained on: 25 ms Povey windows every
//! 10 ms, DC offset removed, pre-emphasis 0.97, a 512-point power spectrum
//! and 80 triangular mel bins from 20 Hz to Nyquist, without dither.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples per frame (25 ms at 16 kHz).
pub const FRAME_LENGTH: usize = 400;
/// Samples between frame starts (10 ms at 16 kHz).
pub const FRAME_SHIFT: usize = 160;
/// Mel bins per frame.
pub const MEL_BINS: usize = 80;
const FFT_SIZE: usize = 512;
const PREEMPHASIS: f32 = 0.97;
const LOW_FREQ: f32 = 20.0;

/// Frames Kaldi computes for `samples` samples (`snip_edges`: only whole
/// frames).
pub fn num_frames(samples: usize) -> usize {
    if samples < FRAME_LENGTH {
        0
    } else {
        1 + (samples - FRAME_LENGTH) / FRAME_SHIFT
    }
}

/// A reusable filterbank: the window, the mel weights and the FFT plan.
pub struct Fbank {
    window: Vec<f32>,
    /// For each mel bin, the first FFT bin it weighs and the weights.
    mel: Vec<(usize, Vec<f32>)>,
    fft: Arc<dyn RealToComplex<f32>>,
    frame: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    power: Vec<f32>,
}

impl Default for Fbank {
    fn default() -> Self {
        Self::new()
    }
}

impl Fbank {
    /// The filterbank for 16 kHz audio.
    pub fn new() -> Self {
        let window = (0..FRAME_LENGTH)
            .map(|i| {
                let hann = 0.5
                    - 0.5
                        * (2.0 * std::f64::consts::PI * i as f64 / (FRAME_LENGTH - 1) as f64).cos();
                hann.powf(0.85) as f32
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Self {
            window,
            mel: mel_banks(),
            fft,
            frame: vec![0.0; FFT_SIZE],
            spectrum,
            scratch,
            power: vec![0.0; FFT_SIZE / 2],
        }
    }

    /// Appends the log mel energies of every whole frame of `samples`
    /// (`MEL_BINS` values a frame) to `out`.
    pub fn compute(&mut self, samples: &[f32], out: &mut Vec<f32>) {
        let frames = num_frames(samples.len());
        out.reserve(frames * MEL_BINS);
        for f in 0..frames {
            let start = f * FRAME_SHIFT;
            self.frame_energies(&samples[start..start + FRAME_LENGTH], out);
        }
    }

    fn frame_energies(&mut self, samples: &[f32], out: &mut Vec<f32>) {
        let frame = &mut self.frame[..FRAME_LENGTH];
        let mean = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / FRAME_LENGTH as f64;
        for (d, &s) in frame.iter_mut().zip(samples) {
            *d = (f64::from(s) - mean) as f32;
        }
        for i in (1..FRAME_LENGTH).rev() {
            frame[i] -= PREEMPHASIS * frame[i - 1];
        }
        frame[0] -= PREEMPHASIS * frame[0];
        for (d, w) in frame.iter_mut().zip(&self.window) {
            *d *= w;
        }
        self.frame[FRAME_LENGTH..].fill(0.0);
        // A 512-point real FFT of a finite frame cannot fail.
        let _ =
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr();
        }
        for (first, weights) in &self.mel {
            let energy: f32 = weights
                .iter()
                .zip(&self.power[*first..])
                .map(|(w, p)| w * p)
                .sum();
            out.push(energy.max(f32::EPSILON).ln());
        }
    }
}

fn mel(freq: f32) -> f32 {
    1127.0 * (1.0 + freq / 700.0).ln()
}

/// Kaldi's `MelBanks`: triangles evenly spaced in mel between 20 Hz and
/// Nyquist, over the FFT bins below Nyquist.
fn mel_banks() -> Vec<(usize, Vec<f32>)> {
    let nyquist = 8000.0;
    let bin_width = 16000.0 / FFT_SIZE as f32;
    let (low, high) = (mel(LOW_FREQ), mel(nyquist));
    let delta = (high - low) / (MEL_BINS + 1) as f32;
    (0..MEL_BINS)
        .map(|b| {
            let left = low + b as f32 * delta;
            let center = left + delta;
            let right = center + delta;
            let weights: Vec<(usize, f32)> = (0..FFT_SIZE / 2)
                .filter_map(|i| {
                    let m = mel(bin_width * i as f32);
                    if m > left && m < right {
                        let w = if m <= center {
                            (m - left) / (center - left)
                        } else {
                            (right - m) / (right - center)
                        };
                        Some((i, w))
                    } else {
                        None
                    }
                })
                .collect();
            let first = weights.first().map_or(0, |w| w.0);
            (first, weights.into_iter().map(|w| w.1).collect())
        })
        .collect()
}

/// Subtracts each bin's mean over the frames (CAM++'s mean normalization).
pub fn normalize_mean(features: &mut [f32]) {
    let frames = features.len() / MEL_BINS;
    if frames == 0 {
        return;
    }
    let mut mean = [0.0f64; MEL_BINS];
    for frame in features.chunks_exact(MEL_BINS) {
        for (m, v) in mean.iter_mut().zip(frame) {
            *m += f64::from(*v);
        }
    }
    for m in &mut mean {
        *m /= frames as f64;
    }
    for frame in features.chunks_exact_mut(MEL_BINS) {
        for (v, m) in frame.iter_mut().zip(&mean) {
            *v = (f64::from(*v) - m) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_snip_edges() {
        assert_eq!(num_frames(399), 0);
        assert_eq!(num_frames(400), 1);
        assert_eq!(num_frames(559), 1);
        assert_eq!(num_frames(560), 2);
        assert_eq!(num_frames(16000), 98);
    }

    #[test]
    fn a_tone_peaks_in_its_mel_bin() {
        let samples: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let mut out = Vec::new();
        Fbank::new().compute(&samples, &mut out);
        assert_eq!(out.len(), 98 * MEL_BINS);
        let frame = &out[50 * MEL_BINS..51 * MEL_BINS];
        let peak = (0..MEL_BINS)
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        // 1 kHz is mel 1000; bins are ~33.6 mel apart from mel(20).
        let expected = ((mel(1000.0) - mel(20.0)) / ((mel(8000.0) - mel(20.0)) / 81.0)) as usize;
        assert!(
            peak.abs_diff(expected - 1) <= 1,
            "peak {peak}, expected ~{expected}"
        );
    }
}

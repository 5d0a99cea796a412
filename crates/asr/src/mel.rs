//! Whisper's log-mel front end, computed the way faster-whisper's
//! `FeatureExtractor` (and OpenAI's `log_mel_spectrogram`) computes it, so the
//! encoder sees the numbers it was trained on.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Samples per second the front end expects.
pub const SAMPLE_RATE: usize = 16_000;
/// STFT size in samples (25 ms).
pub const N_FFT: usize = 400;
/// STFT hop in samples (10 ms): one mel frame.
pub const HOP_LENGTH: usize = 160;
/// Samples in one 30 s window.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Mel frames in one 30 s window.
pub const WINDOW_FRAMES: usize = WINDOW_SAMPLES / HOP_LENGTH;

/// Log-mel spectrogram computer for one number of mel bins; cheap to share.
pub struct MelFrontEnd {
    n_mels: usize,
    /// `[n_mels][N_FFT / 2 + 1]`, row-major, in f32 as faster-whisper keeps it.
    filters: Vec<f32>,
    /// Per mel bin, the FFT bins where its triangle is non-zero.
    ranges: Vec<(usize, usize)>,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for MelFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelFrontEnd")
            .field("n_mels", &self.n_mels)
            .finish()
    }
}

impl MelFrontEnd {
    /// A front end with `n_mels` bins (80 for most models, 128 for large-v3).
    pub fn new(n_mels: usize) -> Self {
        let mut planner = RealFftPlanner::<f64>::new();
        // np.hanning(N + 1)[:-1]: the periodic Hann window, rounded to f32 as
        // faster-whisper does before multiplying.
        let window = (0..N_FFT)
            .map(|n| {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos();
                f64::from(w as f32)
            })
            .collect();
        let filters = slaney_mel_filters(SAMPLE_RATE as f64, N_FFT, n_mels);
        let n_bins = N_FFT / 2 + 1;
        let ranges = filters
            .chunks(n_bins)
            .map(|row| {
                let first = row.iter().position(|w| *w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|w| *w != 0.0).map_or(0, |i| i + 1);
                (first, last.max(first))
            })
            .collect();
        Self {
            n_mels,
            filters,
            ranges,
            window,
            fft: planner.plan_fft_forward(N_FFT),
        }
    }

    /// Number of mel bins per frame.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of one 30 s window: `samples` (at most 30 s) zero-padded to
    /// 30 s, returned as `[n_mels][WINDOW_FRAMES]` row-major.
    pub fn window_features(&self, samples: &[f32]) -> Vec<f32> {
        let take = samples.len().min(WINDOW_SAMPLES);
        let mut padded = vec![0.0f32; WINDOW_SAMPLES];
        padded[..take].copy_from_slice(&samples[..take]);
        self.log_mel(&padded)
    }

    /// Log-mel spectrogram of `samples` as `[n_mels][samples.len() / HOP_LENGTH]`
    /// row-major; equals faster-whisper's `FeatureExtractor(samples, padding=0)`.
    pub fn log_mel(&self, samples: &[f32]) -> Vec<f32> {
        let n_frames = samples.len() / HOP_LENGTH;
        let n_bins = N_FFT / 2 + 1;
        let mut out = vec![0.0f32; self.n_mels * n_frames];
        if n_frames == 0 {
            return out;
        }
        let padded = reflect_pad(samples, N_FFT / 2);
        let mut input = self.fft.make_input_vec();
        let mut spectrum: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; n_bins];
        let mut max = f32::NEG_INFINITY;
        for frame in 0..n_frames {
            let start = frame * HOP_LENGTH;
            for (i, slot) in input.iter_mut().enumerate() {
                // The product is rounded to f32 in faster-whisper (f32 input times f32 window).
                *slot = f64::from((f64::from(padded[start + i]) * self.window[i]) as f32);
            }
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                // Only a length mismatch can fail, and the buffers come from the plan.
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                // complex64 in faster-whisper: round the parts to f32 first.
                let re = f64::from(c.re as f32);
                let im = f64::from(c.im as f32);
                *p = f64::from((re * re + im * im) as f32);
            }
            for (mel, &(lo, hi)) in self.ranges.iter().enumerate() {
                let row = &self.filters[mel * n_bins + lo..mel * n_bins + hi];
                let energy: f64 = row
                    .iter()
                    .zip(&power[lo..hi])
                    .map(|(w, p)| f64::from(*w) * p)
                    .sum();
                let value = energy.max(1e-10).log10() as f32;
                max = max.max(value);
                out[mel * n_frames + frame] = value;
            }
        }
        let floor = max - 8.0;
        for v in &mut out {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        out
    }
}

/// numpy's `np.pad(x, pad, mode="reflect")`, including inputs shorter than
/// the padding (numpy reflects back and forth until the pad is filled).
fn reflect_pad(samples: &[f32], pad: usize) -> Vec<f32> {
    let n = samples.len();
    let mut out = Vec::with_capacity(n + 2 * pad);
    if n < 2 {
        let v = samples.first().copied().unwrap_or(0.0);
        out.resize(n + 2 * pad, v);
        return out;
    }
    let period = 2 * (n - 1);
    let at = |i: isize| -> f32 {
        let m = i.rem_euclid(period as isize) as usize;
        if m < n {
            samples[m]
        } else {
            samples[period - m]
        }
    };
    for i in -(pad as isize)..(n + pad) as isize {
        out.push(at(i));
    }
    out
}

/// The Slaney-style mel filterbank of librosa (`htk=False`, `norm="slaney"`),
/// which faster-whisper reimplements; `[n_mels][n_fft / 2 + 1]` row-major.
fn slaney_mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|i| i as f64 * sample_rate / n_fft as f64)
        .collect();
    let min_mel = 0.0;
    // The mel value of 8 kHz, the Nyquist frequency at 16 kHz.
    let max_mel = 45.245_640_471_924_965;
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            let mel = min_mel + (max_mel - min_mel) * i as f64 / (n_mels + 1) as f64;
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_sp * mel
            }
        })
        .collect();
    let mut filters = vec![0.0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let lower_width = freqs[m + 1] - freqs[m];
        let upper_width = freqs[m + 2] - freqs[m + 1];
        let enorm = 2.0 / (freqs[m + 2] - freqs[m]);
        for (k, f) in fft_freqs.iter().enumerate() {
            let lower = -(freqs[m] - f) / lower_width;
            let upper = (freqs[m + 2] - f) / upper_width;
            let weight = lower.min(upper).max(0.0);
            filters[m * n_bins + k] = (weight * enorm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_pad_matches_numpy() {
        // np.pad([1,2,3,4], 2, mode="reflect") == [3,2,1,2,3,4,3,2]
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
        // np.pad([1,2], 3, mode="reflect") == [2,1,2,1,2,1,2,1]
        assert_eq!(
            reflect_pad(&[1.0, 2.0], 3),
            vec![2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]
        );
    }

    #[test]
    fn filters_are_triangles_with_slaney_norm() {
        let f = slaney_mel_filters(16_000.0, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        for m in 0..80 {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().all(|w| *w >= 0.0));
            assert!(row.iter().any(|w| *w > 0.0), "empty mel bin {m}");
        }
    }

    #[test]
    fn silence_is_flat_and_shape_is_right() {
        let fe = MelFrontEnd::new(80);
        let feats = fe.window_features(&[]);
        assert_eq!(feats.len(), 80 * WINDOW_FRAMES);
        // log10(1e-10) = -10 everywhere: (−10 + 4) / 4.
        assert!(feats.iter().all(|v| (*v + 1.5).abs() < 1e-6));
    }

    #[test]
    fn tone_peaks_in_the_right_bin_and_clamps_at_max_minus_8() {
        let fe = MelFrontEnd::new(80);
        let samples: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let feats = fe.log_mel(&samples);
        let n_frames = samples.len() / HOP_LENGTH;
        let mid = n_frames / 2;
        let column: Vec<f32> = (0..80).map(|m| feats[m * n_frames + mid]).collect();
        let (peak, _) =
            column.iter().enumerate().fold(
                (0, f32::MIN),
                |a, (i, v)| if *v > a.1 { (i, *v) } else { a },
            );
        // 1 kHz is mel 15 in the Slaney scale: the centre of filter 25 or 26 of 80.
        assert!((24..=27).contains(&peak), "peak at {peak}");
        let max = feats.iter().cloned().fold(f32::MIN, f32::max);
        let min = feats.iter().cloned().fold(f32::MAX, f32::min);
        assert!(max - min <= 2.0 + 1e-6);
    }
}

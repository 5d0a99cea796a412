//! A simple energy-based voice activity gate for `vad_filter`: the engine
//! moves its seek over long silent stretches at the start of a window instead
//! of decoding them, so the timestamps stay in the original timeline.

use crate::mel::HOP_LENGTH;

/// Samples per energy block (20 ms, two mel frames).
const BLOCK: usize = 2 * HOP_LENGTH;

/// RMS of the loudest 20 ms under which a window holds no audible sound
/// (−60 dBFS). Whisper normalizes each window to its own peak, so on digital
/// silence or a faint hiss it hallucinates ("You") with a confident score
/// that the no-speech gate lets through; such windows are not decoded.
pub const SILENCE_RMS: f32 = 0.001;

/// Whether no 20 ms block of `samples` reaches [`SILENCE_RMS`].
pub fn is_silent(samples: &[f32]) -> bool {
    samples.chunks(BLOCK).all(|block| {
        let energy: f32 = block.iter().map(|s| s * s).sum::<f32>() / block.len() as f32;
        energy.sqrt() < SILENCE_RMS
    })
}

/// Detects leading silence in a window of samples.
#[derive(Debug, Clone)]
pub struct SilenceSkipper {
    /// RMS below which a block is silent (about −46 dBFS by default: quieter
    /// than speech recorded at any usable level, louder than a quiet room).
    pub threshold: f32,
    /// Silence shorter than this (in mel frames) is left to the model.
    pub min_skip_frames: usize,
    /// Frames of silence kept before the speech, so its onset is not clipped.
    pub margin_frames: usize,
}

impl Default for SilenceSkipper {
    fn default() -> Self {
        Self {
            threshold: 0.005,
            min_skip_frames: 200,
            margin_frames: 40,
        }
    }
}

impl SilenceSkipper {
    /// Mel frames at the start of `samples` that may be skipped; all of them
    /// when the samples hold no speech at all.
    pub fn leading_silence_frames(&self, samples: &[f32]) -> usize {
        let total_frames = samples.len() / HOP_LENGTH;
        let mut silent_blocks = 0;
        for block in samples.chunks(BLOCK) {
            let energy: f32 = block.iter().map(|s| s * s).sum::<f32>() / block.len() as f32;
            if energy.sqrt() >= self.threshold {
                break;
            }
            silent_blocks += 1;
        }
        let silent_frames = (silent_blocks * BLOCK / HOP_LENGTH).min(total_frames);
        if silent_frames >= total_frames {
            return total_frames;
        }
        if silent_frames < self.min_skip_frames {
            return 0;
        }
        silent_frames - self.margin_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_below_minus_60_dbfs_everywhere() {
        assert!(is_silent(&[0.0; 16_000]));
        assert!(is_silent(&vec![0.0005; 16_000]));
        let mut clip = vec![0.0f32; 16_000];
        clip[8_000..8_320].iter_mut().for_each(|s| *s = 0.01);
        assert!(!is_silent(&clip));
    }

    #[test]
    fn skips_long_leading_silence_but_keeps_a_margin() {
        let skipper = SilenceSkipper::default();
        let mut samples = vec![0.0f32; 16_000 * 5];
        samples.extend((0..16_000).map(|i| ((i as f32) * 0.05).sin() * 0.3));
        let skip = skipper.leading_silence_frames(&samples);
        assert_eq!(skip, 500 - 40);
        // Short pauses are the model's business.
        let mut short = vec![0.0f32; 16_000];
        short.extend((0..16_000).map(|i| ((i as f32) * 0.05).sin() * 0.3));
        assert_eq!(skipper.leading_silence_frames(&short), 0);
        // All silent: skip everything.
        assert_eq!(skipper.leading_silence_frames(&vec![0.0; 48_000]), 300);
    }
}

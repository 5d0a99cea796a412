//! faster-whisper's `get_speech_timestamps` (vad.py, v1.2.1) as a stream:
//! speech probabilities go in one 512-sample window at a time, padded
//! speeches come out as soon as nothing later can change them, so a long
//! file is never held whole.

use crate::{Speech, VadOptions, WINDOW_SAMPLES};

/// Turns per-window speech probabilities into padded speech spans.
#[derive(Debug, Clone)]
pub struct SpeechTimestamps {
    threshold: f32,
    neg_threshold: f32,
    min_speech: f64,
    max_speech: f64,
    min_silence: f64,
    min_silence_at_max_speech: f64,
    pad: usize,
    /// Index of the next window.
    index: usize,
    triggered: bool,
    /// Start of the speech under way.
    current: Option<usize>,
    temp_end: usize,
    prev_end: usize,
    next_start: usize,
    /// The last speech found, start padded, end not yet: its padding
    /// depends on how far away the next one starts.
    pending: Option<Speech>,
}

impl SpeechTimestamps {
    /// A detector with `options` (checked by [`VadOptions::validate`]).
    pub fn new(options: &VadOptions) -> Self {
        let rate = crate::SAMPLE_RATE as f64;
        let pad = (rate * options.speech_pad_ms as f64 / 1000.0) as usize;
        Self {
            threshold: options.threshold,
            neg_threshold: options
                .neg_threshold
                .unwrap_or((options.threshold - 0.15).max(0.01)),
            min_speech: rate * options.min_speech_duration_ms as f64 / 1000.0,
            max_speech: rate * options.max_speech_duration_s
                - WINDOW_SAMPLES as f64
                - 2.0 * pad as f64,
            min_silence: rate * options.min_silence_duration_ms as f64 / 1000.0,
            min_silence_at_max_speech: rate * 98.0 / 1000.0,
            pad,
            index: 0,
            triggered: false,
            current: None,
            temp_end: 0,
            prev_end: 0,
            next_start: 0,
            pending: None,
        }
    }

    /// Takes the probability of the next window; speeches that are final go to `out`.
    pub fn push(&mut self, probability: f32, out: &mut Vec<Speech>) {
        let i = self.index;
        self.index += 1;
        let position = WINDOW_SAMPLES * i;
        self.step(probability, position, out);
        // With the next speech at least two pads away, the pending one's
        // end is settled now: waiting would hold its audio through a silence
        // of any length.
        if let Some(pending) = self.pending {
            let next_possible = self.current.unwrap_or(position);
            if next_possible.saturating_sub(pending.end) >= 2 * self.pad {
                out.push(Speech {
                    start: pending.start,
                    end: pending.end + self.pad,
                });
                self.pending = None;
            }
        }
    }

    fn step(&mut self, probability: f32, position: usize, out: &mut Vec<Speech>) {
        if probability >= self.threshold && self.temp_end != 0 {
            self.temp_end = 0;
            if self.next_start < self.prev_end {
                self.next_start = position;
            }
        }
        if probability >= self.threshold && !self.triggered {
            self.triggered = true;
            self.current = Some(position);
            return;
        }
        if let (true, Some(start)) = (self.triggered, self.current) {
            if (position - start) as f64 > self.max_speech {
                if self.prev_end != 0 {
                    self.found(start, self.prev_end, out);
                    if self.next_start < self.prev_end {
                        self.triggered = false;
                        self.current = None;
                    } else {
                        self.current = Some(self.next_start);
                    }
                    self.prev_end = 0;
                    self.next_start = 0;
                    self.temp_end = 0;
                } else {
                    self.found(start, position, out);
                    self.current = None;
                    self.prev_end = 0;
                    self.next_start = 0;
                    self.temp_end = 0;
                    self.triggered = false;
                    return;
                }
            }
        }
        if probability < self.neg_threshold && self.triggered {
            if self.temp_end == 0 {
                self.temp_end = position;
            }
            if (position - self.temp_end) as f64 > self.min_silence_at_max_speech {
                self.prev_end = self.temp_end;
            }
            if ((position - self.temp_end) as f64) < self.min_silence {
                return;
            }
            if let Some(start) = self.current.take() {
                if (self.temp_end - start) as f64 > self.min_speech {
                    self.found(start, self.temp_end, out);
                }
            }
            self.prev_end = 0;
            self.next_start = 0;
            self.temp_end = 0;
            self.triggered = false;
        }
    }

    /// A raw speech: settles the padding between it and the pending one.
    fn found(&mut self, start: usize, end: usize, out: &mut Vec<Speech>) {
        let mut speech = Speech { start, end };
        match self.pending.take() {
            None => speech.start = start.saturating_sub(self.pad),
            Some(mut previous) => {
                let silence = start.saturating_sub(previous.end);
                if silence < 2 * self.pad {
                    previous.end += silence / 2;
                    speech.start = start.saturating_sub(silence / 2);
                } else {
                    previous.end += self.pad;
                    speech.start = start.saturating_sub(self.pad);
                }
                out.push(previous);
            }
        }
        self.pending = Some(speech);
    }

    /// Ends the stream of `audio_samples` samples; the last speeches go to `out`.
    pub fn finish(&mut self, audio_samples: usize, out: &mut Vec<Speech>) {
        if let Some(start) = self.current.take() {
            if audio_samples.saturating_sub(start) as f64 > self.min_speech {
                self.found(start, audio_samples, out);
            }
        }
        if let Some(mut last) = self.pending.take() {
            last.end = (last.end + self.pad).min(audio_samples);
            last.start = last.start.min(last.end);
            out.push(last);
        }
        self.triggered = false;
    }

    /// The first sample that a speech not yet given out may cover.
    pub fn keep_from(&self) -> usize {
        let next = self.current.unwrap_or(WINDOW_SAMPLES * self.index);
        let next = next.saturating_sub(self.pad);
        self.pending.map_or(next, |p| p.start.min(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32], samples: usize, options: &VadOptions) -> Vec<(usize, usize)> {
        let mut t = SpeechTimestamps::new(options);
        let mut out = Vec::new();
        for p in probs {
            t.push(*p, &mut out);
        }
        t.finish(samples, &mut out);
        out.iter().map(|s| (s.start, s.end)).collect()
    }

    fn windows(pattern: &[(f32, usize)]) -> Vec<f32> {
        pattern
            .iter()
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n))
            .collect()
    }

    // Expected values computed with faster-whisper 1.2.1's
    // get_speech_timestamps on the same probabilities.
    #[test]
    fn close_speeches_share_their_silence_and_far_ones_get_a_pad() {
        let options = VadOptions::default();
        // 1 s silence, 2 s speech, 0.3 s pause, 1 s speech, 3 s silence,
        // 1 s speech, 1 s silence (31.25 windows per second).
        let probs = windows(&[
            (0.0, 31),
            (0.9, 62),
            (0.1, 10),
            (0.9, 31),
            (0.05, 94),
            (0.8, 31),
            (0.0, 32),
        ]);
        let samples = probs.len() * 512;
        assert_eq!(
            run(&probs, samples, &options),
            vec![(9472, 50176), (50176, 75008), (110336, 139008)]
        );
    }

    #[test]
    fn speech_to_the_end_and_long_speech_is_split() {
        let options = VadOptions::default();
        // 20 s of speech, a 0.22 s dip, 20 s of speech.
        let probs = windows(&[(0.9, 625), (0.2, 7), (0.9, 625)]);
        let samples = probs.len() * 512 - 100;
        assert_eq!(
            run(&probs, samples, &options),
            vec![(0, 321792), (321792, 643484)]
        );
    }

    #[test]
    fn speech_without_a_pause_is_cut_before_30_seconds() {
        let options = VadOptions::default();
        // 40 s, 96 ms dip (too short to cut at), 22.4 s.
        let probs = windows(&[(0.9, 1250), (0.1, 3), (0.9, 700)]);
        let samples = probs.len() * 512 - 100;
        assert_eq!(
            run(&probs, samples, &options),
            vec![(0, 467200), (467200, 934656), (934656, 999836)]
        );
    }

    #[test]
    fn silence_gives_nothing_and_keeps_nothing() {
        let options = VadOptions::default();
        let mut t = SpeechTimestamps::new(&options);
        let mut out = Vec::new();
        for _ in 0..1000 {
            t.push(0.01, &mut out);
        }
        assert_eq!(t.keep_from(), 1000 * 512 - 6400);
        t.finish(1000 * 512, &mut out);
        assert!(out.is_empty());
    }
}

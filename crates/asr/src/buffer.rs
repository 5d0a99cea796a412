//! A sliding window over an [`AudioSource`]: the engine reads one 30 s window
//! at a time and drops what lies before the next seek, so memory stays at
//! about one window whatever the length of the file.

use crate::{AsrError, AudioSource};

/// Samples requested from the source per read (1 s).
const READ_BLOCK: usize = 16_000;

/// Samples of a stream from `start` on, read on demand.
pub struct SampleWindow<'a> {
    source: &'a mut dyn AudioSource,
    samples: Vec<f32>,
    /// Absolute index of `samples[0]` in the stream.
    start: usize,
    eof: bool,
    block: Vec<f32>,
    peak_len: usize,
}

impl<'a> SampleWindow<'a> {
    /// A window at the start of `source`.
    pub fn new(source: &'a mut dyn AudioSource) -> Self {
        Self {
            source,
            samples: Vec::new(),
            start: 0,
            eof: false,
            block: vec![0.0; READ_BLOCK],
            peak_len: 0,
        }
    }

    /// Reads until samples up to (not including) `end` are held or the stream ends.
    pub fn fill_to(&mut self, end: usize) -> Result<(), AsrError> {
        while !self.eof && self.start + self.samples.len() < end {
            let n = self.source.read(&mut self.block)?;
            if n == 0 {
                self.eof = true;
            } else {
                let n = n.min(self.block.len());
                self.samples.extend_from_slice(&self.block[..n]);
                self.peak_len = self.peak_len.max(self.samples.len());
            }
        }
        Ok(())
    }

    /// Forgets the samples before `position`; they are never needed again.
    pub fn discard_before(&mut self, position: usize) {
        if position <= self.start {
            return;
        }
        let drop = (position - self.start).min(self.samples.len());
        self.samples.drain(..drop);
        self.start += drop;
    }

    /// The held samples in `[from, to)`, clipped to what the stream has.
    pub fn slice(&self, from: usize, to: usize) -> &[f32] {
        let held_end = self.start + self.samples.len();
        let from = from.clamp(self.start, held_end) - self.start;
        let to = to.clamp(self.start, held_end) - self.start;
        &self.samples[from..to.max(from)]
    }

    /// Whether the stream has ended.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Samples read from the stream so far (its length once it has ended).
    pub fn samples_read(&self) -> usize {
        self.start + self.samples.len()
    }

    /// The most samples ever held at once.
    pub fn peak_len(&self) -> usize {
        self.peak_len
    }

    /// The source's duration hint.
    pub fn duration_hint(&self) -> Option<f64> {
        self.source.duration_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        next: usize,
        len: usize,
    }

    impl AudioSource for Counting {
        fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
            // Short reads on purpose: a source may return fewer samples.
            let n = buf.len().min(self.len - self.next).min(7_000);
            for (i, s) in buf[..n].iter_mut().enumerate() {
                *s = (self.next + i) as f32;
            }
            self.next += n;
            Ok(n)
        }
        fn duration_hint(&self) -> Option<f64> {
            None
        }
    }

    #[test]
    fn window_slides_and_stays_bounded() {
        let mut src = Counting {
            next: 0,
            len: 2_000_000,
        };
        let mut w = SampleWindow::new(&mut src);
        let mut pos = 0;
        while !(w.at_eof() && pos >= w.samples_read()) {
            w.fill_to(pos + 480_000).unwrap();
            let s = w.slice(pos, pos + 480_000);
            if let Some(first) = s.first() {
                assert_eq!(*first as usize, pos);
            }
            pos += 300_000;
            w.discard_before(pos);
        }
        assert_eq!(w.samples_read(), 2_000_000);
        assert!(w.peak_len() <= 480_000 + READ_BLOCK);
    }
}

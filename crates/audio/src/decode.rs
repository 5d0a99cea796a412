use std::collections::VecDeque;
use std::path::Path;

use rubato::{
    calculate_cutoff, FftFixedInOut, SincFixedIn, SincInterpolationParameters,
    SincInterpolationType, VecResampler, WindowFunction,
};
use symphonia::core::audio::{AudioBufferRef, SampleBuffer};

use crate::error::AudioError;
use crate::probe::{probe_track, AudioInfo, Limits};
use crate::source::{Source, Track};

/// Which of a file's channels is transcribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// The mean of all channels.
    #[default]
    Mix,
    /// One channel, from 0 (the left of a stereo file).
    Index(usize),
}

impl std::str::FromStr for Channel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mix" | "" => Ok(Channel::Mix),
            "left" => Ok(Channel::Index(0)),
            "right" => Ok(Channel::Index(1)),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n < crate::MAX_CHANNELS)
                .map(Channel::Index)
                .ok_or_else(|| format!("unknown channel {s:?} (mix, left, right or 0 to 31)")),
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Mix => f.write_str("mix"),
            Channel::Index(0) => f.write_str("left"),
            Channel::Index(1) => f.write_str("right"),
            Channel::Index(n) => write!(f, "{n}"),
        }
    }
}

/// The sample rate every decoder output has, the one speech models expect.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Input frames per resampler call: small enough to keep memory flat, large
/// enough that the per-call overhead vanishes.
const CHUNK_FRAMES: usize = 4096;

/// Above this many input frames per FFT block (rates with a small common
/// divisor with 16 kHz, e.g. 44 101 Hz) the FFT resampler's buffers get large,
/// and a sinc resampler of fixed size does the job instead.
const MAX_FFT_BLOCK: usize = 16_384;

/// A file decoded as a stream of 16 kHz mono f32 samples, a bounded buffer at a time.
pub struct Decoder {
    info: AudioInfo,
    src: Source,
    /// Interleaved samples of the last decoded packet (reused to avoid allocation).
    interleaved: Option<SampleBuffer<f32>>,
    /// Mono samples at the source rate waiting to fill a resampler chunk.
    pending_in: Vec<f32>,
    /// Mono samples at 16 kHz ready for `read`.
    ready: VecDeque<f32>,
    resampler: Option<Resampling>,
    /// The rate the stream began with; packets at another rate are dropped.
    source_rate: u32,
    /// Source frames seen, to know how many output frames the whole stream makes.
    frames_in: u64,
    /// Leading source frames still to drop (MP4 encoder priming).
    trim_front: u64,
    /// Source frames the file says to play, where it says (MP4 edit list).
    frame_limit: Option<u64>,
    /// Output frames handed to `read` so far.
    delivered: u64,
    /// Source frames past which the stream is too long (a header can lie).
    max_frames: u64,
    /// Which channel becomes the mono stream; `None` mixes them all.
    channel: Option<usize>,
    finished: bool,
}

struct Resampling {
    inner: Box<dyn VecResampler<f32>>,
    in_buf: Vec<Vec<f32>>,
    out_buf: Vec<Vec<f32>>,
    /// Leading output frames that are filter delay, not signal.
    skip: usize,
    /// Zero frames still to put before the output, where the resampler starts early.
    pad: usize,
    /// Output frames produced after the delay was skipped.
    produced: u64,
}

impl Decoder {
    /// Opens `path` for decoding within the default [`Limits`]; fails at
    /// once on a file with no decodable audio.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        Self::open_with(path, &Limits::default())
    }

    /// [`Decoder::open`] within `limits`, checked again while decoding.
    pub fn open_with(path: &Path, limits: &Limits) -> Result<Self, AudioError> {
        Self::open_track(path, limits, Track::Default)
    }

    /// [`Decoder::open_with`] of the audio track `track`.
    pub fn open_track(path: &Path, limits: &Limits, track: Track) -> Result<Self, AudioError> {
        let info = probe_track(path, limits, track)?;
        let src = Source::open(path, track)?;
        let resampler = if info.sample_rate == TARGET_SAMPLE_RATE {
            None
        } else {
            Some(Resampling::new(&src.file, info.sample_rate)?)
        };
        let rate = f64::from(info.sample_rate);
        let trim_front = src
            .edit
            .map_or(0, |e| (e.skip_seconds * rate).round() as u64);
        let frame_limit = src
            .edit
            .and_then(|e| e.duration_seconds)
            .map(|d| (d * rate).round() as u64);
        Ok(Decoder {
            trim_front,
            frame_limit,
            source_rate: info.sample_rate,
            info,
            src,
            interleaved: None,
            pending_in: Vec::with_capacity(CHUNK_FRAMES * 2),
            ready: VecDeque::with_capacity(CHUNK_FRAMES * 2),
            resampler,
            frames_in: 0,
            delivered: 0,
            max_frames: (limits.max_duration_secs * rate) as u64,
            channel: None,
            finished: false,
        })
    }

    /// Takes one channel (0 is the left of a stereo file) instead of the
    /// mix of all: a call recorded with one speaker per side.
    pub fn select_channel(&mut self, channel: Channel) -> Result<(), AudioError> {
        self.channel = match channel {
            Channel::Mix => None,
            Channel::Index(i) if i < usize::from(self.info.channels) => Some(i),
            Channel::Index(i) => {
                return Err(AudioError::Unsupported {
                    file: self.src.file.clone(),
                    reason: format!(
                        "channel {i} asked for, the file has {} (0 to {})",
                        self.info.channels,
                        self.info.channels.saturating_sub(1)
                    ),
                })
            }
        };
        Ok(())
    }

    /// What the file holds, as `probe` reports it.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// Seconds of 16 kHz audio handed out by `read` so far (for progress reports).
    pub fn position_seconds(&self) -> f64 {
        self.delivered as f64 / f64::from(TARGET_SAMPLE_RATE)
    }

    /// Packets skipped as damaged so far.
    pub fn skipped_packets(&self) -> u64 {
        self.src.skipped_packets
    }

    /// Fills `buf` from its start with 16 kHz mono samples in [-1, 1]; returns how many, 0 at the end.
    ///
    /// Only a short count at the end of the stream: a return smaller than
    /// `buf.len()` means the next call returns 0.
    pub fn read(&mut self, buf: &mut [f32]) -> Result<usize, AudioError> {
        let mut n = 0;
        while n < buf.len() {
            if self.ready.is_empty() {
                if self.finished {
                    break;
                }
                self.fill()?;
                continue;
            }
            let (a, b) = self.ready.as_slices();
            let take_a = a.len().min(buf.len() - n);
            buf[n..n + take_a].copy_from_slice(&a[..take_a]);
            n += take_a;
            let take_b = b.len().min(buf.len() - n);
            buf[n..n + take_b].copy_from_slice(&b[..take_b]);
            n += take_b;
            self.ready.drain(..take_a + take_b);
        }
        self.delivered += n as u64;
        Ok(n)
    }

    /// Decodes one more packet into `ready`, or flushes everything at the end.
    fn fill(&mut self) -> Result<(), AudioError> {
        let Some(decoded) = self.src.next()? else {
            self.finish()?;
            return Ok(());
        };
        if decoded.spec().rate != self.source_rate {
            // A rate change mid-stream (rare, broken mp3 joins): resampling
            // it as the first rate would garble it, so treat it as damage.
            self.src.skipped_packets += 1;
            return Ok(());
        }
        let before = self.pending_in.len();
        downmix_into(
            &mut self.interleaved,
            decoded,
            self.channel,
            &mut self.pending_in,
        );
        if self.trim_front > 0 {
            let drop = (self.pending_in.len() - before).min(self.trim_front as usize);
            self.pending_in.drain(before..before + drop);
            self.trim_front -= drop as u64;
        }
        if let Some(limit) = self.frame_limit {
            let room = limit.saturating_sub(self.frames_in) as usize;
            self.pending_in
                .truncate(before + room.min(self.pending_in.len() - before));
        }
        self.frames_in += (self.pending_in.len() - before) as u64;
        if self.frames_in > self.max_frames {
            return Err(AudioError::TooLong {
                file: self.src.file.clone(),
                max_seconds: self.max_frames as f64 / f64::from(self.source_rate),
            });
        }
        match &mut self.resampler {
            None => {
                self.ready.extend(self.pending_in.drain(..).map(clamp));
            }
            Some(r) => {
                r.process_full_chunks(
                    &self.src.file,
                    self.source_rate,
                    &mut self.pending_in,
                    &mut self.ready,
                )?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        self.finished = true;
        let Some(r) = &mut self.resampler else {
            return Ok(());
        };
        // The exact output length the input calls for, so that every rate
        // gives the same count for the same audio.
        let expected = (self.frames_in * u64::from(TARGET_SAMPLE_RATE)
            + u64::from(self.source_rate) / 2)
            / u64::from(self.source_rate);
        r.flush(
            &self.src.file,
            self.source_rate,
            &mut self.pending_in,
            &mut self.ready,
            expected,
        )
    }
}

impl Resampling {
    fn new(file: &str, rate: u32) -> Result<Self, AudioError> {
        let err = |e: rubato::ResamplerConstructionError| AudioError::Resample {
            file: file.to_string(),
            rate,
            reason: e.to_string(),
        };
        let min_block = rate as usize / gcd(rate as usize, TARGET_SAMPLE_RATE as usize);
        let inner: Box<dyn VecResampler<f32>> = if min_block <= MAX_FFT_BLOCK {
            // The FFT length is the smallest block times a count we choose; a
            // power of two keeps it free of large prime factors, which would
            // make the FFT several times slower (48 kHz: 3 x 1366 = 3 x 2 x 683).
            let blocks = CHUNK_FRAMES.div_ceil(min_block).next_power_of_two();
            Box::new(
                FftFixedInOut::<f32>::new(
                    rate as usize,
                    TARGET_SAMPLE_RATE as usize,
                    min_block * blocks,
                    1,
                )
                .map_err(err)?,
            )
        } else {
            let sinc_len = 256;
            let window = WindowFunction::BlackmanHarris2;
            let params = SincInterpolationParameters {
                sinc_len,
                f_cutoff: calculate_cutoff(sinc_len, window),
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Cubic,
                window,
            };
            Box::new(
                SincFixedIn::<f32>::new(
                    f64::from(TARGET_SAMPLE_RATE) / f64::from(rate),
                    1.0,
                    params,
                    CHUNK_FRAMES,
                    1,
                )
                .map_err(err)?,
            )
        };
        // The FFT resampler's output starts `output_delay` frames late. The
        // sinc one already starts its read position half a filter back, and
        // its first output lands one output period after time zero (measured
        // against ffmpeg; see the odd-sample-rate test): one zero frame
        // puts it back in place.
        let (skip, pad) = if min_block <= MAX_FFT_BLOCK {
            (inner.output_delay(), 0)
        } else {
            (0, 1)
        };
        let in_buf = vec![Vec::with_capacity(inner.input_frames_max())];
        let out_buf = vec![vec![0.0; inner.output_frames_max()]];
        Ok(Resampling {
            skip,
            pad,
            inner,
            in_buf,
            out_buf,
            produced: 0,
        })
    }

    /// Resamples every full chunk waiting in `pending`, leaving the remainder.
    fn process_full_chunks(
        &mut self,
        file: &str,
        rate: u32,
        pending: &mut Vec<f32>,
        ready: &mut VecDeque<f32>,
    ) -> Result<(), AudioError> {
        let mut start = 0;
        loop {
            let need = self.inner.input_frames_next();
            if pending.len() - start < need {
                break;
            }
            self.in_buf[0].clear();
            self.in_buf[0].extend_from_slice(&pending[start..start + need]);
            start += need;
            let (_, written) = self
                .inner
                .process_into_buffer(&self.in_buf, &mut self.out_buf, None)
                .map_err(|e| resample_error(file, rate, e))?;
            self.emit(written, ready, u64::MAX);
        }
        pending.drain(..start);
        Ok(())
    }

    /// Resamples what is left and pushes the filter's tail out, stopping at `expected` frames.
    fn flush(
        &mut self,
        file: &str,
        rate: u32,
        pending: &mut Vec<f32>,
        ready: &mut VecDeque<f32>,
        expected: u64,
    ) -> Result<(), AudioError> {
        self.process_full_chunks(file, rate, pending, ready)?;
        // rubato 0.16 takes an empty channel for a missing one and refuses it;
        // no input at all is spelled `None`.
        let mut tail = Some(std::mem::take(pending)).filter(|t| !t.is_empty());
        // Each call yields a chunk of output; the delay is at most a few
        // chunks, so this ends quickly. The bound guards against a resampler
        // that somehow yields nothing.
        for _ in 0..64 {
            if self.produced >= expected {
                break;
            }
            let input = tail.take().map(|t| vec![t]);
            let (_, written) = self
                .inner
                .process_partial_into_buffer(input.as_deref(), &mut self.out_buf, None)
                .map_err(|e| resample_error(file, rate, e))?;
            self.emit(written, ready, expected);
        }
        Ok(())
    }

    /// Moves `written` output frames to `ready`, minus the leading delay and anything past `limit`.
    fn emit(&mut self, written: usize, ready: &mut VecDeque<f32>, limit: u64) {
        if self.pad > 0 && written > 0 {
            ready.extend(std::iter::repeat_n(0.0, self.pad));
            self.produced += self.pad as u64;
            self.pad = 0;
        }
        let out = &self.out_buf[0][..written];
        let skip = self.skip.min(out.len());
        self.skip -= skip;
        let room = usize::try_from(limit.saturating_sub(self.produced)).unwrap_or(usize::MAX);
        let keep = &out[skip..][..(out.len() - skip).min(room)];
        self.produced += keep.len() as u64;
        ready.extend(keep.iter().copied().map(clamp));
    }
}

/// Averages the channels of `decoded` into `out`, appending.
fn downmix_into(
    scratch: &mut Option<SampleBuffer<f32>>,
    decoded: AudioBufferRef<'_>,
    channel: Option<usize>,
    out: &mut Vec<f32>,
) {
    let spec = *decoded.spec();
    let channels = spec.channels.count().max(1);
    let frames = decoded.frames();
    let fits = scratch
        .as_ref()
        .is_some_and(|s| s.capacity() >= frames * channels);
    let sb = match scratch {
        Some(sb) if fits => sb,
        _ => scratch.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
    };
    sb.copy_interleaved_ref(decoded);
    let samples = sb.samples();
    if channels == 1 {
        out.extend_from_slice(samples);
    } else if let Some(c) = channel.filter(|c| *c < channels) {
        out.extend(samples.chunks_exact(channels).map(|f| f[c]));
    } else {
        let scale = 1.0 / channels as f32;
        out.extend(
            samples
                .chunks_exact(channels)
                .map(|f| f.iter().sum::<f32>() * scale),
        );
    }
}

/// Keeps samples in [-1, 1]: the resampling filter rings slightly past full
/// scale on clipped input, and NaN from a broken decoder must not reach a model.
fn clamp(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-1.0, 1.0)
    }
}

fn resample_error(file: &str, rate: u32, e: rubato::ResampleError) -> AudioError {
    AudioError::Resample {
        file: file.to_string(),
        rate,
        reason: e.to_string(),
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

use std::path::Path;

use crate::error::AudioError;
use crate::source::{Source, Track};

/// What a file holds, as recorded on an ingested audio file.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The container: `wav`, `mp3`, `flac`, `ogg`, `m4a`, `mp4`, `aac`.
    pub container: String,
    /// The codec's short name: `pcm_s16le`, `mp3`, `flac`, `vorbis`, `aac`, ...
    pub codec: String,
    /// Length in seconds: from the header when it states one, else counted by decoding.
    pub duration_seconds: f64,
    /// The decoded sample rate in Hz.
    pub sample_rate: u32,
    /// The decoded channel count.
    pub channels: u16,
}

/// Sample rates taken, in Hz: below 4 kHz there is no intelligible speech,
/// and a header claiming 1 Hz would turn a few bytes into hours of audio.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 4_000..=384_000;
/// Most channels taken.
pub const MAX_CHANNELS: usize = 32;

/// What no input may exceed, whatever its header says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The longest audio taken, in seconds.
    pub max_duration_secs: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_duration_secs: 12.0 * 3600.0,
        }
    }
}

/// Reads what a file holds, decoding at least one packet to prove it is
/// audio, within the default [`Limits`].
pub fn probe(path: &Path) -> Result<AudioInfo, AudioError> {
    probe_with(path, &Limits::default())
}

/// [`probe`] within `limits`.
pub fn probe_with(path: &Path, limits: &Limits) -> Result<AudioInfo, AudioError> {
    probe_track(path, limits, Track::Default)
}

/// [`probe_with`] of the audio track `track`.
pub fn probe_track(path: &Path, limits: &Limits, track: Track) -> Result<AudioInfo, AudioError> {
    let mut src = Source::open(path, track)?;
    let codec = src.codec_name().to_string();
    let container = src.container.to_string();
    let header_duration = match src.edit {
        Some(edit) => edit
            .duration_seconds
            .or_else(|| header_duration(&src).map(|d| (d - edit.skip_seconds).max(0.0))),
        None => header_duration(&src),
    };

    // The decoded buffer is the truth for rate and channels: HE-AAC, for one,
    // states half its output rate in the container.
    let (sample_rate, channels, mut frames) = match src.next()? {
        Some(buf) => (
            buf.spec().rate,
            buf.spec().channels.count(),
            buf.frames() as u64,
        ),
        // `next` only returns None after decoding something, so this is a
        // stream whose only packets were emptied by gapless trimming.
        None => {
            return Err(AudioError::Undecodable {
                file: src.file.clone(),
                reason: "the audio track holds no samples".to_string(),
            })
        }
    };
    if sample_rate == 0 || channels == 0 {
        return Err(AudioError::Unsupported {
            file: src.file.clone(),
            reason: format!("invalid stream: {sample_rate} Hz, {channels} channels"),
        });
    }
    if !SAMPLE_RATES.contains(&sample_rate) {
        return Err(AudioError::Unsupported {
            file: src.file.clone(),
            reason: format!("unsupported sample rate {sample_rate} Hz (4 kHz to 384 kHz)"),
        });
    }
    if channels > MAX_CHANNELS {
        return Err(AudioError::Unsupported {
            file: src.file.clone(),
            reason: format!("{channels} channels (at most {MAX_CHANNELS})"),
        });
    }
    let too_long = |file: &str| AudioError::TooLong {
        file: file.to_string(),
        max_seconds: limits.max_duration_secs,
    };
    if header_duration.is_some_and(|d| d > limits.max_duration_secs) {
        return Err(too_long(&src.file));
    }

    let duration_seconds = match header_duration {
        Some(d) => d,
        None => {
            // Counting frames only; nothing is kept, so memory stays flat.
            let max_frames = limits.max_duration_secs * f64::from(sample_rate);
            while let Some(buf) = src.next()? {
                frames += buf.frames() as u64;
                if frames as f64 > max_frames {
                    return Err(too_long(&src.file));
                }
            }
            let seconds = frames as f64 / f64::from(sample_rate);
            seconds - src.edit.map_or(0.0, |e| e.skip_seconds.min(seconds))
        }
    };

    Ok(AudioInfo {
        container,
        codec,
        duration_seconds,
        sample_rate,
        channels: u16::try_from(channels).unwrap_or(u16::MAX),
    })
}

/// The duration the container states, if it states a plausible one.
fn header_duration(src: &Source) -> Option<f64> {
    let params = src.params();
    let n_frames = params.n_frames?;
    let seconds = match (params.time_base, params.sample_rate) {
        (Some(tb), _) => {
            let t = tb.calc_time(n_frames);
            t.seconds as f64 + t.frac
        }
        (None, Some(rate)) if rate > 0 => n_frames as f64 / f64::from(rate),
        _ => return None,
    };
    (seconds.is_finite() && seconds > 0.0).then_some(seconds)
}

//! One opened file: the symphonia format reader and decoder for its audio
//! track, and the rules for what counts as the end, a skippable fault, or a
//! failure.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::LazyLock;

use symphonia::core::audio::AudioBufferRef;
use symphonia::core::codecs::{
    CodecRegistry, Decoder as CodecDecoder, DecoderOptions, CODEC_TYPE_NULL,
};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::{Hint, Probe};

use crate::error::{display_name, AudioError};
use crate::mp4edit::{read_edit, Edit};

/// A format reader that keeps failing without reaching the end is stuck on
/// damage it cannot get past; past this many faults in a row we stop.
const MAX_CONSECUTIVE_FORMAT_ERRORS: u32 = 64;

/// Which of a file's audio tracks is decoded: a film with dubbed languages
/// or a recording with one track per microphone has several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Track {
    /// The container's default audio track, else its first.
    #[default]
    Default,
    /// The audio track at this index among the file's audio tracks, from 0
    /// (as ffmpeg's `-map 0:a:N` counts them; video tracks are not counted).
    Index(usize),
}

impl std::str::FromStr for Track {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "default" => Ok(Track::Default),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n < MAX_TRACK)
                .map(Track::Index)
                .ok_or_else(|| {
                    format!(
                        "unknown audio track {s:?} (default or a number from 0 to {})",
                        MAX_TRACK - 1
                    )
                }),
        }
    }
}

impl std::fmt::Display for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Track::Default => f.write_str("default"),
            Track::Index(n) => write!(f, "{n}"),
        }
    }
}

/// Track numbers taken: more than any real file has, few enough that a
/// number is not an arbitrary integer from an upload form.
const MAX_TRACK: usize = 128;

pub(crate) struct Source {
    pub(crate) file: String,
    pub(crate) container: &'static str,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn CodecDecoder>,
    track_id: u32,
    /// The decoder's most recent complaint, reported if nothing ever decodes.
    last_error: Option<String>,
    /// Packets that decoded; zero at the end means the file is not audio.
    pub(crate) decoded_packets: u64,
    /// Packets skipped as damaged.
    pub(crate) skipped_packets: u64,
    /// The MP4 edit list (encoder priming to drop), which symphonia does not apply.
    pub(crate) edit: Option<Edit>,
    ended: bool,
}

impl Source {
    pub(crate) fn open(path: &Path, choice: Track) -> Result<Self, AudioError> {
        let file = display_name(path);
        let mut f = File::open(path).map_err(|e| AudioError::from_io(path, e))?;
        let meta = f.metadata().map_err(|e| AudioError::from_io(path, e))?;
        if !meta.is_file() {
            return Err(AudioError::NotAFile { file });
        }
        if meta.len() == 0 {
            return Err(AudioError::Empty { file });
        }

        let mut head = vec![0u8; 64 * 1024];
        let n = read_up_to(&mut f, &mut head).map_err(|e| AudioError::from_io(path, e))?;
        let sniffed = sniff_container(&head[..n.min(12)]);
        if sniffed == Some("wav") {
            // symphonia's WAV reader panics on a rate of 0 (a zero time
            // base); the rate is refused here, before it gets that far.
            if let Some(rate) = wav_sample_rate(&head[..n]) {
                if !crate::probe::SAMPLE_RATES.contains(&rate) {
                    return Err(AudioError::Unsupported {
                        file,
                        reason: format!("unsupported sample rate {rate} Hz (4 kHz to 384 kHz)"),
                    });
                }
            }
        }
        // The probe reads from the start again; symphonia wants the whole stream.
        let f = File::open(path).map_err(|e| AudioError::from_io(path, e))?;

        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let mss = MediaSourceStream::new(Box::new(f), Default::default());
        let format_opts = FormatOptions {
            // Trims encoder delay and padding, so mp3/aac lengths match the source.
            enable_gapless: true,
            ..Default::default()
        };
        let probed =
            guard(|| formats().format(&hint, mss, &format_opts, &MetadataOptions::default()))
                .map_err(|e| open_error(&file, e))?;
        let format = probed.format;

        let track = choose_track(format.as_ref(), choice, &file)?;
        let track_id = track.id;
        let codec = track.codec_params.codec;
        let mut params = track.codec_params.clone();
        if sniffed == Some("caf") {
            crate::caf::unwrap_alac_cookie(&mut params);
        }
        if params.max_frames_per_packet.is_none() && codec_name_of(codec).starts_with("pcm_") {
            // symphonia's PCM decoder needs a bound on a packet's frames,
            // which its Matroska reader does not state (WAV and AIFF do).
            params.with_max_frames_per_packet(pcm_frames_bound(&params));
        }
        let decoder = codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(_) => AudioError::Unsupported {
                    file: file.clone(),
                    reason: format!("unsupported codec {}", codec_name_of(codec)),
                },
                other => open_error(&file, other),
            })?;

        let container = match sniffed {
            // WebM is Matroska with a narrower set of codecs; the name says which.
            Some("mkv") if has_extension(path, "webm") => "webm",
            Some(container) => container,
            None => container_from_codec(codec_name_of(codec)),
        };
        let is_mp4 = matches!(container, "m4a" | "mp4" | "mov");
        if is_mp4 {
            if let Some(largest) = crate::mp4size::largest_sample(path) {
                if largest > meta.len() {
                    return Err(AudioError::Unsupported {
                        file,
                        reason: format!(
                            "damaged or invalid header: a sample of {largest} bytes in a file of {}",
                            meta.len()
                        ),
                    });
                }
            }
        }
        let edit = is_mp4.then(|| read_edit(path)).flatten();
        Ok(Source {
            edit,
            file,
            container,
            format,
            decoder,
            track_id,
            last_error: None,
            decoded_packets: 0,
            skipped_packets: 0,
            ended: false,
        })
    }

    /// The codec parameters of the chosen track, as the container states them.
    pub(crate) fn params(&self) -> &symphonia::core::codecs::CodecParameters {
        self.decoder.codec_params()
    }

    /// The codec's short name (`pcm_s16le`, `mp3`, `aac`, ...).
    pub(crate) fn codec_name(&self) -> &'static str {
        codec_name_of(self.params().codec)
    }

    /// Decodes the next good packet of the track; `Ok(None)` at the end.
    ///
    /// Damaged packets are skipped like a player would; a file that reaches
    /// its end without one good packet is an error.
    pub(crate) fn next(&mut self) -> Result<Option<AudioBufferRef<'_>>, AudioError> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(Some(self.decoder.last_decoded()))
    }

    fn advance(&mut self) -> Result<bool, AudioError> {
        let mut format_errors = 0u32;
        while !self.ended {
            let packet = match guard(|| self.format.next_packet()) {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // symphonia's way of saying "end of stream", also for a truncated file.
                    self.ended = true;
                    break;
                }
                Err(SymError::IoError(e)) if is_os_error(&e) => {
                    return Err(AudioError::Io {
                        file: self.file.clone(),
                        source: e,
                    })
                }
                // A chained stream changing its parameters: we have no way to
                // continue with the same decoder, so the first stream is the audio.
                Err(SymError::ResetRequired) => {
                    self.ended = true;
                    break;
                }
                Err(SymError::DecodeError(PANICKED)) => {
                    // A reader that crashed cannot be trusted to go on.
                    self.last_error = Some(PANICKED.to_string());
                    self.ended = true;
                    break;
                }
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    format_errors += 1;
                    if format_errors >= MAX_CONSECUTIVE_FORMAT_ERRORS {
                        self.ended = true;
                        break;
                    }
                    continue;
                }
            };
            format_errors = 0;
            if packet.track_id() != self.track_id {
                continue;
            }
            let decoder = &mut self.decoder;
            let decoded = guard(|| decoder.decode(&packet).map(|buf| buf.frames()));
            if matches!(&decoded, Err(SymError::DecodeError(PANICKED))) {
                // Whatever state the decoder was left in is suspect.
                self.decoder.reset();
            }
            match decoded {
                Ok(frames) if frames > 0 => {
                    self.decoded_packets += 1;
                    return Ok(true);
                }
                // Gapless trimming can leave a packet with nothing in it.
                Ok(_) => {
                    self.decoded_packets += 1;
                }
                Err(SymError::IoError(e)) if is_os_error(&e) => {
                    return Err(AudioError::Io {
                        file: self.file.clone(),
                        source: e,
                    })
                }
                Err(e) => {
                    self.skipped_packets += 1;
                    self.last_error = Some(e.to_string());
                }
            }
        }
        if self.decoded_packets == 0 {
            return Err(AudioError::Undecodable {
                file: self.file.clone(),
                reason: self
                    .last_error
                    .clone()
                    .map(|e| format!("every packet failed to decode: {e}"))
                    .unwrap_or_else(|| "the audio track holds no packets".to_string()),
            });
        }
        Ok(false)
    }
}

/// The track `choice` names among the file's audio tracks (those with a
/// codec symphonia or libopus knows; video and subtitles have none).
fn choose_track<'f>(
    format: &'f dyn FormatReader,
    choice: Track,
    file: &str,
) -> Result<&'f symphonia::core::formats::Track, AudioError> {
    let mut audio = format
        .tracks()
        .iter()
        .filter(|t| t.codec_params.codec != CODEC_TYPE_NULL);
    let none = || AudioError::NoAudioTrack {
        file: file.to_string(),
    };
    match choice {
        Track::Default => format
            .default_track()
            .filter(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .or_else(|| audio.next())
            .ok_or_else(none),
        Track::Index(n) => {
            let count = audio.clone().count();
            if count == 0 {
                return Err(none());
            }
            audio.nth(n).ok_or_else(|| AudioError::Unsupported {
                file: file.to_string(),
                reason: format!(
                    "audio track {n} asked for, the file has {count} (0 to {})",
                    count - 1
                ),
            })
        }
    }
}

/// Most frames a PCM packet may hold where the container does not say:
/// 8 MiB of samples (21 s of 48 kHz stereo, more than any Matroska block
/// holds); the decoder drops what a packet has beyond it.
fn pcm_frames_bound(params: &symphonia::core::codecs::CodecParameters) -> u64 {
    const BYTES: u64 = 8 << 20;
    let channels = params.channels.map_or(1, |c| c.count()).max(1) as u64;
    BYTES / (channels * 4)
}

/// What a panic inside symphonia becomes.
const PANICKED: &str = "the decoder crashed on malformed data";

/// Runs a symphonia call, turning a panic into an error: symphonia has had
/// panics on malformed input (index arithmetic in its parsers), and one bad
/// upload must not take down a worker.
fn guard<T>(f: impl FnOnce() -> Result<T, SymError>) -> Result<T, SymError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or(Err(SymError::DecodeError(PANICKED)))
}

/// An error from the operating system, as opposed to symphonia's parsers
/// reporting damaged data through `io::Error` ("unexpected end of bitstream").
/// EINVAL is the file's fault too: a seek to an offset its header made up
/// (a Matroska block declaring 2^48 bytes).
fn is_os_error(e: &io::Error) -> bool {
    (e.raw_os_error().is_some() && e.kind() != io::ErrorKind::InvalidInput)
        || e.kind() == io::ErrorKind::Interrupted
}

/// The sample rate in the `fmt ` chunk of a RIFF/WAVE file's first bytes.
fn wav_sample_rate(head: &[u8]) -> Option<u32> {
    let mut at = 12usize;
    while at.checked_add(8)? <= head.len() {
        let id = &head[at..at + 4];
        let size = u32::from_le_bytes(head[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            let rate = head.get(at + 12..at + 16)?;
            return Some(u32::from_le_bytes(rate.try_into().ok()?));
        }
        // Chunks are padded to an even length.
        at = at
            .checked_add(8)?
            .checked_add(size)?
            .checked_add(size & 1)?;
    }
    None
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Maps symphonia's refusal to open a file to words a user understands.
fn open_error(file: &str, e: SymError) -> AudioError {
    let file = file.to_string();
    match e {
        SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Unsupported {
                file,
                reason: "unrecognized format".to_string(),
            }
        }
        SymError::IoError(source) => AudioError::Io { file, source },
        SymError::Unsupported(what) if what.contains("probe") => AudioError::Unsupported {
            file,
            reason: "unrecognized format".to_string(),
        },
        SymError::Unsupported(what) => AudioError::Unsupported {
            file,
            reason: format!("unsupported feature: {what}"),
        },
        SymError::DecodeError(what) => AudioError::Unsupported {
            file,
            reason: format!("damaged or invalid header: {what}"),
        },
        SymError::LimitError(what) => AudioError::Unsupported {
            file,
            reason: format!("exceeds a decoder limit: {what}"),
        },
        other => AudioError::Unsupported {
            file,
            reason: other.to_string(),
        },
    }
}

/// The container from its magic bytes, where they are unambiguous.
fn sniff_container(head: &[u8]) -> Option<&'static str> {
    match head {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => Some("wav"),
        [b'f', b'L', b'a', b'C', ..] => Some("flac"),
        [b'O', b'g', b'g', b'S', ..] => Some("ogg"),
        [_, _, _, _, b'f', b't', b'y', b'p', b'M', b'4', ..] => Some("m4a"),
        [_, _, _, _, b'f', b't', b'y', b'p', b'q', b't', ..] => Some("mov"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("mp4"),
        [0x1a, 0x45, 0xdf, 0xa3, ..] => Some("mkv"),
        [b'F', b'O', b'R', b'M', _, _, _, _, b'A', b'I', b'F', b'F', ..] => Some("aiff"),
        [b'F', b'O', b'R', b'M', _, _, _, _, b'A', b'I', b'F', b'C', ..] => Some("aifc"),
        [b'c', b'a', b'f', b'f', ..] => Some("caf"),
        [b'#', b'!', b'A', b'M', b'R', ..] => Some("amr"),
        _ => None,
    }
}

/// For elementary streams (and ID3-tagged ones) the codec names the container.
fn container_from_codec(codec: &'static str) -> &'static str {
    match codec {
        "mp1" | "mp2" | "mp3" => "mp3",
        "aac" => "aac",
        "flac" => "flac",
        _ => "unknown",
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// symphonia's codecs, Opus (libopus) and AMR (opencore), which symphonia lacks.
pub(crate) fn codecs() -> &'static CodecRegistry {
    static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<crate::opus::OpusDecoder>();
        registry.register_all::<crate::amr::AmrDecoder>();
        registry
    });
    &CODECS
}

/// symphonia's containers and AMR's storage format, which symphonia lacks.
fn formats() -> &'static Probe {
    static FORMATS: LazyLock<Probe> = LazyLock::new(|| {
        let mut probe = Probe::default();
        symphonia::default::register_enabled_formats(&mut probe);
        probe.register_all::<crate::amr::AmrReader>();
        probe
    });
    &FORMATS
}

fn codec_name_of(codec: symphonia::core::codecs::CodecType) -> &'static str {
    codecs()
        .get_codec(codec)
        .map(|d| d.short_name)
        .unwrap_or("unknown")
}

//! Opus (in Ogg, WebM and Matroska) through libopus, the reference decoder,
//! as a symphonia codec: symphonia demuxes Opus but has no decoder for it.
//! libopus comes from Debian's libopus-dev (audiopus_sys finds it with
//! pkg-config), so nothing is compiled but this file.

use audiopus_sys as ffi;
use symphonia::core::audio::{
    AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec,
};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, Decoder, DecoderOptions, FinalizeResult, CODEC_TYPE_OPUS,
};
use symphonia::core::errors::{decode_error, unsupported_error, Error, Result};
use symphonia::core::formats::Packet;
use symphonia::core::support_codec;

/// Opus always decodes at 48 kHz.
const RATE: u32 = 48_000;
/// The longest Opus packet: 120 ms.
const MAX_FRAMES: usize = 5_760;

/// A libopus decoder state, owned; only `&mut self` methods touch it.
struct State(*mut ffi::OpusDecoder);

// SAFETY: the state is only used through `&mut OpusDecoder`, never shared
// between threads at once, and libopus keeps no thread-local data.
unsafe impl Send for State {}
// SAFETY: no `&self` method reads or writes the state.
unsafe impl Sync for State {}

impl State {
    fn new(channels: usize) -> Result<Self> {
        let mut error = 0;
        // SAFETY: valid rate and channel count (1 or 2), and a valid pointer
        // for the error code; a null result is handled below.
        let state = unsafe { ffi::opus_decoder_create(RATE as i32, channels as i32, &mut error) };
        if state.is_null() || error != ffi::OPUS_OK {
            return Err(Error::DecodeError(reason(error)));
        }
        Ok(Self(state))
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed once.
        unsafe { ffi::opus_decoder_destroy(self.0) }
    }
}

/// libopus's message for an error code (its `opus_strerror`), as symphonia
/// wants a `&'static str`.
fn reason(code: i32) -> &'static str {
    match code {
        ffi::OPUS_BAD_ARG => "opus: invalid argument",
        ffi::OPUS_BUFFER_TOO_SMALL => "opus: buffer too small",
        ffi::OPUS_INTERNAL_ERROR => "opus: internal error",
        ffi::OPUS_INVALID_PACKET => "opus: corrupted stream",
        ffi::OPUS_UNIMPLEMENTED => "opus: request not implemented",
        ffi::OPUS_INVALID_STATE => "opus: invalid state",
        ffi::OPUS_ALLOC_FAIL => "opus: memory allocation failed",
        _ => "opus: decoding failed",
    }
}

/// Opus packets to 48 kHz f32, mono or stereo.
pub struct OpusDecoder {
    params: CodecParameters,
    state: State,
    channels: usize,
    pcm: Vec<f32>,
    buf: AudioBuffer<f32>,
    /// Leading frames still to drop (the encoder's pre-skip), where the
    /// container does not trim them itself.
    pre_skip: usize,
}

/// The pre-skip of an OpusHead (RFC 7845 section 5.1), in 48 kHz frames.
fn pre_skip(params: &CodecParameters) -> usize {
    if let Some(delay) = params.delay {
        return delay as usize;
    }
    match params.extra_data.as_deref() {
        Some([b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', _, _, lo, hi, ..]) => {
            usize::from(u16::from_le_bytes([*lo, *hi]))
        }
        _ => 0,
    }
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let channels = params.channels.map_or(1, |c| c.count());
        let layout = match channels {
            1 => Channels::FRONT_LEFT,
            2 => Channels::FRONT_LEFT | Channels::FRONT_RIGHT,
            // Surround Opus is several streams in one (multistream), which
            // speech recordings do not use.
            _ => return unsupported_error("opus: more than 2 channels"),
        };
        Ok(Self {
            params: params.clone(),
            state: State::new(channels)?,
            channels,
            pcm: vec![0.0; MAX_FRAMES * channels],
            buf: AudioBuffer::new(MAX_FRAMES as u64, SignalSpec::new(RATE, layout)),
            pre_skip: pre_skip(params),
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[support_codec!(CODEC_TYPE_OPUS, "opus", "Opus")]
    }

    fn reset(&mut self) {
        if let Ok(state) = State::new(self.channels) {
            self.state = state;
        }
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        self.buf.clear();
        let data = packet.buf();
        let len =
            i32::try_from(data.len()).map_err(|_| Error::DecodeError("opus: packet too large"))?;
        // SAFETY: `data` is valid for `len` bytes and `pcm` holds MAX_FRAMES
        // frames of `channels` samples, the frame size passed.
        let frames = unsafe {
            ffi::opus_decode_float(
                self.state.0,
                data.as_ptr(),
                len,
                self.pcm.as_mut_ptr(),
                MAX_FRAMES as i32,
                0,
            )
        };
        if frames < 0 {
            return decode_error(reason(frames));
        }
        let frames = (frames as usize).min(MAX_FRAMES);
        self.buf.render_reserved(Some(frames));
        for channel in 0..self.channels {
            let out = self.buf.chan_mut(channel);
            for (i, sample) in out.iter_mut().enumerate() {
                *sample = self.pcm[i * self.channels + channel];
            }
        }
        // The container's gapless trimming where it gives one, else the
        // pre-skip: the encoder's look-ahead, not part of the recording.
        let mut front = packet.trim_start as usize;
        if front > 0 {
            self.pre_skip = 0;
        } else {
            front = self.pre_skip.min(frames);
            self.pre_skip -= front;
        }
        self.buf.trim(front, packet.trim_end as usize);
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}

//! AMR-NB and AMR-WB speech (`.amr` files: old phone recorders, voicemail,
//! MMS) through opencore-amr, the decoders ffmpeg and Android use, from
//! Debian's libopencore-amrnb-dev and libopencore-amrwb-dev. symphonia has
//! neither the container nor the codecs, so both are here: a format reader
//! for the RFC 4867 storage format (a magic line, then frames each led by a
//! table-of-contents byte) and a codec that hands each frame to opencore.

use std::os::raw::{c_int, c_short, c_uchar, c_void};

use symphonia::core::audio::{
    AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec,
};
use symphonia::core::codecs::{
    decl_codec_type, CodecDescriptor, CodecParameters, CodecType, Decoder, DecoderOptions,
    FinalizeResult,
};
use symphonia::core::errors::{seek_error, unsupported_error, Result, SeekErrorKind};
use symphonia::core::formats::{
    Cue, FormatOptions, FormatReader, Packet, SeekMode, SeekTo, SeekedTo, Track,
};
use symphonia::core::io::{MediaSourceStream, ReadBytes};
use symphonia::core::meta::{Metadata, MetadataLog};
use symphonia::core::probe::{Descriptor, Instantiate, QueryDescriptor};
use symphonia::core::support_codec;
use symphonia::core::units::TimeBase;

/// AMR narrowband: 8 kHz, 160 samples per 20 ms frame.
pub(crate) const CODEC_TYPE_AMR_NB: CodecType = decl_codec_type(b"amrnb");
/// AMR wideband: 16 kHz, 320 samples per 20 ms frame.
pub(crate) const CODEC_TYPE_AMR_WB: CodecType = decl_codec_type(b"amrwb");

const MAGIC_NB: &[u8] = b"#!AMR\n";
const MAGIC_WB: &[u8] = b"#!AMR-WB\n";

/// Speech bytes after the table-of-contents byte, by frame type (RFC 4867
/// section 5.3; 3GPP TS 26.101 and 26.201). Reserved types carry nothing.
const NB_SIZES: [usize; 16] = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0];
const WB_SIZES: [usize; 16] = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0];
/// The frame type meaning "no data", given to opencore for reserved types.
const NO_DATA: u8 = 15;
/// Room for the largest frame and its table-of-contents byte.
const FRAME_BUF: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Band {
    Narrow,
    Wide,
}

impl Band {
    fn rate(self) -> u32 {
        match self {
            Band::Narrow => 8_000,
            Band::Wide => 16_000,
        }
    }

    fn samples(self) -> usize {
        match self {
            Band::Narrow => 160,
            Band::Wide => 320,
        }
    }

    fn sizes(self) -> &'static [usize; 16] {
        match self {
            Band::Narrow => &NB_SIZES,
            Band::Wide => &WB_SIZES,
        }
    }

    fn of(codec: CodecType) -> Option<Band> {
        match codec {
            CODEC_TYPE_AMR_NB => Some(Band::Narrow),
            CODEC_TYPE_AMR_WB => Some(Band::Wide),
            _ => None,
        }
    }

    /// The table-of-contents byte with a reserved frame type made "no
    /// data", so opencore only ever sees types it defines.
    fn sanitize(self, toc: u8) -> u8 {
        let kind = (toc >> 3) & 0x0f;
        let defined = match self {
            Band::Narrow => kind <= 8 || kind == NO_DATA,
            Band::Wide => kind <= 9 || kind >= 14,
        };
        if defined {
            toc & 0x7c
        } else {
            (NO_DATA << 3) | (toc & 0x04)
        }
    }
}

/// An `.amr` file: one track of AMR-NB or AMR-WB frames.
pub struct AmrReader {
    reader: MediaSourceStream,
    tracks: Vec<Track>,
    band: Band,
    metadata: MetadataLog,
    /// Frames handed out so far, each 20 ms.
    frames: u64,
}

impl QueryDescriptor for AmrReader {
    fn query() -> &'static [Descriptor] {
        &[Descriptor {
            short_name: "amr",
            long_name: "Adaptive Multi-Rate (RFC 4867 storage format)",
            extensions: &["amr", "awb"],
            mime_types: &["audio/amr", "audio/amr-wb"],
            markers: &[MAGIC_NB, MAGIC_WB],
            score: Self::score,
            inst: Instantiate::Format(|source, options| {
                Ok(Box::new(AmrReader::try_new(source, options)?))
            }),
        }]
    }

    fn score(_context: &[u8]) -> u8 {
        255
    }
}

impl FormatReader for AmrReader {
    fn try_new(mut source: MediaSourceStream, _options: &FormatOptions) -> Result<Self> {
        let mut magic = [0u8; 6];
        source.read_buf_exact(&mut magic)?;
        let band = if magic == MAGIC_NB {
            Band::Narrow
        } else if magic == MAGIC_WB[..6] {
            let mut rest = [0u8; 3];
            source.read_buf_exact(&mut rest)?;
            if rest != MAGIC_WB[6..] {
                // "#!AMR_MC1.0\n" and "#!AMR-WB_MC1.0\n": several channels
                // interleaved, which no recorder of speech writes.
                return unsupported_error("amr: multichannel AMR");
            }
            Band::Wide
        } else {
            return unsupported_error("amr: multichannel AMR");
        };
        let codec = match band {
            Band::Narrow => CODEC_TYPE_AMR_NB,
            Band::Wide => CODEC_TYPE_AMR_WB,
        };
        let mut params = CodecParameters::new();
        params
            .for_codec(codec)
            .with_sample_rate(band.rate())
            .with_time_base(TimeBase::new(1, band.rate()))
            .with_channels(Channels::FRONT_LEFT)
            .with_max_frames_per_packet(band.samples() as u64);
        Ok(Self {
            reader: source,
            tracks: vec![Track::new(0, params)],
            band,
            metadata: MetadataLog::default(),
            frames: 0,
        })
    }

    fn cues(&self) -> &[Cue] {
        &[]
    }

    fn metadata(&mut self) -> Metadata<'_> {
        self.metadata.metadata()
    }

    fn seek(&mut self, _mode: SeekMode, _to: SeekTo) -> Result<SeekedTo> {
        seek_error(SeekErrorKind::Unseekable)
    }

    fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    fn next_packet(&mut self) -> Result<Packet> {
        // The end of the file surfaces as UnexpectedEof, symphonia's end of stream.
        let toc = self.reader.read_byte()?;
        let size = self.band.sizes()[usize::from((toc >> 3) & 0x0f)];
        let mut frame = vec![0u8; 1 + size];
        frame[0] = toc;
        self.reader.read_buf_exact(&mut frame[1..])?;
        let samples = self.band.samples() as u64;
        let packet = Packet::new_from_boxed_slice(
            0,
            self.frames * samples,
            samples,
            frame.into_boxed_slice(),
        );
        self.frames += 1;
        Ok(packet)
    }

    fn into_inner(self: Box<Self>) -> MediaSourceStream {
        self.reader
    }
}

extern "C" {
    // opencore-amrnb/interf_dec.h
    fn Decoder_Interface_init() -> *mut c_void;
    fn Decoder_Interface_exit(state: *mut c_void);
    fn Decoder_Interface_Decode(
        state: *mut c_void,
        input: *const c_uchar,
        out: *mut c_short,
        bfi: c_int,
    );
    // opencore-amrwb/dec_if.h
    fn D_IF_init() -> *mut c_void;
    fn D_IF_decode(state: *mut c_void, bits: *const c_uchar, synth: *mut c_short, bfi: c_int);
    fn D_IF_exit(state: *mut c_void);
}

#[link(name = "opencore-amrnb")]
extern "C" {}
#[link(name = "opencore-amrwb")]
extern "C" {}

/// An opencore decoder state, owned; only `&mut self` methods touch it.
struct State {
    ptr: *mut c_void,
    band: Band,
}

// SAFETY: the state is only used through `&mut AmrDecoder`, never shared
// between threads at once, and opencore keeps no thread-local data.
unsafe impl Send for State {}
// SAFETY: no `&self` method reads or writes the state.
unsafe impl Sync for State {}

impl State {
    fn new(band: Band) -> Result<Self> {
        // SAFETY: plain constructors; a null result is handled below.
        let ptr = unsafe {
            match band {
                Band::Narrow => Decoder_Interface_init(),
                Band::Wide => D_IF_init(),
            }
        };
        if ptr.is_null() {
            return unsupported_error("amr: decoder could not be created");
        }
        Ok(Self { ptr, band })
    }

    /// Decodes one frame (its table-of-contents byte first, zero-padded to
    /// [`FRAME_BUF`]) into `out`, which holds the band's samples per frame.
    fn decode(&mut self, frame: &[u8; FRAME_BUF], out: &mut [c_short]) {
        debug_assert_eq!(out.len(), self.band.samples());
        // SAFETY: the state is live; `frame` holds more than the largest
        // frame of a type the TOC byte names (reserved types were made "no
        // data"), and `out` holds the 160 / 320 samples one frame makes.
        unsafe {
            match self.band {
                Band::Narrow => {
                    Decoder_Interface_Decode(self.ptr, frame.as_ptr(), out.as_mut_ptr(), 0)
                }
                Band::Wide => D_IF_decode(self.ptr, frame.as_ptr(), out.as_mut_ptr(), 0),
            }
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // SAFETY: created by the matching init and released once.
        unsafe {
            match self.band {
                Band::Narrow => Decoder_Interface_exit(self.ptr),
                Band::Wide => D_IF_exit(self.ptr),
            }
        }
    }
}

/// AMR frames to 8 or 16 kHz mono f32.
pub struct AmrDecoder {
    params: CodecParameters,
    state: State,
    pcm: Vec<c_short>,
    buf: AudioBuffer<f32>,
}

impl Decoder for AmrDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let Some(band) = Band::of(params.codec) else {
            return unsupported_error("amr: not an AMR track");
        };
        Ok(Self {
            params: params.clone(),
            state: State::new(band)?,
            pcm: vec![0; band.samples()],
            buf: AudioBuffer::new(
                band.samples() as u64,
                SignalSpec::new(band.rate(), Channels::FRONT_LEFT),
            ),
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[
            support_codec!(CODEC_TYPE_AMR_NB, "amr_nb", "AMR narrowband"),
            support_codec!(CODEC_TYPE_AMR_WB, "amr_wb", "AMR wideband"),
        ]
    }

    fn reset(&mut self) {
        if let Ok(state) = State::new(self.state.band) {
            self.state = state;
        }
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        let data = packet.buf();
        let mut frame = [0u8; FRAME_BUF];
        let n = data.len().min(FRAME_BUF);
        frame[..n].copy_from_slice(&data[..n]);
        frame[0] = self.state.band.sanitize(frame[0]);
        self.state.decode(&frame, &mut self.pcm);
        self.buf.clear();
        self.buf.render_reserved(Some(self.pcm.len()));
        for (out, sample) in self.buf.chan_mut(0).iter_mut().zip(&self.pcm) {
            *out = f32::from(*sample) / 32_768.0;
        }
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_frame_types_become_no_data() {
        // Narrowband: 9-14 reserved; the Q bit is kept, padding cleared.
        assert_eq!(Band::Narrow.sanitize(9 << 3 | 0x04), NO_DATA << 3 | 0x04);
        assert_eq!(Band::Narrow.sanitize(7 << 3 | 0x07), 7 << 3 | 0x04);
        assert_eq!(Band::Narrow.sanitize(0x80 | 2 << 3), 2 << 3);
        // Wideband: 10-13 reserved, 14 (speech lost) and 15 defined.
        assert_eq!(Band::Wide.sanitize(12 << 3), NO_DATA << 3);
        assert_eq!(Band::Wide.sanitize(14 << 3), 14 << 3);
        assert_eq!(Band::Wide.sanitize(8 << 3), 8 << 3);
    }
}

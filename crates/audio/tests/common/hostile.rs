//! A corpus of malformed and hostile audio files, made at test time from the
//! generated fixtures: shared by the audio crate's in-process test and the
//! CLI's `process` test (which includes this file by path).
//!
//! [`must_fail`] files can hold no audio anyone could want: each must be
//! refused with a reason. [`sweep`] files are cut and bit-flipped at many
//! points: any of them may decode (a prefix of speech is still speech) or
//! fail, but none may panic, hang or take unbounded memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A little-endian WAV: `fmt ` with the given fields, then `data` declaring
/// `data_len` bytes, followed by `body`.
pub fn wav(
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data_len: u32,
    body: &[u8],
) -> Vec<u8> {
    let block_align = channels.wrapping_mul(bits / 8);
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&36u32.wrapping_add(data_len).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&format_tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
    f.extend_from_slice(&block_align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&data_len.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// Deterministic bytes that look random (xorshift64*).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Ogg's page CRC (polynomial 0x04C11DB7, not reflected, initial 0).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The byte ranges of the Ogg pages at the start of `file`.
fn ogg_pages(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let mut at = 0;
    while at + 27 <= file.len() && &file[at..at + 4] == b"OggS" {
        let segments = usize::from(file[at + 26]);
        if at + 27 + segments > file.len() {
            break;
        }
        let body: usize = file[at + 27..at + 27 + segments]
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        let end = (at + 27 + segments + body).min(file.len());
        pages.push(at..end);
        at = end;
    }
    pages
}

/// Rewrites the CRC of the Ogg page in `range` after its bytes were changed.
fn fix_ogg_crc(file: &mut [u8], range: std::ops::Range<usize>) {
    file[range.start + 22..range.start + 26].fill(0);
    let crc = ogg_crc(&file[range.clone()]);
    file[range.start + 22..range.start + 26].copy_from_slice(&crc.to_le_bytes());
}

/// An EBML element: its id bytes, an 8-byte size, its payload.
fn ebml(id: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = id.to_vec();
    e.push(0x01);
    e.extend_from_slice(&(payload.len() as u64).to_be_bytes()[1..]);
    e.extend_from_slice(payload);
    e
}

fn ebml_uint(id: &[u8], v: u64) -> Vec<u8> {
    ebml(id, &v.to_be_bytes())
}

/// A Matroska file with one PCM track of `rate` Hz and `channels`, and
/// `blocks` SimpleBlocks of `block` bytes each (none: a zero-length track).
/// (symphonia 0.5 demuxes PCM in Matroska but cannot decode it: these
/// exercise the demuxer's header parsing.)
pub fn mkv(rate: f64, channels: u64, blocks: usize, block: &[u8]) -> Vec<u8> {
    mkv_track(b"A_PCM/INT/LIT", None, rate, channels, blocks, block)
}

/// A Matroska file with one mono Opus track whose blocks are each one
/// 20 ms Opus frame (a lost frame: libopus conceals it as silence).
pub fn mkv_opus(blocks: usize) -> Vec<u8> {
    let mut head = b"OpusHead\x01\x01\x38\x01\x80\x3e\x00\x00\x00\x00\x00".to_vec();
    head.truncate(19);
    mkv_track(b"A_OPUS", Some(&head), 48_000.0, 1, blocks, &[0xF8])
}

fn mkv_track(
    codec: &[u8],
    private: Option<&[u8]>,
    rate: f64,
    channels: u64,
    blocks: usize,
    block: &[u8],
) -> Vec<u8> {
    let header = ebml(
        &[0x1A, 0x45, 0xDF, 0xA3],
        &[
            ebml_uint(&[0x42, 0x86], 1),
            ebml_uint(&[0x42, 0xF7], 1),
            ebml_uint(&[0x42, 0xF2], 4),
            ebml_uint(&[0x42, 0xF3], 8),
            ebml(&[0x42, 0x82], b"matroska"),
            ebml_uint(&[0x42, 0x87], 4),
            ebml_uint(&[0x42, 0x85], 2),
        ]
        .concat(),
    );
    let info = ebml(
        &[0x15, 0x49, 0xA9, 0x66],
        &ebml_uint(&[0x2A, 0xD7, 0xB1], 1_000_000),
    );
    let audio = ebml(
        &[0xE1],
        &[
            ebml(&[0xB5], &rate.to_be_bytes()),
            ebml_uint(&[0x9F], channels),
            ebml_uint(&[0x62, 0x64], 16),
        ]
        .concat(),
    );
    let track = ebml(
        &[0xAE],
        &[
            ebml_uint(&[0xD7], 1),
            ebml_uint(&[0x73, 0xC5], 1),
            ebml_uint(&[0x83], 2),
            ebml(&[0x86], codec),
            private.map_or_else(Vec::new, |p| ebml(&[0x63, 0xA2], p)),
            audio,
        ]
        .concat(),
    );
    let tracks = ebml(&[0x16, 0x54, 0xAE, 0x6B], &track);
    let mut cluster = ebml_uint(&[0xE7], 0);
    for i in 0..blocks {
        let mut b = vec![0x81];
        b.extend_from_slice(&((i * 20) as i16).to_be_bytes());
        b.push(0x80);
        b.extend_from_slice(block);
        cluster.extend(ebml(&[0xA3], &b));
    }
    let mut segment = [info, tracks].concat();
    if blocks > 0 {
        segment.extend(ebml(&[0x1F, 0x43, 0xB6, 0x75], &cluster));
    }
    [header, ebml(&[0x18, 0x53, 0x80, 0x67], &segment)].concat()
}

/// An ID3v2.4 tag of `payload` (a TXXX-like frame of that many bytes).
fn id3(declared: u32, payload: &[u8]) -> Vec<u8> {
    let syncsafe = |n: u32| {
        [
            ((n >> 21) & 0x7F) as u8,
            ((n >> 14) & 0x7F) as u8,
            ((n >> 7) & 0x7F) as u8,
            (n & 0x7F) as u8,
        ]
    };
    let mut t = b"ID3\x04\x00\x00".to_vec();
    t.extend_from_slice(&syncsafe(declared));
    // A text frame: UTF-8, then the payload as its text.
    t.extend_from_slice(b"TIT2");
    t.extend_from_slice(&syncsafe(payload.len() as u32 + 1));
    t.extend_from_slice(&[0, 0, 3]);
    t.extend(payload.iter().map(|b| b'a' + b % 26));
    t
}

fn ffmpeg(input: &Path, args: &[&str], out: &Path) {
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(input)
        .args(args)
        .arg(out)
        .status()
        .expect("run ffmpeg")
        .success();
    assert!(ok, "ffmpeg could not make {}", out.display());
}

/// The well-formed sources the corpus is cut from, by extension: the
/// fixtures, and Opus and Matroska made from speech.wav with ffmpeg.
pub fn sources(fixtures: &Path, scratch: &Path) -> Vec<(&'static str, Vec<u8>)> {
    std::fs::create_dir_all(scratch).expect("scratch dir");
    let wav = fixtures.join("speech.wav");
    let opus = scratch.join("source.opus");
    let mkv = scratch.join("source.mkv");
    if !opus.exists() {
        ffmpeg(&wav, &["-c:a", "libopus", "-b:a", "24k"], &opus);
    }
    if !mkv.exists() {
        ffmpeg(&wav, &["-c:a", "libopus"], &mkv);
    }
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    vec![
        ("wav", read(&wav)),
        ("mp3", read(&fixtures.join("speech.mp3"))),
        ("flac", read(&fixtures.join("speech.flac"))),
        ("ogg", read(&fixtures.join("speech.ogg"))),
        ("m4a", read(&fixtures.join("speech.m4a"))),
        ("opus", read(&opus)),
        ("mkv", read(&mkv)),
    ]
}

fn source<'a>(sources: &'a [(&str, Vec<u8>)], ext: &str) -> &'a [u8] {
    &sources.iter().find(|(e, _)| *e == ext).expect("source").1
}

/// Writes the files that must each be refused into `dir`; their paths.
pub fn must_fail(fixtures: &Path, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let src = sources(fixtures, &dir.join(".sources"));
    let s = |ext| source(&src, ext);
    let second = noise(32_000, 7);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        // Absurd rates and channel counts, as the header states them.
        (
            "rate-1hz.wav".into(),
            wav(1, 1, 1, 16, 4000, &noise(4000, 1)),
        ),
        (
            "rate-0hz.wav".into(),
            wav(1, 1, 0, 16, 4000, &noise(4000, 2)),
        ),
        (
            "rate-4ghz.wav".into(),
            wav(1, 1, u32::MAX, 16, 32_000, &second),
        ),
        (
            "channels-0.wav".into(),
            wav(1, 0, 16_000, 16, 32_000, &second),
        ),
        (
            "channels-65535.wav".into(),
            wav(1, u16::MAX, 16_000, 16, 32_000, &second),
        ),
        ("bits-0.wav".into(), wav(1, 1, 16_000, 0, 32_000, &second)),
        (
            "format-tag-ffff.wav".into(),
            wav(0xFFFF, 1, 16_000, 16, 32_000, &second),
        ),
        // Zero-length tracks.
        ("header-only.wav".into(), wav(1, 1, 16_000, 16, 0, &[])),
        ("no-blocks.mkv".into(), mkv_opus(0)),
        // Huge declared sizes over a small body.
        (
            "huge-data.wav".into(),
            wav(1, 1, 16_000, 16, u32::MAX, &second),
        ),
        ("huge-fmt.wav".into(), {
            let mut f = wav(1, 1, 16_000, 16, 32_000, &second);
            f[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            f
        }),
        ("huge-id3.mp3".into(), id3(0x0FFF_FFFF, &noise(1000, 3))),
        ("huge-block.mkv".into(), {
            let mut f = mkv_opus(1);
            // The SimpleBlock's size: 2^48 bytes where 5 are.
            let at = f.len() - 5 - 7;
            f[at..at + 7].copy_from_slice(&(1u64 << 48).to_be_bytes()[1..]);
            f
        }),
        // Absurd Matroska audio fields.
        ("mkv-rate-0.mkv".into(), mkv(0.0, 1, 10, &second[..640])),
        (
            "mkv-rate-nan.mkv".into(),
            mkv(f64::NAN, 1, 10, &second[..640]),
        ),
        ("mkv-rate-1e12.mkv".into(), mkv(1e12, 1, 10, &second[..640])),
        (
            "mkv-channels-100000.mkv".into(),
            mkv(16_000.0, 100_000, 10, &second[..640]),
        ),
        // Only metadata: a tag with no audio after it.
        ("only-id3.mp3".into(), id3(100_011, &noise(100_000, 4))),
        ("only-metadata.flac".into(), {
            // STREAMINFO (made last) and nothing after it.
            let mut f = s("flac")[..42].to_vec();
            f[4] |= 0x80;
            f
        }),
        // A valid header on random data.
        (
            "random-after-header.flac".into(),
            [&s("flac")[..42], &noise(65_536, 5)].concat(),
        ),
        ("random-after-header.ogg".into(), {
            let ogg = s("ogg");
            let pages = ogg_pages(ogg);
            // Identification, comment and setup headers end by the third page.
            let end = pages[..3.min(pages.len())].last().expect("page").end;
            [&ogg[..end], &noise(65_536, 6)].concat()
        }),
        // Bit-flipped headers.
        ("flipped-magic.wav".into(), flip(s("wav"), 0, 0x01)),
        ("flipped-magic.flac".into(), flip(s("flac"), 1, 0x20)),
        ("flipped-ftyp.m4a".into(), flip(s("m4a"), 4, 0x40)),
        ("flac-rate-0.flac".into(), {
            // STREAMINFO's 20-bit sample rate starts at byte 18.
            let mut f = s("flac").to_vec();
            f[18] = 0;
            f[19] = 0;
            f[20] &= 0x0F;
            f
        }),
        (
            "opus-255-channels.opus".into(),
            opus_head(s("opus"), 9, 255),
        ),
        ("opus-0-channels.opus".into(), opus_head(s("opus"), 9, 0)),
        ("opus-headers-only.opus".into(), {
            let opus = s("opus");
            let pages = ogg_pages(opus);
            opus[..pages[1].end].to_vec()
        }),
        // Nested containers: a whole WAV behind an ID3 tag, an MP4 in a
        // Matroska block, 100 000 Matroska elements each inside the last.
        (
            "wav-behind-id3.mp3".into(),
            [id3(10, &[0; 10]), s("wav")[..4096].to_vec()].concat(),
        ),
        ("deep-nesting.mkv".into(), {
            let mut f = mkv_opus(0);
            // Segment of unknown size, then Cluster after Cluster opened
            // and never closed.
            for _ in 0..100_000 {
                f.extend_from_slice(&[
                    0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                ]);
            }
            f
        }),
        // Truncated inside the headers, where no audio has started.
        ("cut-at-4.wav".into(), s("wav")[..4].to_vec()),
        ("cut-at-40.wav".into(), s("wav")[..40].to_vec()),
        ("cut-at-30.flac".into(), s("flac")[..30].to_vec()),
        ("cut-at-60.ogg".into(), s("ogg")[..60].to_vec()),
        (
            "cut-at-half.m4a".into(),
            s("m4a")[..s("m4a").len() / 2].to_vec(),
        ),
        ("cut-at-40.opus".into(), s("opus")[..40].to_vec()),
        ("cut-at-100.mkv".into(), s("mkv")[..100].to_vec()),
        // Not audio at all.
        (
            "text.wav".into(),
            b"This is a text file, not audio.\n".to_vec(),
        ),
        ("random.mp3".into(), noise(65_536, 8)),
        ("zero-bytes.wav".into(), Vec::new()),
    ];
    // An MP4 inside Matroska: a PCM track's block holding an MP4 file is
    // noise-like PCM, not a nested file; the nesting here is an MP4 whose
    // only box is a Matroska file.
    files.push(("mkv-in-mp4.m4a".into(), {
        let inner = s("mkv");
        let mut f = Vec::new();
        f.extend_from_slice(&28u32.to_be_bytes());
        f.extend_from_slice(b"ftypM4A \0\0\x02\0M4A isomiso2");
        f.extend_from_slice(&((inner.len() + 8) as u32).to_be_bytes());
        f.extend_from_slice(b"moov");
        f.extend_from_slice(inner);
        f
    }));
    let mut paths = Vec::new();
    for (name, bytes) in files {
        let p = dir.join(&name);
        std::fs::write(&p, bytes).expect("write corpus file");
        paths.push(p);
    }
    // A directory named like audio, and a symlink that points at itself.
    let folder = dir.join("folder.wav");
    std::fs::create_dir_all(&folder).expect("dir");
    paths.push(folder);
    let looped = dir.join("loop.mp3");
    let _ = std::fs::remove_file(&looped);
    std::os::unix::fs::symlink("loop.mp3", &looped).expect("symlink");
    paths.push(looped);
    paths
}

fn flip(file: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut f = file.to_vec();
    f[at] ^= mask;
    f
}

/// The Opus file with byte `offset` of its OpusHead set to `value` (the
/// page's CRC rewritten, so that only the field is wrong).
fn opus_head(file: &[u8], offset: usize, value: u8) -> Vec<u8> {
    let mut f = file.to_vec();
    let page = ogg_pages(&f)[0].clone();
    let segments = usize::from(f[page.start + 26]);
    let body = page.start + 27 + segments;
    assert_eq!(&f[body..body + 8], b"OpusHead", "first page is OpusHead");
    f[body + offset] = value;
    fix_ogg_crc(&mut f, page);
    f
}

/// Every source cut at `cuts` points spread over its first 4 KiB and over
/// its whole length, and with one bit flipped at `flips` points of its
/// first 512 bytes: (name, bytes).
pub fn sweep(fixtures: &Path, scratch: &Path, cuts: usize, flips: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (ext, bytes) in sources(fixtures, scratch) {
        let len = bytes.len();
        let mut points: Vec<usize> = (0..cuts).map(|i| i * 4096.min(len) / cuts).collect();
        points.extend((1..cuts).map(|i| i * len / cuts));
        points.sort_unstable();
        points.dedup();
        for at in points {
            out.push((format!("cut-{at}.{ext}"), bytes[..at].to_vec()));
        }
        let positions = noise(flips * 3, len as u64);
        for i in 0..flips {
            let at = (usize::from(positions[3 * i]) << 8 | usize::from(positions[3 * i + 1]))
                % 512.min(len);
            let bit = positions[3 * i + 2] % 8;
            out.push((format!("flip-{at}-{bit}.{ext}"), flip(&bytes, at, 1 << bit)));
        }
    }
    out
}

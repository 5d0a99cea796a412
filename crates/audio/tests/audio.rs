//! Probing, decoding, errors and hashing against the generated fixtures,
//! with ffprobe, ffmpeg and sha256sum as the reference.

mod common;

use std::io;
use std::path::Path;
use std::process::Command;

use common::{best_correlation, decode_all, ffmpeg_16k, ffprobe_duration, fixtures, rms};
use pipeline_audio::{probe, sha256_file, AudioError, Decoder, TARGET_SAMPLE_RATE};

/// (file, container, codec, sample rate, channels, speech?)
const FORMATS: &[(&str, &str, &str, u32, u16, bool)] = &[
    ("speech.wav", "wav", "pcm_s16le", 22050, 1, true),
    ("speech-stereo-44k.wav", "wav", "pcm_s16le", 44100, 2, true),
    ("speech-8k.wav", "wav", "pcm_s16le", 8000, 1, true),
    ("speech.mp3", "mp3", "mp3", 22050, 1, true),
    ("speech.flac", "flac", "flac", 22050, 1, true),
    ("speech.ogg", "ogg", "vorbis", 22050, 1, true),
    ("speech.m4a", "m4a", "aac", 22050, 1, true),
    ("silence-30s.wav", "wav", "pcm_s16le", 16000, 1, false),
];

#[test]
fn probe_reports_format_and_duration_like_ffprobe() {
    let dir = fixtures();
    for &(name, container, codec, rate, channels, _) in FORMATS {
        let path = dir.join(name);
        let info = probe(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.container, container, "{name}");
        assert_eq!(info.codec, codec, "{name}");
        assert_eq!(info.sample_rate, rate, "{name}");
        assert_eq!(info.channels, channels, "{name}");
        let reference = ffprobe_duration(&path);
        eprintln!(
            "{name}: ours {:.4}s ffprobe {reference:.4}s",
            info.duration_seconds
        );
        assert!(
            (info.duration_seconds - reference).abs() < 0.1,
            "{name}: duration {} vs ffprobe {reference}",
            info.duration_seconds
        );
    }
}

#[test]
fn decoding_yields_16k_mono_of_the_right_length_and_level() {
    let dir = fixtures();
    for &(name, _, _, _, _, speech) in FORMATS {
        let path = dir.join(name);
        let samples = decode_all(&path, 16_000);
        let expected = ffprobe_duration(&path) * f64::from(TARGET_SAMPLE_RATE);
        let ratio = samples.len() as f64 / expected;
        eprintln!(
            "{name}: {} samples, expected {expected:.0} ({ratio:.4}), rms {:.4}",
            samples.len(),
            rms(&samples)
        );
        assert!(
            (ratio - 1.0).abs() < 0.01,
            "{name}: {} samples, expected {expected:.0}",
            samples.len()
        );
        assert!(
            samples.iter().all(|v| (-1.0..=1.0).contains(v)),
            "{name}: sample out of range"
        );
        if speech {
            assert!(
                rms(&samples) > 0.02,
                "{name}: speech decodes as near-silence"
            );
        } else {
            assert!(rms(&samples) < 1e-4, "{name}: silence decodes as sound");
        }
    }
}

#[test]
fn stereo_and_8k_inputs_give_the_same_length_as_mono() {
    let dir = fixtures();
    let mono = decode_all(&dir.join("speech.wav"), 4096).len();
    for name in ["speech-stereo-44k.wav", "speech-8k.wav", "speech.flac"] {
        let n = decode_all(&dir.join(name), 4096).len();
        assert!(
            n.abs_diff(mono) <= 2,
            "{name}: {n} samples, mono has {mono}"
        );
    }
}

#[test]
fn output_matches_ffmpeg_resampling() {
    let dir = fixtures();
    for name in [
        "speech.wav",
        "speech-stereo-44k.wav",
        "speech-8k.wav",
        "speech.flac",
    ] {
        let path = dir.join(name);
        let ours = decode_all(&path, 10_000);
        let theirs = ffmpeg_16k(&path);
        let (c, lag) = best_correlation(&ours, &theirs, 16);
        eprintln!(
            "{name}: correlation {c:.5} at lag {lag}; lengths {} vs {}",
            ours.len(),
            theirs.len()
        );
        assert!(
            c > 0.95,
            "{name}: correlation with ffmpeg {c:.4} at lag {lag}"
        );
        assert!(
            lag.abs() <= 2,
            "{name}: output shifted by {lag} samples against ffmpeg"
        );
        assert!(
            ours.len().abs_diff(theirs.len()) <= 16,
            "{name}: {} vs ffmpeg {}",
            ours.len(),
            theirs.len()
        );
    }
}

#[test]
fn lossy_formats_correlate_with_the_lossless_source() {
    let dir = fixtures();
    let wav = decode_all(&dir.join("speech.wav"), 16_000);
    for name in ["speech.mp3", "speech.ogg", "speech.m4a"] {
        let ours = decode_all(&dir.join(name), 16_000);
        let (c, lag) = best_correlation(&wav, &ours, 64);
        eprintln!("{name}: correlation with wav {c:.4} at lag {lag}");
        assert!(
            c > 0.9,
            "{name}: correlation with the wav {c:.4} at lag {lag}"
        );
        // Encoder delay (mp3) and priming (aac) must be trimmed, not left as a shift.
        assert!(
            lag.abs() <= 2,
            "{name}: shifted by {lag} samples against the wav"
        );
    }
}

#[test]
fn read_gives_the_same_samples_whatever_the_buffer_size() {
    let path = fixtures().join("speech-stereo-44k.wav");
    let big = decode_all(&path, 1 << 20);
    for chunk in [1, 7, 1000, 4096] {
        assert_eq!(decode_all(&path, chunk), big, "chunk {chunk}");
    }
    let mut d = Decoder::open(&path).unwrap();
    let mut buf = vec![0.0; big.len() + 10];
    assert_eq!(d.read(&mut buf).unwrap(), big.len());
    assert_eq!(d.read(&mut buf).unwrap(), 0);
    assert_eq!(d.read(&mut buf).unwrap(), 0);
    assert!((d.position_seconds() - big.len() as f64 / 16_000.0).abs() < 1e-9);
    assert_eq!(d.info().sample_rate, 44100);
}

#[test]
fn input_of_an_exact_number_of_resampler_chunks_ends_cleanly() {
    // 2 s at 22 050 Hz is a whole number of the resampler's input blocks, so
    // the stream ends with nothing left over to flush but the filter's tail.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tone.wav");
    let ok = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=22050",
            "-t",
            "2",
        ])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg could not make a tone");
    assert_eq!(decode_all(&path, 4096).len(), 32_000);
}

#[test]
fn odd_sample_rate_uses_the_sinc_resampler_and_stays_aligned() {
    // 44 101 Hz shares no factor with 16 kHz, so the FFT resampler would need
    // a 44 101-point block; the sinc resampler takes over.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("odd-rate.wav");
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(fixtures().join("speech.wav"))
        .args(["-ar", "44101", "-c:a", "pcm_s16le"])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg could not resample");
    assert_eq!(probe(&path).unwrap().sample_rate, 44101);
    let ours = decode_all(&path, 8192);
    let theirs = ffmpeg_16k(&path);
    let (c, lag) = best_correlation(&ours, &theirs, 16);
    eprintln!(
        "44101 Hz: correlation {c:.5} at lag {lag}; {} vs {} samples",
        ours.len(),
        theirs.len()
    );
    assert!(
        c > 0.95 && lag.abs() <= 2,
        "correlation {c:.4} at lag {lag}"
    );
    assert!(
        ours.len().abs_diff(theirs.len()) <= 16,
        "{} vs ffmpeg {}",
        ours.len(),
        theirs.len()
    );
}

fn expect_err(path: &Path) -> AudioError {
    let probed = probe(path).expect_err("probe should fail");
    let opened = match Decoder::open(path) {
        Ok(_) => panic!("{}: Decoder::open should fail", path.display()),
        Err(e) => e,
    };
    assert_eq!(probed.to_string(), opened.to_string());
    let msg = probed.to_string();
    assert!(
        msg.starts_with(&format!("{}: ", path.display())),
        "message does not name the file: {msg}"
    );
    assert!(!probed.is_retryable(), "{msg} should be permanent");
    probed
}

#[test]
fn empty_file_is_refused_as_empty() {
    let path = fixtures().join("empty.wav");
    let e = expect_err(&path);
    assert!(matches!(e, AudioError::Empty { .. }), "{e:?}");
    assert!(e.to_string().ends_with("empty.wav: file is empty"), "{e}");
}

#[test]
fn text_file_is_refused_as_unrecognized() {
    let path = fixtures().join("not-audio.txt");
    let e = expect_err(&path);
    assert!(matches!(e, AudioError::Unsupported { .. }), "{e:?}");
    assert!(
        e.to_string()
            .ends_with("not-audio.txt: not a supported audio file (unrecognized format)"),
        "{e}"
    );
}

#[test]
fn random_bytes_are_refused() {
    let path = fixtures().join("garbage.mp3");
    let e = expect_err(&path);
    // Random bytes hold mp3 sync words here and there, so the mp3 reader may
    // take the file and then find nothing decodes; either refusal is right.
    assert!(
        matches!(
            e,
            AudioError::Unsupported { .. } | AudioError::Undecodable { .. }
        ),
        "{e:?}"
    );
    eprintln!("garbage.mp3: {e}");
}

#[test]
fn missing_file_and_directory_are_refused() {
    let dir = fixtures();
    let missing = dir.join("no-such-file.mp3");
    let e = expect_err(&missing);
    assert!(matches!(e, AudioError::NotFound { .. }), "{e:?}");
    assert!(
        e.to_string().ends_with("no-such-file.mp3: file not found"),
        "{e}"
    );
    let e = expect_err(&dir);
    assert!(matches!(e, AudioError::NotAFile { .. }), "{e:?}");
    let e = sha256_file(&missing).unwrap_err();
    assert!(matches!(e, AudioError::NotFound { .. }), "{e:?}");
}

#[test]
fn truncated_mp3_decodes_its_valid_prefix() {
    let dir = fixtures();
    let full = decode_all(&dir.join("speech.mp3"), 16_000).len();
    let part = decode_all(&dir.join("truncated.mp3"), 16_000).len();
    eprintln!("truncated.mp3: {part} samples of {full}");
    assert!(
        part > 0 && part < full * 6 / 10,
        "truncated: {part} samples, full: {full}"
    );
}

/// A copy of `src` with `len` bytes at `at` (a fraction of the size) overwritten.
fn damaged_copy(src: &Path, dest: &Path, at: f64, len: usize) {
    let mut bytes = std::fs::read(src).unwrap();
    let start = (bytes.len() as f64 * at) as usize;
    let mut x: u32 = 0x1234_5678;
    for b in &mut bytes[start..start + len] {
        // xorshift: noise that is the same on every run.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(dest, bytes).unwrap();
}

#[test]
fn damage_in_the_middle_is_skipped_not_fatal() {
    let dir = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["speech.mp3", "speech.flac", "speech.ogg", "speech.m4a"] {
        let src = dir.join(name);
        let dest = tmp.path().join(name);
        damaged_copy(&src, &dest, 0.5, 2000);
        let full = decode_all(&src, 16_000);
        let mut d = Decoder::open(&dest).unwrap_or_else(|e| panic!("{e}"));
        let mut n = 0;
        let mut buf = vec![0.0; 16_000];
        loop {
            let k = d.read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            if k == 0 {
                break;
            }
            assert!(buf[..k].iter().all(|v| (-1.0..=1.0).contains(v)));
            n += k;
        }
        eprintln!(
            "{name} damaged: {n} samples of {}, {} packets skipped",
            full.len(),
            d.skipped_packets()
        );
        assert!(
            n > full.len() * 8 / 10,
            "{name}: only {n} of {} samples survive",
            full.len()
        );
    }
}

#[test]
fn mangled_files_never_panic() {
    // Bytes flipped at random places in every format: each file must come
    // back as audio or as an error, never as a panic or a hang.
    let dir = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut refused) = (0, 0);
    for name in [
        "speech.wav",
        "speech.mp3",
        "speech.flac",
        "speech.ogg",
        "speech.m4a",
    ] {
        let original = std::fs::read(dir.join(name)).unwrap();
        for round in 0..12 {
            let mut bytes = original.clone();
            // Early rounds hit the headers, later ones anywhere.
            let span = if round < 6 {
                bytes.len().min(4096)
            } else {
                bytes.len()
            };
            for _ in 0..(1 + next() % 16) {
                let at = (next() as usize) % span;
                bytes[at] = next() as u8;
            }
            let path = tmp.path().join(format!("{round}-{name}"));
            std::fs::write(&path, &bytes).unwrap();
            let result = std::panic::catch_unwind(|| {
                let mut d = Decoder::open(&path)?;
                let mut buf = vec![0.0; 16_000];
                while d.read(&mut buf)? > 0 {
                    assert!(buf.iter().all(|v| (-1.0..=1.0).contains(v)));
                }
                Ok::<_, AudioError>(())
            });
            match result {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    assert!(e.to_string().contains(&format!("{round}-{name}")), "{e}");
                    refused += 1;
                }
                Err(_) => panic!("{round}-{name} made the decoder panic"),
            }
        }
    }
    eprintln!("mangled files: {ok} decoded, {refused} refused");
}

#[test]
fn video_only_file_has_no_audio_track() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("video-only.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=16x16:d=1",
            "-c:v",
            "mpeg4",
        ])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg could not make a video-only file");
    let e = expect_err(&path);
    assert!(matches!(e, AudioError::NoAudioTrack { .. }), "{e:?}");
    assert!(
        e.to_string().ends_with("video-only.mp4: no audio track"),
        "{e}"
    );
}

#[test]
fn sha256_matches_sha256sum() {
    let dir = fixtures();
    for name in ["speech.wav", "speech.mp3", "empty.wav"] {
        let path = dir.join(name);
        let out = Command::new("sha256sum").arg(&path).output().unwrap();
        let reference = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let (hex, size) = sha256_file(&path).unwrap();
        assert_eq!(hex, reference, "{name}");
        assert_eq!(size, std::fs::metadata(&path).unwrap().len(), "{name}");
    }
}

#[test]
fn only_transient_io_errors_are_retryable() {
    let io_err = |kind| AudioError::Io {
        file: "z.mp3".into(),
        source: io::Error::new(kind, "boom"),
    };
    assert!(io_err(io::ErrorKind::Interrupted).is_retryable());
    assert!(io_err(io::ErrorKind::TimedOut).is_retryable());
    assert!(!io_err(io::ErrorKind::PermissionDenied).is_retryable());
    assert_eq!(
        io_err(io::ErrorKind::Other).to_string(),
        "z.mp3: I/O error reading file: boom"
    );
    assert!(!AudioError::NotFound { file: "a".into() }.is_retryable());
    assert!(!AudioError::Undecodable {
        file: "a".into(),
        reason: "x".into()
    }
    .is_retryable());
}

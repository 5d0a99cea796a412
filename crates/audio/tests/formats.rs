//! The containers and codecs beyond wav/mp3/flac/ogg/m4a, made from the
//! speech fixture with ffmpeg at test time and checked against ffmpeg's own
//! decoding; and the bounds no header can get past.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{best_correlation, decode_all, ffmpeg_16k, fixtures};
use pipeline_audio::{probe, probe_track, probe_with, AudioError, Decoder, Limits, Track};

fn ffmpeg(args: &[&str], out: &Path) {
    let ok = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("run ffmpeg")
        .success();
    assert!(ok, "ffmpeg could not make {}", out.display());
}

/// `speech.wav` in a container and codec, as ffmpeg writes it.
fn make(dir: &Path, name: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let speech = fixtures().join("speech.wav");
    let mut args = vec!["-i", speech.to_str().expect("utf-8 path")];
    args.extend_from_slice(codec);
    ffmpeg(&args, &path);
    path
}

#[test]
fn new_containers_and_codecs_decode_like_ffmpeg() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let cases: Vec<(&str, Vec<&str>, &str, &str)> = vec![
        // (file, ffmpeg codec args, container, codec)
        (
            "voice.opus",
            vec!["-c:a", "libopus", "-b:a", "32k"],
            "ogg",
            "opus",
        ),
        ("browser.webm", vec!["-c:a", "libopus"], "webm", "opus"),
        ("voice.mka", vec!["-c:a", "libopus"], "mkv", "opus"),
        ("vorbis.mkv", vec!["-c:a", "libvorbis"], "mkv", "vorbis"),
        ("flac.mkv", vec!["-c:a", "flac"], "mkv", "flac"),
        (
            "speech.aiff",
            vec!["-c:a", "pcm_s16be"],
            "aiff",
            "pcm_s16be",
        ),
        ("speech.caf", vec!["-c:a", "pcm_s16le"], "caf", "pcm_s16le"),
        // ffmpeg wraps CAF's ALAC cookie in frma/alac atoms.
        ("alac.caf", vec!["-c:a", "alac"], "caf", "alac"),
        ("pcm.mka", vec!["-c:a", "pcm_s16le"], "mkv", "pcm_s16le"),
        ("float.mka", vec!["-c:a", "pcm_f32le"], "mkv", "pcm_f32le"),
        ("speech.mov", vec!["-c:a", "aac", "-f", "mov"], "mov", "aac"),
    ];
    for (name, codec, container, codec_name) in cases {
        let path = make(dir, name, &codec);
        let info = probe(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            (container, codec_name),
            "{name}"
        );
        decodes_like_ffmpeg(&path, name);
    }
}

/// Our samples of `path` follow ffmpeg's (correlation above 0.9) and are as
/// long, within 0.1 s.
fn decodes_like_ffmpeg(path: &Path, name: &str) {
    let ours = decode_all(path, 10_000);
    let theirs = ffmpeg_16k(path);
    let (c, lag) = best_correlation(&ours, &theirs, 400);
    let seconds = |n: usize| n as f64 / 16_000.0;
    eprintln!(
        "{name}: {:.2} s, correlation {c:.4} at lag {lag}",
        seconds(ours.len())
    );
    assert!(c > 0.9, "{name}: correlation with ffmpeg {c:.4}");
    assert!(
        (seconds(ours.len()) - seconds(theirs.len())).abs() < 0.1,
        "{name}: {} samples vs ffmpeg's {}",
        ours.len(),
        theirs.len()
    );
}

/// AMR-NB and AMR-WB as a phone writes them (RFC 4867 storage format),
/// made by make-fixtures.sh's encoder, decoded like ffmpeg decodes them.
#[test]
fn amr_narrowband_and_wideband_decode_like_ffmpeg() {
    for (name, codec, rate) in [
        ("speech.amr", "amr_nb", 8_000),
        ("speech-wb.amr", "amr_wb", 16_000),
    ] {
        let path = fixtures().join(name);
        let info = probe(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (
                info.container.as_str(),
                info.codec.as_str(),
                info.sample_rate,
                info.channels
            ),
            ("amr", codec, rate, 1),
            "{name}"
        );
        decodes_like_ffmpeg(&path, name);
    }
    // Damage: a truncated file ends early, flipped bits decode as noise
    // or silence, never as an error past the first good frame or a panic.
    let bytes = std::fs::read(fixtures().join("speech.amr")).expect("read");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cut = tmp.path().join("cut.amr");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let whole = decode_all(&fixtures().join("speech.amr"), 10_000).len();
    let part = decode_all(&cut, 10_000).len();
    assert!(part > whole / 4 && part < whole / 2, "{part} of {whole}");
    let mut flipped = bytes.clone();
    for (i, b) in flipped.iter_mut().enumerate().skip(6) {
        if i % 7 == 0 {
            *b ^= 0xff;
        }
    }
    let noisy = tmp.path().join("flipped.amr");
    std::fs::write(&noisy, &flipped).expect("write");
    let _ = decode_all(&noisy, 10_000);
    // Multichannel AMR is refused by name.
    let mc = tmp.path().join("mc.amr");
    std::fs::write(&mc, b"#!AMR_MC1.0\n\0\0\0\x01\x3c\0\0\0\0\0\0\0\0\0\0\0").expect("write");
    let err = probe(&mc).expect_err("multichannel AMR");
    assert!(err.to_string().contains("mc.amr"), "{err}");
}

/// A file with two audio tracks (two languages, two microphones): the
/// default is the first, `Track::Index(1)` the second, and a track that is
/// not there is refused with how many there are.
#[test]
fn the_audio_track_asked_for_is_decoded() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let speech = fixtures().join("speech.wav");
    let german = fixtures().join("german.wav");
    let path = tmp.path().join("two-tracks.mkv");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=32x32:r=5",
            "-i",
            speech.to_str().expect("utf-8"),
            "-i",
            german.to_str().expect("utf-8"),
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-map",
            "2:a",
            "-shortest",
            "-c:v",
            "mpeg4",
            "-c:a",
            "libopus",
        ],
        &path,
    );
    let decode = |track: Track| {
        let mut d = Decoder::open_track(&path, &Limits::default(), track).expect("open");
        let mut out = Vec::new();
        let mut buf = vec![0.0; 8192];
        loop {
            let n = d.read(&mut buf).expect("read");
            if n == 0 {
                break out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    };
    // ffmpeg's rendering of each audio track of the same file.
    let track_of = |n: usize| -> Vec<f32> {
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args([
                "-map",
                &format!("0:a:{n}"),
                "-ar",
                "16000",
                "-ac",
                "1",
                "-f",
                "f32le",
                "-",
            ])
            .output()
            .expect("ffmpeg runs");
        assert!(out.status.success(), "ffmpeg track {n}");
        out.stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (first, second) = (track_of(0), track_of(1));
    for (track, want, other) in [
        (Track::Default, &first, &second),
        (Track::Index(0), &first, &second),
        (Track::Index(1), &second, &first),
    ] {
        let ours = decode(track);
        let n = ours.len().min(want.len()).min(other.len());
        let (c_want, _) = best_correlation(&ours[..n], &want[..n], 400);
        let (c_other, _) = best_correlation(&ours[..n], &other[..n], 400);
        eprintln!("{track}: {c_want:.3} with its source, {c_other:.3} with the other");
        assert!(
            c_want > 0.9 && c_other < 0.3,
            "{track}: {c_want:.3} / {c_other:.3}"
        );
    }
    let err = probe_track(&path, &Limits::default(), Track::Index(2)).expect_err("no third");
    assert!(
        err.to_string()
            .contains("audio track 2 asked for, the file has 2 (0 to 1)"),
        "{err}"
    );
    assert!(err.to_string().contains("two-tracks.mkv"), "{err}");
    assert_eq!("1".parse::<Track>(), Ok(Track::Index(1)));
    assert!("-1".parse::<Track>().is_err() && "999".parse::<Track>().is_err());
}

#[test]
fn the_audio_track_of_video_files_is_decoded() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let speech = fixtures().join("speech.wav");
    let speech = speech.to_str().expect("utf-8 path");
    for (name, video, audio) in [
        ("clip.mkv", "mpeg4", "libopus"),
        ("clip.webm", "libvpx", "libopus"),
        ("clip.mov", "mpeg4", "aac"),
    ] {
        let path = tmp.path().join(name);
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "color=c=black:s=32x32:r=5",
                "-i",
                speech,
                "-shortest",
                "-c:v",
                video,
                "-c:a",
                audio,
            ],
            &path,
        );
        let ours = decode_all(&path, 10_000);
        let theirs = ffmpeg_16k(&path);
        let (c, _) = best_correlation(&ours, &theirs, 400);
        assert!(c > 0.9, "{name}: correlation with ffmpeg {c:.4}");
    }
}

fn wav_header(rate: u32, channels: u16, data_bytes: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    h.extend_from_slice(&(channels * 2).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_bytes.to_le_bytes());
    h
}

fn noise_wav(path: &Path, rate: u32, channels: u16, bytes: u32) {
    let mut file = wav_header(rate, channels, bytes);
    file.extend((0..bytes).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(path, file).expect("write wav");
}

#[test]
fn absurd_rates_and_channel_counts_are_refused_by_name() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (name, rate, channels) in [
        ("one-hertz.wav", 1, 1),
        ("seven-hertz.wav", 7, 1),
        ("three-khz.wav", 3_999, 1),
        ("too-fast.wav", 768_000, 1),
        ("forty-channels.wav", 16_000, 40),
    ] {
        let path = tmp.path().join(name);
        noise_wav(&path, rate, channels, 4_000);
        let started = std::time::Instant::now();
        let err = probe(&path).expect_err(name);
        assert!(
            matches!(err, AudioError::Unsupported { .. }),
            "{name}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(name), "{text}");
        assert!(
            text.contains("sample rate") || text.contains("channels"),
            "{text}"
        );
        assert!(!err.is_retryable());
        assert!(Decoder::open(&path).is_err(), "{name}");
        assert!(
            started.elapsed().as_secs() < 5,
            "{name} took {:?}",
            started.elapsed()
        );
    }
    // The edges are taken.
    for rate in [4_000, 384_000] {
        let path = tmp.path().join(format!("edge-{rate}.wav"));
        noise_wav(&path, rate, 2, 64_000);
        let info = probe(&path).unwrap_or_else(|e| panic!("{rate} Hz: {e}"));
        assert_eq!(info.sample_rate, rate);
    }
}

#[test]
fn audio_over_the_duration_limit_is_refused_from_the_header_and_while_decoding() {
    let speech = fixtures().join("speech.wav");
    let short = Limits {
        max_duration_secs: 5.0,
    };
    let err = probe_with(&speech, &short).expect_err("11 s over a 5 s limit");
    assert!(matches!(err, AudioError::TooLong { .. }), "{err:?}");
    assert!(err.to_string().contains("max_duration_secs"), "{err}");
    // A header that states no length (an mp3 without a frame count, or a
    // stream) is counted while decoding.
    let tmp = tempfile::tempdir().expect("temp dir");
    let raw = tmp.path().join("stream.mka");
    ffmpeg(
        &[
            "-i",
            speech.to_str().expect("utf-8"),
            "-c:a",
            "libopus",
            "-f",
            "matroska",
            "-live",
            "1",
        ],
        &raw,
    );
    let result = Decoder::open_with(&raw, &short).and_then(|mut d| {
        let mut buf = vec![0.0f32; 16_000];
        while d.read(&mut buf)? > 0 {}
        Ok(())
    });
    let err = result.expect_err("decoded past the limit");
    assert!(matches!(err, AudioError::TooLong { .. }), "{err:?}");
}

#[test]
fn one_channel_of_a_two_sided_call_is_taken_when_asked() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let speech = fixtures().join("speech.wav");
    let path = tmp.path().join("call.wav");
    // Speech on the left, silence on the right.
    ffmpeg(
        &[
            "-i",
            speech.to_str().expect("utf-8"),
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=16000:cl=mono",
            "-filter_complex",
            "[0:a][1:a]amerge=inputs=2[a]",
            "-map",
            "[a]",
            "-ac",
            "2",
            "-shortest",
        ],
        &path,
    );
    let read = |channel: pipeline_audio::Channel| {
        let mut d = Decoder::open(&path).expect("open");
        d.select_channel(channel).expect("channel");
        let mut out = Vec::new();
        let mut buf = vec![0.0f32; 8_192];
        loop {
            let n = d.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    };
    let left = read("left".parse().expect("left"));
    let right = read("right".parse().expect("right"));
    let mix = read(pipeline_audio::Channel::Mix);
    let lone = decode_all(&speech, 10_000);
    let (c, _) = best_correlation(&left, &lone, 8);
    assert!(c > 0.99, "left against the speech: {c}");
    assert!(common::rms(&right) < 1e-4, "right is silent");
    assert!((common::rms(&mix) * 2.0 - common::rms(&left)).abs() < 0.01 * common::rms(&left));
    let mut d = Decoder::open(&path).expect("open");
    let err = d
        .select_channel(pipeline_audio::Channel::Index(2))
        .expect_err("a third channel");
    assert!(err.to_string().contains("channel 2"), "{err}");
}

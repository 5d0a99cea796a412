//! Batched transcription on the real model, the real Silero VAD and
//! synthesized speech with known pauses: the speech found, the words, the
//! times, silence.
#![cfg(feature = "ctranslate2")]

mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::VecSource;
use pipeline_asr::{
    DecodeMode, DecodeOptions, EngineOptions, NoObserver, Transcriber, Transcript, VadOptions,
    WhisperEngine,
};
use pipeline_core::wer::word_error_rate;
use pipeline_vad::{Silero, Speech, Vad};

const RATE: usize = 16_000;

/// Where something lies, in samples.
type Span = (usize, usize);

fn engine() -> Option<&'static WhisperEngine> {
    static ENGINE: OnceLock<Option<WhisperEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir = common::model_dir()?;
            let (runtime, model) = common::vad_files()?;
            let options = EngineOptions {
                threads: 1,
                onnxruntime: Some(runtime),
                vad_model: Some(model),
                ..EngineOptions::default()
            };
            Some(WhisperEngine::load(&dir, &options).expect("load the model"))
        })
        .as_ref()
}

fn silero() -> Option<&'static Silero> {
    static SILERO: OnceLock<Option<Silero>> = OnceLock::new();
    SILERO
        .get_or_init(|| {
            let (runtime, model) = common::vad_files()?;
            Some(Silero::load(&runtime, &model).expect("load Silero"))
        })
        .as_ref()
}

/// A faint hiss (about -60 dBFS), deterministic.
fn hiss(seconds: f64) -> Vec<f32> {
    let mut state = 0x2545_f491u32;
    (0..(seconds * RATE as f64) as usize)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.002
        })
        .collect()
}

/// Two sentences with 3 s of digital silence between, hiss around them;
/// returns the samples and where each sentence lies.
fn with_pauses() -> Option<(Vec<f32>, [Span; 2])> {
    let first = common::speak(common::SENTENCES[0])?;
    let second = common::speak(common::SENTENCES[1])?;
    let mut samples = hiss(1.5);
    let a = (samples.len(), samples.len() + first.len());
    samples.extend(&first);
    samples.extend(vec![0.0; 3 * RATE]);
    let b = (samples.len(), samples.len() + second.len());
    samples.extend(&second);
    samples.extend(hiss(2.0));
    Some((samples, [a, b]))
}

fn speeches(silero: &Silero, samples: &[f32], options: &VadOptions) -> Vec<Speech> {
    let mut vad = Vad::new(silero, options).expect("options");
    let mut out = Vec::new();
    // Uneven blocks: the result must not depend on how the audio is read.
    for block in samples.chunks(7_919) {
        vad.push(block, &mut out).expect("vad");
    }
    vad.finish(&mut out).expect("vad");
    out
}

/// faster-whisper's own get_speech_timestamps on the same samples.
fn faster_whisper_speeches(samples: &[f32]) -> Option<Vec<(usize, usize)>> {
    let python = common::python()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("audio.f32");
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).expect("write samples");
    let script = r#"
import importlib.util, json, sys, types
import numpy as np
spec = importlib.util.find_spec("faster_whisper")
root = list(spec.submodule_search_locations)[0]
# faster_whisper/__init__ needs PyAV; vad.py needs only numpy and onnxruntime.
package = types.ModuleType("faster_whisper"); package.__path__ = [root]
utils = types.ModuleType("faster_whisper.utils")
utils.get_assets_path = lambda: root + "/assets"
sys.modules.update({"faster_whisper": package, "faster_whisper.utils": utils})
vad_spec = importlib.util.spec_from_file_location("faster_whisper.vad", root + "/vad.py")
vad = importlib.util.module_from_spec(vad_spec); vad_spec.loader.exec_module(vad)
audio = np.fromfile(sys.argv[1], dtype=np.float32)
options = vad.VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
print(json.dumps([[s["start"], s["end"]] for s in vad.get_speech_timestamps(audio, options)]))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&raw)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans: Vec<(usize, usize)> = serde_json::from_slice(&out.stdout).expect("json");
    Some(spans)
}

#[test]
fn silero_finds_the_speech_between_known_pauses_as_faster_whisper_does() {
    let (Some(silero), Some((samples, sentences))) = (silero(), with_pauses()) else {
        return;
    };
    let found = speeches(silero, &samples, &VadOptions::default());
    assert!(!found.is_empty());
    // Nothing in the middle of the 3 s pause, or in the hiss before.
    let pause_middle = sentences[0].1 + 3 * RATE / 2;
    assert!(
        found
            .iter()
            .all(|s| s.end < pause_middle || s.start > pause_middle),
        "{found:?}"
    );
    assert!(found[0].start > RATE / 2, "{found:?}");
    // Each sentence is covered (its pads included) from start to end.
    for (start, end) in sentences {
        let inside: Vec<&Speech> = found
            .iter()
            .filter(|s| s.end > start && s.start < end)
            .collect();
        assert!(
            !inside.is_empty(),
            "sentence {start}..{end} missed: {found:?}"
        );
        assert!(inside[0].start <= start + RATE / 5, "{found:?}");
        assert!(inside[inside.len() - 1].end + RATE / 5 >= end, "{found:?}");
    }
    // The same spans as faster-whisper's, to the window (32 ms).
    if let Some(theirs) = faster_whisper_speeches(&samples) {
        let ours: Vec<(usize, usize)> = found.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(ours.len(), theirs.len(), "ours {ours:?}, theirs {theirs:?}");
        for (o, t) in ours.iter().zip(&theirs) {
            assert!(
                o.0.abs_diff(t.0) <= 512 && o.1.abs_diff(t.1) <= 512,
                "ours {ours:?}, theirs {theirs:?}"
            );
        }
    }
}

fn transcribe(engine: &WhisperEngine, samples: Vec<f32>, options: &DecodeOptions) -> Transcript {
    engine
        .transcribe(&mut VecSource::new(samples), options, &mut NoObserver)
        .expect("transcribe")
}

fn batched() -> DecodeOptions {
    DecodeOptions {
        mode: DecodeMode::Batched,
        ..DecodeOptions::default()
    }
}

fn check_times(t: &Transcript) {
    let mut previous_end = 0.0;
    for s in &t.segments {
        assert!(s.start >= previous_end - 1e-6, "{:?}", t.segments);
        assert!(s.start <= s.end && s.end <= t.duration + 1e-6, "{s:?}");
        for w in &s.words {
            assert!(w.start >= s.start - 1e-6 && w.end <= s.end + 1e-6, "{s:?}");
        }
        previous_end = s.end;
    }
}

#[test]
fn batched_and_sequential_write_the_same_words_at_ordered_times() {
    let Some(engine) = engine() else { return };
    let text: Vec<&str> = common::SENTENCES[2..16].to_vec();
    let mut samples = Vec::new();
    for (i, sentence) in text.iter().enumerate() {
        let Some(spoken) = common::speak(sentence) else {
            return;
        };
        samples.extend(spoken);
        // Pauses of 0.3 to 1.5 s between sentences.
        samples.extend(vec![0.0; RATE * (3 + (i * 7) % 13) / 10]);
    }
    let reference = text.join(" ");
    let sequential = transcribe(engine, samples.clone(), &DecodeOptions::default());
    let options = DecodeOptions {
        batch_size: 4,
        word_timestamps: true,
        ..batched()
    };
    let batch = transcribe(engine, samples, &options);
    let (wer_seq, wer_batch) = (
        word_error_rate(&reference, &sequential.text()),
        word_error_rate(&reference, &batch.text()),
    );
    eprintln!(
        "{:.0} s: WER sequential {wer_seq:.3}, batched {wer_batch:.3}",
        batch.duration
    );
    assert!(batch.duration > 60.0, "{}", batch.duration);
    assert!(
        wer_batch <= wer_seq + 0.02,
        "batched {wer_batch}, sequential {wer_seq}"
    );
    assert!(batch.segments.len() > 4, "{:?}", batch.segments);
    assert!(batch.segments.iter().all(|s| !s.words.is_empty()));
    check_times(&batch);
}

#[test]
fn silence_and_hiss_give_no_words_in_batched_mode() {
    let Some(engine) = engine() else { return };
    for samples in [vec![0.0; 40 * RATE], hiss(40.0)] {
        let t = transcribe(engine, samples, &batched());
        assert!(t.segments.is_empty(), "{:?}", t.segments);
        assert_eq!(t.duration, 40.0);
    }
}

#[test]
fn a_missing_detector_names_its_file() {
    let Some(dir) = common::model_dir() else {
        return;
    };
    let options = EngineOptions {
        threads: 1,
        onnxruntime: Some("/nonexistent/libonnxruntime.so".into()),
        vad_model: Some("/nonexistent/silero.onnx".into()),
        ..EngineOptions::default()
    };
    let engine = WhisperEngine::load(&dir, &options).expect("load");
    let err = engine
        .transcribe(
            &mut VecSource::new(vec![0.0; RATE]),
            &batched(),
            &mut NoObserver,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    assert!(err.contains("install-vad.sh"), "{err}");
}

#[test]
fn hotwords_and_a_prompt_spell_a_made_up_name_in_both_modes() {
    let Some(engine) = engine() else { return };
    let Some(samples) = common::speak(
        "Tomorrow morning, doctor Quilvane Brassory will present the quarterly results \
         to the board. Please send your questions to Quilvane before noon.",
    ) else {
        return;
    };
    for mode in [DecodeMode::Sequential, DecodeMode::Batched] {
        let plain = DecodeOptions {
            mode,
            ..DecodeOptions::default()
        };
        let unhinted = transcribe(engine, samples.clone(), &plain).text();
        assert!(!unhinted.contains("Quilvane"), "{mode}: {unhinted}");
        let hinted = [
            DecodeOptions {
                hotwords: Some("Quilvane Brassory".into()),
                ..plain.clone()
            },
            DecodeOptions {
                initial_prompt: Some("Doctor Quilvane Brassory presents the results.".into()),
                ..plain.clone()
            },
        ];
        for options in hinted {
            let text = transcribe(engine, samples.clone(), &options).text();
            assert!(text.contains("Quilvane Brassory"), "{mode}: {text}");
            assert!(text.contains("questions to Quilvane"), "{mode}: {text}");
        }
    }
}

#[test]
fn the_same_audio_gives_the_same_transcript_in_both_modes() {
    let Some(engine) = engine() else { return };
    let Some((samples, _)) = with_pauses() else {
        return;
    };
    for mode in [DecodeMode::Sequential, DecodeMode::Batched] {
        let options = DecodeOptions {
            mode,
            word_timestamps: true,
            ..DecodeOptions::default()
        };
        let first = transcribe(engine, samples.clone(), &options);
        let second = transcribe(engine, samples.clone(), &options);
        assert!(!first.segments.is_empty(), "{mode}");
        assert_eq!(
            serde_json::to_string(&first).expect("json"),
            serde_json::to_string(&second).expect("json"),
            "{mode}"
        );
    }
}

/// Every chunk failing the checks (a log-probability threshold no decoding
/// meets) goes through the whole fallback, its chunks sampled together:
/// the best decoding is kept, it says the last temperature tried, and the
/// same audio gives the same transcript again.
#[test]
fn failed_chunks_go_through_the_fallback_together_and_the_same_twice() {
    let Some(engine) = engine() else { return };
    let text: Vec<&str> = common::SENTENCES[2..12].to_vec();
    let mut samples = Vec::new();
    for sentence in &text {
        let Some(spoken) = common::speak(sentence) else {
            return;
        };
        samples.extend(spoken);
        samples.extend(vec![0.0; RATE / 2]);
    }
    let options = DecodeOptions {
        temperatures: vec![0.0, 0.5, 1.0],
        log_prob_threshold: Some(0.0),
        ..batched()
    };
    let first = transcribe(engine, samples.clone(), &options);
    assert!(
        first.duration > 35.0,
        "two chunks at least: {}",
        first.duration
    );
    assert!(!first.segments.is_empty());
    assert!(
        first.segments.iter().all(|s| s.temperature == 1.0),
        "{:?}",
        first.segments
    );
    let wer = word_error_rate(&text.join(" "), &first.text());
    assert!(wer <= 0.25, "WER {wer}: {}", first.text());
    let second = transcribe(engine, samples, &options);
    assert_eq!(
        serde_json::to_string(&first).expect("json"),
        serde_json::to_string(&second).expect("json")
    );
}

//! Helpers shared by the tests that need the real model and real speech.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipeline_asr::{AsrError, AudioSource};

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use pipeline_testkit::{data_dir, model_dir, multilingual_model_dir, tool_available, under_ci};

/// `text` spoken by espeak-ng, as 16 kHz mono f32 samples; `None` outside CI
/// when espeak-ng or ffmpeg is missing.
pub fn speak(text: &str) -> Option<Vec<f32>> {
    if !tool_available("espeak-ng", "--version") || !tool_available("ffmpeg", "-version") {
        eprintln!("SKIPPED: espeak-ng and ffmpeg are needed to make speech");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let text_file = dir.path().join("text.txt");
    let wav = dir.path().join("speech.wav");
    let raw = dir.path().join("speech.raw");
    std::fs::write(&text_file, text).expect("write text");
    run(Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg("-f")
        .arg(&text_file));
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-ar", "16000", "-ac", "1", "-f", "f32le"])
        .arg(&raw));
    Some(read_f32(&raw))
}

/// A fixture of scripts/make-fixtures.sh (made on first use) as 16 kHz mono
/// f32 samples, with its reference text when it has one (`NAME.txt`); `None`
/// outside CI when espeak-ng or ffmpeg is missing.
pub fn fixture(name: &str) -> Option<(Vec<f32>, Option<String>)> {
    if !tool_available("espeak-ng", "--version") || !tool_available("ffmpeg", "-version") {
        eprintln!("SKIPPED: espeak-ng and ffmpeg are needed to make the fixtures");
        return None;
    }
    let dir = pipeline_testkit::small_fixtures();
    let path = dir.join(name);
    let tmp = tempfile::tempdir().expect("temp dir");
    let raw = tmp.path().join("samples.raw");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&path)
        .args(["-ar", "16000", "-ac", "1", "-f", "f32le"])
        .arg(&raw));
    let reference = std::fs::read_to_string(path.with_extension("txt"))
        .ok()
        .map(|t| t.trim().to_string());
    Some((read_f32(&raw), reference))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("start a speech tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("read samples")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Sentences with plain words, spoken by espeak-ng in the tests.
pub static SENTENCES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    include_str!("../../../../fixtures/sentences.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
});

/// Samples in memory, handed out in blocks; counts how far it was read.
pub struct VecSource {
    pub samples: Arc<Vec<f32>>,
    pub position: Arc<AtomicUsize>,
    pub hint: bool,
}

impl VecSource {
    pub fn new(samples: Vec<f32>) -> Self {
        Self {
            samples: Arc::new(samples),
            position: Arc::new(AtomicUsize::new(0)),
            hint: true,
        }
    }
}

impl AudioSource for VecSource {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        let at = self.position.load(Ordering::SeqCst);
        let n = buf.len().min(self.samples.len() - at).min(4096);
        buf[..n].copy_from_slice(&self.samples[at..at + n]);
        self.position.store(at + n, Ordering::SeqCst);
        Ok(n)
    }

    fn duration_hint(&self) -> Option<f64> {
        self.hint.then(|| self.samples.len() as f64 / 16_000.0)
    }
}

/// The ONNX Runtime library and the Silero model that scripts/install-vad.sh
/// installs; `None` (with a message) when missing outside CI, a panic under CI.
pub fn vad_files() -> Option<(PathBuf, PathBuf)> {
    let data = data_dir();
    pipeline_testkit::vad_files(
        &pipeline_vad::default_runtime_path(&data),
        &pipeline_vad::default_model_path(&data),
    )
}

/// The Python of scripts/setup-python.sh, with faster-whisper and onnxruntime.
pub fn python() -> Option<PathBuf> {
    let python = pipeline_testkit::repo_root().join(".venv/bin/python");
    let ready = Command::new(&python)
        .args([
            "-c",
            "import importlib.util, numpy, onnxruntime; \
             assert importlib.util.find_spec('faster_whisper')",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Some(python);
    }
    assert!(
        !under_ci(),
        "CI: .venv lacks onnxruntime (run scripts/setup-python.sh)"
    );
    eprintln!("SKIPPED: .venv lacks onnxruntime; run scripts/setup-python.sh");
    None
}

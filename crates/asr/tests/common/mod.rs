//! Helpers shared by the tests that need the real model and real speech.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipeline_asr::{AsrError, AudioSource};

/// Whether the tests run under CI, where a missing model or tool is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The model directory: `PIPELINE_MODEL`, else the one scripts/install-model.sh installs.
/// `None` (with a message) when it is missing outside CI; a panic under CI.
pub fn model_dir() -> Option<PathBuf> {
    find_model("PIPELINE_MODEL", "tiny.en", "scripts/install-model.sh")
}

/// The multilingual model directory: `PIPELINE_MULTILINGUAL_MODEL`, else the
/// one `scripts/install-model.sh base` installs. `None` (with a message) when
/// it is missing outside CI; a panic under CI.
pub fn multilingual_model_dir() -> Option<PathBuf> {
    find_model(
        "PIPELINE_MULTILINGUAL_MODEL",
        "base",
        "scripts/install-model.sh base",
    )
}

fn find_model(variable: &str, name: &str, install: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os(variable) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let data = std::env::var_os("PIPELINE_DATA_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".local/share/pipeline-manager"))
                })
                .unwrap_or_default();
            data.join("models").join(name)
        }
    };
    if dir.join("model.bin").is_file() {
        return Some(dir);
    }
    assert!(
        !under_ci(),
        "CI: no model at {} (run {install})",
        dir.display()
    );
    eprintln!("SKIPPED: no model at {}; run {install}", dir.display());
    None
}

fn tool_available(name: &str, version_flag: &str) -> bool {
    let found = Command::new(name)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found || !under_ci(), "CI: {name} is not installed");
    found
}

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
    static MADE: std::sync::Once = std::sync::Once::new();
    if !tool_available("espeak-ng", "--version") || !tool_available("ffmpeg", "-version") {
        eprintln!("SKIPPED: espeak-ng and ffmpeg are needed to make the fixtures");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    MADE.call_once(|| {
        run(Command::new("bash").arg(root.join("scripts/make-fixtures.sh")));
    });
    let dir = std::env::var_os("FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("fixtures/generated"));
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

/// The data directory the install scripts use.
pub fn data_dir() -> PathBuf {
    std::env::var_os("PIPELINE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/pipeline-manager"))
        })
        .unwrap_or_default()
}

/// The ONNX Runtime library and the Silero model that scripts/install-vad.sh
/// installs; `None` (with a message) when missing outside CI, a panic under CI.
pub fn vad_files() -> Option<(PathBuf, PathBuf)> {
    let data = data_dir();
    let files = (
        pipeline_vad::default_runtime_path(&data),
        pipeline_vad::default_model_path(&data),
    );
    if files.0.is_file() && files.1.is_file() {
        return Some(files);
    }
    assert!(
        !under_ci(),
        "CI: no Silero VAD under {} (run scripts/install-vad.sh)",
        data.display()
    );
    eprintln!(
        "SKIPPED: no Silero VAD under {}; run scripts/install-vad.sh",
        data.display()
    );
    None
}

/// The Python of scripts/setup-python.sh, with faster-whisper and onnxruntime.
pub fn python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
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

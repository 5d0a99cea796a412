//! Helpers shared by the tests that need the real model and real speech.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the tests run under CI, where a missing model or tool is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The model directory: `PIPELINE_MODEL`, else the one scripts/install-model.sh installs.
/// `None` (with a message) when it is missing outside CI; a panic under CI.
pub fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PIPELINE_MODEL") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let data = std::env::var_os("PIPELINE_DATA_DIR")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".local/share/pipeline-manager"))
                })
                .unwrap_or_default();
            data.join("models/tiny.en")
        }
    };
    if dir.join("model.bin").is_file() {
        return Some(dir);
    }
    assert!(
        !under_ci(),
        "CI: no model at {} (run scripts/install-model.sh)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: no model at {}; run scripts/install-model.sh",
        dir.display()
    );
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
pub const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Every morning the baker opens his small shop before the sun comes up.",
    "The children walked to school together and talked about the weekend.",
    "A strong wind blew across the open field and bent the tall grass.",
    "My sister bought a new bicycle and rode it around the park all afternoon.",
    "The old library has thousands of books about history and science.",
    "We cooked a large dinner for our friends and family on Sunday evening.",
    "The train was late because of heavy snow on the mountain pass.",
    "Please remember to close the windows before you leave the house.",
    "The doctor told him to drink more water and get plenty of sleep.",
    "Our neighbors planted apple trees in their garden last spring.",
    "The museum will open a new exhibition about ancient ships next month.",
    "She wrote a long letter to her grandmother who lives by the sea.",
    "The farmer checked the fences and counted the sheep in the meadow.",
    "Most students finished the exam early and went outside to play football.",
    "The city council decided to build a new bridge over the harbor.",
    "He found an old map in the attic and decided to follow it.",
    "The concert in the square attracted a large and happy crowd.",
    "Fresh bread and warm soup are perfect on a cold winter night.",
    "The pilot announced that the plane would land in twenty minutes.",
    "They painted the kitchen walls a bright shade of yellow.",
    "A small boat drifted slowly toward the rocky shore at night.",
    "The teacher asked everyone to read the first chapter by Friday.",
    "Heavy rain flooded the streets and closed several roads downtown.",
    "My uncle repairs old clocks in a workshop behind his house.",
    "The hikers reached the top of the hill just before sunset.",
    "Our team practiced every evening and finally won the championship.",
    "The market sells fresh fish, vegetables and flowers every Saturday.",
    "A young girl played the violin beautifully at the school concert.",
    "The engineer explained how the new machine saves energy and time.",
    "We watched the stars from the roof until it was very late.",
    "The garden was full of butterflies and the smell of roses.",
    "He forgot his umbrella and got completely wet on the way home.",
    "The company hired twelve new workers to help with the busy season.",
    "Birds were singing in the trees when we opened the front door.",
    "The story ended with the hero returning safely to his village.",
];

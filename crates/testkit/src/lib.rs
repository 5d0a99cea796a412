//! Helpers every test binary of the workspace uses, kept once: where the
//! installed parts are (the model, the Silero VAD, the Python venv, the
//! generated fixtures), a fresh PostgreSQL schema per test, and the rule
//! that a missing part skips the test on a developer's machine (saying
//! SKIPPED) but fails it under CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

/// Whether the tests run under CI, where a missing model or tool is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `Some(value)` when `found`; else `None` with a SKIPPED line naming what
/// is missing and how to install it, or a panic under CI.
pub fn require<T>(value: T, found: bool, missing: &str, install: &str) -> Option<T> {
    if found {
        return Some(value);
    }
    assert!(!under_ci(), "CI: {missing} (run {install})");
    eprintln!("SKIPPED: {missing}; run {install}");
    None
}

/// The repository's root: from the manifest directory cargo and nextest
/// give the running test (the path compiled in can name another checkout
/// when two share one target directory, as CI's clean clone does).
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

/// The data directory the install scripts use: `PIPELINE_DATA_DIR`, else
/// `~/.local/share/pipeline-manager`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("PIPELINE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/pipeline-manager"))
        })
        .unwrap_or_default()
}

/// The tiny.en model: `PIPELINE_MODEL`, else the one scripts/install-model.sh installs.
pub fn model_dir() -> Option<PathBuf> {
    find_model("PIPELINE_MODEL", "tiny.en", "scripts/install-model.sh")
}

/// The multilingual model: `PIPELINE_MULTILINGUAL_MODEL`, else the one
/// `scripts/install-model.sh base` installs.
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
        _ => data_dir().join("models").join(name),
    };
    let found = dir.join("model.bin").is_file();
    let missing = format!("no model at {}", dir.display());
    require(dir, found, &missing, install)
}

/// The ONNX Runtime library and the Silero model of scripts/install-vad.sh,
/// at these paths under the data directory.
pub fn vad_files(runtime: &Path, model: &Path) -> Option<(PathBuf, PathBuf)> {
    let found = runtime.is_file() && model.is_file();
    let missing = format!("no Silero VAD under {}", data_dir().display());
    require(
        (runtime.to_path_buf(), model.to_path_buf()),
        found,
        &missing,
        "scripts/install-vad.sh",
    )
}

/// The Python of the venv scripts/setup-python.sh makes.
pub fn venv_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let found = python.is_file();
    let missing = format!("no {}", python.display());
    require(python, found, &missing, "scripts/setup-python.sh")
}

/// Whether a tool answers `version_flag`; a panic under CI when it does not.
pub fn tool_available(name: &str, version_flag: &str) -> bool {
    let found = Command::new(name)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found || !under_ci(), "CI: {name} is not installed");
    found
}

/// Where scripts/make-fixtures.sh writes (`FIXTURES_DIR` overrides).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("fixtures/generated"))
}

fn make_fixtures(mode: &str) {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/make-fixtures.sh"))
        .args((!mode.is_empty()).then_some(mode))
        .stdout(Stdio::null())
        .status()
        .expect("bash runs");
    assert!(status.success(), "scripts/make-fixtures.sh {mode} failed");
}

/// The small fixtures' directory, made on first use (the script does
/// nothing when they exist).
pub fn small_fixtures() -> PathBuf {
    static SMALL: Once = Once::new();
    SMALL.call_once(|| make_fixtures(""));
    fixtures_dir()
}

/// The fixtures' directory with the long files (`make-fixtures.sh long`).
pub fn long_fixtures() -> PathBuf {
    static LONG: Once = Once::new();
    LONG.call_once(|| make_fixtures("long"));
    fixtures_dir()
}

/// A small fixture by name, made on first use.
pub fn fixture(name: &str) -> PathBuf {
    let path = small_fixtures().join(name);
    assert!(path.exists(), "fixture {} missing", path.display());
    path
}

/// A long fixture by name (`licence-6min.wav`, ...), made on first use.
pub fn long_fixture(name: &str) -> PathBuf {
    let path = long_fixtures().join(name);
    assert!(path.exists(), "fixture {} missing", path.display());
    path
}

/// The `test` database on the local PostgreSQL server
/// (`PIPELINE_TEST_POSTGRES_URL` overrides).
pub fn postgres_base() -> String {
    std::env::var("PIPELINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A URL of a fresh schema `<prefix>_<random>` in [`postgres_base`], made
/// with psql; tests that share the server never see each other's rows.
pub fn postgres_url(prefix: &str) -> String {
    let base = postgres_base();
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let status = Command::new("psql")
        .args([
            base.as_str(),
            "-q",
            "-c",
            &format!("CREATE SCHEMA {schema}"),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "PostgreSQL at {base} is required");
    with_schema(&base, &schema)
}

/// `base` with its connections' search path set to `schema`.
pub fn with_schema(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

//! The decoder reads files, so each input is written to a file in memory
//! (`/dev/shm`, one per fuzzing process) first.

use std::path::PathBuf;

/// Writes `data` to this process's scratch file and returns its path.
pub fn as_file(data: &[u8]) -> PathBuf {
    let dir = std::env::var_os("FUZZ_SCRATCH").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from);
    let path = dir.join(format!("pipeline-fuzz-{}.bin", std::process::id()));
    std::fs::write(&path, data).expect("write the scratch file");
    path
}

/// Bounds tighter than the defaults, so one input costs at most a few
/// seconds however long its header says it is.
pub fn limits() -> pipeline_audio::Limits {
    pipeline_audio::Limits {
        max_duration_secs: 120.0,
    }
}

/// The audio crate contains symphonia's panics on damaged input (its
/// `guard` turns them into errors that name the file), but libFuzzer's
/// hook aborts at any panic, caught or not. Silencing the hook leaves the
/// crashes that matter: a panic that escapes the target still aborts
/// (libfuzzer-sys catches it and aborts), as do hangs and memory.
pub fn contained_panics_are_not_crashes() {
    std::panic::set_hook(Box::new(|_| {}));
}

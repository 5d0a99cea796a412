#![no_main]
//! Probing any bytes gives an `AudioInfo` or an error; it never panics,
//! hangs or takes unbounded memory.

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: common::contained_panics_are_not_crashes(), |data: &[u8]| {
    let path = common::as_file(data);
    let _ = pipeline_audio::probe_with(&path, &common::limits());
});

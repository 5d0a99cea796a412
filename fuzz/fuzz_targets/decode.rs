#![no_main]
//! The whole path from bytes to 16 kHz samples: open (which probes), pick
//! a channel when there are two or more, and read to the end or the first
//! error.

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: common::contained_panics_are_not_crashes(), |data: &[u8]| {
    let path = common::as_file(data);
    let Ok(mut decoder) = pipeline_audio::Decoder::open_with(&path, &common::limits()) else {
        return;
    };
    // The last byte picks the channel path, so both are explored.
    if data.last().is_some_and(|b| b & 1 == 1) && decoder.info().channels > 1 {
        let _ = decoder.select_channel(pipeline_audio::Channel::Index(1));
    }
    let mut buf = vec![0.0f32; 4096];
    while let Ok(n) = decoder.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
});

//! The edit list of an MP4/M4A audio track, which symphonia 0.5 parses but
//! does not apply. AAC encoders put ~1024 frames of priming before the signal
//! and the edit list says to skip them; without it every timestamp would be
//! late by ~50 ms and the duration long by as much.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What the edit list of the first sound track says to play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Edit {
    /// Seconds of decoded audio to drop at the start (encoder priming).
    pub(crate) skip_seconds: f64,
    /// Seconds to play after that, when the list says.
    pub(crate) duration_seconds: Option<f64>,
}

/// Reads the edit list of `path`'s first sound track; `None` where there is
/// none, it is not a simple "skip then play", or the file is not well formed.
pub(crate) fn read_edit(path: &Path) -> Option<Edit> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut movie_timescale = None;
    let moov = find_box(&mut f, 0, len, b"moov")?;
    // mvhd's timescale is the unit of the edit's duration.
    if let Some((start, end)) = find_box(&mut f, moov.0, moov.1, b"mvhd") {
        movie_timescale = read_timescale(&mut f, start, end, 12, 20);
    }
    let mut pos = moov.0;
    while let Some((start, end)) = find_box(&mut f, pos, moov.1, b"trak") {
        pos = end;
        if let Some(edit) = sound_track_edit(&mut f, start, end, movie_timescale) {
            return Some(edit);
        }
        if is_sound_track(&mut f, start, end) {
            // The sound track has no usable edit list: nothing to apply.
            return None;
        }
    }
    None
}

fn sound_track_edit(f: &mut File, start: u64, end: u64, movie_ts: Option<u32>) -> Option<Edit> {
    if !is_sound_track(f, start, end) {
        return None;
    }
    let mdia = find_path(f, start, end, &[b"mdia"])?;
    let (ms, me) = find_box(f, mdia.0, mdia.1, b"mdhd")?;
    let media_ts = read_timescale(f, ms, me, 12, 20)?;
    let (es, ee) = find_path(f, start, end, &[b"edts", b"elst"])?;
    let body = read_at(f, es, (ee - es).min(4096) as usize)?;
    let version = *body.first()?;
    let count = be32(body.get(4..8)?);
    let entry_len = if version == 1 { 20 } else { 12 };
    let mut skip = 0i64;
    let mut duration = None;
    let mut at = 8usize;
    for _ in 0..count.min(4) {
        let e = body.get(at..at + entry_len)?;
        at += entry_len;
        let (seg_dur, media_time) = if version == 1 {
            (be64(&e[0..8]), be64(&e[8..16]) as i64)
        } else {
            (u64::from(be32(&e[0..4])), i64::from(be32(&e[4..8]) as i32))
        };
        if media_time == -1 {
            // An empty edit (a pause before the track) changes no samples we output.
            continue;
        }
        if duration.is_some() {
            // Several real edits: a cut list, not priming; leave it alone.
            return None;
        }
        skip = media_time;
        duration = Some(seg_dur);
    }
    let skip_seconds = skip.max(0) as f64 / f64::from(media_ts);
    let duration_seconds = match (duration, movie_ts) {
        (Some(d), Some(ts)) if d > 0 => Some(d as f64 / f64::from(ts)),
        _ => None,
    };
    // Priming is a fraction of a second; more means an edit we don't understand.
    (skip_seconds < 1.0 && (skip_seconds > 0.0 || duration_seconds.is_some())).then_some(Edit {
        skip_seconds,
        duration_seconds,
    })
}

fn is_sound_track(f: &mut File, start: u64, end: u64) -> bool {
    find_path(f, start, end, &[b"mdia", b"hdlr"])
        .and_then(|(s, _)| read_at(f, s + 8, 4))
        .is_some_and(|h| h == b"soun")
}

/// Follows `path` down from the box whose body spans `start..end`.
pub(crate) fn find_path(
    f: &mut File,
    mut start: u64,
    mut end: u64,
    path: &[&[u8; 4]],
) -> Option<(u64, u64)> {
    for name in path {
        (start, end) = find_box(f, start, end, name)?;
    }
    Some((start, end))
}

/// The body span of the first box called `name` among the boxes in `start..end`.
pub(crate) fn find_box(f: &mut File, mut pos: u64, end: u64, name: &[u8; 4]) -> Option<(u64, u64)> {
    while pos + 8 <= end {
        let head = read_at(f, pos, 16.min((end - pos) as usize))?;
        let size32 = u64::from(be32(&head[0..4]));
        let (size, header) = match size32 {
            0 => (end - pos, 8),
            1 => (be64(head.get(8..16)?), 16),
            s => (s, 8),
        };
        if size < header || pos.checked_add(size)? > end {
            return None;
        }
        if &head[4..8] == name {
            return Some((pos + header, pos + size));
        }
        pos += size;
    }
    None
}

/// The timescale field of an mvhd/mdhd body: at `v0` for version 0, `v1` for version 1.
fn read_timescale(f: &mut File, start: u64, end: u64, v0: u64, v1: u64) -> Option<u32> {
    let version = *read_at(f, start, 1)?.first()?;
    let at = start + if version == 1 { v1 } else { v0 };
    if at + 4 > end {
        return None;
    }
    let ts = be32(&read_at(f, at, 4)?);
    (ts > 0).then_some(ts)
}

pub(crate) fn read_at(f: &mut File, pos: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(pos)).ok()?;
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

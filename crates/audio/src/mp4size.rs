//! The largest sample an MP4/M4A/MOV file declares, checked before symphonia
//! reads one: its reader allocates each sample's declared size up front, so
//! a sample-size table claiming 4 GB for one AAC frame (found by fuzzing)
//! made a 150 KB upload allocate 4 GB. No sample can be larger than the file
//! it is in.

use std::fs::File;
use std::path::Path;

use crate::mp4edit::{be32, find_box, find_path, read_at};

/// Sizes read from a table at a time.
const CHUNK: u64 = 64 * 1024;

/// The largest sample size any table of `path` declares: the `stsz` of every
/// track, and the defaults and runs of a fragmented file (`trex`, `tfhd`,
/// `trun`). `None` when the file is not well formed enough to say.
pub(crate) fn largest_sample(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut largest = 0u64;
    if let Some(moov) = find_box(&mut f, 0, len, b"moov") {
        let mut pos = moov.0;
        while let Some((start, end)) = find_box(&mut f, pos, moov.1, b"trak") {
            pos = end;
            if let Some(stsz) = find_path(&mut f, start, end, &[b"mdia", b"minf", b"stbl", b"stsz"])
            {
                largest = largest.max(stsz_largest(&mut f, stsz)?);
            }
        }
        if let Some(mvex) = find_box(&mut f, moov.0, moov.1, b"mvex") {
            let mut pos = mvex.0;
            while let Some((start, end)) = find_box(&mut f, pos, mvex.1, b"trex") {
                pos = end;
                if end - start >= 24 {
                    largest = largest.max(u64::from(be32(&read_at(&mut f, start + 16, 4)?)));
                }
            }
        }
    }
    let mut pos = 0;
    while let Some((start, end)) = find_box(&mut f, pos, len, b"moof") {
        pos = end;
        let mut at = start;
        while let Some((ts, te)) = find_box(&mut f, at, end, b"traf") {
            at = te;
            largest = largest.max(traf_largest(&mut f, ts, te)?);
        }
    }
    Some(largest)
}

/// `stsz`: version and flags, a size for every sample (0: they differ),
/// the count, then each size.
fn stsz_largest(f: &mut File, (start, end): (u64, u64)) -> Option<u64> {
    let head = read_at(f, start, 12.min((end - start) as usize))?;
    let fixed = u64::from(be32(head.get(4..8)?));
    if fixed != 0 {
        return Some(fixed);
    }
    let count = u64::from(be32(head.get(8..12)?));
    let table_end = end.min(start + 12 + count.saturating_mul(4));
    largest_of(f, start + 12, table_end, 4, 0)
}

/// The largest of the big-endian u32 at `offset` in each `stride`-byte
/// entry of `start..end`, read a chunk at a time.
fn largest_of(f: &mut File, start: u64, end: u64, stride: u64, offset: u64) -> Option<u64> {
    let mut largest = 0u64;
    let mut pos = start;
    while pos + stride <= end {
        let entries = ((end - pos) / stride).min(CHUNK / stride);
        let buf = read_at(f, pos, (entries * stride) as usize)?;
        for entry in buf.chunks_exact(stride as usize) {
            let at = offset as usize;
            largest = largest.max(u64::from(be32(&entry[at..at + 4])));
        }
        pos += entries * stride;
    }
    Some(largest)
}

/// A track fragment: its header's default sample size and every run's sizes.
fn traf_largest(f: &mut File, start: u64, end: u64) -> Option<u64> {
    let mut largest = 0u64;
    if let Some((hs, he)) = find_box(f, start, end, b"tfhd") {
        let body = read_at(f, hs, (he - hs).min(64) as usize)?;
        let flags = be32(body.get(0..4)?) & 0x00ff_ffff;
        let mut at = 8usize;
        for (bit, width) in [(0x1, 8), (0x2, 4), (0x8, 4)] {
            if flags & bit != 0 {
                at += width;
            }
        }
        if flags & 0x10 != 0 {
            largest = largest.max(u64::from(be32(body.get(at..at + 4)?)));
        }
    }
    let mut pos = start;
    while let Some((rs, re)) = find_box(f, pos, end, b"trun") {
        pos = re;
        let head = read_at(f, rs, 8.min((re - rs) as usize))?;
        let flags = be32(head.get(0..4)?) & 0x00ff_ffff;
        if flags & 0x200 == 0 {
            continue;
        }
        let count = u64::from(be32(head.get(4..8)?));
        let mut first = rs + 8;
        for bit in [0x1, 0x4] {
            if flags & bit != 0 {
                first += 4;
            }
        }
        let fields = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|b| flags & **b != 0)
            .count() as u64;
        let stride = 4 * fields;
        let offset = if flags & 0x100 != 0 { 4 } else { 0 };
        let table_end = re.min(first.saturating_add(count.saturating_mul(stride)));
        largest = largest.max(largest_of(f, first, table_end, stride, offset)?);
    }
    Some(largest)
}

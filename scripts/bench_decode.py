#!/usr/bin/env python3
"""Decode and resample to 16 kHz mono: our decoder against ffmpeg, per format.

Makes one file per format from the 10-minute fixture with ffmpeg (the same
audio in each), then decodes each to 16 kHz mono float samples with
`crates/audio/examples/decode.rs` (release build) and with
`ffmpeg -i F -ar 16000 -ac 1 -f f32le -` into /dev/null, alternating,
REPEATS times. Reports per format, as one JSON line each: the median wall
time of each side, ours / ffmpeg, and each side's peak RSS (wait4), so that
a format where we are slower or our memory grows shows at once.

usage: bench_decode.py [--repeats 3] [--seconds 600] [--formats wav,mp3,...]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/pipeline-manager/target"))

# name: (file name, ffmpeg encoding arguments)
FORMATS = {
    "wav-16k-mono": ("a.wav", ["-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le"]),
    "wav-44k-stereo": ("b.wav", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"]),
    "flac": ("a.flac", ["-ar", "44100", "-ac", "2", "-c:a", "flac"]),
    "mp3": ("a.mp3", ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"]),
    "m4a-aac": ("a.m4a", ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "128k"]),
    "ogg-vorbis": ("a.ogg", ["-ar", "44100", "-ac", "2", "-c:a", "libvorbis"]),
    "opus": ("a.opus", ["-ar", "48000", "-ac", "1", "-c:a", "libopus", "-b:a", "32k"]),
    "webm-opus": ("a.webm", ["-ar", "48000", "-ac", "1", "-c:a", "libopus", "-b:a", "32k"]),
    "mka-vorbis": ("a.mka", ["-ar", "44100", "-ac", "2", "-c:a", "libvorbis"]),
    "aiff": ("a.aiff", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16be"]),
    "caf-pcm": ("a.caf", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"]),
    "m4a-alac": ("b.m4a", ["-ar", "44100", "-ac", "2", "-c:a", "alac"]),
    "caf-alac": ("b.caf", ["-ar", "44100", "-ac", "2", "-c:a", "alac"]),
    "mka-pcm": ("b.mka", ["-ar", "48000", "-ac", "2", "-c:a", "pcm_s16le"]),
    # AMR goes through make-fixtures.sh's encoder (ffmpeg here encodes none).
    "amr-nb": ("a.amr", ["-ar", "8000", "-ac", "1", "-f", "s16le"]),
    "amr-wb": ("b.amr", ["-ar", "16000", "-ac", "1", "-f", "s16le"]),
}
AMR_ENCODER = ROOT / "fixtures/generated/.amr-encode"


def encode(source, seconds, encoding, path, band=None):
    """The first `seconds` of `source` in a format, as ffmpeg (and for AMR
    the fixtures' encoder) writes it."""
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-y", "-t", str(seconds), "-i", str(source),
              *encoding]
    if band is None:
        subprocess.run([*ffmpeg, str(path)], check=True)
        return
    with open(path, "wb") as out:
        pcm = subprocess.Popen([*ffmpeg, "-"], stdout=subprocess.PIPE)
        subprocess.run([str(AMR_ENCODER), band], stdin=pcm.stdout, stdout=out, check=True)
        if pcm.wait() != 0:
            sys.exit(f"ffmpeg failed making {path}")


def timed(argv):
    """Wall seconds and peak RSS (MiB) of one process run to its end."""
    started = time.monotonic()
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    err = child.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[0]} failed on {argv[-1]}: {err}")
    return wall, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    source = ROOT / "fixtures/generated/long-10min.wav"
    if not source.exists() or not AMR_ENCODER.exists():
        subprocess.run(["bash", str(ROOT / "scripts/make-fixtures.sh"), "long"], check=True)
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "pipeline-audio",
                    "--example", "decode"], check=True, cwd=ROOT,
                   env=dict(os.environ, CARGO_TARGET_DIR=str(TARGET)))
    ours_bin = str(TARGET / "release/examples/decode")
    work = Path(tempfile.mkdtemp(prefix="bench-decode-"))
    for name in args.formats.split(","):
        file_name, encoding = FORMATS[name]
        path = work / file_name
        band = {"amr-nb": "nb", "amr-wb": "wb"}.get(name)
        encode(source, args.seconds, encoding, path, band)
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(timed([ours_bin, str(path)]))
            theirs.append(timed(["ffmpeg", "-loglevel", "error", "-nostdin", "-threads", "1",
                                 "-i", str(path), "-ar", "16000", "-ac", "1", "-f", "f32le",
                                 "-"]))
        ours_wall = statistics.median(w for w, _ in ours)
        theirs_wall = statistics.median(w for w, _ in theirs)
        print(json.dumps({
            "format": name,
            "audio_secs": args.seconds,
            "size_mb": round(path.stat().st_size / 1e6, 1),
            "ours_secs": round(ours_wall, 3),
            "ffmpeg_secs": round(theirs_wall, 3),
            "ours_over_ffmpeg": round(ours_wall / theirs_wall, 2),
            "ours_x_realtime": round(args.seconds / ours_wall),
            "ours_peak_rss_mib": round(max(r for _, r in ours), 1),
            "ffmpeg_peak_rss_mib": round(max(r for _, r in theirs), 1),
        }), flush=True)
        path.unlink()


if __name__ == "__main__":
    main()

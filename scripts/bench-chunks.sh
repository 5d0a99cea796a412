#!/usr/bin/env bash
# One hour of non-repeating speech (the licence texts read by espeak-ng, as
# in bench-memory.sh) on one worker in one piece, and in chunks of 300 s on
# one and on two workers (two threads against one thread each, on a
# two-core machine); see scripts/bench_chunks.py.
#
#   scripts/bench-chunks.sh [RUNS]        (PIPELINE_MODEL_MODE=batched for batched mode)
#
# BENCH_BIN runs another build of pipeline-manager instead of the release one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
scripts/install-deps.sh
scripts/install-model.sh
scripts/install-vad.sh
scripts/install-ctranslate2.sh
bin="${BENCH_BIN:-}"
if [ -z "$bin" ]; then
  flock /tmp/pipeline-cargo.lock cargo build --release --bin pipeline-manager
  bin="$CARGO_TARGET_DIR/release/pipeline-manager"
fi
audio="$HOME/.cache/pipeline-manager/bench-audio"
mkdir -p "$audio"
if [ ! -s "$audio/hour.wav" ]; then
  cat /usr/share/common-licenses/{GPL-3,GPL-2,Apache-2.0} | tr -s '[:space:]' ' ' >"$audio/hour.txt"
  espeak-ng -s 160 -w "$audio/hour.raw.wav" -f "$audio/hour.txt"
  ffmpeg -loglevel error -y -i "$audio/hour.raw.wav" -ar 16000 -ac 1 "$audio/hour.part.wav"
  mv "$audio/hour.part.wav" "$audio/hour.wav"
  rm -f "$audio/hour.raw.wav"
fi
python3 scripts/bench_chunks.py "$bin" "$audio/hour.wav" "$audio/hour.txt" "${1:-1}"

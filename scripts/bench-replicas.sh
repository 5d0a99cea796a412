#!/usr/bin/env bash
# One model replica using every core against one replica per core (one
# thread each), on one file and on many: scripts/bench_replicas.py on about
# 10 minutes of licence text read by espeak-ng (BENCH_MINUTES), cut into
# 30 s files for the many-files case. tiny.en int8, beam 5; BENCH_RUNS
# (default 3) alternating runs. Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
scripts/install-deps.sh
scripts/install-model.sh
scripts/install-vad.sh
scripts/install-ctranslate2.sh
bin="${BENCH_BIN:-$CARGO_TARGET_DIR/release/pipeline-manager}"
[ -n "${BENCH_BIN:-}" ] || flock /tmp/pipeline-cargo.lock cargo build --release --bin pipeline-manager
model="${PIPELINE_MODEL:-${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}/models/tiny.en}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
minutes="${BENCH_MINUTES:-10}"
python3 - "$tmp" "$minutes" <<'PY'
import sys
sys.path.insert(0, "scripts")
from bench_engine import licence_speech
tmp, minutes = sys.argv[1], float(sys.argv[2])
text, _ = licence_speech(int(160 * minutes), f"{tmp}/licence.wav")
open(f"{tmp}/licence.txt", "w").write(text)
PY
python3 scripts/bench_replicas.py "$bin" "$model" "$tmp/licence.wav" "$tmp/licence.txt"

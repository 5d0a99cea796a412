#!/usr/bin/env bash
# Benchmarks our Whisper engine against faster-whisper (PyPI) on the same
# model (tiny.en, int8, beam 5), audio and machine, in one run: about 10 s
# and 10 min of licence text read by espeak-ng, BENCH_RUNS (default 3) runs
# of each, alternating. Prints a Markdown table for BENCHMARKS.md.
# BENCH_MKL=1 adds our binary with CT2_USE_MKL=1 (MKL on a non-Intel CPU);
# BENCH_OURS_FROM_SOURCE=PATH adds another build of ours (the engine built
# from source with `--features engine-from-source`); BENCH_OURS_BEFORE=PATH
# adds an earlier build of ours.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
scripts/install-deps.sh
scripts/install-model.sh
venv="$root/.venv-bench"
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import faster_whisper' 2>/dev/null || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet faster-whisper
}
scripts/install-ctranslate2.sh
flock /tmp/pipeline-cargo.lock cargo build --release --bin pipeline-manager
model="${PIPELINE_MODEL:-${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}/models/tiny.en}"
python3 scripts/bench_engine.py "$CARGO_TARGET_DIR/release/pipeline-manager" "$model" "$venv/bin/python"

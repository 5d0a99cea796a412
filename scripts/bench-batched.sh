#!/usr/bin/env bash
# Benchmarks batched transcription: our `transcribe` in both modes against
# faster-whisper's transcribe() and BatchedInferencePipeline (batch 8) on
# tiny.en int8, beam 5, all cores, in one run, alternating, BENCH_RUNS
# (default 3) runs each. Audio: about 10 minutes of licence text read by
# espeak-ng (non-repeating; BENCH_MINUTES changes the length) and 2.7
# minutes of real recordings (scripts/fetch-real-speech.sh). Prints a
# Markdown table for BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
scripts/install-deps.sh
scripts/install-model.sh
scripts/install-vad.sh
scripts/fetch-real-speech.sh
venv="$root/.venv-bench"
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import faster_whisper, onnxruntime' 2>/dev/null || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet faster-whisper==1.2.1
}
scripts/install-ctranslate2.sh
flock /tmp/pipeline-cargo.lock cargo build --release --bin pipeline-manager
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
python3 scripts/bench_batched.py "$CARGO_TARGET_DIR/release/pipeline-manager" "$model" "$venv/bin/python" \
  "espeak-ng, licences=$tmp/licence.wav:$tmp/licence.txt" \
  "real recordings=fixtures/real/real-speech.wav:fixtures/real/real-speech.txt"

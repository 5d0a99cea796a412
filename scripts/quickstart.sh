#!/usr/bin/env bash
# The quick start: installs what is missing (Debian packages, the Whisper
# model), builds pipeline-manager, synthesizes a spoken sample and runs it
# through the tracked pipeline on the embedded default (SQLite, embedded
# queue, local model), then shows the job report and the transcript.
# Idempotent; the second run rebuilds nothing. The speech engine links the
# prebuilt CTranslate2 of the `ctranslate2` wheel (scripts/install-ctranslate2.sh),
# so no C++ but ct2rs's small bridge is compiled.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"

# The build needs only the compiler and the engine's library; the Debian
# packages and the model are installed meanwhile and waited for after it.
scripts/install-deps.sh --build
scripts/install-ctranslate2.sh
log=$(mktemp)
(scripts/install-deps.sh && scripts/install-model.sh && scripts/install-vad.sh) >"$log" 2>&1 &
installs=$!
cargo build --release --bin pipeline-manager
if ! wait "$installs"; then
  cat "$log" >&2
  echo "quickstart: installing the Debian packages or the model failed (above)" >&2
  exit 1
fi
cat "$log"
rm -f "$log"
bin="$CARGO_TARGET_DIR/release/pipeline-manager"

sample_dir="$root/fixtures/generated"
sample="$sample_dir/quickstart.mp3"
if [ ! -s "$sample" ]; then
  mkdir -p "$sample_dir"
  espeak-ng -s 150 -w "$sample_dir/quickstart.wav" \
    "Audio files go in, and transcripts come out. Every step in between is a tracked job \
that you can watch, retry or cancel. The transcript is written as plain text, subtitles and JSON."
  ffmpeg -loglevel error -y -i "$sample_dir/quickstart.wav" -ar 44100 -ac 2 "$sample.partial.mp3"
  mv "$sample.partial.mp3" "$sample"
fi

"$bin" process "$sample"
# Submitting the same content again finds the finished result (deduplicated)
# and tells us its id without creating anything.
id=$("$bin" process --detach --json "$sample" | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["audio_id"])')
echo
"$bin" jobs "$id"
echo
echo "=== Transcript ($id) ==="
"$bin" transcript "$id" --format txt

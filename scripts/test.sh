#!/usr/bin/env bash
# Runs every test: installs what the tests need (Debian packages, the models:
# tiny.en and the multilingual base, the VAD and the two diarization models;
# real multi-speaker recordings with their reference annotations; the Python
# peers: faster-whisper's front end, Celery, moto, pyannote.metrics; the audio fixtures; playwright-core for the dashboard's
# browser test), starts PostgreSQL, Redis and RabbitMQ if they are down, then
# runs the whole workspace's tests with nextest.
# Idempotent; builds go to a stable target dir, and the speech engine links
# the prebuilt CTranslate2 library (scripts/install-ctranslate2.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"

# The build needs only the compiler and the engine's library; everything
# the tests need besides is installed meanwhile (downloads and unpacking
# leave the cores to the compiler), and waited for before the tests run.
scripts/install-deps.sh --build
scripts/install-ctranslate2.sh
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
log=$(mktemp)
(
  scripts/install-deps.sh --services
  scripts/install-model.sh
  scripts/install-model.sh base
  scripts/install-vad.sh
  scripts/install-diarization.sh
  scripts/fetch-diarization-samples.sh
  scripts/setup-python.sh
  scripts/make-fixtures.sh
  scripts/setup-node.sh
) >"$log" 2>&1 &
installs=$!
cargo nextest run --workspace --no-run "$@"
if ! wait "$installs"; then
  cat "$log" >&2
  echo "test.sh: installing what the tests need failed (above)" >&2
  exit 1
fi
cat "$log"
rm -f "$log"
cargo nextest run --workspace --no-fail-fast "$@"

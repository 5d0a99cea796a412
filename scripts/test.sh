#!/usr/bin/env bash
# Runs every test: installs what the tests need (Debian packages, the models:
# tiny.en and the multilingual base; the Python peers: faster-whisper's front
# end, Celery, moto; the audio fixtures; playwright-core for the dashboard's
# browser test), starts PostgreSQL, Redis and RabbitMQ if they are down, then
# runs the whole workspace's tests with nextest.
# Idempotent; builds go to a stable target dir, and the speech engine links
# the prebuilt CTranslate2 library (scripts/install-ctranslate2.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"

scripts/install-deps.sh --services
scripts/install-ctranslate2.sh
scripts/install-model.sh
scripts/install-model.sh base
scripts/setup-python.sh
scripts/make-fixtures.sh
scripts/setup-node.sh
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo nextest run --workspace --no-fail-fast "$@"

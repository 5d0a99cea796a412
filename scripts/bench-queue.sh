#!/usr/bin/env bash
# Short jobs through Redis and RabbitMQ: our worker against a Python Celery 5
# worker with the same concurrency on the same broker, in one run (jobs per
# second, enqueue-to-start latency p50/p99, and the ratio). Needs the
# services of the scaled-out setup on this machine: PostgreSQL (database
# `test`, trust auth), Redis and RabbitMQ on their default ports.
#
#   scripts/bench-queue.sh [bench_queue.py options]   # default: --n 2000 --concurrency 2
#                                                     # and every side: ours, celery, tracked
#
# The cargo build takes /tmp/pipeline-cargo.lock: two builds at once on this
# machine's two cores would each take twice as long (the C++ of CTranslate2
# alone takes half an hour).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
scripts/setup-python.sh
# psycopg for the `tracked` peer, a Celery task that keeps its job in PostgreSQL.
"$root/.venv/bin/python" -c "import psycopg" 2>/dev/null ||
  "$root/.venv/bin/python" -m pip install --quiet "psycopg[binary]>=3.1,<4"
scripts/install-ctranslate2.sh
flock /tmp/pipeline-cargo.lock cargo build --release -p pipeline-cli --bins --examples
exec "$root/.venv/bin/python" scripts/bench_queue.py \
  --bin "$CARGO_TARGET_DIR/release/pipeline-manager" \
  --seeder "$CARGO_TARGET_DIR/release/examples/seed_process_jobs" \
  --n 2000 --concurrency 2 --sides ours,celery,tracked "$@"

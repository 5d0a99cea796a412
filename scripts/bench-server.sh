#!/usr/bin/env bash
# The HTTP API under load on this machine, on loopback: wrk against
# GET /api/v1/audio/{id} (with /healthz, which touches no database, as the
# baseline of the same run), then the SSE fan-out: 500 clients on
# /api/v1/events while files are uploaded (bench_sse.py).
#
#   scripts/bench-server.sh [seconds per wrk run, default 10]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
duration="${1:-10}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
scripts/make-fixtures.sh >/dev/null
scripts/install-ctranslate2.sh
flock /tmp/pipeline-cargo.lock cargo build --release -p pipeline-cli --bins
bin="$CARGO_TARGET_DIR/release/pipeline-manager"
work="$(mktemp -d)"
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
export PIPELINE_DATA_DIR="$work/data"
key="$("$bin" --json api-key create --name bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
ulimit -n 4096
"$bin" serve --bind 127.0.0.1:0 --workers 0 >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
base="$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/serve.log")"
id="$(curl -sf -H "Authorization: Bearer $key" -F file=@fixtures/generated/speech.wav "$base/api/v1/audio" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
run_wrk() {
  wrk -t2 -c64 -d"${duration}s" --latency -H "Authorization: Bearer $key" "$1" \
    | awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} /^ +50%/ {p50=$2} END {printf "{\"rps\": %s, \"p50\": \"%s\", \"p99\": \"%s\"}\n", rps, p50, p99}'
}
echo "GET /healthz:            $(run_wrk "$base/healthz")"
echo "GET /api/v1/audio/{id}:  $(run_wrk "$base/api/v1/audio/$id")"
echo "SSE fan-out:             $(python3 scripts/bench_sse.py "$base" "$key" fixtures/generated/speech.wav --clients 500 --uploads 40)"

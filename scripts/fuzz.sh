#!/usr/bin/env bash
# Fuzzes the audio crate's probe and decode with libFuzzer (cargo-fuzz, on
# the nightly toolchain, which its sanitizer flags need), seeded with the
# generated fixtures: `scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]`
# (default 1800 s each, targets probe and decode). Inputs that crash, leak,
# time out (20 s) or pass 2 GiB land in fuzz/artifacts/<target>/; copy them
# into crates/audio/tests/fuzz-regressions/ once fixed, where a test decodes
# every file there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-1800}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(probe decode)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
scripts/make-fixtures.sh >/dev/null
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/pipeline-manager/target-fuzz}"
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  # Seeds: every small fixture (the formats we accept), at most 256 KiB
  # each, so that mutations stay fast.
  for f in fixtures/generated/*; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 262144 ] && cp -n "$f" "$corpus/" || true
  done
  cp -n crates/audio/tests/fuzz-regressions/* "$corpus/" 2>/dev/null || true
  echo "fuzz: $target for $seconds s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 \
    -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1
done

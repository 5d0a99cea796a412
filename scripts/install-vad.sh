#!/usr/bin/env bash
# Installs what the Silero voice activity detector runs on: the ONNX Runtime
# library of the `onnxruntime` wheel (loaded at run time, no build step) and
# the Silero VAD v6 model that the `faster-whisper` wheel ships (MIT).
# Idempotent; both wheels are pinned by sha256, and so are the two files.
#
#   scripts/install-vad.sh           install (x86_64 Linux, glibc)
#   scripts/install-vad.sh --print   print the two paths and exit
#
# They go under the data directory (${PIPELINE_DATA_DIR:-~/.local/share/pipeline-manager}):
# lib/onnxruntime-1.31.1/libonnxruntime.so.1.31.1 and models/silero-vad-v6.onnx,
# where `vad.onnxruntime` and `vad.model` point by default.
set -euo pipefail

ort_version=1.31.1
ort_wheel_sha256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
ort_lib=libonnxruntime.so.$ort_version
ort_lib_sha256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
fw_version=1.2.1
fw_wheel_sha256=79a66ad50688c0b794dd501dc340a736992a6342f7f95e5811be60b5224a26a7
vad_model=silero-vad-v6.onnx
vad_model_sha256=4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2

data_dir="${PIPELINE_DATA_DIR:-$HOME/.local/share/pipeline-manager}"
lib_dest="$data_dir/lib/onnxruntime-$ort_version"
model_dest="$data_dir/models/$vad_model"
if [ "${1:-}" = "--print" ]; then
  echo "$lib_dest/$ort_lib"
  echo "$model_dest"
  exit 0
fi

if [ -s "$lib_dest/$ort_lib" ] && [ -s "$model_dest" ]; then
  echo "vad: $lib_dest/$ort_lib, $model_dest (already installed)"
  exit 0
fi

case "$(uname -m)-$(uname -s)" in
x86_64-Linux) ;;
*)
  echo "install-vad: no pinned onnxruntime wheel for $(uname -m) $(uname -s); install" \
    "ONNX Runtime >= 1.31 and point vad.onnxruntime at its library" >&2
  exit 1
  ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/requirements.txt" <<EOF
onnxruntime==$ort_version --hash=sha256:$ort_wheel_sha256
faster-whisper==$fw_version --hash=sha256:$fw_wheel_sha256
EOF
python3 -m pip download --quiet --no-deps --require-hashes --dest "$tmp" \
  --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
  --implementation cp --abi cp311 -r "$tmp/requirements.txt"
python3 - "$tmp" "$ort_lib" "$vad_model" <<'PY'
import glob, shutil, sys, zipfile
tmp, lib, model = sys.argv[1:]
(ort,) = glob.glob(tmp + "/onnxruntime-*.whl")
(fw,) = glob.glob(tmp + "/faster_whisper-*.whl")
with zipfile.ZipFile(ort) as z, open(f"{tmp}/{lib}", "wb") as out:
    shutil.copyfileobj(z.open(f"onnxruntime/capi/{lib}"), out)
with zipfile.ZipFile(fw) as z, open(f"{tmp}/{model}", "wb") as out:
    shutil.copyfileobj(z.open("faster_whisper/assets/silero_vad_v6.onnx"), out)
PY
echo "$ort_lib_sha256  $tmp/$ort_lib" | sha256sum --check --quiet --status ||
  { echo "install-vad: $ort_lib does not match its pinned sha256" >&2; exit 1; }
echo "$vad_model_sha256  $tmp/$vad_model" | sha256sum --check --quiet --status ||
  { echo "install-vad: $vad_model does not match its pinned sha256" >&2; exit 1; }

# Each file is renamed into place only once it is checked, so a file that
# is there is a verified one.
mkdir -p "$lib_dest" "$(dirname "$model_dest")"
cp "$tmp/$ort_lib" "$lib_dest/$ort_lib.partial"
mv "$lib_dest/$ort_lib.partial" "$lib_dest/$ort_lib"
cp "$tmp/$vad_model" "$model_dest.partial"
mv "$model_dest.partial" "$model_dest"
echo "vad: $lib_dest/$ort_lib (onnxruntime $ort_version), $model_dest (faster-whisper $fw_version)"

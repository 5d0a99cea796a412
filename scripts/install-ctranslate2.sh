#!/usr/bin/env bash
# Installs the prebuilt CTranslate2 library that faster-whisper runs (the
# `ctranslate2` wheel's libctranslate2 with Intel oneMKL and oneDNN inside,
# GNU OpenMP beside it) so that building pipeline-manager compiles no C++
# but ct2rs's small bridge. Idempotent; the wheel is pinned by sha256.
#
#   scripts/install-ctranslate2.sh           install (x86_64 Linux, glibc)
#   scripts/install-ctranslate2.sh --print   print the directory and exit
#
# The library goes to $PIPELINE_CT2_LIB_DIR, else
# ${XDG_DATA_HOME:-$HOME/.local/share}/pipeline-manager/lib/ctranslate2-4.8.4:
# the build (crates/asr/build.rs) looks in the same place. Its SONAME is set
# to its own absolute path, so every binary linked against it finds it
# without LD_LIBRARY_PATH or an rpath.
set -euo pipefail

version=4.8.4
# The cp311 wheel of ctranslate2 4.8.4 for manylinux_2_28 x86_64; only its
# ctranslate2.libs/ is used, so the Python version does not matter.
wheel_sha256=1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5
lib=libctranslate2-42c542ff.so.4.8.4
lib_sha256=9ba1807fbf135191263eb14aaae88f1d235be9e2ecae5c80feb0c72467c84182
gomp=libgomp-e985bcbb.so.1.0.0
gomp_sha256=25b19bcd491ab3a317c65c9b6a44b3075f8ab25a57b901cfa1ee6c0d6ea206ac

data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
dest="${PIPELINE_CT2_LIB_DIR:-$data_home/pipeline-manager/lib/ctranslate2-$version}"
# Absolute: the path becomes the library's SONAME, which binaries load by.
dest=$(realpath -m "$dest")
if [ "${1:-}" = "--print" ]; then
  echo "$dest"
  exit 0
fi

if [ -s "$dest/$lib" ] && [ -s "$dest/$gomp" ] && [ -L "$dest/libctranslate2.so" ]; then
  echo "ctranslate2: $dest (already installed)"
  exit 0
fi

case "$(uname -m)-$(uname -s)" in
x86_64-Linux) ;;
*)
  echo "install-ctranslate2: no prebuilt CTranslate2 for $(uname -m) $(uname -s);" \
    "build with \`--no-default-features --features engine-from-source\` instead" >&2
  exit 1
  ;;
esac

if ! command -v patchelf >/dev/null 2>&1; then
  echo "install-ctranslate2: installing patchelf"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq patchelf >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "ctranslate2==$version --hash=sha256:$wheel_sha256" >"$tmp/requirements.txt"
python3 -m pip download --quiet --no-deps --require-hashes --dest "$tmp" \
  --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
  --implementation cp --abi cp311 -r "$tmp/requirements.txt"
python3 - "$tmp" <<'PY'
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + "/ctranslate2-*.whl")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("ctranslate2.libs/"):
            z.extract(name, sys.argv[1] + "/unpacked")
PY
libs="$tmp/unpacked/ctranslate2.libs"
echo "$lib_sha256  $libs/$lib" | sha256sum --check --quiet --status ||
  { echo "install-ctranslate2: $lib does not match its pinned sha256" >&2; exit 1; }
echo "$gomp_sha256  $libs/$gomp" | sha256sum --check --quiet --status ||
  { echo "install-ctranslate2: $gomp does not match its pinned sha256" >&2; exit 1; }

# The library finds libgomp through its own RPATH ($ORIGIN); binaries find
# the library through its SONAME, which the linker copies into DT_NEEDED.
patchelf --set-soname "$dest/$lib" "$libs/$lib"
ln -s "$lib" "$libs/libctranslate2.so"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mv "$libs" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "ctranslate2: $dest (installed from ctranslate2 $version)"

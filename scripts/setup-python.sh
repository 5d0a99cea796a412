#!/usr/bin/env bash
# Creates the Python environment the tests compare against: numpy and
# faster-whisper's source (its feature extractor is the reference front end),
# Celery 5 with its Redis and AMQP clients (the interop peers), and moto's
# S3 server with boto3 (the object store the storage tests run against),
# and schemathesis (fuzzes the HTTP API against its OpenAPI document; pinned
# because the test relies on its command line and its checks), and
# onnxruntime (faster-whisper's VAD, the reference of ours, runs on it),
# kaldi-native-fbank (the reference of the diarizer's filterbank), and
# pyannote.metrics (the diarization error rate of scripts/der.py; its
# wheels pinned by sha256 in scripts/requirements-der.txt).
# --no-deps keeps av and ctranslate2 out; the tests load
# feature_extractor.py by path, so faster-whisper's __init__ never runs.
# Idempotent: an existing, complete venv is left as it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3}"
ready() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.util, numpy, pathlib, sys
import celery, redis, amqp, boto3, moto, openai, schemathesis, onnxruntime
import kaldi_native_fbank
import pyannote.metrics
from pyannote.metrics.diarization import DiarizationErrorRate
assert onnxruntime.__version__ == "1.31.1"
assert pyannote.metrics.__version__ == "4.2.0"
assert celery.VERSION.major == 5
assert schemathesis.__version__ == "4.32.5"
spec = importlib.util.find_spec("faster_whisper")
assert spec is not None and spec.submodule_search_locations
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "feature_extractor.py"
assert path.is_file()
PY
}
if ready; then
  echo "python: $venv (ready)"
  exit 0
fi
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet numpy
"$venv/bin/python" -m pip install --quiet --no-deps faster-whisper
# faster-whisper's VAD (vad.py, the reference of ours) runs on onnxruntime;
# the same version as the library scripts/install-vad.sh installs.
"$venv/bin/python" -m pip install --quiet onnxruntime==1.31.1
# Kaldi's filterbank as k2-fsa packages it: the reference of the diarizer's.
"$venv/bin/python" -m pip install --quiet kaldi-native-fbank==1.22.3
"$venv/bin/python" -m pip install --quiet "celery[redis]>=5.3,<6"
# A local S3 server (moto) for the object storage tests.
"$venv/bin/python" -m pip install --quiet "moto[server]>=5,<6" boto3
# OpenAI's own client, pointed at our /v1/audio/transcriptions.
"$venv/bin/python" -m pip install --quiet "openai>=1.30,<3"
# Schemathesis, run by crates/cli/tests/openapi.rs against `serve`.
"$venv/bin/python" -m pip install --quiet "schemathesis==4.32.5"
# pyannote.metrics for scripts/der.py: its dependencies, then the pyannote
# wheels themselves, hash-pinned, without dependencies.
"$venv/bin/python" -m pip install --quiet "pandas>=2.2.3,<4" "scipy>=1.15.1,<2" \
  "scikit-learn>=1.6.1,<2" "sortedcontainers>=2.4,<3" "pyyaml>=6.0.2,<7"
"$venv/bin/python" -m pip install --quiet --no-deps --require-hashes \
  -r "$root/scripts/requirements-der.txt"
ready || { echo "python environment at $venv is incomplete after install" >&2; exit 1; }
echo "python: $venv (installed)"

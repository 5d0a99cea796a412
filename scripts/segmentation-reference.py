#!/usr/bin/env python3
"""Writes the reference output of pyannote segmentation-3.0 on one window,
for the Rust test of the segmentation model.

Runs models/pyannote-segmentation-3.0.onnx (what scripts/install-diarization.sh
installs) with onnxruntime on the first 10 s of a 16 kHz mono 16-bit PCM wav
(samples / 32768, zero-padded to 160000 samples when shorter, as pyannote
pads its last window) and writes the output as JSON: a list of 589 frames,
each a list of the 7 powerset log-probabilities (non-speech; speakers 1, 2,
3; pairs 1+2, 1+3, 2+3).

Model I/O: input `input` float32 [batch, 1, samples] (160000 for 10 s),
output `output` float32 [batch, frames, 7] (589 frames for 160000 samples).

    scripts/segmentation-reference.py speech-16k.wav segmentation.json \
        [--model PATH]

Needs numpy and onnxruntime.
"""

import argparse
import json
import os
import sys
import wave

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 10 * SAMPLE_RATE


def read_window(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getframerate() != SAMPLE_RATE or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                             f"{w.getframerate()} Hz, {8 * w.getsampwidth()}-bit")
        raw = w.readframes(min(w.getnframes(), WINDOW))
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    window = np.zeros(WINDOW, dtype=np.float32)
    window[: samples.size] = samples
    return window


def main():
    data_dir = os.environ.get("PIPELINE_DATA_DIR", os.path.expanduser("~/.local/share/pipeline-manager"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav")
    ap.add_argument("output")
    ap.add_argument("--model", default=os.path.join(data_dir, "models", "pyannote-segmentation-3.0.onnx"))
    args = ap.parse_args()

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: the same sums in the same order every run
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    (out,) = sess.run(["output"], {"input": read_window(args.wav)[None, None, :]})
    frames = out[0]
    if frames.shape != (589, 7):
        raise SystemExit(f"unexpected output shape {out.shape}")
    tmp = args.output + ".partial"
    with open(tmp, "w") as f:
        json.dump([[float(v) for v in row] for row in frames], f)
        f.write("\n")
    os.replace(tmp, args.output)
    print(f"{args.output}: {frames.shape[0]} frames x {frames.shape[1]} classes")


if __name__ == "__main__":
    sys.exit(main())

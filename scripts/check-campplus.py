#!/usr/bin/env python3
"""Checks the CAM++ ONNX model that scripts/convert-campplus.py writes.

On fbank-like random input of a few lengths, compares ONNX Runtime's output
with two references:

  * a numpy forward of the same checkpoint, written independently of the
    converter's graph (float64, BatchNorm applied as such, not folded; direct
    convolutions; segment pooling by explicit loops), and
  * when torch is importable, by this interpreter or by the one --torch-python
    names, the PyTorch model of senko's camplusplus.py (a copy of 3D-Speaker's
    CAM++) loaded with the checkpoint, its DenseLayer put back to the
    original: 1x1 conv then BatchNorm1d(affine=False), no ReLU. Skipped when
    torch is absent.

    scripts/check-campplus.py --checkpoint campplus_cn_en_common.pt \
        --onnx campplus-cn-en-common.onnx \
        [--torch-python /path/to/python --model-code senko/camplusplus.py]

Needs numpy and onnxruntime. Exits non-zero when a difference is over
--rtol (relative to the largest magnitude of the reference embedding).
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-5


def load_state_dict(path):
    spec = importlib.util.spec_from_file_location("convert_campplus", os.path.join(HERE, "convert-campplus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load_state_dict(path)


def fbank_like(frames, seed):
    """Something with the statistics of mean-normalized 80-bin log-mel fbank:
    a slowly varying spectral envelope, frame noise, silence stretches."""
    rng = np.random.default_rng(seed)
    env = rng.normal(0, 1, (frames // 8 + 2, 80)).cumsum(axis=1) * 0.6
    env = np.repeat(env, 8, axis=0)[:frames]
    kernel = np.ones(5) / 5
    env = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, env)
    energy = 4 * np.sin(np.arange(frames)[:, None] / rng.uniform(7, 30)) + rng.normal(0, 1, (frames, 1))
    x = env + energy - 0.05 * np.arange(80)[None, :] + rng.normal(0, 1.0, (frames, 80))
    x[rng.random(frames) < 0.1] -= 6.0
    x -= x.mean(axis=0, keepdims=True)
    return x.astype(np.float32)


# ---------------------------------------------------------------------------
# numpy reference, float64, batch of one: tensors are (C, T) or (C, F, T).


class Ref:
    def __init__(self, state):
        self.s = {k: v.astype(np.float64) for k, v in state.items()}

    def bn(self, x, p, affine=True):
        shape = (-1,) + (1,) * (x.ndim - 1)
        y = (x - self.s[p + ".running_mean"].reshape(shape)) / np.sqrt(self.s[p + ".running_var"].reshape(shape) + EPS)
        if affine:
            y = y * self.s[p + ".weight"].reshape(shape) + self.s[p + ".bias"].reshape(shape)
        return y

    @staticmethod
    def conv1d(x, w, b=None, stride=1, pad=0, dil=1):
        c, t = x.shape
        o, ci, k = w.shape
        assert ci == c
        xp = np.pad(x, ((0, 0), (pad, pad)))
        length = (t + 2 * pad - dil * (k - 1) - 1) // stride + 1
        cols = np.stack([xp[:, j * dil: j * dil + stride * (length - 1) + 1: stride] for j in range(k)], axis=1)
        y = np.einsum("ock,ckl->ol", w, cols)
        return y if b is None else y + b[:, None]

    @staticmethod
    def conv2d(x, w, stride=(1, 1), pad=1):
        c, h, wd = x.shape
        o, ci, kh, kw = w.shape
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
        oh = (h + 2 * pad - kh) // stride[0] + 1
        ow = (wd + 2 * pad - kw) // stride[1] + 1
        y = np.zeros((o, oh, ow))
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i: i + stride[0] * (oh - 1) + 1: stride[0], j: j + stride[1] * (ow - 1) + 1: stride[1]]
                y += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
        return y

    def res_block(self, x, p, stride):
        s = self.s
        out = np.maximum(self.bn(self.conv2d(x, s[p + ".conv1.weight"], (stride, 1)), p + ".bn1"), 0)
        out = self.bn(self.conv2d(out, s[p + ".conv2.weight"]), p + ".bn2")
        if p + ".shortcut.0.weight" in s:
            short = self.bn(self.conv2d(x, s[p + ".shortcut.0.weight"], (stride, 1), pad=0), p + ".shortcut.1")
        else:
            short = x
        return np.maximum(out + short, 0)

    @staticmethod
    def seg_pooling(x, seg_len=100):
        t = x.shape[1]
        out = np.empty_like(x)
        for start in range(0, t, seg_len):
            seg = x[:, start: start + seg_len]
            out[:, start: start + seg_len] = seg.mean(axis=1, keepdims=True)
        return out

    def forward(self, feats):
        s = self.s
        x = feats.astype(np.float64).T[None]  # (1, F, T)
        x = np.maximum(self.bn(self.conv2d(x, s["head.conv1.weight"]), "head.bn1"), 0)
        for layer in ("layer1", "layer2"):
            x = self.res_block(x, f"head.{layer}.0", 2)
            x = self.res_block(x, f"head.{layer}.1", 1)
        x = np.maximum(self.bn(self.conv2d(x, s["head.conv2.weight"], (2, 1)), "head.bn2"), 0)
        x = x.reshape(-1, x.shape[-1])
        x = self.conv1d(x, s["xvector.tdnn.linear.weight"], stride=2, pad=2)
        x = np.maximum(self.bn(x, "xvector.tdnn.nonlinear.batchnorm"), 0)
        for b, (n, k, d) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)], 1):
            for i in range(1, n + 1):
                p = f"xvector.block{b}.tdnnd{i}"
                h = np.maximum(self.bn(x, p + ".nonlinear1.batchnorm"), 0)
                h = self.conv1d(h, s[p + ".linear1.weight"])
                h = np.maximum(self.bn(h, p + ".nonlinear2.batchnorm"), 0)
                c = p + ".cam_layer"
                y = self.conv1d(h, s[c + ".linear_local.weight"], pad=(k - 1) // 2 * d, dil=d)
                ctx = h.mean(axis=1, keepdims=True) + self.seg_pooling(h)
                ctx = np.maximum(self.conv1d(ctx, s[c + ".linear1.weight"], s[c + ".linear1.bias"]), 0)
                m = 1 / (1 + np.exp(-self.conv1d(ctx, s[c + ".linear2.weight"], s[c + ".linear2.bias"])))
                x = np.concatenate([x, y * m], axis=0)
            p = f"xvector.transit{b}"
            x = self.conv1d(np.maximum(self.bn(x, p + ".nonlinear.batchnorm"), 0), s[p + ".linear.weight"])
        x = np.maximum(self.bn(x, "xvector.out_nonlinear.batchnorm"), 0)
        stats = np.concatenate([x.mean(axis=1), x.std(axis=1, ddof=1)])
        e = s["xvector.dense.linear.weight"][:, :, 0] @ stats
        return self.bn(e, "xvector.dense.nonlinear.batchnorm", affine=False)[None]


# ---------------------------------------------------------------------------
# torch reference (senko's camplusplus.py), run where torch imports.


def torch_embeddings(checkpoint, model_code, inputs):
    import torch

    spec = importlib.util.spec_from_file_location("camplusplus", model_code)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    dense = model.xvector.dense

    def original_dense(x):  # 3D-Speaker's DenseLayer with config_str='batchnorm_'
        x = dense.linear(x.unsqueeze(-1)).squeeze(-1) if x.dim() == 2 else dense.linear(x)
        return dense.nonlinear.batchnorm(x)

    out = {}
    with torch.no_grad():
        for name, feats in inputs.items():
            x = torch.from_numpy(feats)[None]
            out["senko_" + name] = model(x).numpy()  # as senko ships it
            senko_forward = dense.forward
            dense.forward = original_dense
            out["fixed_" + name] = model(x).numpy()
            dense.forward = senko_forward
    return out


def have_torch():
    return importlib.util.find_spec("torch") is not None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--frames", default="150,333,401,1000", help="comma-separated input lengths")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--torch-python", help="an interpreter that can import torch")
    ap.add_argument("--model-code", help="senko's camplusplus.py (for the torch check)")
    ap.add_argument("--torch-worker", nargs=2, metavar=("INPUTS", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.torch_worker:
        src, dst = args.torch_worker
        inputs = dict(np.load(src))
        np.savez(dst, **torch_embeddings(args.checkpoint, args.model_code, inputs))
        return 0

    import onnxruntime as ort

    frames = [int(f) for f in args.frames.split(",")]
    inputs = {f"t{t}": fbank_like(t, seed=t) for t in frames}
    ref = Ref(load_state_dict(args.checkpoint))
    sess = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])

    torch_out = None
    if args.model_code and have_torch():
        torch_out = torch_embeddings(args.checkpoint, args.model_code, inputs)
    elif args.model_code and args.torch_python:
        try:
            ok = subprocess.run([args.torch_python, "-c", "import torch"], capture_output=True).returncode == 0
        except OSError:
            ok = False
        if ok:
            with tempfile.TemporaryDirectory() as tmp:
                np.savez(f"{tmp}/in.npz", **inputs)
                subprocess.run([args.torch_python, os.path.abspath(__file__), "--checkpoint", args.checkpoint,
                                "--model-code", args.model_code, "--torch-worker", f"{tmp}/in.npz",
                                f"{tmp}/out.npz"], check=True)
                torch_out = dict(np.load(f"{tmp}/out.npz"))
    if torch_out is None:
        print("torch: not available, its check is skipped")

    def diff(a, b):
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        abs_ = np.abs(a - b).max()
        return abs_, abs_ / np.abs(b).max()

    worst = 0.0
    for name, feats in inputs.items():
        (onnx_out,) = sess.run(["embedding"], {"feats": feats[None]})
        r = ref.forward(feats)
        o64 = onnx_out.astype(np.float64)
        cos = float((o64 @ r.T).item() / np.linalg.norm(o64) / np.linalg.norm(r))
        a, rel = diff(onnx_out, r)
        worst = max(worst, rel)
        print(f"T={feats.shape[0]:5d} onnx vs numpy: max abs {a:.3e}, rel {rel:.3e}, cosine {cos:.9f} "
              f"(|ref| max {np.abs(r).max():.3f})")
        if torch_out is not None:
            t = torch_out["fixed_" + name]
            a, rel = diff(onnx_out, t)
            worst = max(worst, rel)
            a2, rel2 = diff(r, t)
            print(f"        onnx vs torch: max abs {a:.3e}, rel {rel:.3e}; numpy vs torch: max abs {a2:.3e}, rel {rel2:.3e}")
            s = torch_out["senko_" + name]
            cs = float((s @ t.T).item() / np.linalg.norm(s) / np.linalg.norm(t))
            print(f"        senko's unfixed DenseLayer (BN + ReLU): cosine to the original {cs:.4f}, "
                  f"{int((s == 0).sum())}/192 zeros")
    if worst > args.rtol:
        print(f"FAIL: relative difference {worst:.3e} > {args.rtol:g}")
        return 1
    print(f"ok: worst relative difference {worst:.3e} <= {args.rtol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

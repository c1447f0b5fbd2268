"""Plain NumPy evaluator of the Graph IR (compiler/ir.py): the test oracle that
defines what each IR op computes. `evaluate(graph, inputs) -> {output name: array}`.
Float32 ops are below; ops on quantised tensors (any 8-bit or int32 operand) follow
onnxruntime's integer datapath through the golden models tests/quant_golden.py and
tests/quant_golden_softmax.py, and dynamic quantisation through tests/quant_golden_dynamic.py
(docs/int8_datapath.md). Slow and obvious on purpose;
for tests only (never imported by compiler/ or sim/).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from compiler.ir import DTYPES, Graph, Node, is_global_pool
from tests import quant_golden as golden
from tests.quant_golden_dynamic import dynamic_quantize_linear
from tests.quant_golden_softmax import softmax_rows


def evaluate(graph: Graph, inputs: dict, keep_all: bool = False) -> dict:
    """Run the graph on float32 inputs; returns the graph outputs (or every tensor), each
    in its IR dtype (8-bit codes as uint8/int8)."""
    values = {name: np.asarray(value, dtype=DTYPES[graph.tensors[name].dtype])
              for name, value in graph.constants.items()}
    for name in graph.inputs:
        values[name] = np.asarray(inputs[name], dtype=np.float32)
        assert values[name].shape == graph.tensors[name].shape, (name, values[name].shape)
    for node in graph.nodes:
        args = [values[name] for name in node.inputs]
        out_type = graph.tensors[node.outputs[0]]
        if all(graph.tensors[n].dtype == "fp32" for n in (*node.inputs, node.outputs[0])):
            out = np.asarray(OPS[node.op](node, args, out_type.shape), dtype=np.float32)
            if node.attrs.get("activation", "none") == "relu":
                out = np.maximum(out, np.float32(0))
        else:
            out = evaluate_quantised(graph, node, args)
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(node.outputs), (node, len(outs))
        for name, value in zip(node.outputs, outs):
            value = np.asarray(value)
            assert value.dtype == DTYPES[graph.tensors[name].dtype], (node, name, value.dtype)
            assert value.shape == graph.tensors[name].shape, (node, name, value.shape)
            values[name] = value
    if keep_all:
        return values
    return {name: values[name] for name in graph.outputs}


def _windows(x, kernel, strides, dilations, pads, out_hw, fill):
    """[N, C, OH, OW, kh, kw] windows of x padded by pads (t,l,b,r) with `fill`;
    padding is extended at the bottom/right when out_hw needs it (ceil_mode)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    need_h = (out_hw[0] - 1) * sh + span_h
    need_w = (out_hw[1] - 1) * sw + span_w
    top, left, bottom, right = pads
    bottom = max(bottom, need_h - x.shape[2] - top)
    right = max(right, need_w - x.shape[3] - left)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return win[:, :, :need_h - span_h + 1:sh, :need_w - span_w + 1:sw, ::dh, ::dw]


def conv(node: Node, args, out_shape):
    """In float64, rounded to float32 by the caller: BLAS's float32 summation order depends on the
    CPU's kernel, and ties (the shipped light models' constant weights give every class the same
    logit) must not break differently from one CPU to the next."""
    x, w = args[0].astype(np.float64), args[1].astype(np.float64)
    a = node.attrs
    g = a["group"]
    n, c = x.shape[:2]
    cout, cin_g, kh, kw = w.shape
    win = _windows(x, (kh, kw), a["strides"], a["dilations"], a["pads"], out_shape[2:], 0.0)
    oh, ow = win.shape[2:4]
    cols = win.reshape(n, g, cin_g, oh, ow, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
    cols = cols.reshape(n, g, oh * ow, cin_g * kh * kw)
    wmat = w.reshape(g, cout // g, cin_g * kh * kw).transpose(0, 2, 1)
    out = np.matmul(cols, wmat[None])                      # [N, g, OH*OW, Cout/g]
    out = out.transpose(0, 1, 3, 2).reshape(n, cout, oh, ow)
    if len(args) > 2:
        out = out + args[2].reshape(1, cout, 1, 1)
    return out


def gemm(node: Node, args, out_shape):
    """In float64, as conv."""
    out = args[0].astype(np.float64) @ args[1].astype(np.float64)
    return out + args[2] if len(args) > 2 else out


def _pool(node: Node, x, out_shape, is_max: bool):
    a = node.attrs
    fill = -np.inf if is_max else 0.0
    win = _windows(x, a["kernel"], a["strides"], (1, 1), a["pads"], out_shape[2:], fill)
    if is_max:
        return win.max(axis=(4, 5))
    # the divisor counts window cells inside the input (or inside input+pads)
    top, left, bottom, right = a["pads"]
    h, w = x.shape[2:]
    ones = np.ones((1, 1, h, w), np.float32)
    if a["count_include_pad"]:
        ones = np.pad(ones, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=1)
        pads = (0, 0, 0, 0)        # windows past input+pads (ceil_mode) count nothing
    else:
        pads = a["pads"]
    count = _windows(ones, a["kernel"], a["strides"], (1, 1), pads, out_shape[2:], 0.0)
    return win.sum(axis=(4, 5)) / count.sum(axis=(4, 5))


def lrn(node: Node, args, out_shape):
    x = args[0].astype(np.float64)
    a = node.attrs
    size, c = a["size"], x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = np.pad(x * x, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    total = sum(sq[:, i:i + c] for i in range(size))
    return x / (a["bias"] + a["alpha"] / size * total) ** a["beta"]


def softmax(node: Node, args, out_shape):
    x = args[0].astype(np.float64)
    e = np.exp(x - x.max(axis=node.attrs["axis"], keepdims=True))
    return e / e.sum(axis=node.attrs["axis"], keepdims=True)


def affine(node: Node, args, out_shape):
    x, scale, shift = args
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(shape) + shift.reshape(shape)


OPS = {
    "conv": conv, "gemm": gemm, "affine": affine, "lrn": lrn, "softmax": softmax,
    "relu": lambda n, a, s: np.maximum(a[0], 0),
    "add": lambda n, a, s: a[0] + a[1], "sub": lambda n, a, s: a[0] - a[1],
    "mul": lambda n, a, s: a[0] * a[1], "div": lambda n, a, s: a[0] / a[1],
    "maxpool": lambda n, a, s: _pool(n, a[0], s, True),
    "avgpool": lambda n, a, s: _pool(n, a[0], s, False),
    "concat": lambda n, a, s: np.concatenate(a, axis=n.attrs["axis"]),
    "transpose": lambda n, a, s: np.transpose(a[0], n.attrs["perm"]),
    "reshape": lambda n, a, s: a[0].reshape(s),
    "identity": lambda n, a, s: a[0],
}


# ---- ops on quantised tensors (compiler/ir.py docstring; docs/int8_datapath.md) ----------

def _params(t):
    """(scale float32 array, zero point int32 array) of a quantised TensorType."""
    return t.quant.scale_array(), t.quant.zero_point_array()


def _typed_zero_point(t):
    return np.asarray(t.quant.zero_point[0], dtype=DTYPES[t.dtype])


def _linear(graph: Graph, node: Node, args):
    """conv/gemm on codes: QLinearConv, QLinearMatMul/QGemm, or their int32 accumulators."""
    tx, tw, ty = (graph.tensors[n] for n in (node.inputs[0], node.inputs[1], node.outputs[0]))
    (xs, xz), (ws, wz) = _params(tx), _params(tw)
    bias = args[2] if len(args) > 2 else None
    if tx.quant.dynamic:                  # (x, w, x_zero_point int32[]) -> int32 accumulator
        xz, bias = np.asarray(args[2]).reshape(1), None
    if node.op == "conv":
        a = node.attrs
        attrs = {"group": a["group"], "strides": list(a["strides"]), "pads": list(a["pads"]),
                 "dilations": list(a["dilations"])}
        if ty.dtype == "int32":
            return golden.conv_integer(args[0], xz[0], args[1], wz, **attrs)
        ys, _ = _params(ty)
        out = golden.qlinear_conv(args[0], xs[0], xz[0], args[1], ws, wz, ys[0], _typed_zero_point(ty),
                                  bias, **attrs)
    elif ty.dtype == "int32":
        return golden.matmul_integer(args[0], xz[0], args[1], wz)
    elif ty.dtype == "fp32":
        return golden.qgemm(args[0], xs[0], xz[0], args[1], ws, wz, bias, alpha=node.attrs.get("alpha", 1.0))
    else:
        ys, _ = _params(ty)
        out = golden.qgemm(args[0], xs[0], xz[0], args[1], ws, wz, bias, ys[0], _typed_zero_point(ty),
                           alpha=node.attrs.get("alpha", 1.0))
    if node.attrs.get("activation", "none") == "relu":          # clamp the codes at y_zp
        out = np.maximum(out, _typed_zero_point(ty))
    return out


def _avgpool(graph: Graph, node: Node, args):
    tx, ty = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    (xs, xz), (ys, _) = _params(tx), _params(ty)
    yz = _typed_zero_point(ty)
    if is_global_pool(graph, node):
        return golden.qlinear_global_average_pool(args[0], xs[0], xz[0], ys[0], yz)
    a = node.attrs
    return golden.qlinear_average_pool(args[0], xs[0], xz[0], ys[0], yz, kernel_shape=list(a["kernel"]),
                                       strides=list(a["strides"]), pads=list(a["pads"]),
                                       count_include_pad=a["count_include_pad"])


def _softmax(graph: Graph, node: Node, args):
    ty = graph.tensors[node.outputs[0]]
    x = np.moveaxis(args[0], node.attrs["axis"], -1)
    rows = softmax_rows(np.ascontiguousarray(x).reshape(-1, x.shape[-1]), args[1],
                        ty.quant.scale[0], ty.quant.zero_point[0])
    return np.moveaxis(rows.reshape(x.shape), -1, node.attrs["axis"])


def _binary(graph: Graph, node: Node, args):
    ta, tb, ty = (graph.tensors[n] for n in (*node.inputs, node.outputs[0]))
    fn = golden.qlinear_add if node.op == "add" else golden.qlinear_mul
    return fn(args[0], ta.quant.scale[0], ta.quant.zero_point[0], args[1], tb.quant.scale[0],
              tb.quant.zero_point[0], ty.quant.scale[0], ty.quant.zero_point[0])


def _quantize(graph: Graph, node: Node, args):
    ty = graph.tensors[node.outputs[0]]
    scale, zp = _params(ty)
    axis = ty.quant.axis if ty.quant.axis is not None else 0
    return golden.quantize_linear(args[0], scale, zp, DTYPES[ty.dtype], axis=axis)


def _dequantize(graph: Graph, node: Node, args):
    tx = graph.tensors[node.inputs[0]]
    scale, zp = _params(tx)
    return golden.dequantize_linear(args[0], scale, zp, axis=tx.quant.axis if tx.quant.axis is not None else 0)


def _move_codes(graph: Graph, node: Node, args):
    """maxpool/reshape/transpose/identity/concat on codes: the float op on exact small integers
    (an int32 accumulator, which only reshape and identity view, keeps its type: float32 would
    round it above 2^24)."""
    ty = graph.tensors[node.outputs[0]]
    if ty.dtype == "int32":
        return OPS[node.op](node, args, ty.shape)
    out = OPS[node.op](node, [a.astype(np.float32) for a in args], ty.shape)
    return np.asarray(out).astype(DTYPES[ty.dtype])


def _dynamic_quantize(graph: Graph, node: Node, args):
    """DynamicQuantizeLinear: (uint8 codes, fp32[] scale, zero point as int32[])."""
    y, scale, zero_point = dynamic_quantize_linear(args[0])
    return y, np.asarray(scale, np.float32), np.asarray(zero_point, np.int32)


QUANT_OPS = {
    "conv": _linear, "gemm": _linear, "add": _binary, "mul": _binary, "avgpool": _avgpool,
    "softmax": _softmax, "quantize": _quantize, "dequantize": _dequantize,
    "lookup": lambda g, n, a: a[1][a[0].view(np.uint8).astype(np.intp)],
    "dynamic_quantize": _dynamic_quantize,
    "cast": lambda g, n, a: a[0].astype(np.float32),       # round half to even above 2**24
    **{op: _move_codes for op in ("maxpool", "reshape", "transpose", "identity", "concat")},
}


def evaluate_quantised(graph: Graph, node: Node, args):
    """One node on quantised tensors: an array, or a tuple of arrays for several outputs."""
    out = QUANT_OPS[node.op](graph, node, args)
    return tuple(np.asarray(o) for o in out) if isinstance(out, tuple) else np.asarray(out)

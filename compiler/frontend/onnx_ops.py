"""The ONNX op table: `OPS[op_type](ctx: NodeContext) -> Converted`, one function
per ONNX op, named as in ONNX, reading ONNX attribute names with ONNX defaults
normalised across opsets 7..21, and computing every output shape. This file holds
the layer ops (conv, pooling, gemm, normalisation); onnx_ops_tensor.py the tensor and
elementwise ops, onnx_ops_math.py the math, activation, reduction and LayerNormalization ops.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend import onnx_ops_math as math_ops
from compiler.frontend import onnx_ops_tensor as tensor_ops
from compiler.frontend.onnx_context import Converted, NodeContext

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _require_4d(ctx: NodeContext, what: str) -> tuple:
    shape = ctx.shape(0)
    if len(shape) != 4:
        raise ctx.error(f"input '{ctx.inputs[0]}' has shape {shape}; {what} supports only "
                        "4-D NCHW inputs (2-D spatial)")
    return shape


def _window_pads(ctx: NodeContext, spatial, kernel, strides, dilations) -> tuple:
    """ONNX pads/auto_pad -> IR pads (top, left, bottom, right)."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        raise ctx.error(f"attribute auto_pad={auto_pad!r}; allowed: {', '.join(AUTO_PADS)}")
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad == "NOTSET":
        pads = ctx.ints("pads", (0, 0, 0, 0))
        if len(pads) != 4 or min(pads) < 0:
            raise ctx.error(f"attribute pads={list(pads)}; allowed: 4 non-negative ints")
        return pads
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)                                  # SAME: ceil(in / stride)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return (begins[0], begins[1], ends[0], ends[1])


def window_output(size, k, s, d, pad_begin, pad_end, ceil_mode=False) -> int:
    """Output length of a sliding window (ONNX Conv/MaxPool/AveragePool formula).

    With ceil_mode the last window must still start inside the input or the left
    padding (ONNX Pool spec since opset 19 clarification; ORT and PyTorch agree).
    """
    span = (k - 1) * d + 1
    room = size + pad_begin + pad_end - span
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def _pair(ctx: NodeContext, key: str, default) -> tuple:
    value = ctx.ints(key, default)
    if len(value) != 2 or min(value) < 1:
        raise ctx.error(f"attribute {key}={list(value)}; allowed: 2 positive ints")
    return value


def conv_geometry(ctx: NodeContext, weight_shape: tuple) -> tuple:
    """(output shape, IR conv attrs) of an ONNX Conv-like node with activation input 0."""
    n, c, h, w = _require_4d(ctx, ctx.op_type)
    if len(weight_shape) != 4:
        raise ctx.error(f"weight shape {weight_shape}; allowed: 4-D [Cout, Cin/group, kh, kw]")
    cout, cin_group, kh, kw = (int(d) for d in weight_shape)
    group = int(ctx.attr("group", 1))
    if group < 1 or cin_group * group != c or cout % group:
        raise ctx.error(f"group={group} does not fit input channels {c} and weight {weight_shape}")
    kernel = _pair(ctx, "kernel_shape", (kh, kw))
    if kernel != (kh, kw):
        raise ctx.error(f"attribute kernel_shape={list(kernel)} disagrees with "
                        f"weight shape {weight_shape}")
    strides, dilations = _pair(ctx, "strides", (1, 1)), _pair(ctx, "dilations", (1, 1))
    pads = _window_pads(ctx, (h, w), kernel, strides, dilations)
    out_hw = [window_output(size, k, s, d, pads[i], pads[i + 2])
              for i, (size, k, s, d) in enumerate(zip((h, w), kernel, strides, dilations))]
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": group,
             "activation": "none"}
    return (n, cout, *out_hw), attrs


def Conv(ctx: NodeContext) -> Converted:
    weight = ctx.const(1, "weight")
    shape, attrs = conv_geometry(ctx, tuple(weight.shape))
    cout = shape[1]
    inputs = [ctx.operand(0), ctx.operand(1)]
    if ctx.has_input(2):
        bias = ctx.const(2, "bias")
        if bias.shape != (cout,):
            raise ctx.error(f"bias shape {bias.shape}; allowed: ({cout},)")
        inputs.append(ctx.operand(2))
    ctx.emit("conv", inputs, shape, ctx.outputs[0], **attrs)
    return ctx.done()


def pool_geometry(ctx: NodeContext, count_include_pad: int) -> tuple:
    """(output shape, IR pool attrs) of an ONNX pooling node with input 0."""
    n, c, h, w = _require_4d(ctx, ctx.op_type)
    if "kernel_shape" not in ctx.attrs:
        raise ctx.error("attribute kernel_shape is missing; it is required")
    kernel, strides = _pair(ctx, "kernel_shape", None), _pair(ctx, "strides", (1, 1))
    if _pair(ctx, "dilations", (1, 1)) != (1, 1):
        raise ctx.error(f"attribute dilations={list(ctx.attr('dilations'))}; allowed: [1, 1]")
    ceil_mode = int(ctx.attr("ceil_mode", 0))
    pads = _window_pads(ctx, (h, w), kernel, strides, (1, 1))
    if any(p >= k for p, k in zip(pads, kernel * 2)):
        raise ctx.error(f"attribute pads={list(pads)}; each pad must be smaller than the kernel")
    out_hw = [window_output(size, k, s, 1, pads[i], pads[i + 2], bool(ceil_mode))
              for i, (size, k, s) in enumerate(zip((h, w), kernel, strides))]
    attrs = {"kernel": kernel, "strides": strides, "pads": pads,
             "count_include_pad": count_include_pad}
    return (n, c, *out_hw), attrs


def _pool(ctx: NodeContext, ir_op: str, count_include_pad: int) -> Converted:
    shape, attrs = pool_geometry(ctx, count_include_pad)
    ctx.emit(ir_op, [ctx.operand(0)], shape, ctx.outputs[0], **attrs)
    return ctx.done()


def MaxPool(ctx: NodeContext) -> Converted:
    if int(ctx.attr("storage_order", 0)) != 0:
        raise ctx.error(f"attribute storage_order={ctx.attr('storage_order')}; allowed: 0")
    if ctx.output_used(1):
        raise ctx.error("output Indices is used; only the pooled values are supported")
    return _pool(ctx, "maxpool", 0)


def AveragePool(ctx: NodeContext) -> Converted:
    count_include_pad = int(ctx.attr("count_include_pad", 0))
    if count_include_pad not in (0, 1):
        raise ctx.error(f"attribute count_include_pad={count_include_pad}; allowed: 0, 1")
    return _pool(ctx, "avgpool", count_include_pad)


def _global_pool(ctx: NodeContext, ir_op: str) -> Converted:
    n, c, h, w = _require_4d(ctx, ctx.op_type)
    ctx.emit(ir_op, [ctx.operand(0)], (n, c, 1, 1), ctx.outputs[0], kernel=(h, w),
             strides=(1, 1), pads=(0, 0, 0, 0), count_include_pad=0)
    return ctx.done()


def GlobalAveragePool(ctx: NodeContext) -> Converted:
    return _global_pool(ctx, "avgpool")


def GlobalMaxPool(ctx: NodeContext) -> Converted:
    return _global_pool(ctx, "maxpool")


def _constant_weight(ctx: NodeContext, i: int) -> np.ndarray:
    if not ctx.is_const(i):
        raise ctx.error(f"input '{ctx.inputs[i]}' (B) is computed at run time; only a constant "
                        "weight B is supported (activation x activation products are not)")
    return np.asarray(ctx.const(i, "B"), dtype=np.float32)


def _gemm_bias(ctx: NodeContext, m: int, n: int, beta: float):
    """(bias [N] constant name or None, constant [M,N] to add after, or None)."""
    if not ctx.has_input(2) or beta == 0.0:
        return None, None
    if not ctx.is_const(2):
        raise ctx.error(f"input '{ctx.inputs[2]}' (C) is computed at run time; only a "
                        "constant C is supported")
    c = np.asarray(ctx.const(2, "C"), dtype=np.float64) * beta
    try:
        full = np.broadcast_to(c, (m, n))
    except ValueError:
        raise ctx.error(f"C of shape {c.shape} does not broadcast to [{m}, {n}]") from None
    if np.all(full == full[:1]):
        return ctx.constant("bias", full[0]), None
    return None, full


def Gemm(ctx: NodeContext) -> Converted:
    a_shape = ctx.shape(0)
    if len(a_shape) != 2:
        raise ctx.error(f"input A has shape {a_shape}; Gemm takes 2-D A")
    b = _constant_weight(ctx, 1)
    if b.ndim != 2:
        raise ctx.error(f"input B has shape {b.shape}; Gemm takes 2-D B")
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    weight = b.T if ctx.attr("transB", 0) else b                     # [K, N]
    if alpha != 1.0:
        weight = weight.astype(np.float64) * alpha
    x = ctx.operand(0)
    m, k = a_shape
    if ctx.attr("transA", 0):
        m, k = k, m
        x = ctx.emit("transpose", [x], (m, k), perm=(1, 0))
    if weight.shape[0] != k:
        raise ctx.error(f"A gives K={k} but B gives K={weight.shape[0]}")
    n = weight.shape[1]
    bias, full = _gemm_bias(ctx, m, n, beta)
    inputs = [x, ctx.constant("w", weight)] + ([bias] if bias else [])
    y = ctx.emit("gemm", inputs, (m, n), ctx.outputs[0] if full is None else None,
                 activation="none")
    if full is not None:
        ctx.emit("add", [y, ctx.constant("c", full)], (m, n), ctx.outputs[0])
    return ctx.done()


def MatMul(ctx: NodeContext) -> Converted:
    b = _constant_weight(ctx, 1)
    a_shape = ctx.shape(0)
    if not a_shape:
        raise ctx.error("input A is a scalar; MatMul takes A of rank >= 1")
    if b.ndim != 2:
        raise ctx.error(f"input B has shape {b.shape}; only a 2-D constant B is supported")
    k, n = b.shape
    if a_shape[-1] != k:
        raise ctx.error(f"A of shape {a_shape} does not match B of shape {b.shape}")
    lead = a_shape[:-1]
    m = int(np.prod(lead, dtype=np.int64))
    x = ctx.operand(0)
    if len(a_shape) != 2:
        x = ctx.emit("reshape", [x], (m, k))
    y = ctx.emit("gemm", [x, ctx.operand(1)], (m, n),
                 ctx.outputs[0] if len(a_shape) == 2 else None, activation="none")
    if len(a_shape) != 2:
        ctx.emit("reshape", [y], (*lead, n), ctx.outputs[0])
    return ctx.done()


def BatchNormalization(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    if ctx.opset < 9 and int(ctx.attr("spatial", 1)) != 1:
        raise ctx.error(f"attribute spatial={ctx.attr('spatial')}; allowed: 1")
    if int(ctx.attr("is_test", 1)) != 1 or int(ctx.attr("training_mode", 0)) != 0:
        raise ctx.error("training-mode BatchNormalization; allowed: inference mode only")
    if any(ctx.output_used(i) for i in range(1, len(ctx.outputs))):
        raise ctx.error("running mean/var outputs are used; only output Y is supported")
    if len(shape) < 2:
        raise ctx.error(f"input shape {shape}; allowed: rank >= 2 with channels on axis 1")
    params = [np.asarray(ctx.const(i, what), dtype=np.float64).ravel()
              for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))]
    if any(p.shape != (shape[1],) for p in params):
        raise ctx.error(f"parameter shapes {[p.shape for p in params]}; allowed: ({shape[1]},)")
    gamma, beta, mean, var = params
    scale = gamma / np.sqrt(var + float(ctx.attr("epsilon", 1e-5)))
    shift = beta - mean * scale
    ctx.emit("affine", [ctx.operand(0), ctx.constant("scale", scale),
                        ctx.constant("shift", shift)], shape, ctx.outputs[0])
    return ctx.done()


def LRN(ctx: NodeContext) -> Converted:
    shape = _require_4d(ctx, "LRN")
    if "size" not in ctx.attrs:
        raise ctx.error("attribute size is missing; it is required")
    ctx.emit("lrn", [ctx.operand(0)], shape, ctx.outputs[0], size=int(ctx.attr("size")),
             alpha=float(ctx.attr("alpha", 1e-4)), beta=float(ctx.attr("beta", 0.75)),
             bias=float(ctx.attr("bias", 1.0)))
    return ctx.done()


OPS = {
    "Conv": Conv, "MaxPool": MaxPool, "AveragePool": AveragePool,
    "GlobalAveragePool": GlobalAveragePool, "GlobalMaxPool": GlobalMaxPool,
    "Gemm": Gemm, "MatMul": MatMul, "BatchNormalization": BatchNormalization, "LRN": LRN,
    **tensor_ops.OPS, **math_ops.OPS,
}

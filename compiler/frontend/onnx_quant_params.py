"""Scale and zero-point inputs of the quantised ONNX ops -> `ir.Quant`, with the checks a user
needs to hear about in one line (node, input, rule): a missing scale, a scale that is not a
compile-time float32 constant or is zero, negative, NaN or infinite, a zero point of the wrong
type, shape or range. Also binds an op's declared input parameters to its operand: a run-time
tensor must already carry them, a constant becomes an IR constant of that dtype and quant.

8-bit graph inputs: ONNX gives a uint8/int8 graph input no scale or zero point, and the IR needs
one on every 8-bit tensor. The front end types such an input without a Quant (onnx.py); the first
quantised op that reads it (bind_operand: QLinearConv's x_scale/x_zero_point, DequantizeLinear's,
ConvInteger's x_zero_point, ...) gives it that op's parameters, as a producer would, and every
later reader must agree (ConvInteger/MatMulInteger read no scale: only their zero point must). An
input that no such op reads first is a CompileError naming it (onnx.py).
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.onnx_context import NodeContext
from compiler.ir import DTYPES, QUANT_DTYPES, Quant, TensorType

NUMPY_TO_IR = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}


def read_quant(ctx: NodeContext, scale_i: int | None, zp_i: int, what: str, *, dtype: str | None = None,
               axis: int | None = None, channels: int | None = None, allowed=QUANT_DTYPES) -> tuple:
    """(IR dtype, Quant) of the tensor `what` from inputs scale_i and zp_i.

    `dtype` is the dtype the data already has (it must match the zero point's); without a zero
    point it is the dtype, default uint8 (QuantizeLinear). A scale with more than one value is
    per-axis and needs `axis` and `channels` (the length of that axis). scale_i None: the op has
    no scale input (ConvInteger, MatMulInteger, whose int32 accumulator never reads a scale): the
    scale is 1.0 for each zero point, and the zero point's size decides per tensor or per axis."""
    if scale_i is None:
        label = f"{what}_zero_point"
        name = ctx.inputs[zp_i] if ctx.has_input(zp_i) else ""
        scale = np.ones(np.shape(ctx.const(zp_i, label)) if name else (), np.float32)
    else:
        label, scale = f"{what}_scale", _scale(ctx, scale_i, what)
        name = ctx.inputs[scale_i]
    per_axis = scale.size > 1 or scale.ndim > 1
    if per_axis:
        if axis is None:
            raise ctx.error(f"input '{name}' ({label}) has {scale.size} values; "
                            "allowed: one value (per-tensor quantisation) here")
        if scale.shape != (channels,):
            raise ctx.error(f"input '{name}' ({label}) has shape {list(scale.shape)}; "
                            f"allowed: [] or [{channels}] along axis {axis}")
    zero_point, dtype = _zero_point(ctx, zp_i, what, scale.shape, dtype, allowed)
    quant = Quant(tuple(float(v) for v in scale.ravel()), tuple(int(v) for v in zero_point.ravel()),
                  axis if per_axis else None)
    return dtype, quant


def _scale(ctx: NodeContext, scale_i: int, what: str) -> np.ndarray:
    label = f"{what}_scale"
    if not ctx.has_input(scale_i):
        raise ctx.error(f"input {scale_i} ({label}) is missing; every quantised tensor needs a scale")
    scale = np.asarray(ctx.const(scale_i, label))
    name = ctx.inputs[scale_i]
    if scale.dtype != np.float32:
        raise ctx.error(f"input '{name}' ({label}) is {scale.dtype}; allowed: float32")
    if not np.all(np.isfinite(scale) & (scale > 0)):
        bad = scale.ravel()[~(np.isfinite(scale.ravel()) & (scale.ravel() > 0))][0]
        raise ctx.error(f"input '{name}' ({label}) holds {bad}; a scale must be finite and > 0 "
                        "(zero, negative, infinite or NaN scales have no int8 datapath)")
    return scale


def _zero_point(ctx: NodeContext, zp_i: int, what: str, shape: tuple, dtype, allowed) -> tuple:
    label = f"{what}_zero_point"
    if not ctx.has_input(zp_i):
        dtype = dtype or "uint8"
        return np.zeros(shape, np.int64), dtype
    zp = np.asarray(ctx.const(zp_i, label))
    name = ctx.inputs[zp_i]
    zp_dtype = NUMPY_TO_IR.get(zp.dtype)
    expected = dtype or zp_dtype or "uint8"
    info = np.iinfo(DTYPES[expected]) if expected in DTYPES and expected != "fp32" else None
    if zp_dtype not in allowed:
        if zp.dtype.kind in "iu" and info is not None and np.any((zp < info.min) | (zp > info.max)):
            raise ctx.error(f"input '{name}' ({label}) holds {int(zp.ravel()[0])}: out of range "
                            f"{info.min}..{info.max} for {expected}")
        raise ctx.error(f"input '{name}' ({label}) is {zp.dtype}; allowed: {', '.join(allowed)}")
    if dtype is not None and zp_dtype != dtype:
        raise ctx.error(f"input '{name}' ({label}) is {zp_dtype} but the data is {dtype}; "
                        "a zero point has its tensor's type")
    if zp.size != int(np.prod(shape)):
        raise ctx.error(f"input '{name}' ({label}) has shape {list(zp.shape)}; "
                        f"it must match the scale's {list(shape)}")
    return zp.astype(np.int64).reshape(shape), zp_dtype


def bind_operand(ctx: NodeContext, i: int, dtype: str, quant: Quant, what: str) -> str:
    """IR name of input i, which the op reads as `dtype` codes with `quant`: a run-time tensor
    must carry exactly these (they come from its producer), a constant is registered with them,
    and an 8-bit graph input without parameters yet takes them (see the module docstring)."""
    name = ctx.inputs[i]
    if ctx.is_const(i):
        value = np.asarray(ctx.const(i, what))
        if NUMPY_TO_IR.get(value.dtype) != dtype:
            raise ctx.error(f"input '{name}' ({what}) is {value.dtype}; its zero point says {dtype}")
        ctx.typed_constant(name, value, dtype, quant)
        return name
    have = carried(ctx, i)
    if have.quantised and have.quant is None and have.dtype == dtype:
        ctx.result.types[name] = TensorType(have.shape, dtype, quant)      # the walk records it
        return name
    if have.dtype != dtype or have.quant != quant:
        raise ctx.error(f"input '{name}' ({what}) holds {_describe(have)} but the node reads it as "
                        f"{dtype} {{{quant}}}; the parameters must match the producer's (a graph "
                        "input's: those of the first quantised op that reads it)")
    return name


def carried(ctx: NodeContext, i: int) -> TensorType | None:
    """TensorType of run-time input i as this node sees it: with the Quant an earlier operand of
    the same node gave an 8-bit graph input (bind_operand); None for a constant."""
    return None if ctx.is_const(i) else ctx.result.types.get(ctx.inputs[i]) or ctx.type(i)


def _describe(t: TensorType) -> str:
    if t.quantised and t.quant is None:
        return f"{t.dtype} (a graph input without parameters)"
    return f"{t.dtype} {{{t.quant}}}" if t.quant is not None else t.dtype


def out_type(dtype: str, quant: Quant) -> TensorType:
    """A TensorType carrying dtype and quant for ctx.emit(out_type=...) (the shape is emit's)."""
    return TensorType((), dtype, quant)

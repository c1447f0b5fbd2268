"""ONNX elementwise math, activation, reduction and normalisation ops on run-time float tensors
(Erf, Tanh, Sigmoid, Exp, Log, Sqrt, Reciprocal, Neg, Abs, Gelu, HardSigmoid, HardSwish, Clip, Pow,
Min, Max, ReduceMean/ReduceSum/ReduceMax, LayerNormalization), in the forms opsets 7..21 give them:
each maps one NodeContext to IR Nodes (compiler/ir.py) with computed output shapes. Part of the op
table `compiler.frontend.onnx_ops.OPS`; docs/ops.md lists them with their precision.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.onnx_context import Converted, NodeContext

# ONNX op -> IR op of the elementwise functions that take no attributes
UNARY = {"Erf": "erf", "Tanh": "tanh", "Sigmoid": "sigmoid", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
         "Reciprocal": "reciprocal", "Neg": "neg", "Abs": "abs", "HardSwish": "hard_swish"}
GELU_APPROXIMATIONS = ("none", "tanh")
# ONNX reduction -> (IR op, the opset from which its axes come as an input instead of an attribute)
REDUCTIONS = {"ReduceMean": ("reduce_mean", 18), "ReduceSum": ("reduce_sum", 13), "ReduceMax": ("reduce_max", 18)}
F32_MAX = float(np.finfo(np.float32).max)


def _unary(ctx: NodeContext, ir_op: str, **attrs) -> Converted:
    ctx.emit(ir_op, [ctx.operand(0)], ctx.shape(0), ctx.outputs[0], **attrs)
    return ctx.done()


def _elementwise(ir_op: str):
    def convert(ctx: NodeContext) -> Converted:
        return _unary(ctx, ir_op)
    return convert


def Gelu(ctx: NodeContext) -> Converted:
    """Opset 20: y = x/2 (1 + erf(x / sqrt 2)), or with approximate="tanh" its tanh approximation."""
    approximate = ctx.attr("approximate", "none")
    if approximate not in GELU_APPROXIMATIONS:
        raise ctx.error(f"attribute approximate={approximate!r}; allowed: {', '.join(GELU_APPROXIMATIONS)}")
    return _unary(ctx, "gelu", approximate=approximate)


def HardSigmoid(ctx: NodeContext) -> Converted:
    return _unary(ctx, "hard_sigmoid", alpha=_float32(ctx.attr("alpha", 0.2)), beta=_float32(ctx.attr("beta", 0.5)))


def _float32(value) -> float:
    """An ONNX float attribute or constant as the float32 it is, held as a Python float."""
    return float(np.float32(value))


def _bound(ctx: NodeContext, i: int, what: str, default: float) -> float:
    """Clip's min (input 1) or max (input 2) from opset 11: absent, or a constant with one value."""
    if not ctx.has_input(i):
        return default
    if not ctx.is_const(i):
        raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) is computed at run time; Clip's min and max must be "
                        "constants (initializers or folded)")
    value = np.asarray(ctx.const(i, what))
    if value.size != 1 or value.dtype.kind not in "fiu":
        raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) is {value.dtype}{list(value.shape)}; allowed: one number")
    return _float32(value.ravel()[0])


def Clip(ctx: NodeContext) -> Converted:
    """min(max(x, min), max): ReLU6 is Clip(x, 0, 6). Before opset 11 the bounds are attributes, from 11
    optional constant inputs; an absent one is the float32 range's end (numeric_limits lowest() and max(), as
    ONNX says: Clip maps an infinity to it)."""
    if ctx.opset < 11:
        low, high = _float32(ctx.attr("min", -F32_MAX)), _float32(ctx.attr("max", F32_MAX))
    else:
        low, high = _bound(ctx, 1, "min", -F32_MAX), _bound(ctx, 2, "max", F32_MAX)
    return _unary(ctx, "clip", min=low, max=high)


def _broadcast(ctx: NodeContext, a: tuple, b: tuple) -> tuple:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise ctx.error(f"input shapes {a} and {b} do not broadcast") from None


def Pow(ctx: NodeContext) -> Converted:
    """x ** y with broadcasting; the exponent a run-time float tensor or a constant of any number type."""
    shape = _broadcast(ctx, ctx.shape(0), ctx.shape(1))
    if ctx.type(1) is not None and ctx.type(1).dtype != "fp32":
        raise ctx.error(f"exponent '{ctx.inputs[1]}' is {ctx.type(1).dtype}; allowed: a float tensor or a constant")
    ctx.emit("pow", [ctx.operand(0), ctx.operand(1)], shape, ctx.outputs[0])
    return ctx.done()


def _variadic(ir_op: str):
    """Min and Max: n inputs with broadcasting, as a left-to-right chain of binary nodes."""
    def convert(ctx: NodeContext) -> Converted:
        present = [i for i in range(len(ctx.inputs)) if ctx.has_input(i)]
        if len(present) == 1:
            return _unary(ctx, "identity")
        total, shape = ctx.operand(present[0]), ctx.shape(present[0])
        for position, i in enumerate(present[1:], start=2):
            shape = _broadcast(ctx, shape, ctx.shape(i))
            last = position == len(present)
            total = ctx.emit(ir_op, [total, ctx.operand(i)], shape, ctx.outputs[0] if last else None)
        return ctx.done()
    convert.__name__ = ir_op.capitalize()
    return convert


def _reduction(onnx_op: str):
    ir_op, axes_input_since = REDUCTIONS[onnx_op]

    def convert(ctx: NodeContext) -> Converted:
        shape = ctx.shape(0)
        if ctx.opset >= axes_input_since:
            axes = ctx.const_ints(1, "axes") if ctx.has_input(1) else []
        else:
            axes = [int(a) for a in ctx.attr("axes", [])]
        keepdims = int(ctx.attr("keepdims", 1))
        if keepdims not in (0, 1):
            raise ctx.error(f"attribute keepdims={keepdims}; allowed: 0, 1")
        if not axes and int(ctx.attr("noop_with_empty_axes", 0)):
            return _unary(ctx, "identity")
        rank = len(shape)
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
            raise ctx.error(f"axes {axes} are out of range or repeated for input rank {rank}")
        axes = sorted(a % rank for a in axes) if axes else list(range(rank))
        if not axes:
            return _unary(ctx, "identity")              # a scalar: nothing to reduce
        out = [1 if i in axes else d for i, d in enumerate(shape)] if keepdims else \
            [d for i, d in enumerate(shape) if i not in axes]
        ctx.emit(ir_op, [ctx.operand(0)], out, ctx.outputs[0], axes=tuple(axes), keepdims=keepdims)
        return ctx.done()
    convert.__name__ = onnx_op
    return convert


def _normalised(ctx: NodeContext, i: int, what: str, normalised: tuple) -> np.ndarray:
    """LayerNormalization's scale or bias: a constant that broadcasts to the normalised shape, as [D] float32."""
    if not ctx.is_const(i):
        raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) is computed at run time; it must be a constant")
    value = np.asarray(ctx.const(i, what), np.float32)
    try:
        if np.broadcast_shapes(value.shape, normalised) != normalised:
            raise ValueError
    except ValueError:
        raise ctx.error(f"{what} of shape {list(value.shape)} does not broadcast to the normalised shape "
                        f"{list(normalised)}") from None
    return np.broadcast_to(value, normalised).reshape(-1)


def LayerNormalization(ctx: NodeContext) -> Converted:
    """Opset 17: normalise over axes axis.. (default -1): (x - mean) / sqrt(var + epsilon) * Scale + B, computed
    in float32 (stash_type 1); the Mean and InvStdDev outputs are not produced."""
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", -1))
    if not -len(shape) <= axis < len(shape):
        raise ctx.error(f"attribute axis={axis} for input rank {len(shape)}")
    if int(ctx.attr("stash_type", 1)) != 1:
        raise ctx.error(f"attribute stash_type={ctx.attr('stash_type')}; allowed: 1 (float32 statistics)")
    if ctx.output_used(1) or ctx.output_used(2):
        raise ctx.error("output Mean or InvStdDev is used; only output Y is supported")
    axis %= len(shape)
    normalised = tuple(shape[axis:])
    inputs = [ctx.operand(0), ctx.constant("scale", _normalised(ctx, 1, "Scale", normalised))]
    if ctx.has_input(2):
        inputs.append(ctx.constant("bias", _normalised(ctx, 2, "B", normalised)))
    ctx.emit("layer_norm", inputs, shape, ctx.outputs[0], axis=axis, epsilon=_float32(ctx.attr("epsilon", 1e-5)))
    return ctx.done()


OPS = {
    **{op: _elementwise(ir_op) for op, ir_op in UNARY.items()},
    "Gelu": Gelu, "HardSigmoid": HardSigmoid, "Clip": Clip, "Pow": Pow,
    "Min": _variadic("min"), "Max": _variadic("max"),
    **{op: _reduction(op) for op in REDUCTIONS},
    "LayerNormalization": LayerNormalization,
}

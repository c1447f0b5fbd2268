"""ONNX tensor and elementwise ops on run-time activations (Relu, Add.., Sum,
Concat, Softmax, Reshape, Flatten, Transpose, Squeeze/Unsqueeze, Dropout, Identity,
Cast): each maps one NodeContext to IR Nodes with computed output shapes.
Part of the op table `compiler.frontend.onnx_ops.OPS`.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from compiler.frontend.onnx_context import Converted, NodeContext
from compiler.frontend.onnx_fold import reshape_target


def _unary(ctx: NodeContext, ir_op: str, shape=None, **attrs) -> Converted:
    shape = ctx.shape(0) if shape is None else shape
    ctx.emit(ir_op, [ctx.operand(0)], shape, ctx.outputs[0], **attrs)
    return ctx.done()


def Relu(ctx: NodeContext) -> Converted:
    return _unary(ctx, "relu")


def Identity(ctx: NodeContext) -> Converted:
    return _unary(ctx, "identity")


def Dropout(ctx: NodeContext) -> Converted:
    if ctx.opset >= 12 and ctx.has_input(2):
        training = np.asarray(ctx.const(2, "training_mode"))
        if training.size != 1:
            raise ctx.error(f"input training_mode has {training.size} values; allowed: one boolean")
        if bool(training.ravel()[0]):
            raise ctx.error("input training_mode is true; allowed: inference (false)")
    if ctx.opset < 7 and int(ctx.attr("is_test", 0)) == 0:
        raise ctx.error("attribute is_test=0 (training); allowed: 1")
    if ctx.output_used(1):
        raise ctx.error("output mask is used; only the inference output is supported")
    return _unary(ctx, "identity")


# Cast targets between float types: ONNX type -> the IR cast's `to` (values rounded to that type)
FLOAT_CASTS = {TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}


def Cast(ctx: NodeContext) -> Converted:
    """Cast to FLOAT: identity on float32, `cast` (round half to even) on int32 (an integer
    accumulator); to FLOAT16 or BFLOAT16 of a float32 tensor: `cast` to fp16/bf16, the values rounded
    to that type (the IR keeps them in float32). Every other cast of a run-time tensor is refused."""
    to = int(ctx.attr("to", 0))
    dtype = ctx.type(0).dtype
    if to in FLOAT_CASTS and dtype == "fp32":
        return _unary(ctx, "cast", to=FLOAT_CASTS[to])
    if to != TensorProto.FLOAT:
        target = TensorProto.DataType.Name(to) if to in TensorProto.DataType.values() else "unknown"
        raise ctx.error(f"attribute to={to} ({target}) on run-time {dtype} input '{ctx.inputs[0]}'; "
                        f"allowed: to={TensorProto.FLOAT} (FLOAT) of a float32 or int32 tensor, "
                        f"to={TensorProto.FLOAT16} (FLOAT16) or {TensorProto.BFLOAT16} (BFLOAT16) of a float32 one")
    return _unary(ctx, "cast" if dtype == "int32" else "identity")


def _broadcast(ctx: NodeContext, a: tuple, b: tuple) -> tuple:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise ctx.error(f"input shapes {a} and {b} do not broadcast") from None


def _binary(ir_op: str):
    def convert(ctx: NodeContext) -> Converted:
        shape = _broadcast(ctx, ctx.shape(0), ctx.shape(1))
        ctx.emit(ir_op, [ctx.operand(0), ctx.operand(1)], shape, ctx.outputs[0])
        return ctx.done()
    convert.__name__ = ir_op.capitalize()
    return convert


def Sum(ctx: NodeContext) -> Converted:
    """n-ary Sum -> a left-to-right chain of binary adds."""
    names = [i for i in range(len(ctx.inputs)) if ctx.has_input(i)]
    if len(names) == 1:
        return _unary(ctx, "identity")
    total, shape = ctx.operand(names[0]), ctx.shape(names[0])
    for position, i in enumerate(names[1:], start=2):
        shape = _broadcast(ctx, shape, ctx.shape(i))
        last = position == len(names)
        total = ctx.emit("add", [total, ctx.operand(i)], shape, ctx.outputs[0] if last else None)
    return ctx.done()


def Concat(ctx: NodeContext) -> Converted:
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    rank = len(shapes[0])
    if "axis" not in ctx.attrs:
        raise ctx.error("attribute axis is missing; it is required")
    axis = int(ctx.attr("axis"))
    if not -rank <= axis < rank or any(len(s) != rank for s in shapes):
        raise ctx.error(f"axis={axis} with input shapes {shapes}; ranks must agree")
    axis %= rank
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if len(rest) != 1:
        raise ctx.error(f"input shapes {shapes} differ off axis {axis}")
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    inputs = [ctx.operand(i) for i in range(len(ctx.inputs))]
    ctx.emit("concat", inputs, shape, ctx.outputs[0], axis=axis)
    return ctx.done()


def Softmax(ctx: NodeContext) -> Converted:
    """Opset 13+: softmax along `axis` (default -1). Before: the input is coerced
    to 2-D [prod(shape[:axis]), prod(shape[axis:])] (axis default 1) and
    normalised along the second dimension, i.e. over all of axis.. together."""
    shape = ctx.shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise ctx.error(f"attribute axis={axis} for input rank {rank}")
    axis %= rank
    if ctx.opset >= 13 or axis == rank - 1:
        return _unary(ctx, "softmax", axis=axis)
    rows = int(np.prod(shape[:axis], dtype=np.int64))
    x = ctx.emit("reshape", [ctx.operand(0)], (rows, int(np.prod(shape[axis:]))))
    y = ctx.emit("softmax", [x], ctx.result.types[x].shape, axis=1)
    ctx.emit("reshape", [y], shape, ctx.outputs[0])
    return ctx.done()


def _reshape_to(ctx: NodeContext, shape) -> Converted:
    return _unary(ctx, "reshape", shape)


def Reshape(ctx: NodeContext) -> Converted:
    target = ctx.const_ints(1, "shape")
    try:
        shape = reshape_target(ctx.shape(0), target, int(ctx.attr("allowzero", 0)))
    except ValueError as exc:
        raise ctx.error(str(exc)) from None
    return _reshape_to(ctx, shape)


def Flatten(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"attribute axis={axis} for input rank {len(shape)}")
    axis %= len(shape) + 1
    return _reshape_to(ctx, (int(np.prod(shape[:axis], dtype=np.int64)),
                             int(np.prod(shape[axis:], dtype=np.int64))))


def _axes(ctx: NodeContext) -> list | None:
    """Squeeze/Unsqueeze axes: attribute before opset 13, constant input from 13."""
    if ctx.opset >= 13:
        if not ctx.has_input(1):
            return None
        return ctx.const_ints(1, "axes")
    values = ctx.attr("axes")
    return None if values is None else [int(a) for a in values]


def _normalise_axes(ctx: NodeContext, axes: list, rank: int) -> list:
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ctx.error(f"axes {axes} are out of range or repeated for rank {rank}")
    return sorted(a % rank for a in axes)


def Unsqueeze(ctx: NodeContext) -> Converted:
    shape = list(ctx.shape(0))
    axes = _axes(ctx)
    if not axes:
        raise ctx.error("axes are missing; they are required")
    for axis in _normalise_axes(ctx, axes, len(shape) + len(axes)):
        shape.insert(axis, 1)
    return _reshape_to(ctx, shape)


def Squeeze(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    axes = _axes(ctx)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = _normalise_axes(ctx, axes, len(shape))
    if any(shape[a] != 1 for a in axes):
        raise ctx.error(f"axes {axes} of shape {shape} are not all of size 1")
    return _reshape_to(ctx, [d for i, d in enumerate(shape) if i not in axes])


def Transpose(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    perm = tuple(int(p) for p in ctx.attr("perm", range(len(shape) - 1, -1, -1)))
    if sorted(perm) != list(range(len(shape))):
        raise ctx.error(f"attribute perm={list(perm)} is not a permutation of {len(shape)} axes")
    return _unary(ctx, "transpose", [shape[p] for p in perm], perm=perm)


OPS = {
    "Relu": Relu, "Identity": Identity, "Dropout": Dropout, "Cast": Cast,
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"),
    "Sum": Sum, "Concat": Concat, "Softmax": Softmax, "Reshape": Reshape, "Flatten": Flatten,
    "Unsqueeze": Unsqueeze, "Squeeze": Squeeze, "Transpose": Transpose,
}

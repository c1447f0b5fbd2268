"""Compile-time evaluation of ONNX nodes whose inputs are all constants (weights
built by ConstantOfShape, shape subgraphs such as Shape->Gather->Concat->Reshape).
`FOLDS` maps an ONNX op type to fn(attrs, inputs: list[np.ndarray | None], opset)
returning the list of output arrays; the walk in onnx.py calls it with NumPy values.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from compiler.ir import shape_problem


def _axes_arg(attrs, inputs, index, opset, since):
    """Axes given as an attribute before opset `since`, as input `index` from then."""
    if opset >= since:
        value = inputs[index] if len(inputs) > index else None
        return None if value is None else [int(a) for a in np.asarray(value).ravel()]
    value = attrs.get("axes")
    return None if value is None else [int(a) for a in value]


def Constant(attrs, inputs, opset):
    if "value" in attrs:
        return [np.asarray(attrs["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dtype)]
    raise ValueError(f"unsupported Constant attribute(s) {sorted(attrs)}; "
                     "allowed: value, value_float(s), value_int(s)")


def ConstantOfShape(attrs, inputs, opset):
    value = np.asarray(attrs.get("value", np.zeros(1, np.float32)))
    shape = tuple(int(d) for d in np.asarray(inputs[0]).ravel())
    return [np.full(shape, value.ravel()[0], dtype=value.dtype)]


def Shape(attrs, inputs, opset):
    return [shape_of(inputs[0].shape, attrs)]


def shape_of(shape, attrs) -> np.ndarray:
    """ONNX Shape with its opset-15 start/end slicing."""
    dims = np.asarray(shape, dtype=np.int64)
    return dims[attrs.get("start", 0):attrs.get("end", len(dims))].copy()


def Size(attrs, inputs, opset):
    return [np.asarray(np.asarray(inputs[0]).size, dtype=np.int64)]


def Identity(attrs, inputs, opset):
    return [inputs[0]]


def Cast(attrs, inputs, opset):
    dtype = helper.tensor_dtype_to_np_dtype(attrs["to"])
    return [np.asarray(inputs[0]).astype(dtype)]


def Gather(attrs, inputs, opset):
    return [np.take(inputs[0], np.asarray(inputs[1], dtype=np.int64), axis=attrs.get("axis", 0))]


def Unsqueeze(attrs, inputs, opset):
    x = np.asarray(inputs[0])
    axes = _axes_arg(attrs, inputs, 1, opset, 13)
    rank = x.ndim + len(axes)
    return [np.expand_dims(x, tuple(sorted(a % rank for a in axes)))]


def Squeeze(attrs, inputs, opset):
    x = np.asarray(inputs[0])
    axes = _axes_arg(attrs, inputs, 1, opset, 13)
    return [np.squeeze(x) if axes is None else np.squeeze(x, tuple(a % x.ndim for a in axes))]


def Concat(attrs, inputs, opset):
    return [np.concatenate([np.asarray(v) for v in inputs], axis=attrs["axis"])]


def Reshape(attrs, inputs, opset):
    return [np.reshape(inputs[0], reshape_target(inputs[0].shape, inputs[1],
                                                 attrs.get("allowzero", 0)))]


def reshape_target(in_shape, shape, allowzero=0) -> tuple:
    """ONNX Reshape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    dims = [int(d) for d in np.asarray(shape).ravel()]
    if not allowzero and 0 in dims[len(in_shape):]:
        raise ValueError(f"shape {dims} copies dim {dims.index(0, len(in_shape))} (0) of a rank-{len(in_shape)} input")
    if not allowzero:
        dims = [int(in_shape[i]) if d == 0 else d for i, d in enumerate(dims)]
    total = int(np.prod(in_shape, dtype=np.int64))
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ValueError(f"shape {dims} has more than one -1 or a negative dim")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(in_shape)} to {dims}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims, dtype=np.int64)) != total:
        raise ValueError(f"cannot reshape {tuple(in_shape)} to {dims}")
    return tuple(dims)


def Flatten(attrs, inputs, opset):
    x = np.asarray(inputs[0])
    axis = attrs.get("axis", 1) % (x.ndim + 1) if x.ndim else 0
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def Transpose(attrs, inputs, opset):
    return [np.transpose(inputs[0], attrs.get("perm"))]


def Slice(attrs, inputs, opset):
    x = np.asarray(inputs[0])
    if opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 else None
        steps = inputs[4] if len(inputs) > 4 else None
    starts = [int(v) for v in np.asarray(starts).ravel()]
    ends = [int(v) for v in np.asarray(ends).ravel()]
    axes = list(range(len(starts))) if axes is None else [int(a) for a in np.asarray(axes).ravel()]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).ravel()]
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        # Python slicing clamps out-of-range bounds the way ONNX specifies
        index[axis % x.ndim] = slice(start, end, step)
    return [x[tuple(index)]]


def Range(attrs, inputs, opset):
    start, limit, delta = (np.asarray(v).item() for v in inputs[:3])
    return [np.arange(start, limit, delta, dtype=np.asarray(inputs[0]).dtype)]


def Expand(attrs, inputs, opset):
    shape = tuple(int(d) for d in np.asarray(inputs[1]).ravel())
    x = np.asarray(inputs[0])
    return [np.broadcast_to(x, np.broadcast_shapes(x.shape, shape)).copy()]


def _divide(a, b):
    if np.issubdtype(np.asarray(a).dtype, np.integer):
        return np.trunc(np.true_divide(a, b)).astype(np.asarray(a).dtype)   # ONNX truncates
    return np.divide(a, b)


def _binary(fn):
    def fold(attrs, inputs, opset):
        a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
        return [np.asarray(fn(a, b)).astype(np.result_type(a, b))]
    return fold


def _compare(fn):
    def fold(attrs, inputs, opset):
        return [np.asarray(fn(np.asarray(inputs[0]), np.asarray(inputs[1])))]
    return fold


def Mod(attrs, inputs, opset):
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    return [(np.fmod(a, b) if attrs.get("fmod", 0) else np.mod(a, b)).astype(a.dtype)]


def _unary(fn):
    def fold(attrs, inputs, opset):
        x = np.asarray(inputs[0])
        return [np.asarray(fn(x)).astype(x.dtype)]
    return fold


def Where(attrs, inputs, opset):
    return [np.where(inputs[0], inputs[1], inputs[2])]


def Dropout(attrs, inputs, opset):
    x = np.asarray(inputs[0])
    return [x, np.ones(x.shape, dtype=bool)]


def Not(attrs, inputs, opset):
    return [np.logical_not(inputs[0])]


def _variadic(fn):
    def fold(attrs, inputs, opset):
        total = np.asarray(inputs[0])
        for value in inputs[1:]:
            total = fn(total, np.asarray(value))
        return [total]
    return fold


def _reduce(fn, axes_input_since):
    def fold(attrs, inputs, opset):
        x = np.asarray(inputs[0])
        axes = _axes_arg(attrs, inputs, 1, opset, axes_input_since)
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = None if not axes else tuple(a % x.ndim for a in axes)
        return [fn(x, axis=axes, keepdims=bool(attrs.get("keepdims", 1))).astype(x.dtype)]
    return fold


def DequantizeLinear(attrs, inputs, opset):
    """y = float32(int32(x) - zp) * scale (DequantizeLinearApply, quantize_linear.cc), per
    tensor or along `axis`: the weights and int32 biases of groups left in float."""
    x = np.asarray(inputs[0])
    scale = np.asarray(inputs[1], dtype=np.float32)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"x_scale holds {scale.ravel()[:4].tolist()}; a scale must be finite and > 0")
    zp = np.asarray(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else np.zeros((), np.int32)
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[int(attrs.get("axis", 1)) % x.ndim] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return [(x.astype(np.int32) - zp.astype(np.int32)).astype(np.float32) * scale]


FOLDS = {
    "Constant": Constant, "ConstantOfShape": ConstantOfShape, "Shape": Shape, "Size": Size,
    "Identity": Identity, "Cast": Cast, "Gather": Gather, "Unsqueeze": Unsqueeze,
    "Squeeze": Squeeze, "Concat": Concat, "Reshape": Reshape, "Flatten": Flatten,
    "Transpose": Transpose, "Slice": Slice, "Range": Range, "Expand": Expand,
    "Where": Where, "Dropout": Dropout, "Not": Not, "Sum": _variadic(np.add),
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": _binary(_divide), "Pow": _binary(np.power), "Min": _variadic(np.minimum),
    "Max": _variadic(np.maximum), "Mod": Mod, "DequantizeLinear": DequantizeLinear,
    "Equal": _compare(np.equal), "Less": _compare(np.less), "Greater": _compare(np.greater),
    "LessOrEqual": _compare(np.less_equal), "GreaterOrEqual": _compare(np.greater_equal),
    "Neg": _unary(np.negative), "Abs": _unary(np.abs), "Sqrt": _unary(np.sqrt),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Reciprocal": _unary(np.reciprocal),
    "Relu": _unary(lambda x: np.maximum(x, 0)), "Exp": _unary(np.exp),
    "ReduceProd": _reduce(np.prod, 18), "ReduceSum": _reduce(np.sum, 13),
    "ReduceMax": _reduce(np.max, 18), "ReduceMin": _reduce(np.min, 18),
}


BROADCASTING = ("Where", "Sum", "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Mod", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual")


def _grown_shape(op_type: str, attrs: dict, inputs: list) -> tuple | None:
    """The output shape of an op whose output can be larger than its inputs; None for the rest."""
    if op_type == "ConstantOfShape":
        return tuple(int(d) for d in np.asarray(inputs[0]).ravel())
    if op_type == "Expand":
        return np.broadcast_shapes(np.shape(inputs[0]), tuple(int(d) for d in np.asarray(inputs[1]).ravel()))
    if op_type in BROADCASTING:
        return np.broadcast_shapes(*(np.shape(v) for v in inputs))
    if op_type == "Range":
        start, limit, delta = (float(np.asarray(v).item()) for v in inputs[:3])
        return (max(math.ceil((limit - start) / delta), 0),)
    if op_type == "Gather":
        data, axis = np.shape(inputs[0]), int(attrs.get("axis", 0)) % max(np.ndim(inputs[0]), 1)
        return data[:axis] + np.shape(inputs[1]) + data[axis + 1:]
    return None


def fold(op_type: str, node: onnx.NodeProto, attrs: dict, inputs: list, opset: int) -> list:
    """Evaluate one all-constant node; returns one array per (non-empty) output. An output
    past the IR's size limit is refused before it is allocated."""
    shape = _grown_shape(op_type, attrs, inputs)
    problem = shape_problem(shape) if shape is not None else None
    if problem:
        raise ValueError(f"the output {problem}")
    with np.errstate(all="ignore"):                # inf and NaN results are ONNX's too
        return FOLDS[op_type](attrs, inputs, opset)[:len(node.output)]

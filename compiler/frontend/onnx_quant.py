"""Quantised ONNX ops (QOperator format) -> IR ops on 8-bit tensors: QuantizeLinear,
DequantizeLinear, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger and, in the com.microsoft
domain, QGemm, QLinearAdd, QLinearMul, QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat,
QLinearSigmoid, QLinearLeakyRelu and QLinearSoftmax. The IR meaning of each is in
compiler/ir.py's docstring, the arithmetic in docs/int8_datapath.md. Tables for lookup and
softmax are computed here at compile time (quant_tables). `OPS` and `MS_OPS` are op tables.
ConvInteger and MatMulInteger give conv/gemm with an int32 output (the accumulator): they have no
scales, so their 8-bit operand keeps the scale it carries, or takes 1.0 (never read) when it has
none yet (an 8-bit graph input, a constant); its zero point must be the node's. Dynamic
quantisation (onnxruntime.quantization.quantize_dynamic, docs/int8_datapath.md section 9):
DynamicQuantizeLinear -> dynamic_quantize, and ConvInteger/MatMulInteger on its codes take its
run-time y_zero_point as a third IR input (any other run-time zero point is refused).
"""
from __future__ import annotations

import numpy as np

from compiler.frontend import quant_tables
from compiler.frontend.onnx_context import Converted, NodeContext
from compiler.frontend.onnx_ops import conv_geometry, pool_geometry
from compiler.frontend.onnx_quant_params import NUMPY_TO_IR, bind_operand, carried, out_type, read_quant
from compiler.ir import Node, Quant, TensorType

LINEAR_PAIRS = (("uint8", "uint8"), ("uint8", "int8"), ("int8", "int8"))   # qlinearconv.cc, MLAS


def _codes_dtype(ctx: NodeContext, i: int) -> str | None:
    """The dtype of run-time input i, which must hold 8-bit codes; None for a constant."""
    t = carried(ctx, i)
    if t is None:
        return None
    if not t.quantised:
        raise ctx.error(f"input '{ctx.inputs[i]}' holds {t.dtype}; {ctx.op_type} reads 8-bit codes "
                        "(quantise it with QuantizeLinear first)")
    return t.dtype


def _quantised_input(ctx: NodeContext, i: int, scale_i: int, zp_i: int, what: str) -> tuple:
    """(IR name, dtype, Quant) of a per-tensor quantised operand with its scale/zp inputs."""
    dtype, quant = read_quant(ctx, scale_i, zp_i, what, dtype=_codes_dtype(ctx, i))
    return bind_operand(ctx, i, dtype, quant, what), dtype, quant


def _same_dtype(ctx: NodeContext, dtypes: list) -> None:
    if len(set(dtypes)) != 1:
        raise ctx.error(f"inputs and output are {', '.join(dtypes)}; {ctx.op_type} needs one 8-bit type")


# ---- QuantizeLinear / DequantizeLinear -------------------------------------------------

def _axis(ctx: NodeContext, rank: int) -> int:
    if int(ctx.attr("block_size", 0)):
        raise ctx.error(f"attribute block_size={ctx.attr('block_size')}; allowed: 0 (no blocked quantisation)")
    axis = int(ctx.attr("axis", 1))
    if not -rank <= axis < max(rank, 1):
        raise ctx.error(f"attribute axis={axis} for rank {rank}")
    return axis % max(rank, 1)


def QuantizeLinear(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    if ctx.type(0) is not None and ctx.type(0).dtype != "fp32":
        raise ctx.error(f"input '{ctx.inputs[0]}' holds {ctx.type(0).dtype}; QuantizeLinear reads float32")
    axis = _axis(ctx, len(shape))
    dtype, quant = read_quant(ctx, 1, 2, "y", axis=axis, channels=shape[axis] if shape else 1)
    ctx.emit("quantize", [ctx.operand(0)], shape, ctx.outputs[0], out_type=out_type(dtype, quant))
    return ctx.done()


def DequantizeLinear(ctx: NodeContext) -> Converted:
    shape = ctx.shape(0)
    dtype = _codes_dtype(ctx, 0)
    axis = _axis(ctx, len(shape))
    dtype, quant = read_quant(ctx, 1, 2, "x", dtype=dtype, axis=axis, channels=shape[axis] if shape else 1)
    x = bind_operand(ctx, 0, dtype, quant, "x")
    ctx.emit("dequantize", [x], shape, ctx.outputs[0])
    return ctx.done()


# ---- convolution and matrix products ---------------------------------------------------

def _weight(ctx: NodeContext, i: int, scale_i: int | None, zp_i: int, axis: int, channels: int,
            value: np.ndarray | None = None) -> tuple:
    """(IR constant name, dtype, Quant) of a constant 8-bit weight (per tensor or per channel)."""
    raw = np.asarray(ctx.const(i, "weight"))
    if NUMPY_TO_IR.get(raw.dtype) not in ("uint8", "int8"):
        raise ctx.error(f"input '{ctx.inputs[i]}' (weight) is {raw.dtype}; allowed: uint8, int8")
    dtype, quant = read_quant(ctx, scale_i, zp_i, "w", dtype=NUMPY_TO_IR[raw.dtype], axis=axis,
                              channels=channels)
    if quant.axis is not None:
        quant = Quant(quant.scale, quant.zero_point, axis)
    name = ctx.constant("w", raw if value is None else value, dtype, quant)
    return name, dtype, quant


def _check_pair(ctx: NodeContext, x_dtype: str, w_dtype: str, y_dtype: str | None) -> None:
    if (x_dtype, w_dtype) not in LINEAR_PAIRS:
        raise ctx.error(f"activations {x_dtype} with weights {w_dtype}; allowed: u8 x u8, u8 x s8, "
                        "s8 x s8 (onnxruntime has no other integer kernel)")
    if y_dtype is not None and y_dtype != x_dtype:
        raise ctx.error(f"output {y_dtype} from {x_dtype} activations; allowed: the activations' type")


def _bias(ctx: NodeContext, i: int, channels: int, what: str) -> list:
    if not ctx.has_input(i):
        return []
    bias = np.asarray(ctx.const(i, what))
    if bias.dtype != np.int32 or bias.size != channels:
        raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) is {bias.dtype}{list(bias.shape)}; "
                        f"allowed: int32[{channels}] (accumulator units)")
    return [ctx.constant("b", bias.reshape(channels), "int32")]


def QLinearConv(ctx: NodeContext) -> Converted:
    x, x_dtype, _ = _quantised_input(ctx, 0, 1, 2, "x")
    w_raw = np.asarray(ctx.const(3, "w"))
    shape, attrs = conv_geometry(ctx, tuple(w_raw.shape))
    w, w_dtype, w_quant = _weight(ctx, 3, 4, 5, 0, shape[1])
    if len(set(w_quant.zero_point)) != 1:
        raise ctx.error("per-channel weight zero points differ; onnxruntime's QLinearConv needs "
                        "them all equal (qlinearconv.cc)")
    y_dtype, y_quant = read_quant(ctx, 6, 7, "y")
    _check_pair(ctx, x_dtype, w_dtype, y_dtype)
    inputs = [x, w] + _bias(ctx, 8, shape[1], "B")
    ctx.emit("conv", inputs, shape, ctx.outputs[0], out_type=out_type(y_dtype, y_quant), **attrs)
    return ctx.done()


def _gemm(ctx: NodeContext, x: str, a_shape: tuple, weight: tuple, bias: list, y, **attrs) -> None:
    """gemm of codes x [.., K] with weight (name, dtype, quant) [K, N]; N-D x is reshaped."""
    lead, k = a_shape[:-1], a_shape[-1]
    m = int(np.prod(lead, dtype=np.int64))
    n = ctx.result.types[weight[0]].shape[1]
    if len(a_shape) != 2:
        x = ctx.emit("reshape", [x], (m, k))
    out = ctx.emit("gemm", [x, weight[0]] + bias, (m, n), ctx.outputs[0] if len(a_shape) == 2 else None,
                   out_type=y, activation="none", **attrs)
    if len(a_shape) != 2:
        ctx.emit("reshape", [out], (*lead, n), ctx.outputs[0])


def _a_shape(ctx: NodeContext, matrix: bool = False) -> tuple:
    """Shape of input A: [.., K] (rank >= 1), or exactly [M, K] for a `matrix` (QGemm)."""
    shape = ctx.shape(0)
    if len(shape) != 2 if matrix else not shape:
        raise ctx.error(f"input A has shape {list(shape)}; allowed: {'2-D [M, K]' if matrix else 'rank >= 1'}")
    return shape


def _constant_b(ctx: NodeContext, i: int, k: int) -> np.ndarray:
    if not ctx.is_const(i):
        raise ctx.error(f"input '{ctx.inputs[i]}' (B) is computed at run time; only a constant B is supported")
    b = np.asarray(ctx.const(i, "B"))
    if b.ndim != 2 or b.shape[0] != k:
        raise ctx.error(f"B of shape {list(b.shape)} does not fit A's K={k}; allowed: 2-D [K, N]")
    return b


def QLinearMatMul(ctx: NodeContext) -> Converted:
    x, x_dtype, _ = _quantised_input(ctx, 0, 1, 2, "a")
    a_shape = _a_shape(ctx)
    b = _constant_b(ctx, 3, a_shape[-1])
    weight = _weight(ctx, 3, 4, 5, 1, b.shape[1])
    y_dtype, y_quant = read_quant(ctx, 6, 7, "y")
    _check_pair(ctx, x_dtype, weight[1], y_dtype)
    _gemm(ctx, x, a_shape, weight, [], out_type(y_dtype, y_quant))
    return ctx.done()


def QGemm(ctx: NodeContext) -> Converted:
    """com.microsoft QGemm: C (int32) is the bias; without y_scale the output is float32."""
    x, x_dtype, _ = _quantised_input(ctx, 0, 1, 2, "a")
    (m, k) = _a_shape(ctx, matrix=True)[::-1] if ctx.attr("transA", 0) else _a_shape(ctx, matrix=True)
    if ctx.attr("transA", 0):
        x = ctx.emit("transpose", [x], (m, k), perm=(1, 0))
    stored = np.asarray(ctx.const(3, "B"))
    b = _constant_b(ctx, 3, k) if not ctx.attr("transB", 0) else _constant_b_t(ctx, stored, k)
    weight = _weight(ctx, 3, 4, 5, 1, b.shape[1], value=b)
    y = None
    if ctx.has_input(7):
        y_dtype, y_quant = read_quant(ctx, 7, 8, "y")
        y = out_type(y_dtype, y_quant)
    elif ctx.has_input(8):
        raise ctx.error("input y_zero_point is given without y_scale")
    _check_pair(ctx, x_dtype, weight[1], y.dtype if y is not None else None)
    bias = _qgemm_bias(ctx, m, b.shape[1])
    alpha = float(np.float32(ctx.attr("alpha", 1.0)))
    _gemm(ctx, x, (m, k), weight, bias, y, **({"alpha": alpha} if alpha != 1.0 else {}))
    return ctx.done()


def _constant_b_t(ctx: NodeContext, stored: np.ndarray, k: int) -> np.ndarray:
    if stored.ndim != 2 or stored.shape[1] != k:
        raise ctx.error(f"B of shape {list(stored.shape)} with transB=1 does not fit A's K={k}")
    return np.ascontiguousarray(stored.T)


def _qgemm_bias(ctx: NodeContext, m: int, n: int) -> list:
    if not ctx.has_input(6):
        return []
    c = np.asarray(ctx.const(6, "C"))
    if c.dtype != np.int32:
        raise ctx.error(f"input '{ctx.inputs[6]}' (C) is {c.dtype}; allowed: int32")
    try:
        full = np.broadcast_to(c, (m, n))
    except ValueError:
        raise ctx.error(f"C of shape {list(c.shape)} does not broadcast to [{m}, {n}]") from None
    if not np.all(full == full[:1]):
        raise ctx.error(f"C of shape {list(c.shape)} varies along M; only a per-column bias is supported")
    return [ctx.constant("c", full[0], "int32")]


# ---- ConvInteger / MatMulInteger: the int32 accumulator ---------------------------------

def _accumulator_operand(ctx: NodeContext, i: int, zp_i: int, what: str) -> list:
    """IR inputs for ConvInteger's x / MatMulInteger's A: [codes] whose zero point is the scalar
    constant input zp_i, or [codes, zero point] for DynamicQuantizeLinear's codes, whose zero
    point must be that node's y_zero_point. The int32 output never reads a scale, so a tensor
    that carries one keeps it (only its zero point must agree) and one without (see the module
    docstring) takes 1.0."""
    have = carried(ctx, i)
    if have is not None and have.quant is not None and have.quant.dynamic:
        return _dynamic_operand(ctx, i, zp_i, what)
    for k, name in ((zp_i, what), (zp_i + 1, "w" if what == "x" else "b")):
        if ctx.has_input(k) and not ctx.is_const(k):
            raise ctx.error(f"input '{ctx.inputs[k]}' ({name}_zero_point) is computed at run time; zero points "
                            "must be constants (initializers), or, for the codes, the y_zero_point of the "
                            "DynamicQuantizeLinear that produced them")
    dtype = _codes_dtype(ctx, i) or NUMPY_TO_IR.get(np.asarray(ctx.const(i, what)).dtype)
    if dtype not in ("uint8", "int8"):
        raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) is {dtype or ctx.const(i, what).dtype}; "
                        "allowed: uint8, int8")
    dtype, quant = read_quant(ctx, None, zp_i, what, dtype=dtype)
    have = carried(ctx, i)
    if have is not None and have.quant is not None:
        if not have.quant.per_tensor or have.quant.zero_point != quant.zero_point:
            raise ctx.error(f"input '{ctx.inputs[i]}' ({what}) holds codes {{{have.quant}}} but the node's "
                            f"{what}_zero_point is {quant.zero_point[0]}; they must agree, per tensor (a graph "
                            "input's parameters are those of the first quantised op that reads it)")
        quant = have.quant
    return [bind_operand(ctx, i, dtype, quant, what)]


def _dynamic_operand(ctx: NodeContext, i: int, zp_i: int, what: str) -> list:
    """[codes, zero point] of DynamicQuantizeLinear's codes read by ConvInteger/MatMulInteger."""
    codes = ctx.inputs[i]
    zero_point = ctx.dynamic[codes][1]
    if not ctx.has_input(zp_i) or ctx.inputs[zp_i] != zero_point:
        given = f"'{ctx.inputs[zp_i]}'" if ctx.has_input(zp_i) else "missing"
        raise ctx.error(f"input '{codes}' ({what}) comes from DynamicQuantizeLinear, so {what}_zero_point "
                        f"must be its y_zero_point '{zero_point}'; it is {given}")
    w_zp = zp_i + 1
    if ctx.has_input(w_zp) and not ctx.is_const(w_zp):
        raise ctx.error(f"input '{ctx.inputs[w_zp]}' ({'w' if what == 'x' else 'b'}_zero_point) is computed "
                        "at run time; weight zero points must be constants (initializers)")
    if what == "a" and len(ctx.shape(i)) != 2:
        raise ctx.error(f"input '{codes}' (A) from DynamicQuantizeLinear has shape {list(ctx.shape(i))}; "
                        "allowed: 2-D [M, K] (flatten the float input before quantising it)")
    return [codes, zero_point]


def ConvInteger(ctx: NodeContext) -> Converted:
    """int32 conv of (x - x_zero_point) and (w - w_zero_point); attributes as Conv; every 8-bit pair."""
    x, *zero_point = _accumulator_operand(ctx, 0, 2, "x")
    shape, attrs = conv_geometry(ctx, tuple(np.shape(ctx.const(1, "w"))))
    if ctx.has_input(3) and np.size(ctx.const(3, "w_zero_point")) != 1:
        raise ctx.error(f"input '{ctx.inputs[3]}' (w_zero_point) has {np.size(ctx.const(3, 'w_zero_point'))} "
                        "values; allowed: one (onnxruntime's ConvInteger refuses per-channel weight zero "
                        "points: 'Non per-tensor quantization is not supported now', conv_integer.cc)")
    w = _weight(ctx, 1, None, 3, 0, shape[1])[0]
    ctx.emit("conv", [x, w, *zero_point], shape, ctx.outputs[0], out_type=TensorType((), "int32"), **attrs)
    return ctx.done()


def MatMulInteger(ctx: NodeContext) -> Converted:
    """int32 A @ B of (A - a_zero_point) and (B - b_zero_point); B constant [K, N], its zero point
    per tensor or per column; N-D A is reshaped to [M, K] and back, as QLinearMatMul."""
    x, *zero_point = _accumulator_operand(ctx, 0, 2, "a")
    b = _constant_b(ctx, 1, _a_shape(ctx)[-1])
    _gemm(ctx, x, ctx.shape(0), _weight(ctx, 1, None, 3, 1, b.shape[1]), zero_point, TensorType((), "int32"))
    return ctx.done()


# ---- DynamicQuantizeLinear (docs/int8_datapath.md section 9) ------------------------------

def DynamicQuantizeLinear(ctx: NodeContext) -> Converted:
    """float32 x -> (y uint8 codes with a dynamic Quant, y_scale fp32[], y_zero_point int32[]);
    ONNX's uint8 zero point becomes an int32 scalar in the IR. Only ConvInteger/MatMulInteger
    may read y (with this node's y_zero_point); y_scale is an ordinary float32 scalar."""
    if ctx.type(0) is not None and ctx.type(0).dtype != "fp32":
        raise ctx.error(f"input '{ctx.inputs[0]}' holds {ctx.type(0).dtype}; DynamicQuantizeLinear reads float32")
    if len(ctx.outputs) != 3 or not all(ctx.outputs):
        raise ctx.error("needs its three outputs y, y_scale, y_zero_point")
    y, scale, zero_point = ctx.outputs
    shape = ctx.shape(0)
    if any(d <= 0 for d in shape):
        raise ctx.error(f"input shape {shape} has an empty dimension")
    ctx.result.nodes.append(Node("dynamic_quantize", ctx.name, (ctx.operand(0),), (y, scale, zero_point), {}))
    ctx.result.types[y] = TensorType(shape, "uint8", Quant((), (), None))
    ctx.result.types[scale] = TensorType(())
    ctx.result.types[zero_point] = TensorType((), "int32")
    ctx.dynamic[y] = (scale, zero_point)
    return ctx.done()


# ---- element-wise and pooling (com.microsoft) -----------------------------------------------

def _binary(ir_op: str):
    def convert(ctx: NodeContext) -> Converted:
        a, a_dtype, _ = _quantised_input(ctx, 0, 1, 2, "A")
        b, b_dtype, _ = _quantised_input(ctx, 3, 4, 5, "B")
        y_dtype, y_quant = read_quant(ctx, 6, 7, "C")
        _same_dtype(ctx, [a_dtype, b_dtype, y_dtype])
        try:
            shape = np.broadcast_shapes(ctx.shape(0), ctx.shape(3))
        except ValueError:
            raise ctx.error(f"input shapes {ctx.shape(0)} and {ctx.shape(3)} do not broadcast") from None
        ctx.emit(ir_op, [a, b], shape, ctx.outputs[0], out_type=out_type(y_dtype, y_quant))
        return ctx.done()
    convert.__name__ = f"QLinear{ir_op.capitalize()}"
    return convert


def _unary_quant(ctx: NodeContext) -> tuple:
    """(x IR name, x dtype, x Quant, y dtype, y Quant) of an X, X_s, X_zp, Y_s, Y_zp op."""
    x, x_dtype, x_quant = _quantised_input(ctx, 0, 1, 2, "X")
    y_dtype, y_quant = read_quant(ctx, 3, 4, "Y")
    _same_dtype(ctx, [x_dtype, y_dtype])
    if int(ctx.attr("channels_last", 0)):
        raise ctx.error("attribute channels_last=1; allowed: 0 (NCHW)")
    return x, x_dtype, x_quant, y_dtype, y_quant


def _check_global_range(ctx: NodeContext, x_quant: Quant, y_quant: Quant, count: int) -> None:
    """MLAS refuses QLinearGlobalAveragePool outside these (CheckQLinearGlobalAveragePoolScaleAndSize,
    core/mlas/lib/qlgavgpool.cpp), so onnxruntime fails at run time; we fail at compile time."""
    f32 = np.float32
    scale = f32(x_quant.scale[0]) / (f32(y_quant.scale[0]) * f32(count))
    if not (f32(2.0 ** -32) <= scale < f32(256)) or count >= 2 ** 24:
        raise ctx.error(f"x_scale / (y_scale * {count}) = {scale:.3g}; onnxruntime's integer global "
                        "average pool needs it in [2**-32, 256) and fewer than 2**24 pixels")


def QLinearAveragePool(ctx: NodeContext) -> Converted:
    x, _, x_quant, y_dtype, y_quant = _unary_quant(ctx)
    if int(ctx.attr("ceil_mode", 0)):
        raise ctx.error("attribute ceil_mode=1; allowed: 0 for QLinearAveragePool")
    count_include_pad = int(ctx.attr("count_include_pad", 0))
    shape, attrs = pool_geometry(ctx, count_include_pad)
    if tuple(attrs["kernel"]) == ctx.shape(0)[2:] and not any(attrs["pads"]):
        _check_global_range(ctx, x_quant, y_quant, int(np.prod(attrs["kernel"])))
    ctx.emit("avgpool", [x], shape, ctx.outputs[0], out_type=out_type(y_dtype, y_quant), **attrs)
    return ctx.done()


def QLinearGlobalAveragePool(ctx: NodeContext) -> Converted:
    x, _, x_quant, y_dtype, y_quant = _unary_quant(ctx)
    shape = ctx.shape(0)
    if len(shape) != 4:
        raise ctx.error(f"input shape {shape}; allowed: 4-D NCHW")
    _check_global_range(ctx, x_quant, y_quant, shape[2] * shape[3])
    ctx.emit("avgpool", [x], (*shape[:2], 1, 1), ctx.outputs[0], out_type=out_type(y_dtype, y_quant),
             kernel=tuple(shape[2:]), strides=(1, 1), pads=(0, 0, 0, 0), count_include_pad=0)
    return ctx.done()


def _lookup(ctx: NodeContext, x: str, shape: tuple, x_dtype: str, x_quant: Quant, y_dtype: str,
            y_quant: Quant, fn, output: str | None = None, hint: str = "table") -> str:
    """lookup node y = table[x] with table[i] = Q_y(fn(DQ_x(code i)))."""
    table = quant_tables.lookup_table(x_dtype, x_quant, y_dtype, y_quant, fn)
    name = ctx.constant(hint, table, y_dtype, y_quant)
    return ctx.emit("lookup", [x, name], shape, output, out_type=out_type(y_dtype, y_quant))


def _table_op(fn_of_ctx):
    """QLinearSigmoid / QLinearLeakyRelu: QlinearBuildLookupTable (qlinear_lookup_table.cc)."""
    def convert(ctx: NodeContext) -> Converted:
        x, x_dtype, x_quant, y_dtype, y_quant = _unary_quant(ctx)
        _lookup(ctx, x, ctx.shape(0), x_dtype, x_quant, y_dtype, y_quant, fn_of_ctx(ctx), ctx.outputs[0])
        return ctx.done()
    return convert


def QLinearConcat(ctx: NodeContext) -> Converted:
    """Inputs whose parameters differ from the output's pass through a requantisation table
    first (qlinear_concat.cc), so the IR concat only moves codes."""
    y_dtype, y_quant = read_quant(ctx, 0, 1, "Y")
    if (len(ctx.inputs) - 2) % 3 or len(ctx.inputs) < 5:
        raise ctx.error(f"{len(ctx.inputs)} inputs; allowed: Y_scale, Y_zero_point, then (X, X_scale, "
                        "X_zero_point) triples")
    if "axis" not in ctx.attrs:
        raise ctx.error("attribute axis is missing; it is required")
    shapes = [ctx.shape(i) for i in range(2, len(ctx.inputs), 3)]
    rank = len(shapes[0])
    axis = int(ctx.attr("axis"))
    if not -rank <= axis < rank or len({s[:axis % rank] + s[axis % rank + 1:] for s in shapes}) != 1:
        raise ctx.error(f"axis={axis} with input shapes {shapes}; shapes must agree off the axis")
    axis %= rank
    parts = []
    for n, i in enumerate(range(2, len(ctx.inputs), 3)):
        x, x_dtype, x_quant = _quantised_input(ctx, i, i + 1, i + 2, f"X{n}")
        _same_dtype(ctx, [x_dtype, y_dtype])
        if x_quant != y_quant:
            x = _lookup(ctx, x, shapes[n], x_dtype, x_quant, y_dtype, y_quant, quant_tables.identity,
                        hint=f"requant{n}")
        parts.append(x)
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    ctx.emit("concat", parts, shape, ctx.outputs[0], axis=axis)
    return ctx.done()


def QLinearSoftmax(ctx: NodeContext) -> Converted:
    """opset attribute < 13: softmax over the coerced 2-D [prod(shape[:axis]), prod(shape[axis:])]
    (axis default 1); >= 13: along one axis (default -1); qlinear_softmax.cc."""
    x, x_dtype, x_quant, y_dtype, y_quant = _unary_quant(ctx)
    if "opset" not in ctx.attrs:
        raise ctx.error("attribute opset is missing; onnxruntime requires it")
    opset = int(ctx.attr("opset"))
    shape = ctx.shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", -1 if opset >= 13 else 1))
    if not -rank <= axis < rank:
        raise ctx.error(f"attribute axis={axis} for input rank {rank}")
    axis %= rank
    coerce = opset < 13 and axis != rank - 1
    length = int(np.prod(shape[axis:])) if opset < 13 else shape[axis]
    table = ctx.constant("exp_table", quant_tables.softmax_exp_table(x_quant.scale[0], length,
                                                                     x_dtype == "int8"))
    y = out_type(y_dtype, y_quant)
    if not coerce:
        ctx.emit("softmax", [x, table], shape, ctx.outputs[0], out_type=y, axis=axis)
        return ctx.done()
    flat = ctx.emit("reshape", [x], (int(np.prod(shape[:axis])), length))
    soft = ctx.emit("softmax", [flat, table], (int(np.prod(shape[:axis])), length), out_type=y, axis=1)
    ctx.emit("reshape", [soft], shape, ctx.outputs[0])
    return ctx.done()


OPS = {
    "QuantizeLinear": QuantizeLinear, "DequantizeLinear": DequantizeLinear,
    "QLinearConv": QLinearConv, "QLinearMatMul": QLinearMatMul,
    "ConvInteger": ConvInteger, "MatMulInteger": MatMulInteger,
    "DynamicQuantizeLinear": DynamicQuantizeLinear,
}
MS_OPS = {
    "QGemm": QGemm, "QLinearAdd": _binary("add"), "QLinearMul": _binary("mul"),
    "QLinearAveragePool": QLinearAveragePool, "QLinearGlobalAveragePool": QLinearGlobalAveragePool,
    "QLinearConcat": QLinearConcat, "QLinearSoftmax": QLinearSoftmax,
    "QLinearSigmoid": _table_op(lambda ctx: quant_tables.mlas_logistic),
    "QLinearLeakyRelu": _table_op(lambda ctx: quant_tables.leaky_relu(float(ctx.attr("alpha", 0.01)))),
}

"""Lowering of non-GEMM IR ops onto the vector unit: one instruction per op,
streaming its operands from DRAM and its result back (the unit's own buffers
are not modelled). Each emits a descriptor (compiler.program.DESC_FIELDS, written
by field name; summarised below), names the element type of each DRAM operand in
its *_dtype operands (inputs in order, then the result), and records the DRAM bytes
and element-ops the timing model charges.
Constant operands (an affine's scale and shift, a binary op's constant) are
placed in the weight type; results are stored in the activation type.

Descriptor int fields per opcode:
  vec_relu     src dst n
  vec_binary   a b dst op rank shape[6] a_stride[6] b_stride[6]   (elements; 0 = broadcast)
  vec_affine   src scale shift dst n c hw
  vec_*pool    src dst planes h w oh ow kh kw sh sw pt pl count_include_pad pb pr
  vec_lrn      src dst n c hw size            floats: alpha beta bias
  vec_softmax  src dst outer axis_len inner
  vec_copy     src dst shape[6] src_stride[6] dst_stride[6]
  vec_quantize, vec_dequantize  src dst outer c inner scale zero_point   (fp32[c], int32[c] in DRAM)
  vec_lookup   src dst n table                (table: 256 entries of dst's type, indexed by code bits)
  vec_dynamic_quantize  src dst n scale zero_point   (DynamicQuantizeLinear: fp32 x -> uint8 codes, and
               the run-time fp32 scale and int32 zero point written at `scale`, `zero_point`)
  vec_unary    src dst n op                   (op: UNARY_OPS) floats: alpha beta (hard_sigmoid's; clip's min max)
  vec_reduce   src dst op shape[6] stride[6] rshape[6] rstride[6]   (kept axes, reduced axes: source strides)
  vec_layernorm  src scale bias dst rows n    (bias -1: none) floats: epsilon
vec_binary's op is add, sub, mul, div, pow, min or max (BINARY_OPS). The element-ops each float function
is charged are UNARY_ELEMENT_OPS below (a transcendental costs several).

On 8-bit codes (quantised tensors; docs/int8_datapath.md section 3) the kernels take
onnxruntime's arithmetic from the operand types, with these extra fields:
  vec_binary   a_zp b_zp y_zp; floats add: a_ratio b_ratio (rX rY); mul: product_ratio
               (add: X is the span operand onnxruntime's kernel sees, so a and b may be swapped)
  vec_avgpool  x_zp y_zp is_global; floats x_scale y_scale global_scale
  vec_softmax  table y_zp; floats inv_y_scale = floor(F(1 / y_scale))
maxpool, transpose, concat and copies move codes unchanged.
"""
from __future__ import annotations

import numpy as np

from compiler.errors import CompileError
from compiler.ir import is_global_pool
from compiler.program import BINARY_OPS, DTYPE_CODE, ELEMENT_BYTES, MAX_RANK, OPCODES, REDUCE_OPS, UNARY_OPS


def _strides(shape) -> list:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def _pad6(shape, strides, where):
    if len(shape) > MAX_RANK:
        raise CompileError(f"{where}: rank {len(shape)} exceeds the vector unit's {MAX_RANK}")
    pad = MAX_RANK - len(shape)
    return [1] * pad + [int(d) for d in shape], [0] * pad + [int(s) for s in strides]


def _broadcast_strides(in_shape, out_shape) -> list:
    in_shape = [1] * (len(out_shape) - len(in_shape)) + list(in_shape)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(in_shape, out_shape, _strides(in_shape))]


def _dtype_operands(opcode: str, codes) -> dict:
    """The *_dtype operands of `opcode` (OPCODES: its inputs' in order, then the result's) from `codes`."""
    names = [name for name in OPCODES[opcode][1] if name.endswith("_dtype")]
    if len(names) != len(codes):
        raise CompileError(f"{opcode} takes {len(names)} element types ({', '.join(names)}), given {len(codes)}")
    return dict(zip(names, codes))


def lower(graph, node, plan, builder, ready, layer: int, engine: str | None = None) -> None:
    """Lower `node` onto the vector unit: its instruction(s) on `engine` (default: the engine named
    "vector"), each after the instructions writing its inputs (`ready`: tensor -> last writer's row)."""
    where = f"node '{node.name}' ({node.op})"
    shape = lambda name: graph.tensors[name].shape  # noqa: E731
    size = lambda name: graph.tensors[name].size    # noqa: E731
    deps = [ready.get(name, -1) for name in node.inputs]
    out = node.outputs[0]
    regions = [plan.region(name) for name in node.inputs]
    dst_region = plan.region(out)
    dst = dst_region.offset
    srcs = [r.offset for r in regions]
    codes = [DTYPE_CODE[r.dtype] for r in regions + [dst_region]]
    traffic = sum(r.nbytes for r in regions) + dst_region.nbytes

    def emit(opcode, ints, work, floats=None, dram=traffic, types=codes):
        desc = builder.descriptor(opcode, ints, floats)
        ready[out] = builder.emit(opcode, layer, {"desc": desc, **_dtype_operands(opcode, types)}, deps=deps,
                                  dram_bytes=dram, work=work, onchip_bytes=dram, engine=engine)

    op = node.op
    if any(graph.tensors[name].dtype != "fp32" for name in (*node.inputs, out)) and op in QUANT_LOWERING:
        ints, floats, work = QUANT_LOWERING[op](graph, node, plan, srcs, dst, where)
        data = codes[:2] if op in BINARY_OPS else codes[:1]      # the data operands (not tables)
        # dynamic_quantize reads its input twice (the range, then the codes) and writes a scale and zero point
        dram = traffic + regions[0].nbytes + 8 if op == "dynamic_quantize" else traffic
        emit(QUANT_OPCODE.get(op, "vec_" + op), ints, work, floats, dram=dram, types=(*data, codes[-1]))
        for name in node.outputs[1:]:         # dynamic_quantize also writes its scale and zero point
            ready[name] = ready[out]
        return
    if op == "relu":
        emit("vec_relu", dict(src=srcs[0], dst=dst, n=size(out)), size(out))
    elif op in BINARY_OPS:
        out_shape = shape(out)
        dims, a_str = _pad6(out_shape, _broadcast_strides(shape(node.inputs[0]), out_shape), where)
        _, b_str = _pad6(out_shape, _broadcast_strides(shape(node.inputs[1]), out_shape), where)
        emit("vec_binary", dict(a=srcs[0], b=srcs[1], dst=dst, op=BINARY_OPS[op], rank=len(out_shape), shape=dims,
                                a_stride=a_str, b_stride=b_str), size(out) * _binary_ops(graph, node))
    elif op in UNARY_LOWERING or op == "cast" and node.attrs.get("to") in ("fp16", "bf16"):
        function, floats = UNARY_LOWERING[op](node, where) if op != "cast" else ("round_" + node.attrs["to"], {})
        emit("vec_unary", dict(src=srcs[0], dst=dst, n=size(out), op=UNARY_OPS[function]),
             size(out) * UNARY_ELEMENT_OPS[function], floats=floats)
    elif op in REDUCTIONS:
        emit("vec_reduce", _reduce_fields(shape(node.inputs[0]), node.attrs["axes"], op, srcs[0], dst, where),
             size(node.inputs[0]) + (5 * size(out) if op == "reduce_mean" else 0))
    elif op == "layer_norm":
        rows = size(out) // size(node.inputs[1])
        emit("vec_layernorm", dict(src=srcs[0], scale=srcs[1], bias=srcs[2] if len(srcs) > 2 else -1, dst=dst,
                                   rows=rows, n=size(node.inputs[1])),
             8 * size(out) + 12 * rows, floats=dict(epsilon=node.attrs["epsilon"]),
             types=(codes[0], codes[1], codes[2] if len(srcs) > 2 else codes[0], codes[-1]))
    elif op == "affine":
        n, c = shape(out)[0], shape(out)[1]
        emit("vec_affine", dict(src=srcs[0], scale=srcs[1], shift=srcs[2], dst=dst, n=n, c=c,
                                hw=size(out) // (n * c)), 2 * size(out))
    elif op in ("maxpool", "avgpool"):
        n, c, h, w = shape(node.inputs[0])
        oh, ow = shape(out)[2:]
        kh, kw = node.attrs["kernel"]
        sh, sw = node.attrs["strides"]
        pt, pl, pb, pr = node.attrs["pads"]
        cip = int(node.attrs.get("count_include_pad", 0))
        emit("vec_" + op, dict(src=srcs[0], dst=dst, planes=n * c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw,
                               pt=pt, pl=pl, count_include_pad=cip, pb=pb, pr=pr), size(out) * kh * kw)
    elif op == "lrn":
        n, c = shape(out)[0], shape(out)[1]
        a = node.attrs
        emit("vec_lrn", dict(src=srcs[0], dst=dst, n=n, c=c, hw=size(out) // (n * c), size=a["size"]),
             size(out) * (a["size"] + 3), floats=dict(alpha=a["alpha"], beta=a["beta"], bias=a["bias"]))
    elif op == "softmax":
        s = shape(out)
        axis = node.attrs["axis"] % len(s)
        outer, inner = int(np.prod(s[:axis])), int(np.prod(s[axis + 1:]))
        emit("vec_softmax", dict(src=srcs[0], dst=dst, outer=outer, axis_len=s[axis], inner=inner), 4 * size(out))
    elif op in ("transpose", "cast"):         # cast: an int32 -> fp32 copy (round half to even)
        in_str = _strides(shape(node.inputs[0]))
        perm = node.attrs["perm"] if op == "transpose" else range(len(shape(out)))
        dims, s_str = _pad6(shape(out), [in_str[p] for p in perm], where)
        _, d_str = _pad6(shape(out), _strides(shape(out)), where)
        emit("vec_copy", dict(src=srcs[0], dst=dst, shape=dims, src_stride=s_str, dst_stride=d_str), size(out))
    elif op == "concat":
        _lower_concat(graph, node, regions, dst_region, builder, ready, layer, deps, where, engine)
    else:
        raise CompileError(f"{where}: no vector-unit lowering for IR op '{op}'")


# ---- element-ops of the float functions (the `work` every target's timing divides by its lanes) -----------------
# An add, multiply, compare, min/max, negation or bit operation is 1 element-op; a special function (a reciprocal,
# reciprocal square root, base-2 exponential or logarithm) is 4: the ratio of FP32 to special-function throughput,
# 64 vs 16 results per clock per SM (CUDA C++ Programming Guide, "Arithmetic Instructions" throughput table,
# compute capabilities 7.x, 8.0 and 9.0). exp x = exp2(x log2 e) and log x = log2(x) ln 2: 5 each; sqrt x =
# x rsqrt(x): 5; sigmoid = 1 / (1 + exp(-x)): 10; tanh = 1 - 2 / (exp(2x) + 1): 13; erf by Abramowitz and Stegun
# 7.1.26 (error 1.5e-7, fp32's): |x|, t = 1 / (1 + p|x|) (2 + 4), a degree-5 polynomial in t (9), x^2 (1), exp (5),
# the product, 1 - it and the sign (3): 25.
UNARY_ELEMENT_OPS = {
    "neg": 1, "abs": 1, "round_fp16": 1, "round_bf16": 1, "clip": 2, "hard_sigmoid": 4, "hard_swish": 5,
    "reciprocal": 4, "sqrt": 5, "exp": 5, "log": 5, "sigmoid": 10, "tanh": 13, "erf": 25,
    "gelu": 29,        # x / sqrt 2, erf, + 1, x, / 2
    "gelu_tanh": 21,   # x^3 (2), + x and x sqrt(2/pi) (3), tanh, + 1, x, / 2
}
REDUCTIONS = {"reduce_sum": "sum", "reduce_mean": "mean", "reduce_max": "max"}
F32_MAX = float(np.finfo(np.float32).max)
# A vec_reduce costs one add or max per input element, and a mean one divide per output (a reciprocal and a
# multiply: 5). A vec_layernorm: per element the mean's add, the deviation's subtract, square and add, then
# subtract, divide (a multiply by the row's 1 / std), scale and bias: 8; per row the two divisions by n, + epsilon,
# sqrt and the reciprocal: 12. Its DRAM traffic reads x once (a row is held in the unit for its three passes).


def _unary_function(function: str, floats=None):
    def lower(node, where):
        return function, (floats(node.attrs) if floats else {})
    return lower


def _gelu(node, where):
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise CompileError(f"{where}: approximate={approximate!r}; allowed: none, tanh")
    return ("gelu" if approximate == "none" else "gelu_tanh"), {}


# IR op -> fn(node, where) -> (UNARY_OPS function, vec_unary float fields)
UNARY_LOWERING = {
    **{op: _unary_function(op) for op in ("erf", "tanh", "sigmoid", "exp", "log", "sqrt", "reciprocal", "neg", "abs")},
    "gelu": _gelu,
    "hard_sigmoid": _unary_function("hard_sigmoid", lambda a: dict(alpha=a.get("alpha", float(np.float32(0.2))),
                                                                    beta=a.get("beta", 0.5))),
    # x times hard_sigmoid with HardSwish-14's alpha = 1/6 (as float32) and beta = 1/2
    "hard_swish": _unary_function("hard_swish", lambda a: dict(alpha=float(np.float32(1 / 6)), beta=0.5)),
    "clip": _unary_function("clip", lambda a: dict(alpha=a.get("min", -F32_MAX), beta=a.get("max", F32_MAX))),
}


def _binary_ops(graph, node) -> int:
    """Element-ops per output of a binary op: 1, but a Pow: x * x for a constant exponent 2 (1), sqrt for 0.5 (5),
    else exp(y log x) (11)."""
    if node.op != "pow":
        return 1
    exponent = graph.constants.get(node.inputs[1])
    if exponent is not None and np.all(exponent == 2):
        return 1
    return 5 if exponent is not None and np.all(exponent == 0.5) else 11


def _reduce_fields(in_shape, axes, op, src, dst, where) -> dict:
    """vec_reduce's fields: the kept axes of the input (its element strides) and the reduced ones."""
    strides = _strides(in_shape)
    kept = [(d, s) for i, (d, s) in enumerate(zip(in_shape, strides)) if i not in axes]
    reduced = [(in_shape[i], strides[i]) for i in axes]
    shape, stride = _pad6([d for d, _ in kept], [s for _, s in kept], where)
    rshape, rstride = _pad6([d for d, _ in reduced], [s for _, s in reduced], where)
    return dict(src=src, dst=dst, op=REDUCE_OPS[REDUCTIONS[op]], shape=shape, stride=stride, rshape=rshape,
                rstride=rstride)


def _lower_concat(graph, node, regions, dst, builder, ready, layer, deps, where, engine):
    """One vec_copy per input, into its slice of the output."""
    out_shape = graph.tensors[dst.name].shape
    axis = node.attrs["axis"] % len(out_shape)
    out_str = _strides(out_shape)
    dst_bytes = ELEMENT_BYTES[dst.dtype]
    offset = 0
    last = -1
    for name, src, dep in zip(node.inputs, regions, deps):
        in_shape = graph.tensors[name].shape
        dims, s_str = _pad6(in_shape, _strides(in_shape), where)
        _, d_str = _pad6(in_shape, out_str, where)
        desc = builder.descriptor("vec_copy", dict(src=src.offset, dst=dst.offset + offset * out_str[axis] * dst_bytes,
                                                   shape=dims, src_stride=s_str, dst_stride=d_str))
        n = graph.tensors[name].size
        moved = n * (ELEMENT_BYTES[src.dtype] + dst_bytes)
        last = builder.emit("vec_copy", layer, dict(desc=desc, src_dtype=DTYPE_CODE[src.dtype],
                                                    dst_dtype=DTYPE_CODE[dst.dtype]),
                            deps=[dep], dram_bytes=moved, work=n, onchip_bytes=moved, engine=engine)
        offset += in_shape[axis]
    ready[dst.name] = last


# ---- ops on quantised tensors (docs/int8_datapath.md section 3) ---------------------------------
# Each returns (descriptor int fields, float fields (or None), element-ops), fields by name; the
# host-side constants are float32 arithmetic in onnxruntime's order.
F32 = np.float32


def _axis_geometry(shape, quant) -> tuple:
    """(outer, c, inner) of a tensor split along its quantisation axis (per tensor: c = 1)."""
    if quant.axis is None:
        return 1, 1, int(np.prod(shape))
    axis = quant.axis % len(shape)
    return int(np.prod(shape[:axis])), int(shape[axis]), int(np.prod(shape[axis + 1:]))


def _quantize(graph, node, plan, srcs, dst, where):
    """quantize: the output's parameters; dequantize: the input's."""
    t = graph.tensors[node.outputs[0] if node.op == "quantize" else node.inputs[0]]
    outer, c, inner = _axis_geometry(t.shape, t.quant)
    scale = plan.constant(f"{node.name}::scale", np.broadcast_to(t.quant.scale_array(), (c,)).copy(), "fp32")
    zp = plan.constant(f"{node.name}::zero_point", np.broadcast_to(t.quant.zero_point_array(), (c,)).copy(), "int32")
    return dict(src=srcs[0], dst=dst, outer=outer, c=c, inner=inner, scale=scale.offset, zero_point=zp.offset), None, \
        2 * t.size


def _dynamic_quantize(graph, node, plan, srcs, dst, where):
    """DynamicQuantizeLinear: the codes at dst, the fp32 scale and int32 zero point it computes at
    run time in the node's other two outputs."""
    n = graph.tensors[node.inputs[0]].size
    return dict(src=srcs[0], dst=dst, n=n, scale=plan.addr(node.outputs[1]), zero_point=plan.addr(node.outputs[2])), \
        None, 4 * n


def _lookup(graph, node, plan, srcs, dst, where):
    n = graph.tensors[node.outputs[0]].size
    return dict(src=srcs[0], dst=dst, n=n, table=srcs[1]), None, n


def _span_scalar(shape_a, shape_b) -> bool:
    """Whether onnxruntime hands `a` to its QLinearAdd kernel as a per-span scalar (then it swaps
    the operands): a has one element, or is broadcast along the innermost output axis longer than 1."""
    if int(np.prod(shape_a)) == 1:
        return True
    if int(np.prod(shape_b)) == 1:
        return False
    out = np.broadcast_shapes(tuple(shape_a), tuple(shape_b))
    axis = max(i for i, n in enumerate(out) if n > 1)
    return ((1,) * (len(out) - len(shape_a)) + tuple(shape_a))[axis] == 1


def _binary(graph, node, plan, srcs, dst, where):
    names = list(node.inputs)
    ta, tb, ty = (graph.tensors[name] for name in (*names, node.outputs[0]))
    if not (ta.dtype == tb.dtype == ty.dtype and ta.quant.per_tensor and tb.quant.per_tensor):
        raise CompileError(f"{where}: quantised {node.op} needs both inputs and the output in one 8-bit type "
                           "with per-tensor parameters")
    a, b = (srcs[0], ta, names[0]), (srcs[1], tb, names[1])
    if node.op == "add" and _span_scalar(ta.shape, tb.shape):
        a, b = b, a
    (sa, qa, na), (sb, qb, nb) = a, b
    out_shape = ty.shape
    dims, a_str = _pad6(out_shape, _broadcast_strides(qa.shape, out_shape), where)
    _, b_str = _pad6(out_shape, _broadcast_strides(qb.shape, out_shape), where)
    zps = [qa.quant.zero_point[0], qb.quant.zero_point[0], ty.quant.zero_point[0]]
    ys = F32(ty.quant.scale[0])
    if node.op == "add":   # r = F(s / y_scale) per input
        floats = dict(a_ratio=F32(qa.quant.scale[0]) / ys, b_ratio=F32(qb.quant.scale[0]) / ys)
    else:
        floats = dict(product_ratio=(F32(qa.quant.scale[0]) * F32(qb.quant.scale[0])) / ys)
    ints = dict(a=sa, b=sb, dst=dst, op=BINARY_OPS[node.op], rank=len(out_shape), shape=dims, a_stride=a_str,
                b_stride=b_str, a_zp=zps[0], b_zp=zps[1], y_zp=zps[2])
    return ints, {name: float(v) for name, v in floats.items()}, 2 * ty.size


def _avgpool(graph, node, plan, srcs, dst, where):
    tx, ty = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    n, c, h, w = tx.shape
    oh, ow = ty.shape[2:]
    a = node.attrs
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["strides"], a["pads"]
    xs, ys = F32(tx.quant.scale[0]), F32(ty.quant.scale[0])
    is_global = int(is_global_pool(graph, node))
    global_scale = xs / (ys * F32(kh * kw))
    if is_global and not (F32(2.0 ** -32) <= global_scale < F32(256) and kh * kw < 2 ** 24):
        raise CompileError(f"{where}: global average pool scale {global_scale:g} (x_scale / (y_scale x "
                           f"{kh * kw} pixels)) is outside [2^-32, 256), which onnxruntime refuses too")
    ints = dict(src=srcs[0], dst=dst, planes=n * c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pl=pl,
                count_include_pad=int(a.get("count_include_pad", 0)), pb=pb, pr=pr, x_zp=tx.quant.zero_point[0],
                y_zp=ty.quant.zero_point[0], is_global=is_global)
    return ints, dict(x_scale=float(xs), y_scale=float(ys), global_scale=float(global_scale)), ty.size * kh * kw


def _softmax(graph, node, plan, srcs, dst, where):
    s, ty = graph.tensors[node.outputs[0]].shape, graph.tensors[node.outputs[0]]
    axis = node.attrs["axis"] % len(s)
    outer, inner = int(np.prod(s[:axis])), int(np.prod(s[axis + 1:]))
    c = np.floor(F32(1.0) / F32(ty.quant.scale[0]))
    ints = dict(src=srcs[0], dst=dst, outer=outer, axis_len=s[axis], inner=inner, table=srcs[1],
                y_zp=ty.quant.zero_point[0])
    return ints, dict(inv_y_scale=float(c)), 4 * ty.size


QUANT_LOWERING = {"quantize": _quantize, "dequantize": _quantize, "lookup": _lookup,
                  "dynamic_quantize": _dynamic_quantize, "add": _binary,
                  "mul": _binary, "avgpool": _avgpool, "softmax": _softmax}
QUANT_OPCODE = {"add": "vec_binary", "mul": "vec_binary"}

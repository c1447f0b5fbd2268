"""Plain NumPy reference executor: what each Program instruction means, slow and obvious.

`execute(program, inputs)` runs the same instruction table as sim/kernels.py with NumPy array
operations on the same simulated memories (byte buffers by memory id, each operand read and
written in its element type through compiler/numerics.py) and returns the outputs (with
all_tensors, every region). Operands and descriptor fields are read by name (OPCODES, DESC,
DESC_FLOAT), each address in the memory ADDRESS_MEMORY gives it.
Float datapaths: values widen to fp32 on every read, GEMMs accumulate in fp32 one k at a time
(bias first, no FMA), and each result is rounded once to its destination's type; a transcendental
function (exp, log, erf, tanh, pow, Gelu) is the C library's float64 one (Python's math module, element
by element) rounded once to fp32, and sums (reductions, LayerNormalization) run in row order from +0.
The integer datapath (docs/int8_datapath.md, from its definitions, not from the kernels' loops):
8-bit codes move as bytes (im2col pads with the input zero point), the array adds (a - a_zp)
(w - w_zp[n]) exactly into an int32 accumulator that wraps, store_tile requantises as the
layer's descriptor says (REQUANT_ID), and the vector unit runs onnxruntime's quantised ops.
gemm_tile is load_im2col, load_weights, load_bias, matmul and store_tile over the whole K.
Tests require the Numba kernels to equal it bit for bit on every opcode and element type (LRN
within float rounding: a float64 power; tests/sim/test_reference.py, test_low_precision_reference.py,
test_reference_integer.py). Not used by `simulate`. An unknown opcode, an access outside a memory
or an operation the datapath does not define is a SimError naming the row.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.numerics import STORAGE, decode, encode, round_to
from compiler.program import (ACTIVATION_ID, ADDRESS_MEMORY, BINARY_OPS, CONV, DATATYPES, DESC, DESC_FLOAT,
                              ELEMENT_BYTES, MAX_RANK, OPCODE_NAMES, OPCODES, REDUCE_OPS, REQUANT_ID, UNARY_OPS,
                              Program)
from sim.errors import SimError
from sim.run import check_datapath, memory_buffers, place_inputs, read_outputs

F32 = np.float32
CODES = ("uint8", "int8")         # the 8-bit code types of quantised tensors
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
# vector opcodes with no meaning on 8-bit codes (the front end keeps their tensors float)
FLOAT_ONLY = ("vec_relu", "vec_affine", "vec_lrn", "vec_unary", "vec_reduce", "vec_layernorm")


class Memory:
    """A byte buffer read and written as elements of a given type (a name or a DTYPE_CODE);
    addresses are bytes, strides elements."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    def _typed(self, dtype):
        name = _name(dtype)
        return name, self.raw.view(STORAGE[name]), ELEMENT_BYTES[name]

    def strided(self, byte: int, shape, strides, dtype) -> tuple:
        name, typed, size = self._typed(dtype)
        last = sum((n - 1) * s for n, s in zip(shape, strides))     # as_strided would read past the buffer
        if min(shape, default=1) > 0 and (byte < 0 or byte // size + last >= len(typed) or min(strides, default=0) < 0):
            raise IndexError(f"{name}[{list(shape)}] at byte {byte} lies outside the {self.raw.size}-byte memory")
        return name, as_strided(typed[byte // size:], shape=tuple(shape),
                                strides=tuple(typed.itemsize * s for s in strides))

    def read(self, byte: int, shape, dtype, strides=None) -> np.ndarray:
        """Values of a (strided) block of elements: fp32 for float types, the stored integers for integer ones."""
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        strides = strides or [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
        name, view = self.strided(byte, shape, strides, dtype)
        return decode(view, name).copy()

    def write(self, byte: int, values, dtype, strides=None) -> None:
        """Store `values` (floats rounded once to the element type; integers in its range) at a (strided) block."""
        values = np.asarray(values)
        strides = strides or [int(np.prod(values.shape[i + 1:])) for i in range(values.ndim)]
        name, view = self.strided(byte, values.shape, strides, dtype)
        view[...] = encode(values, name)

    def scatter(self, byte: int, index, values, dtype) -> None:
        """Store `values` at element offsets `index` from `byte`."""
        name, typed, size = self._typed(dtype)
        at = byte // size + index
        if at.size and (at.min() < 0 or at.max() >= len(typed)):
            raise IndexError(f"{name} elements {at.min()}..{at.max()} lie outside the {self.raw.size}-byte memory")
        typed[at] = encode(values, name)


def _name(dtype) -> str:
    """An element type's name, from its name or its DTYPE_CODE."""
    return DATATYPES[dtype] if isinstance(dtype, (int, np.integer)) else dtype


def _moved(src_dtype, dst_dtype) -> str:
    """The type a load writes: its destination's, except that 8-bit codes move as bytes (a code keeps its bits in
    a memory of the other signedness; the layer's descriptor says which codes the array reads)."""
    return _name(src_dtype) if _name(src_dtype) in CODES and _name(dst_dtype) in CODES else _name(dst_dtype)


def _conv(g) -> dict:
    return {field.name: int(g[field]) for field in CONV}


def _x_zero_point(dram: Memory, d: dict) -> int:
    """A layer's input zero point: its descriptor's, or the int32 a vec_dynamic_quantize wrote at x_zp_addr."""
    return d["x_zp"] if d["x_zp_addr"] < 0 else int(dram.read(d["x_zp_addr"], 1, "int32")[0])


def _im2col(dram: Memory, g, m0, tm, k0, tk, x_dtype):
    """The [tm, tk] im2col tile at rows m0.., columns k0.. of the conv input (padding: 0, or on 8-bit codes the
    input zero point, which stands for 0)."""
    d = _conv(g)
    x = dram.read(d["x"], (d["n"], d["c"], d["h"], d["w"]), x_dtype)
    pad = np.asarray(_x_zero_point(dram, d), x.dtype) if _name(x_dtype) in CODES else F32(0)
    m, k = np.arange(m0, m0 + tm)[:, None], np.arange(k0, k0 + tk)[None, :]
    pixels, kk = d["oh"] * d["ow"], d["kh"] * d["kw"]
    n, r = m // pixels, m % pixels
    c, tap = d["cin_off"] + k // kk, k % kk
    ih = (r // d["ow"]) * d["sh"] - d["pt"] + (tap // d["kw"]) * d["dh"]
    iw = (r % d["ow"]) * d["sw"] - d["pl"] + (tap % d["kw"]) * d["dw"]
    inside = (ih >= 0) & (ih < d["h"]) & (iw >= 0) & (iw < d["w"])
    n, c, ih, iw = np.broadcast_arrays(n, c, np.clip(ih, 0, d["h"] - 1), np.clip(iw, 0, d["w"] - 1))
    return np.where(inside, x[n, c, ih, iw], pad)


def _matmul_int(memories: list, at, g, o) -> None:
    """acc[tm,tn] += the integer products of the a and w tiles (the codes the descriptor names), int32 wrapping."""
    d = _conv(g)
    a = memories[at.a].read(o.a, (o.tm, o.tk), d["x_code"])
    w = memories[at.w].read(o.w, (o.tk, o.tn), d["w_code"])
    _, acc = memories[at.acc].strided(o.acc, (o.tm, o.tn), (o.tn, 1), "int32")    # the tile, in place
    acc[...] = _wrap32(acc + _products(memories[at.desc], d, a, w, o.n0))


def _products(dram: Memory, d: dict, a, w, n0: int):
    """(a - x_zp) @ (w - w_zp[c]) for output channels c = cout_off + n0 ..: exact, as int64."""
    w_zp = dram.read(d["w_zp"] + (d["cout_off"] + n0) * ELEMENT_BYTES[_name(d["w_code"])], w.shape[1], d["w_code"])
    return (a.astype(np.int64) - _x_zero_point(dram, d)) @ (w.astype(np.int64) - w_zp)


def _accumulate(acc, a, w) -> None:
    """acc += a @ w in fp32 in the declared order: one k at a time, each product rounded, then added (no FMA)."""
    for k in range(a.shape[1]):
        acc += np.multiply(a[:, k:k + 1], w[k:k + 1, :])


def _gemm_tile(dram: Memory, g, o) -> None:
    """gemm_tile: output rows m0.., columns n0.. of every group over the whole K, DRAM to DRAM: from the bias
    (desc.bias, fp32 or int32; < 0: zeros), the im2col rows times the group's weights (desc.weights: [G, K, ng]),
    accumulated as matmul does, then store_tile's epilogue."""
    d = _conv(g)
    k, ng, integer = d["cin_g"] * d["kh"] * d["kw"], d["ng"], d["requant"] != REQUANT_ID["float"]
    acc_type, w_bytes = "int32" if integer else "fp32", ELEMENT_BYTES[_name(o.w_dtype)]
    for group in range(d["cout"] // ng if min(o.tm, o.tn, ng) > 0 else 0):
        tile = g.copy()
        tile[CONV.cin_off], tile[CONV.cout_off] = group * d["cin_g"], group * ng
        a = _im2col(dram, tile, o.m0, o.tm, 0, k, o.src_dtype)
        w = dram.read(d["weights"] + (group * k * ng + o.n0) * w_bytes, (k, o.tn), o.w_dtype, (ng, 1))
        acc = np.zeros((o.tm, o.tn), STORAGE[acc_type]) if d["bias"] < 0 else \
            np.tile(dram.read(d["bias"] + 4 * (group * ng + o.n0), o.tn, acc_type), (o.tm, 1))
        if integer:
            acc = _wrap32(acc + _products(dram, _conv(tile), a, w, o.n0))
        else:
            _accumulate(acc, a, w)
        _store(dram, tile, acc, o.m0, o.n0, o.dst_dtype)


def _store(dram: Memory, g, tile, m0, n0, dtype):
    d = _conv(g)
    tile = _output_stage(dram, d, tile, d["cout_off"] + n0, dtype)
    pixels = d["oh"] * d["ow"]
    m = np.arange(m0, m0 + tile.shape[0])[:, None]
    j = d["cout_off"] + n0 + np.arange(tile.shape[1])[None, :]
    dram.scatter(d["out"], ((m // pixels) * d["cout"] + j) * pixels + m % pixels, tile, dtype)


def _output_stage(dram: Memory, d: dict, acc, c0: int, dtype):
    """What store_tile makes of an accumulator tile whose columns are output channels c0..: the descriptor's
    `requant` (REQUANT_ID), then its activation (a ReLU at the real 0, which on codes is y_zp)."""
    requant, relu, n = d["requant"], d["activation"] == ACTIVATION_ID["relu"], acc.shape[1]
    if requant == REQUANT_ID["float"]:
        return np.maximum(acc, F32(0)) if relu else acc
    if requant == REQUANT_ID["int32"]:
        return np.maximum(acc, 0) if relu else acc
    if requant == REQUANT_ID["scaled"]:        # QGemm without an output scale: F(F(acc) * scale[c]) as fp32
        y = _cvtdq2ps(acc) * dram.read(d["scale"] + 4 * c0, n, "fp32")
        return np.maximum(y, F32(0)) if relu else y
    if requant == REQUANT_ID["codes"]:
        q = _requantize(acc, dram.read(d["scale"] + 4 * c0, n, "fp32"), d["y_zp"], dtype)
    elif requant == REQUANT_ID["fixed_point"]:   # int32 [multiplier, exponent] pairs per channel
        pairs = dram.read(d["scale"] + 8 * c0, (n, 2), "int32").astype(np.int64)
        q = _fixed_point(acc, pairs[:, 0], pairs[:, 1], d["y_zp"], dtype)
    else:
        raise ValueError(f"requant {requant} is none of REQUANT_ID ({REQUANT_ID})")
    return np.maximum(q, d["y_zp"]) if relu else q


# ---- integer arithmetic (docs/int8_datapath.md sections 1-3) ----------------------------------------------

def _wrap32(v):
    """Integers wrapped to int32 (two's complement), as int64."""
    return (np.asarray(v, np.int64) + 2 ** 31) % 2 ** 32 - 2 ** 31


def _saturate(q, dtype):
    return np.clip(q, *QRANGE[_name(dtype)])


def _cvtdq2ps(acc):
    """int32 -> float32 rounding half to even (x86's cvtdq2ps: an accumulator beyond 2^24 loses low bits)."""
    return _wrap32(acc).astype(np.int32).astype(F32)


def _cvtps2dq(v):
    """float32 -> integer rounding half to even, as x86's cvtps2dq: NaN or |v| >= 2^31 gives INT32_MIN."""
    inside = np.abs(v) < F32(2.0 ** 31)
    return np.where(inside, np.rint(np.where(inside, v, F32(0))), -2.0 ** 31).astype(np.int64)


def _requantize(acc, scale, y_zp: int, dtype):
    """Section 2 (MlasRequantizeOutput): F(F(acc) * scale), clamped to [qmin - y_zp, qmax - y_zp], rounded half to
    even, + y_zp. (Clamping first, the bounds being integers, equals saturating after.)"""
    lo, hi = QRANGE[_name(dtype)]
    f = _cvtdq2ps(acc) * scale
    return np.rint(np.clip(f, F32(lo - y_zp), F32(hi - y_zp))).astype(np.int64) + y_zp


def _fixed_point(acc, multiplier, exponent, y_zp: int, dtype):
    """The fixed-point requantiser (datatypes.requantize: fixed_point; gemmlowp's fixedpoint.h, TFLite's
    MultiplyByQuantizedMultiplier): x = acc * 2^max(e, 0) wrapped to int32; SaturatingRoundingDoublingHighMul, x * M
    / 2^31 rounded to nearest with ties toward +infinity (gemmlowp's nudge, then a truncating division), 2^31 - 1
    for x = M = -2^31; RoundingDivideByPOT by max(-e, 0), ties away from zero; + y_zp, saturated."""
    x, m = _wrap32(np.asarray(acc, np.int64) << np.maximum(exponent, 0)), np.asarray(multiplier, np.int64)
    high = np.where((x == -2 ** 31) & (m == -2 ** 31), 2 ** 31 - 1, (x * m + 2 ** 30) >> 31)   # |x * m| <= 2^62
    shift = np.maximum(-exponent, 0)
    q = np.sign(high) * ((np.abs(high) + ((1 << shift) >> 1)) >> shift)
    return _saturate(q + y_zp, dtype)


def _fma32(a, b, c):
    """float32 a * b + c rounded once (an FMA). The product is exact in float64 (24 + 24 bits); the sum is rounded
    to odd in float64 (an inexact sum with an even last bit moves one ulp toward the exact sum, which Knuth's
    TwoSum gives), and then rounding to float32, 29 bits narrower, is correct (Boldo and Melquiond, "Emulation of
    FMA and correctly rounded sums: proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008)."""
    p, c = np.asarray(a, np.float64) * np.asarray(b, np.float64), np.asarray(c, np.float64)
    s = np.asarray(p + c)
    back = s - p
    error = (p - (s - back)) + (c - back)     # s + error == p + c exactly
    even = (s.view(np.int64) & 1) == 0
    with np.errstate(invalid="ignore"):
        odd = np.where((error != 0) & even & np.isfinite(s), np.nextafter(s, np.where(error > 0, np.inf, -np.inf)), s)
    return odd.astype(F32)


# ---- the vector unit --------------------------------------------------------------------------------------

def _vector(op, m: Memory, d, f, o):
    """One vector-unit instruction: descriptor fields d and float fields f, operands o, by name. On 8-bit codes
    (its first operand's type) vec_binary, vec_avgpool and vec_softmax are onnxruntime's quantised ops."""
    dtypes = [_name(getattr(o, name)) for name in OPCODES[op][1] if name.endswith("_dtype")]
    if op in INTEGER_OPS:
        INTEGER_OPS[op](m, d, f, o)
    elif dtypes[0] in CODES and op in ON_CODES:
        ON_CODES[op](m, d, f, o)
    elif op in FLOAT_ONLY and set(dtypes) & set(CODES):
        raise ValueError(f"{op} on 8-bit codes ({', '.join(dtypes)}) has no defined meaning (its operands are "
                         "float: the front end keeps a quantised model's ReLU, BatchNorm and LRN on floats)")
    elif op == "vec_relu":
        m.write(d.dst, np.maximum(m.read(d.src, d.n, o.src_dtype), F32(0)), o.dst_dtype)
    elif op == "vec_binary":
        shape = _group(d, "shape")
        a = m.read(d.a, shape, o.a_dtype, _group(d, "a_stride"))
        b = m.read(d.b, shape, o.b_dtype, _group(d, "b_stride"))
        fn = {BINARY_OPS["add"]: np.add, BINARY_OPS["sub"]: np.subtract, BINARY_OPS["mul"]: np.multiply,
              BINARY_OPS["div"]: np.divide, BINARY_OPS["pow"]: _pow, BINARY_OPS["min"]: _min,
              BINARY_OPS["max"]: _max}[d.op]
        with np.errstate(all="ignore"):      # IEEE results (Inf, NaN) are the datapath's
            m.write(d.dst, fn(a, b), o.dst_dtype)
    elif op == "vec_copy":      # codes move as bytes; int32 -> fp32 is a Cast (rounding half to even)
        m.write(d.dst, m.read(d.src, _group(d, "shape"), o.src_dtype, _group(d, "src_stride")),
                _moved(o.src_dtype, o.dst_dtype), _group(d, "dst_stride"))
    elif op == "vec_affine":
        x = m.read(d.src, (d.n, d.c, d.hw), o.src_dtype)
        s, t = m.read(d.scale, d.c, o.scale_dtype), m.read(d.shift, d.c, o.shift_dtype)
        m.write(d.dst, x * s[:, None] + t[:, None], o.dst_dtype)
    elif op in ("vec_maxpool", "vec_avgpool"):      # a max of codes is a code: exact in float64
        m.write(d.dst, _pool(m.read(d.src, (d.planes, d.h, d.w), o.src_dtype), d, op == "vec_maxpool"),
                o.dst_dtype)
    elif op == "vec_lrn":
        x = m.read(d.src, (d.n, d.c, d.hw), o.src_dtype)
        lo, hi = (d.size - 1) // 2, d.size - 1 - (d.size - 1) // 2
        sq = np.stack([(x[:, max(0, i - lo): min(d.c, i + hi + 1)] ** 2).sum(1) for i in range(d.c)], 1)
        m.write(d.dst, x / (f.bias + f.alpha / d.size * sq) ** f.beta, o.dst_dtype)
    elif op == "vec_softmax":
        x = m.read(d.src, (d.outer, d.axis_len, d.inner), o.src_dtype).astype(np.float64)
        with np.errstate(invalid="ignore"):     # Inf - Inf is NaN, as in the kernel
            shifted = x - x.max(1, keepdims=True)
        e = np.array([math.exp(v) for v in shifted.ravel()], np.float64).reshape(x.shape).astype(F32)
        total = np.cumsum(e, axis=1, dtype=F32)[:, -1:]     # fp32, one term at a time
        m.write(d.dst, e / total, o.dst_dtype)
    elif op in MATH_OPS:
        MATH_OPS[op](m, d, f, o)
    else:
        raise ValueError(f"the reference executor does not define {op}")


def _group(d, stem: str) -> list:
    """A descriptor field group (shape0 .. shape5) as a list."""
    return [getattr(d, f"{stem}{i}") for i in range(MAX_RANK)]


def _pool(x, d, is_max):
    """Pooling in float64 over window offsets in row-major order (the kernel's order)."""
    planes, h, w, oh, ow, kh, kw = d.planes, d.h, d.w, d.oh, d.ow, d.kh, d.kw
    sh, sw, pt, pl, cip, pb, pr = d.sh, d.sw, d.pt, d.pl, d.count_include_pad, d.pb, d.pr
    fill = -np.inf if is_max else 0.0
    padded = np.full((planes, pt + max(h + pb, (oh - 1) * sh + kh), pl + max(w + pr, (ow - 1) * sw + kw)),
                     fill, np.float64)
    padded[:, pt:pt + h, pl:pl + w] = x
    valid = np.zeros(padded.shape[1:], np.int64)
    valid[pt:pt + h, pl:pl + w] = 1
    acc, count = np.full((planes, oh, ow), fill), np.zeros((oh, ow), np.int64)
    for di in range(kh):
        for dj in range(kw):
            rows, cols = slice(di, di + (oh - 1) * sh + 1, sh), slice(dj, dj + (ow - 1) * sw + 1, sw)
            acc = np.maximum(acc, padded[:, rows, cols]) if is_max else acc + padded[:, rows, cols]
            count += valid[rows, cols]
    if is_max:
        return acc.astype(F32)
    if cip:
        i, j = np.arange(oh)[:, None] * sh, np.arange(ow)[None, :] * sw
        count = (np.minimum(i + kh, pt + h + pb) - i) * (np.minimum(j + kw, pl + w + pr) - j)
    return (acc / count).astype(F32)


# ---- float functions: vec_unary, vec_reduce, vec_layernorm, Pow/Min/Max (docs/ops.md) -----------------------
# Transcendental functions are the C library's float64 ones (Python's math module, which the kernels' Numba math
# calls too), evaluated per element and rounded once to fp32; arithmetic is fp32 NumPy, one rounding per operation.

def _libm(fn, x) -> np.ndarray:
    """fn (float -> float, in float64) of each element of x, rounded once to fp32."""
    return np.array([fn(float(v)) for v in np.ravel(x)], np.float64).reshape(np.shape(x)).astype(F32)


def _exp(v: float) -> float:
    """exp, Inf past float64's range (the C function's result, where Python's math.exp raises)."""
    return math.exp(v) if v < 709.0 else math.inf if v == v else v


def _log(v: float) -> float:
    """log: -Inf at 0, NaN below (C's results, where Python's math.log raises)."""
    return math.log(v) if v > 0 else -math.inf if v == 0 else math.nan


def _odd(y: float) -> bool:
    return y == math.floor(y) and math.fmod(y, 2.0) != 0


def _pow64(x: float, y: float) -> float:
    """C99 pow: the C library's (through Python's math.pow), and its Inf or NaN where Python raises."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return -math.inf if x < 0 and _odd(y) else math.inf
    except ValueError:
        if x == 0:                        # zero to a negative power
            return math.copysign(math.inf, x) if _odd(y) else math.inf
        return math.nan                   # a negative number to a non-integer power


def _pow(a, b):
    return np.array([_pow64(float(x), float(y)) for x, y in zip(np.ravel(a), np.ravel(b))],
                    np.float64).reshape(np.shape(a)).astype(F32)


def _min(a, b):
    """Min: NaN if either is NaN, else the smaller (a on a tie, as onnxruntime)."""
    with np.errstate(invalid="ignore"):      # a + b: the NaN where one is
        return np.where(np.isnan(a) | np.isnan(b), a + b, np.where(b < a, b, a))


def _max(a, b):
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(a) | np.isnan(b), a + b, np.where(b > a, b, a))


def _clamp01(t):
    """t clamped to [0, 1] (NaN stays NaN)."""
    return np.where(t < 0, F32(0), np.where(t > 1, F32(1), t))


SQRT_HALF, SQRT_2_OVER_PI = math.sqrt(0.5), math.sqrt(2.0 / math.pi)
# UNARY_OPS name -> its definition on fp32 values x (alpha, beta: hard_sigmoid's, or clip's min and max)
UNARY = {
    "erf": lambda x, a, b: _libm(math.erf, x),
    "tanh": lambda x, a, b: _libm(math.tanh, x),
    "sigmoid": lambda x, a, b: _libm(lambda v: 1.0 / (1.0 + _exp(-v)), x),
    "exp": lambda x, a, b: _libm(_exp, x),
    "log": lambda x, a, b: _libm(_log, x),
    "sqrt": lambda x, a, b: np.sqrt(x),                     # fp32 sqrt: correctly rounded
    "reciprocal": lambda x, a, b: F32(1) / x,
    "neg": lambda x, a, b: -x,
    "abs": lambda x, a, b: np.abs(x),
    # Gelu: x/2 (1 + erf(x / sqrt 2)), as x/2 erfc(-x / sqrt 2); tanh form: x/2 (1 + tanh u) = x / (1 + exp(-2u)),
    # u = sqrt(2 / pi) (x + 0.044715 x^3)
    "gelu": lambda x, a, b: _libm(lambda v: 0.5 * v * math.erfc(-v * SQRT_HALF), x),
    "gelu_tanh": lambda x, a, b: _libm(
        lambda v: v / (1.0 + _exp(-2.0 * (SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)))), x),
    "hard_sigmoid": lambda x, a, b: _clamp01(x * a + b),
    "hard_swish": lambda x, a, b: x * _clamp01(x * a + b),
    "clip": lambda x, a, b: (lambda t: np.where(t > b, b, t))(np.where(x < a, a, x)),
    "round_fp16": lambda x, a, b: round_to(x, "fp16"),
    "round_bf16": lambda x, a, b: round_to(x, "bf16"),
}
UNARY_NAMES = {code: name for name, code in UNARY_OPS.items()}


def _unary(m: Memory, d, f, o):
    x = m.read(d.src, d.n, o.src_dtype)
    if d.op not in UNARY_NAMES:
        raise ValueError(f"vec_unary function {d.op} is none of UNARY_OPS ({UNARY_OPS})")
    with np.errstate(all="ignore"):
        m.write(d.dst, UNARY[UNARY_NAMES[d.op]](x, F32(f.alpha), F32(f.beta)), o.dst_dtype)


def _row_sums(x):
    """Each row's fp32 sum from +0, one element at a time in row order, as a column."""
    zero = np.zeros((x.shape[0], 1), F32)
    return np.cumsum(np.concatenate([zero, x], axis=1), axis=1, dtype=F32)[:, -1:]


def _reduce(m: Memory, d, f, o):
    """vec_reduce: per output (kept axes shape/stride, row-major) its rshape/rstride block in row-major order:
    the fp32 sum from +0, the mean (that sum / F(count)) or the max (NaN if any element is NaN)."""
    shape, rshape = _group(d, "shape"), _group(d, "rshape")
    x = m.read(d.src, shape + rshape, o.src_dtype, _group(d, "stride") + _group(d, "rstride"))
    rows = x.reshape(math.prod(shape), math.prod(rshape))
    if d.op == REDUCE_OPS["max"]:
        y = np.full(len(rows), -np.inf, F32)
        for column in rows.T:                 # in order: on equal values the first stays (-0.0 before 0.0)
            y = _max(y, column)
    elif d.op in (REDUCE_OPS["sum"], REDUCE_OPS["mean"]):
        y = _row_sums(rows)[:, 0]
        y = y / F32(rows.shape[1]) if d.op == REDUCE_OPS["mean"] else y
    else:
        raise ValueError(f"vec_reduce op {d.op} is none of REDUCE_OPS ({REDUCE_OPS})")
    m.write(d.dst, y, o.dst_dtype)


def _layernorm(m: Memory, d, f, o):
    """LayerNormalization over rows of n (the ONNX function's steps in fp32): mean = sum / F(n); var = sum of the
    squared deviations / F(n), both sums from +0 in row order; y = (x - mean) / sqrt(var + epsilon) * scale (+ bias)."""
    x, scale = m.read(d.src, (d.rows, d.n), o.src_dtype), m.read(d.scale, d.n, o.scale_dtype)
    count = F32(d.n)
    with np.errstate(all="ignore"):          # Inf and NaN rows give NaN, as in the kernel
        deviation = x - _row_sums(x) / count
        y = deviation / np.sqrt(_row_sums(deviation * deviation) / count + F32(f.epsilon)) * scale
        if d.bias >= 0:
            y = y + m.read(d.bias, d.n, o.bias_dtype)
    m.write(d.dst, y, o.dst_dtype)


MATH_OPS = {"vec_unary": _unary, "vec_reduce": _reduce, "vec_layernorm": _layernorm}


# ---- the vector unit on 8-bit codes (docs/int8_datapath.md sections 3 and 9.3) ----------------------------

def _qbinary(m: Memory, d, f, o):
    """QLinearAdd and QLinearMul (com.microsoft) on codes, a and b broadcast by their strides. Add (MLAS's AVX2
    kernel, X = a): fixed = F(zc - fma(rX, zX, F(rY zY))), v = fma(x, rX, fma(y, rY, fixed)), rX and rY the
    F(scale / y_scale) of each input; mul: v = F(F(float((a - za)(b - zb)) * ratio) + zc). Then cvtps2dq, saturated."""
    shape = _group(d, "shape")
    x = m.read(d.a, shape, o.a_dtype, _group(d, "a_stride")).astype(np.int64)
    y = m.read(d.b, shape, o.b_dtype, _group(d, "b_stride")).astype(np.int64)
    if d.op == BINARY_OPS["add"]:
        rx, ry = F32(f.a_ratio), F32(f.b_ratio)
        fixed = F32(d.y_zp) - _fma32(rx, F32(d.a_zp), ry * F32(d.b_zp))
        v = _fma32(x.astype(F32), rx, _fma32(y.astype(F32), ry, fixed))
    elif d.op == BINARY_OPS["mul"]:
        v = ((x - d.a_zp) * (y - d.b_zp)).astype(F32) * F32(f.product_ratio) + F32(d.y_zp)
    else:
        raise ValueError(f"binary op {d.op} on 8-bit codes has no defined meaning (add {BINARY_OPS['add']} and "
                         f"mul {BINARY_OPS['mul']} have)")
    m.write(d.dst, _saturate(_cvtps2dq(v), o.dst_dtype), o.dst_dtype)


def _qavgpool(m: Memory, d, f, o):
    """QLinearAveragePool: each tap F(float(x - zx) * x_scale), summed in float32 in row-major window order, / the
    count (the kernel size with count_include_pad, else the taps inside), v = F(F(avg / y_scale) + zy), cvtps2dq,
    saturated. QLinearGlobalAveragePool (is_global): the integer sum - zx * count, section 2 with global_scale."""
    x = m.read(d.src, (d.planes, d.h, d.w), o.src_dtype).astype(np.int64)
    taps = (x - d.x_zp).astype(F32) * F32(f.x_scale)      # never -0.0, so adding +0.0 changes no sum
    total = np.zeros((d.planes, d.oh, d.ow), F32)
    isum, count = np.zeros((d.planes, d.oh, d.ow), np.int64), np.zeros((d.oh, d.ow), np.int64)
    for i in range(d.kh):
        for j in range(d.kw):
            rows, cols = np.arange(d.oh) * d.sh - d.pt + i, np.arange(d.ow) * d.sw - d.pl + j
            inside = ((rows >= 0) & (rows < d.h))[:, None] & ((cols >= 0) & (cols < d.w))[None, :]
            r, c = np.clip(rows, 0, d.h - 1)[:, None], np.clip(cols, 0, d.w - 1)[None, :]
            total = total + np.where(inside, taps[:, r, c], F32(0))
            isum += np.where(inside, x[:, r, c], 0)
            count += inside
    if d.is_global:
        q = _requantize(isum - d.x_zp * count, F32(f.global_scale), d.y_zp, o.dst_dtype)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            avg = total / np.where(d.count_include_pad, d.kh * d.kw, count).astype(F32)
        q = _saturate(_cvtps2dq(avg / F32(f.y_scale) + F32(d.y_zp)), o.dst_dtype)
    m.write(d.dst, q, o.dst_dtype)


def _qsoftmax(m: Memory, d, f, o):
    """QLinearSoftmax (tests/quant_golden_softmax.py): e = the fp32 exp table at x - max + 255 (int8: x - max + 127
    as a byte), a float32 sum along the axis in order, y = rne(double(e) * inv_y_scale / double(sum)) + y_zp,
    saturated."""
    x = m.read(d.src, (d.outer, d.axis_len, d.inner), o.src_dtype).astype(np.int64)
    below = x - x.max(1, keepdims=True)
    e = m.read(d.table, 256, "fp32")[(below + 127) & 0xFF if _name(o.src_dtype) == "int8" else below + 255]
    total = np.cumsum(e, axis=1, dtype=F32)[:, -1:]     # one term at a time
    r = np.rint(e.astype(np.float64) * f.inv_y_scale / total.astype(np.float64))
    m.write(d.dst, _saturate(np.minimum(r, 2.0 ** 40).astype(np.int64) + d.y_zp, o.dst_dtype), o.dst_dtype)


def _quantized(x, scale, zp, dtype):
    """QuantizeLinear: rne(clamp(F(x / scale), qmin - zp, qmax - zp)) + zp, a NaN clamped to the lower bound
    (maxps returns its second operand)."""
    lo, hi = QRANGE[_name(dtype)]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = x / scale
    v = np.where(v > (lo - zp).astype(F32), v, (lo - zp).astype(F32))
    v = np.where(v < (hi - zp).astype(F32), v, (hi - zp).astype(F32))
    return np.rint(v).astype(np.int64) + zp


def _quantize(m: Memory, d, f, o):
    """QuantizeLinear or DequantizeLinear (F(float(q - zp) * scale)), per tensor or along an axis (fp32 scale[c],
    int32 zero_point[c])."""
    x = m.read(d.src, (d.outer, d.c, d.inner), o.src_dtype)
    scale, zp = m.read(d.scale, (d.c, 1), "fp32"), m.read(d.zero_point, (d.c, 1), "int32").astype(np.int64)
    if _name(o.src_dtype) in CODES:
        m.write(d.dst, (x.astype(np.int64) - zp).astype(F32) * scale, o.dst_dtype)
    else:
        m.write(d.dst, _quantized(x, scale, zp, o.dst_dtype), o.dst_dtype)


def _dynamic_quantize(m: Memory, d, f, o):
    """DynamicQuantizeLinear (section 9.3): lo, hi = the range of x and 0 (NaN skipped); scale = F(F(hi - lo) / 255)
    (1 when hi == lo); zero point = rne(clamp(F(0 - F(lo / scale)), 0, 255)) (NaN: 255); both written (fp32 at
    `scale`, int32 at `zero_point`), then QuantizeLinear to uint8 with them."""
    x = m.read(d.src, d.n, o.src_dtype)
    lo, hi = F32(np.min(x[~np.isnan(x)], initial=0)), F32(np.max(x[~np.isnan(x)], initial=0))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = F32(1) if hi == lo else F32(F32(hi - lo) / F32(255))
        zp0 = F32(0) - F32(lo / scale)
    zp = 255 if np.isnan(zp0) else int(np.rint(np.clip(zp0, F32(0), F32(255))))
    m.write(d.scale, [scale], "fp32")
    m.write(d.zero_point, [zp], "int32")
    m.write(d.dst, _quantized(x, scale, np.int64(zp), o.dst_dtype), o.dst_dtype)


def _lookup(m: Memory, d, f, o):
    """A 256-entry table of output codes indexed by each input code's byte (Sigmoid, LeakyRelu, Concat's
    requantiser)."""
    m.write(d.dst, m.read(d.table, 256, "uint8")[m.read(d.src, d.n, "uint8")], "uint8")


INTEGER_OPS = {"vec_quantize": _quantize, "vec_dequantize": _quantize, "vec_dynamic_quantize": _dynamic_quantize,
               "vec_lookup": _lookup}
ON_CODES = {"vec_binary": _qbinary, "vec_avgpool": _qavgpool, "vec_softmax": _qsoftmax}


def execute(program: Program, inputs: dict, all_tensors: bool = False) -> dict:
    """Outputs of `program` on `inputs` (with all_tensors every region, as sim.run.simulate gives them), computed
    instruction by instruction in NumPy."""
    check_datapath(program)
    raw = program.dram_image()
    place_inputs(program, inputs, raw)
    memories = [Memory(buffer) for buffer in memory_buffers(program, raw)]       # by id
    types = [m.dtype for m in program.memories] + ["fp32"] * (len(memories) - len(program.memories))
    ins = program.instructions
    for i in range(len(ins)):
        code = int(ins.opcode[i])
        if not 0 <= code < len(OPCODE_NAMES):
            raise SimError(f"row {i}: unknown opcode {code}; the reference executor defines opcodes "
                           f"0..{len(OPCODE_NAMES) - 1} ({', '.join(OPCODE_NAMES)})")
        op = OPCODE_NAMES[code]
        operands = SimpleNamespace(**{name: int(v) for name, v in zip(OPCODES[op][1], ins.operands[i])})
        try:
            _execute_row(program, op, operands, memories, types)
        except (IndexError, ValueError) as exc:
            raise SimError(f"row {i} {op}: {exc}") from None
    return read_outputs(program, raw, list(program.regions) if all_tensors else None)


def _execute_row(program: Program, op: str, o: SimpleNamespace, memories: list, types: list):
    """One instruction, its operands `o` by name, on the memories by id (ADDRESS_MEMORY says which each
    address lies in; an access outside a memory: IndexError; an undefined operation: ValueError)."""
    at = ADDRESS_MEMORY[op]
    g = program.desc_int[o.desc] if "desc" in OPCODES[op][1] else None
    if op == "load_im2col":
        tile = _im2col(memories[at.desc], g, o.m0, o.tm, o.k0, o.tk, o.src_dtype)
        memories[at.dst].write(o.dst, tile, _moved(o.src_dtype, types[at.dst]))
    elif op == "load_weights":
        tile = memories[at.src].read(o.src, (o.tk, o.tn), o.src_dtype, (o.src_row_elems, 1))
        memories[at.dst].write(o.dst, tile, _moved(o.src_dtype, types[at.dst]))
    elif op == "load_bias":         # fp32 (or narrower) biases into an fp32 accumulator, int32 ones into int32
        bias = memories[at.src].read(o.src, o.tn, o.src_dtype) if o.src >= 0 else np.zeros(o.tn, F32)
        memories[at.dst].write(o.dst, np.tile(bias, o.tm), types[at.dst])
    elif op == "matmul" and g[CONV.requant] != REQUANT_ID["float"]:
        _matmul_int(memories, at, g, o)
    elif op == "matmul":
        a = memories[at.a].read(o.a, (o.tm, o.tk), types[at.a])
        w = memories[at.w].read(o.w, (o.tk, o.tn), types[at.w])
        _, acc = memories[at.acc].strided(o.acc, (o.tm, o.tn), (o.tn, 1), types[at.acc])   # the tile, in place
        _accumulate(acc, a, w)
    elif op == "store_tile":
        tile = memories[at.acc].read(o.acc, (o.tm, o.tn), types[at.acc])
        _store(memories[at.desc], g, tile, o.m0, o.n0, o.dst_dtype)
    elif op == "gemm_tile":
        _gemm_tile(memories[at.desc], g, o)
    else:
        d = SimpleNamespace(**{field.name: int(program.desc_int[o.desc, field]) for field in DESC[op]})
        f = SimpleNamespace(**{field.name: float(program.desc_float[o.desc, field]) for field in DESC_FLOAT[op]})
        _vector(op, memories[at.desc], d, f, o)

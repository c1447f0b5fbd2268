"""Numba kernels that execute a Program's instructions on simulated memories.

`execute` walks the instruction table in order and dispatches on opcode. The memories
come by id (compiler.program.Program.memories: 0 is DRAM, the others a target's on-chip
ones); each is a byte buffer that a kernel reads and writes through typed views (a memory
is the tuple of its float32, uint16, uint8 and int32 views, made once per run), and Program
addresses are bytes, converted to element indices with the element size of what they access.
Which memory each address lies in, the operand columns and the descriptor fields all come
from compiler/program.py's tables by name (ADDRESS_MEMORY, OPERAND, DESC), compiled in as
constants; `executor` refreshes a cache compiled from other tables (compiler/numba_cache.py).

The defined datapath (DESIGN principle 4):
  * Element types: fp32, and bf16/fp16 stored as 16-bit patterns. Narrow values
    widen to fp32 exactly; fp32 results narrow with round-to-nearest-even (bf16:
    the upper half of the fp32 pattern after RNE on the lower half, overflow to
    Inf; fp16: IEEE binary16, overflow to Inf, subnormals kept) and NaN stays a
    quiet NaN. compiler/numerics.py is the same in NumPy.
  * Moves convert: a load or store between memories of different types goes
    through fp32 (an im2col load of bf16 activations into an fp16 operand memory
    rounds once, to fp16).
  * GEMM accumulation order: every output starts from its bias (or 0) in the fp32
    accumulator and adds a[m,k]*w[k,n] products one k at a time in increasing k,
    each product rounded to fp32 before the add (no FMA). A product of two 16-bit
    floats is exact in fp32 unless it over- or underflows. The order does not
    depend on tiling, so every array size and dataflow yields the same bits. A
    stored tile is rounded once, from fp32 to the output type.
  * Vector unit: reads its operands as fp32, computes exactly as the fp32
    datapath does, and rounds each result once to the destination type.
    Arithmetic is fp32, each operation rounded (no FMA); sums run in a
    declared order (a reduction's elements in row-major order, from +0). A
    transcendental function (exp, log, erf, tanh, pow, and Gelu/sigmoid built
    on them) is evaluated in float64 by the C library and rounded once to
    fp32: within one fp32 ulp of the exact value, equal to the correctly
    rounded one unless the exact value lies within ~2^-52 (relative) of a
    midpoint between two fp32 values. docs/ops.md states each op's precision
    against onnxruntime.
sim/reference.py defines the same in NumPy.

The integer datapath (docs/int8_datapath.md, onnxruntime's arithmetic; checked bit for
bit against onnxruntime in tests/e2e/test_int8_models.py, and against sim/reference.py in
tests/sim/test_reference_integer.py):
  * 8-bit codes (uint8 or int8) move as bytes; an im2col load pads with the input's
    zero point. The array multiplies (a - a_zp) * (w - w_zp), exact, into an int32
    accumulator that wraps, starting from the int32 bias.
  * store_tile requantises: F(F(acc) * scale[c]), clamped to [qmin - y_zp, qmax - y_zp],
    rounded half to even, plus y_zp (or keeps the int32 accumulator, or the scaled
    float, by the descriptor's `requant`); a spec may ask for a fixed-point requantiser
    instead (Q31 multiplier and rounding shift, gemmlowp/TFLite; not onnxruntime's bits).
  * The vector unit runs QuantizeLinear/DequantizeLinear, QLinearAdd (two float32
    FMAs), QLinearMul, QLinearAveragePool (float window sum) and the global pool's
    integer sum, QLinearSoftmax, 256-entry lookup tables, and moves codes unchanged
    through maxpool, transpose and concat.
"""
from __future__ import annotations

import functools
import math
from types import FunctionType

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic

from compiler import numba_cache
from compiler.program import (ACTIVATION_ID, ADDRESS_MEMORY, BINARY_OPS, CONV, DESC, DESC_FLOAT, DTYPE_CODE, LAYOUT,
                              OPCODE, OPCODES, OPERAND, REDUCE_OPS, REQUANT_ID, UNARY_OPS)

# Constants from compiler/program.py's tables, by name (Numba compiles module globals in as constants)
FP32, FP16, BF16, INT8, UINT8, INT32 = (DTYPE_CODE[t] for t in ("fp32", "fp16", "bf16", "int8", "uint8", "int32"))
REQ_FLOAT, REQ_CODES, REQ_INT32, REQ_SCALED, REQ_FIXED = (
    REQUANT_ID[r] for r in ("float", "codes", "int32", "scaled", "fixed_point"))
ACT_RELU = ACTIVATION_ID["relu"]
ADD, SUB, MUL, DIV = BINARY_OPS["add"], BINARY_OPS["sub"], BINARY_OPS["mul"], BINARY_OPS["div"]
POW, MIN, MAX = BINARY_OPS["pow"], BINARY_OPS["min"], BINARY_OPS["max"]
(U_ERF, U_TANH, U_SIGMOID, U_EXP, U_LOG, U_SQRT, U_RECIPROCAL, U_NEG, U_ABS, U_GELU, U_GELU_TANH, U_HARD_SIGMOID,
 U_HARD_SWISH, U_CLIP, U_ROUND_FP16, U_ROUND_BF16) = (UNARY_OPS[f] for f in (
    "erf", "tanh", "sigmoid", "exp", "log", "sqrt", "reciprocal", "neg", "abs", "gelu", "gelu_tanh", "hard_sigmoid",
    "hard_swish", "clip", "round_fp16", "round_bf16"))
R_SUM, R_MEAN, R_MAX = REDUCE_OPS["sum"], REDUCE_OPS["mean"], REDUCE_OPS["max"]
SQRT_HALF = math.sqrt(0.5)                     # Gelu: erf(x / sqrt(2)), as x * sqrt(1/2)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)      # Gelu's tanh approximation
N_OPCODES = len(OPCODES)
# operand columns per opcode
IM2COL, WEIGHTS, BIAS = OPERAND["load_im2col"], OPERAND["load_weights"], OPERAND["load_bias"]
MATMUL, STORE = OPERAND["matmul"], OPERAND["store_tile"]
# the memory id of each address (plain ints, so that Numba indexes the memories tuple statically: an
# index it does not see as a constant, such as a named tuple's field, makes a switch over every memory,
# slower to compile)
IM2COL_X, IM2COL_DST = ADDRESS_MEMORY["load_im2col"].desc, ADDRESS_MEMORY["load_im2col"].dst
WEIGHTS_SRC, WEIGHTS_DST = ADDRESS_MEMORY["load_weights"].src, ADDRESS_MEMORY["load_weights"].dst
BIAS_SRC, BIAS_DST = ADDRESS_MEMORY["load_bias"].src, ADDRESS_MEMORY["load_bias"].dst
MATMUL_A, MATMUL_W, MATMUL_ACC = ADDRESS_MEMORY["matmul"].a, ADDRESS_MEMORY["matmul"].w, ADDRESS_MEMORY["matmul"].acc
MATMUL_DESC, STORE_ACC, STORE_OUT = (ADDRESS_MEMORY["matmul"].desc, ADDRESS_MEMORY["store_tile"].acc,
                                     ADDRESS_MEMORY["store_tile"].desc)
# descriptor layouts (int fields; float fields: *_F)
RELU, BINARY, BINARY_F, AFFINE = DESC["vec_relu"], DESC["vec_binary"], DESC_FLOAT["vec_binary"], DESC["vec_affine"]
POOL, POOL_F, LRN, LRN_F = DESC["vec_avgpool"], DESC_FLOAT["vec_avgpool"], DESC["vec_lrn"], DESC_FLOAT["vec_lrn"]
SOFTMAX, SOFTMAX_F, COPY = DESC["vec_softmax"], DESC_FLOAT["vec_softmax"], DESC["vec_copy"]
QUANTIZE, LOOKUP, DYNAMIC_QUANTIZE = DESC["vec_quantize"], DESC["vec_lookup"], DESC["vec_dynamic_quantize"]
UNARY, UNARY_F, REDUCE = DESC["vec_unary"], DESC_FLOAT["vec_unary"], DESC["vec_reduce"]
LAYERNORM, LAYERNORM_F = DESC["vec_layernorm"], DESC_FLOAT["vec_layernorm"]
# vector opcodes: operand columns
V_RELU, V_BINARY, V_AFFINE = OPERAND["vec_relu"], OPERAND["vec_binary"], OPERAND["vec_affine"]
V_MAXPOOL, V_AVGPOOL, V_LRN = OPERAND["vec_maxpool"], OPERAND["vec_avgpool"], OPERAND["vec_lrn"]
V_SOFTMAX, V_COPY, V_LOOKUP = OPERAND["vec_softmax"], OPERAND["vec_copy"], OPERAND["vec_lookup"]
V_QUANTIZE, V_DEQUANTIZE = OPERAND["vec_quantize"], OPERAND["vec_dequantize"]
V_DYNAMIC_QUANTIZE = OPERAND["vec_dynamic_quantize"]
V_UNARY, V_REDUCE, V_LAYERNORM = OPERAND["vec_unary"], OPERAND["vec_reduce"], OPERAND["vec_layernorm"]
# the memory every vector-unit descriptor addresses (one for all: a static index; unpacking fails otherwise)
(VECTOR_MEMORY,) = {ADDRESS_MEMORY[op].desc for op, (unit, _) in OPCODES.items() if unit == "vector"}
GEMM_TILE, GEMM_TILE_MEMORY = OPERAND["gemm_tile"], ADDRESS_MEMORY["gemm_tile"].desc
GEMM_TILE_ELEMENTS = 1 << 16   # elements of the A rows gemm_tile expands at a time (its scratch stays small)


@intrinsic
def _f32_bits(typingctx, x):
    """The bit pattern of a float32 (an LLVM bitcast: no memory round trip)."""
    if x != types.float32:
        return None
    return types.uint32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(32))


@intrinsic
def _bits_f32(typingctx, x):
    """The float32 whose bit pattern is the low 32 bits of an integer."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        bits = args[0] if x.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(x), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 fused multiply-add, one rounding (llvm.fma: the FMA instruction, or an exact
    software fallback where the CPU has none)."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)
    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(cache=True)
def bf16_to_f32(h):
    return _bits_f32(np.int64(h) << 16)


@njit(cache=True)
def f32_to_bf16(v):
    b = np.int64(_f32_bits(np.float32(v)))
    if (b & 0x7FFFFFFF) > 0x7F800000:          # NaN: keep sign and upper payload, make it quiet
        return np.uint16((b >> 16) | 0x0040)
    return np.uint16((b + 0x7FFF + ((b >> 16) & 1)) >> 16)     # RNE; a carry may round up to Inf


@njit(cache=True)
def fp16_to_f32(h):
    x = np.int64(h)
    sign, e, m = (x & 0x8000) << 16, (x >> 10) & 0x1F, x & 0x3FF
    if e == 0:                                 # zero or subnormal: m x 2^-24, exact in fp32
        v = np.float32(m) * np.float32(5.9604644775390625e-08)
        return -v if sign else v
    if e == 0x1F:                              # Inf or NaN (payload kept)
        return _bits_f32(sign | 0x7F800000 | (m << 13))
    return _bits_f32(sign | ((e + 112) << 23) | (m << 13))


@njit(cache=True)
def f32_to_fp16(v):
    b = np.int64(_f32_bits(np.float32(v)))
    sign, e, m = (b >> 16) & 0x8000, (b >> 23) & 0xFF, b & 0x7FFFFF
    if e == 0xFF:                              # Inf, or NaN made quiet
        return np.uint16(sign | 0x7C00 | ((0x0200 | (m >> 13)) if m else 0))
    e16 = e - 112                              # rebias 127 -> 15
    if e16 >= 0x1F:
        return np.uint16(sign | 0x7C00)
    if e16 <= 0:                               # fp16 subnormal (or zero): drop 14 - e16 bits of 1.m
        if e16 < -10:                          # below half the smallest subnormal
            return np.uint16(sign)
        m, shift = m | 0x800000, 14 - e16
    else:
        m, shift = (e16 << 23) | m, 13         # exponent and mantissa round together: a carry is right
    r, rem, half = m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1)
    if rem > half or (rem == half and (r & 1)):
        r += 1
    return np.uint16(sign | r)


@njit(cache=True, inline="always")
def _size(code):
    if code == FP32 or code == INT32:
        return 4
    return 1 if code == INT8 or code == UINT8 else 2


@njit(cache=True)
def _qrange(code):
    """(qmin, qmax) of an 8-bit code type."""
    return (-128, 127) if code == INT8 else (0, 255)


# Per-element accessors: float elements through a memory's (float32, uint16) views, integer ones
# through its (uint8, int32) views. They stay small so LLVM inlines them and drops the array
# reference counts of the call; a larger accessor (one for every type) was not inlined and cost
# ~20 ns per element in reference counting (measured).
@njit(cache=True)
def _ld(f, u, i, code):
    """Element i of a float memory of `code` elements, as float32 (narrow floats widen exactly)."""
    if code == FP32:
        return f[i]
    if code == BF16:
        return bf16_to_f32(u[i])
    return fp16_to_f32(u[i])


@njit(cache=True)
def _st(f, u, i, code, v):
    """Store value v (rounded to fp32 first if wider) as element i of float type `code`."""
    if code == FP32:
        f[i] = v
    elif code == BF16:
        u[i] = f32_to_bf16(np.float32(v))
    else:
        u[i] = f32_to_fp16(np.float32(v))


@njit(cache=True)
def _ldi(b, s, i, code):
    """Element i of an integer memory as int64 (8-bit codes with their signedness, int32)."""
    if code == INT32:
        return np.int64(s[i])
    byte = np.int64(b[i])
    return byte - 256 if code == INT8 and byte >= 128 else byte


@njit(cache=True)
def _sti(b, s, i, code, v):
    """Store integer v as element i: 8-bit codes keep its low byte (callers saturate first),
    int32 wraps."""
    if code == INT32:
        s[i] = np.int32(((v + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31)
    else:
        b[i] = np.uint8(v & 0xFF)


@njit(cache=True, inline="always")
def _move(sm, s, s_code, dm, d, d_code, n):
    """Copy n elements from element s of memory sm to element d of dm, converting types
    (elements of one type, and 8-bit codes of either signedness, move as bits)."""
    sf, su, sb, ss = sm
    df, du, db, ds = dm
    size = _size(s_code)
    if s_code == d_code or (size == 1 and _size(d_code) == 1):
        if size == 4:
            ds[d:d + n] = ss[s:s + n]
        elif size == 2:
            du[d:d + n] = su[s:s + n]
        else:
            db[d:d + n] = sb[s:s + n]
    else:
        for i in range(n):
            _st(df, du, d + i, d_code, _ld(sf, su, s + i, s_code))


@njit(cache=True, inline="always")
def _floats(m, byte, n, code):
    """n elements of type `code` from byte address `byte`, as float32 (a view when fp32)."""
    if code == FP32:
        return m[0][byte // 4: byte // 4 + n]
    out = np.empty(n, np.float32)
    u16 = m[1][byte // 2: byte // 2 + n]
    for i in range(n):
        out[i] = bf16_to_f32(u16[i]) if code == BF16 else fp16_to_f32(u16[i])
    return out


@njit(cache=True, inline="always")
def _codes(m, byte, n, code, zero_point):
    """n 8-bit codes from byte address `byte`, minus their zero point, as int32."""
    out = np.empty(n, np.int32)
    raw = m[2][byte: byte + n]
    for i in range(n):
        v = np.int32(raw[i])
        out[i] = (v - 256 if code == INT8 and v >= 128 else v) - zero_point
    return out


@njit(cache=True)
def _rne_i32(v):
    """float32 -> int32 rounding half to even (cvtps2dq): NaN or |v| >= 2^31 gives INT32_MIN."""
    if not (abs(v) < np.float32(2.0 ** 31)):
        return np.int64(-2 ** 31)
    return np.int64(np.rint(v))


@njit(cache=True)
def _saturate(q, code):
    lo, hi = _qrange(code)
    return min(max(q, lo), hi)


@njit(cache=True)
def _requantize(v, scale, y_zp, code):
    """MlasRequantizeOutput: F(F(v) * scale), clamped in float to [qmin - y_zp, qmax - y_zp],
    rounded half to even, plus y_zp."""
    lo, hi = _qrange(code)
    f = np.float32(v) * scale
    f = max(f, np.float32(lo - y_zp))
    f = min(f, np.float32(hi - y_zp))
    return np.int64(np.rint(f)) + y_zp


@njit(cache=True)
def _requantize_fixed_point(acc, multiplier, exponent, y_zp, code):
    """gemmlowp/TFLite MultiplyByQuantizedMultiplier, then + y_zp and saturation: acc shifted left by
    max(e, 0) (int32, wrapping), SaturatingRoundingDoublingHighMul with the Q31 multiplier (the high
    32 bits of the doubled product, rounded to nearest with ties toward +infinity: gemmlowp's nudge),
    then a rounding right shift by max(-e, 0) (half away from zero)."""
    x = np.int64(acc) << max(exponent, 0)
    x = ((x + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31
    if x == -2 ** 31 and multiplier == -2 ** 31:
        high = np.int64(2 ** 31 - 1)
    else:
        t = x * np.int64(multiplier) + (2 ** 30 if x * np.int64(multiplier) >= 0 else 1 - 2 ** 30)
        high = t // 2 ** 31 if t >= 0 else -((-t) // 2 ** 31)          # C division truncates
    right = max(-exponent, 0)
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    q = (high >> right) + (1 if (high & mask) > threshold else 0)
    return _saturate(q + y_zp, code)


@njit(cache=True)
def _x_zero_point(s, g):
    """A layer's input zero point: in its descriptor, or (dynamic quantisation) the int32 the
    vector unit wrote at run time (s: the DRAM's int32 view)."""
    return np.int64(g[CONV.x_zp]) if g[CONV.x_zp_addr] < 0 else np.int64(s[g[CONV.x_zp_addr] // 4])


@njit(cache=True)
def load_im2col(sm, g, m0, tm, k0, tk, x_code, dm, dst, a_code):
    """[tm,tk] tile at byte dst of memory dm (elements a_code) <- im2col rows m0.., columns k0.. of the
    conv input in memory sm (padding: 0, or the input zero point for 8-bit codes, which move as bytes)."""
    x, C, H, W = g[CONV.x] // _size(x_code), g[CONV.c], g[CONV.h], g[CONV.w]
    kh, kw, sh, sw, pt, pl = g[CONV.kh], g[CONV.kw], g[CONV.sh], g[CONV.sw], g[CONV.pt], g[CONV.pl]
    dh, dw, OH, OW, cin_off = g[CONV.dh], g[CONV.dw], g[CONV.oh], g[CONV.ow], g[CONV.cin_off]
    kk, P = kh * kw, OH * OW
    # the same type on both sides moves the bits (no conversion); 0 is all-zero bits in every float type
    same32, same16, zero32 = x_code == a_code == FP32, x_code == a_code and _size(a_code) == 2, a_code == FP32
    codes = _size(x_code) == 1
    sf, su, sb, ss = sm
    pad_code = np.uint8(_x_zero_point(ss, g) & 0xFF)
    df, du, db, ds = dm
    chan = np.empty(tk, np.int64)   # decode each column k -> (channel, row tap, col tap) once per tile
    tap_h = np.empty(tk, np.int64)
    tap_w = np.empty(tk, np.int64)
    for kq in range(tk):
        k = k0 + kq
        chan[kq], rem = cin_off + k // kk, k % kk
        tap_h[kq], tap_w[kq] = (rem // kw) * dh, (rem % kw) * dw
    for mm in range(tm):
        m = m0 + mm
        n, r = m // P, m % P
        ih0, iw0 = (r // OW) * sh - pt, (r % OW) * sw - pl
        row = dst // _size(a_code) + mm * tk
        for kq in range(tk):
            ih, iw = ih0 + tap_h[kq], iw0 + tap_w[kq]
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                src = x + ((n * C + chan[kq]) * H + ih) * W + iw
                if codes:
                    db[row + kq] = sb[src]
                elif same32:
                    df[row + kq] = sf[src]
                elif same16:
                    du[row + kq] = su[src]
                else:
                    _st(df, du, row + kq, a_code, _ld(sf, su, src, x_code))
            elif codes:
                db[row + kq] = pad_code
            elif zero32:
                df[row + kq] = 0.0
            else:
                du[row + kq] = 0


@njit(cache=True)
def _accumulate(a_tile, w_tile, acc_tile, row):
    """acc_tile[i, j] += a_tile[i, k] * w_tile[k, j], one k at a time in increasing k (fp32: each
    product rounded, no FMA; int32: exact, wrapping). `row` is a private copy of one accumulator row,
    which lets LLVM vectorise over j (no aliasing)."""
    for i in range(acc_tile.shape[0]):
        row[:] = acc_tile[i]
        for k in range(a_tile.shape[1]):
            aik = a_tile[i, k]
            for j in range(row.shape[0]):
                row[j] += aik * w_tile[k, j]
        acc_tile[i] = row


@njit(cache=True)
def matmul(am, a, a_code, wm, w, w_code, acc_f, acc, tm, tk, tn):
    """acc[tm,tn] (fp32 view acc_f, byte acc) += a[tm,tk] @ w[tk,tn] in the declared order."""
    a_tile = _floats(am, a, tm * tk, a_code).reshape(tm, tk)
    w_tile = _floats(wm, w, tk * tn, w_code).reshape(tk, tn)
    _accumulate(a_tile, w_tile, acc_f[acc // 4:acc // 4 + tm * tn].reshape(tm, tn), np.empty(tn, np.float32))


@njit(cache=True)
def matmul_int(am, a, wm, w, acc_i, acc, tm, tk, tn, g, m, n0):
    """acc[tm,tn] (int32 view acc_i, byte acc) += (a - a_zp)[tm,tk] @ (w - w_zp[n])[tk,tn]: exact
    products, int32 accumulation that wraps (order-independent). The per-column weight zero
    points (columns n0.. of the group, at the descriptor's w_zp in m) sit in the array's column registers."""
    mf, mu, mb, ms = m
    a_tile = _codes(am, a, tm * tk, g[CONV.x_code], _x_zero_point(m[3], g)).reshape(tm, tk)
    w_tile = _codes(wm, w, tk * tn, g[CONV.w_code], 0).reshape(tk, tn)
    zp = g[CONV.w_zp] + g[CONV.cout_off] + n0   # weight codes: byte address = element index
    for j in range(tn):
        z = np.int32(_ldi(mb, ms, zp + j, g[CONV.w_code]))
        for k in range(tk):
            w_tile[k, j] -= z
    _accumulate(a_tile, w_tile, acc_i[acc // 4:acc // 4 + tm * tn].reshape(tm, tn), np.empty(tn, np.int32))


@njit(cache=True)
def store_tile(m, g, acc_f, acc, m0, tm, n0, tn, out_code):
    """Accumulator tile (fp32, byte acc) -> the conv output in DRAM, activation applied, rounded once."""
    mf, mu, mb, ms = m
    OH, OW, out, cout = g[CONV.oh], g[CONV.ow], g[CONV.out] // _size(out_code), g[CONV.cout]
    cout_off, act = g[CONV.cout_off], g[CONV.activation]
    P = OH * OW
    acc //= 4
    for mm in range(tm):
        mi = m0 + mm
        n, r = mi // P, mi % P
        for j in range(tn):
            v = acc_f[acc + mm * tn + j]
            if act == ACT_RELU and v < 0.0:
                v = np.float32(0.0)
            _st(mf, mu, out + (n * cout + cout_off + n0 + j) * P + r, out_code, v)


@njit(cache=True)
def store_tile_int(m, g, acc_i, acc, m0, tm, n0, tn, out_code):
    """(A separate kernel from the float store_tile: one loop serving both measured 2.5x slower on
    fp32 stores and 2x on int8 ones.) int32 accumulator tile (byte acc) -> the layer output in DRAM,
    as the descriptor's `requant`
    says: requantised codes (float or fixed point; a fused ReLU clamps them at the zero point), the
    int32 accumulator, or F(F(acc) * scale[c])."""
    mf, mu, mb, ms = m
    OH, OW, out, cout = g[CONV.oh], g[CONV.ow], g[CONV.out] // _size(out_code), g[CONV.cout]
    cout_off, act = g[CONV.cout_off], g[CONV.activation]
    requant, y_zp, scale = g[CONV.requant], g[CONV.y_zp], g[CONV.scale] // 4
    P = OH * OW
    acc //= 4
    for mm in range(tm):
        mi = m0 + mm
        n, r = mi // P, mi % P
        for j in range(tn):
            c = cout_off + n0 + j
            dst = out + (n * cout + c) * P + r
            v = acc_i[acc + mm * tn + j]
            if requant == REQ_INT32:
                ms[dst] = max(v, 0) if act == ACT_RELU else v
            elif requant == REQ_SCALED:
                f = np.float32(v) * mf[scale + c]
                mf[dst] = max(f, np.float32(0.0)) if act == ACT_RELU else f
            elif requant == REQ_FIXED:
                q = _requantize_fixed_point(v, ms[scale + 2 * c], ms[scale + 2 * c + 1], y_zp, out_code)
                _sti(mb, ms, dst, out_code, max(q, y_zp) if act == ACT_RELU else q)
            else:
                q = _requantize(v, mf[scale + c], y_zp, out_code)
                if act == ACT_RELU and q < y_zp:
                    q = y_zp
                _sti(mb, ms, dst, out_code, q)


@njit(cache=True)
def _row_starts(g, a, b, row):
    """Element offsets in a and b of the first element of output row `row` of a vec_binary (the
    output's first five axes flattened; strides from the descriptor, 0 where broadcast)."""
    ia, ib = a, b
    for axis in range(4, -1, -1):
        i = row % g[BINARY.shape0 + axis]
        row //= g[BINARY.shape0 + axis]
        ia += i * g[BINARY.a_stride0 + axis]
        ib += i * g[BINARY.b_stride0 + axis]
    return ia, ib


@njit(cache=True, error_model="numpy")   # IEEE division: x / 0 is Inf or NaN, as in ONNX
def binary(m, g, a_code, b_code, d_code):
    mf, mu, mb, ms = m
    a, b, o = g[BINARY.a] // _size(a_code), g[BINARY.b] // _size(b_code), g[BINARY.dst] // _size(d_code)
    op = g[BINARY.op]
    n, sa, sb = g[BINARY.shape5], g[BINARY.a_stride5], g[BINARY.b_stride5]   # the innermost axis: length, strides
    f32 = a_code == b_code == d_code == FP32
    for row in range(g[BINARY.shape0] * g[BINARY.shape1] * g[BINARY.shape2] * g[BINARY.shape3] * g[BINARY.shape4]):
        ia, ib = _row_starts(g, a, b, row)
        if f32 and op == ADD:                       # the common case, without per-element type dispatch
            for i in range(n):
                mf[o + i] = mf[ia + i * sa] + mf[ib + i * sb]
            o += n
            continue
        for i in range(n):
            x, y = _ld(mf, mu, ia + i * sa, a_code), _ld(mf, mu, ib + i * sb, b_code)
            if op == ADD:
                _st(mf, mu, o, d_code, x + y)
            elif op == SUB:
                _st(mf, mu, o, d_code, x - y)
            elif op == MUL:
                _st(mf, mu, o, d_code, x * y)
            elif op == DIV:
                _st(mf, mu, o, d_code, x / y)
            else:
                _st(mf, mu, o, d_code, _binary_math(op, x, y))
            o += 1


@njit(cache=True)
def _binary_math(op, x, y):
    """Pow (the C library's float64 pow of the fp32 operands, C99's special cases, rounded once to fp32),
    Min and Max (NaN if either operand is NaN; on equal operands, the first, as onnxruntime)."""
    if op == POW:
        return np.float32(math.pow(np.float64(x), np.float64(y)))
    if x != x or y != y:
        return x + y
    if op == MIN:
        return y if y < x else x
    return y if y > x else x


@njit(cache=True)
def qbinary(m, g, fl, code):
    """QLinearAdd (X = a: two FMAs and the contracted constant, as MLAS's AVX2 kernel) or QLinearMul
    (exact integer product, float32 scale, zero point added before rounding), saturated, on 8-bit
    codes of one type (descriptor a_zp, b_zp, y_zp: the zero points)."""
    mf, mu, mb, ms = m
    a, b, o, op = g[BINARY.a], g[BINARY.b], g[BINARY.dst], g[BINARY.op]   # 8-bit codes: byte = element
    n, sa, sb = g[BINARY.shape5], g[BINARY.a_stride5], g[BINARY.b_stride5]
    za, zb, zc = g[BINARY.a_zp], g[BINARY.b_zp], g[BINARY.y_zp]
    rx, ry = np.float32(fl[BINARY_F.a_ratio]), np.float32(fl[BINARY_F.b_ratio])
    ratio = np.float32(fl[BINARY_F.product_ratio])
    fixed = np.float32(zc) - _fma(rx, np.float32(za), ry * np.float32(zb))
    for row in range(g[BINARY.shape0] * g[BINARY.shape1] * g[BINARY.shape2] * g[BINARY.shape3] * g[BINARY.shape4]):
        ia, ib = _row_starts(g, a, b, row)
        for i in range(n):
            x, y = _ldi(mb, ms, ia + i * sa, code), _ldi(mb, ms, ib + i * sb, code)
            if op == ADD:
                v = _fma(np.float32(x), rx, _fma(np.float32(y), ry, fixed))
            else:
                v = np.float32(np.float32((x - za) * (y - zb)) * ratio) + np.float32(zc)
            _sti(mb, ms, o, code, _saturate(_rne_i32(v), code))
            o += 1


@njit(cache=True)
def relu(m, g, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[RELU.src] // _size(s_code), g[RELU.dst] // _size(d_code)
    for j in range(g[RELU.n]):
        _st(mf, mu, dst + j, d_code, max(_ld(mf, mu, src + j, s_code), np.float32(0.0)))


@njit(cache=True)
def copy(m, g, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[COPY.src] // _size(s_code), g[COPY.dst] // _size(d_code)
    codes = _size(s_code) == 1 and _size(d_code) == 1
    ss, ds, n5 = g[COPY.src_stride5], g[COPY.dst_stride5], g[COPY.shape5]    # the innermost axis
    for i0 in range(g[COPY.shape0]):
        for i1 in range(g[COPY.shape1]):
            for i2 in range(g[COPY.shape2]):
                for i3 in range(g[COPY.shape3]):
                    for i4 in range(g[COPY.shape4]):
                        s = src + i0 * g[COPY.src_stride0] + i1 * g[COPY.src_stride1] + i2 * g[COPY.src_stride2] \
                            + i3 * g[COPY.src_stride3] + i4 * g[COPY.src_stride4]
                        d = dst + i0 * g[COPY.dst_stride0] + i1 * g[COPY.dst_stride1] + i2 * g[COPY.dst_stride2] \
                            + i3 * g[COPY.dst_stride3] + i4 * g[COPY.dst_stride4]
                        if codes:                    # 8-bit codes move as bytes
                            for i5 in range(n5):
                                mb[d + i5 * ds] = mb[s + i5 * ss]
                            continue
                        if s_code == INT32:          # Cast int32 -> fp32: round half to even
                            for i5 in range(n5):
                                _st(mf, mu, d + i5 * ds, d_code, np.float32(ms[s + i5 * ss]))
                            continue
                        for i5 in range(n5):
                            _st(mf, mu, d + i5 * ds, d_code, _ld(mf, mu, s + i5 * ss, s_code))


@njit(cache=True)
def pool(m, g, is_max, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst, planes = g[POOL.src] // _size(s_code), g[POOL.dst] // _size(d_code), g[POOL.planes]
    H, W, OH, OW, kh, kw = g[POOL.h], g[POOL.w], g[POOL.oh], g[POOL.ow], g[POOL.kh], g[POOL.kw]
    sh, sw, pt, pl, pb, pr = g[POOL.sh], g[POOL.sw], g[POOL.pt], g[POOL.pl], g[POOL.pb], g[POOL.pr]
    cip = g[POOL.count_include_pad]
    codes = is_max and _size(s_code) == 1          # maxpool on 8-bit codes (averages: qavgpool)
    for p in range(planes):
        base = src + p * H * W
        for oh in range(OH):
            h0 = oh * sh - pt
            for ow in range(OW):
                w0 = ow * sw - pl
                acc = -np.inf if is_max else 0.0
                count = 0
                for i in range(h0, h0 + kh):
                    for j in range(w0, w0 + kw):
                        if i >= 0 and i < H and j >= 0 and j < W:
                            # max of 8-bit codes: exact as float32
                            v = np.float32(_ldi(mb, ms, base + i * W + j, s_code)) if codes else \
                                _ld(mf, mu, base + i * W + j, s_code)
                            count += 1
                            if is_max:
                                acc = max(acc, v)
                            else:
                                acc += v
                if not is_max:
                    if cip == 1:  # window clipped to the padded input, as ONNX Runtime does
                        count = (min(h0 + kh, H + pb) - h0) * (min(w0 + kw, W + pr) - w0)
                    acc = acc / count
                if codes:
                    _sti(mb, ms, dst + (p * OH + oh) * OW + ow, d_code, np.int64(acc))
                else:
                    _st(mf, mu, dst + (p * OH + oh) * OW + ow, d_code, acc)


@njit(cache=True)
def qavgpool(m, g, fl, code):
    """Average pooling on 8-bit codes: QLinearAveragePool (dequantised float32 window sum in
    row-major order, / count (the kernel size with count_include_pad, else the taps inside), then
    zero point added before rounding) or, over a whole plane without pads, QLinearGlobalAveragePool
    (integer sum - x_zp * count, requantised with x_scale / (y_scale * count))."""
    mf, mu, mb, ms = m
    src, dst, planes = g[POOL.src], g[POOL.dst], g[POOL.planes]   # 8-bit codes: byte = element
    H, W, OH, OW, kh, kw = g[POOL.h], g[POOL.w], g[POOL.oh], g[POOL.ow], g[POOL.kh], g[POOL.kw]
    sh, sw, pt, pl, cip = g[POOL.sh], g[POOL.sw], g[POOL.pt], g[POOL.pl], g[POOL.count_include_pad]
    zx, zy, is_global = g[POOL.x_zp], g[POOL.y_zp], g[POOL.is_global]
    xs, ys = np.float32(fl[POOL_F.x_scale]), np.float32(fl[POOL_F.y_scale])
    global_scale = np.float32(fl[POOL_F.global_scale])
    for p in range(planes):
        base = src + p * H * W
        for oh in range(OH):
            h0 = oh * sh - pt
            for ow in range(OW):
                w0 = ow * sw - pl
                total = np.float32(0.0)
                isum = np.int64(0)
                count = 0
                for i in range(max(h0, 0), min(h0 + kh, H)):
                    for j in range(max(w0, 0), min(w0 + kw, W)):
                        q = _ldi(mb, ms, base + i * W + j, code)
                        isum += q
                        total += np.float32(q - zx) * xs
                        count += 1
                d = dst + (p * OH + oh) * OW + ow
                if is_global:
                    acc = np.int32(((isum - zx * count + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31)
                    _sti(mb, ms, d, code, _requantize(acc, global_scale, zy, code))
                else:
                    avg = total / np.float32(kh * kw if cip == 1 else count)
                    _sti(mb, ms, d, code, _saturate(_rne_i32(np.float32(avg / ys) + np.float32(zy)), code))


@njit(cache=True)
def affine(m, g, s_code, scale_code, shift_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[AFFINE.src] // _size(s_code), g[AFFINE.dst] // _size(d_code)
    scale, shift = g[AFFINE.scale] // _size(scale_code), g[AFFINE.shift] // _size(shift_code)
    N, C, HW = g[AFFINE.n], g[AFFINE.c], g[AFFINE.hw]
    for n in range(N):
        for c in range(C):
            s, t = _ld(mf, mu, scale + c, scale_code), _ld(mf, mu, shift + c, shift_code)
            base = (n * C + c) * HW
            for i in range(HW):
                _st(mf, mu, dst + base + i, d_code, _ld(mf, mu, src + base + i, s_code) * s + t)


@njit(cache=True)
def lrn(m, g, fl, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[LRN.src] // _size(s_code), g[LRN.dst] // _size(d_code)
    N, C, HW, size = g[LRN.n], g[LRN.c], g[LRN.hw], g[LRN.size]
    alpha, beta, bias = fl[LRN_F.alpha], fl[LRN_F.beta], fl[LRN_F.bias]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for n in range(N):
        for c in range(C):
            for i in range(HW):
                sq = np.float32(0.0)
                for cc in range(max(0, c - lo), min(C, c + hi + 1)):
                    v = _ld(mf, mu, src + (n * C + cc) * HW + i, s_code)
                    sq += v * v
                x = _ld(mf, mu, src + (n * C + c) * HW + i, s_code)
                _st(mf, mu, dst + (n * C + c) * HW + i, d_code, x / (bias + alpha / size * sq) ** beta)


@njit(cache=True)
def softmax(m, g, s_code, d_code):
    """exp(x - max) / sum, each exp rounded to fp32; the quotient is rounded once to the
    destination type (no intermediate is stored)."""
    mf, mu, mb, ms = m
    src, dst = g[SOFTMAX.src] // _size(s_code), g[SOFTMAX.dst] // _size(d_code)
    outer, L, inner = g[SOFTMAX.outer], g[SOFTMAX.axis_len], g[SOFTMAX.inner]
    for o in range(outer):
        for i in range(inner):
            base = o * L * inner + i
            mx = -np.inf
            for l in range(L):
                mx = max(mx, _ld(mf, mu, src + base + l * inner, s_code))
            total = np.float32(0.0)
            for l in range(L):
                total += np.float32(math.exp(_ld(mf, mu, src + base + l * inner, s_code) - mx))
            for l in range(L):
                e = np.float32(math.exp(_ld(mf, mu, src + base + l * inner, s_code) - mx))
                _st(mf, mu, dst + base + l * inner, d_code, e / total)


@njit(cache=True)
def qsoftmax(m, g, fl, code):
    """QLinearSoftmax on 8-bit codes: e from the fp32 table at x - max + 255 (int8: + 127,
    wrapped), a sequential float32 sum, rne(double(e) * floor(F(1 / y_scale)) / sum) + y_zp,
    saturated (the quotient in double, as onnxruntime)."""
    mf, mu, mb, ms = m
    src, dst = g[SOFTMAX.src], g[SOFTMAX.dst]   # 8-bit codes: byte = element
    outer, L, inner = g[SOFTMAX.outer], g[SOFTMAX.axis_len], g[SOFTMAX.inner]
    table, y_zp, c = g[SOFTMAX.table] // 4, g[SOFTMAX.y_zp], np.float64(fl[SOFTMAX_F.inv_y_scale])
    f = m[0]
    for o in range(outer):
        for i in range(inner):
            base = o * L * inner + i
            top = np.int64(-256)
            for l in range(L):
                top = max(top, _ldi(mb, ms, src + base + l * inner, code))
            total = np.float32(0.0)
            for l in range(L):
                q = _ldi(mb, ms, src + base + l * inner, code)
                total += f[table + ((q - top + 127) & 0xFF if code == INT8 else q - top + 255)]
            for l in range(L):
                q = _ldi(mb, ms, src + base + l * inner, code)
                e = f[table + ((q - top + 127) & 0xFF if code == INT8 else q - top + 255)]
                r = np.rint(np.float64(e) * c / np.float64(total))
                _sti(mb, ms, dst + base + l * inner, code, _saturate(np.int64(min(r, 2.0 ** 40)) + y_zp, code))


@njit(cache=True)
def quantize(m, g, is_quantize, s_code, d_code):
    """QuantizeLinear (rne(clamp(F(x / scale), qmin - zp, qmax - zp)) + zp; NaN -> qmin) or
    DequantizeLinear (F(float(q - zp) * scale)), per tensor or along an axis."""
    mf, mu, mb, ms = m
    src, dst = g[QUANTIZE.src] // _size(s_code), g[QUANTIZE.dst] // _size(d_code)
    outer, C, inner = g[QUANTIZE.outer], g[QUANTIZE.c], g[QUANTIZE.inner]
    scale, zp = g[QUANTIZE.scale] // 4, g[QUANTIZE.zero_point] // 4
    for o in range(outer):
        for c in range(C):
            s, z = mf[scale + c], np.int64(ms[zp + c])
            base = (o * C + c) * inner
            for i in range(inner):
                if is_quantize:
                    lo, hi = _qrange(d_code)
                    v = _ld(mf, mu, src + base + i, s_code) / s
                    v = v if v > np.float32(lo - z) else np.float32(lo - z)   # maxps: NaN gives the bound
                    v = v if v < np.float32(hi - z) else np.float32(hi - z)
                    _sti(mb, ms, dst + base + i, d_code, np.int64(np.rint(v)) + z)
                else:
                    _st(mf, mu, dst + base + i, d_code, np.float32(_ldi(mb, ms, src + base + i, s_code) - z) * s)


@njit(cache=True)
def dynamic_quantize(m, g):
    """DynamicQuantizeLinear (docs/int8_datapath.md section 9.3): the range of x widened to hold 0,
    scale = F(F(hi - lo) / 255) (1 when the range is empty), zero point = rne(clamp(F(0 - F(lo /
    scale)), 0, 255)) (a NaN gives 255, as std::min(255, NaN)), then QuantizeLinear to uint8. The
    scale (fp32) and zero point (int32) are written for the layers that use them. A NaN in x is
    skipped by the range (onnxruntime's vector min/max treats NaN by lane; not modelled)."""
    mf, mu, mb, ms = m
    src, dst, n = g[DYNAMIC_QUANTIZE.src] // 4, g[DYNAMIC_QUANTIZE.dst], g[DYNAMIC_QUANTIZE.n]
    scale_at, zp_at = g[DYNAMIC_QUANTIZE.scale] // 4, g[DYNAMIC_QUANTIZE.zero_point] // 4
    lo, hi = np.float32(0.0), np.float32(0.0)
    for i in range(n):
        v = mf[src + i]
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    scale = np.float32(1.0) if hi == lo else np.float32(np.float32(hi - lo) / np.float32(255.0))
    zp0 = np.float32(np.float32(0.0) - np.float32(lo / scale))
    zp0 = zp0 if zp0 < np.float32(255.0) else np.float32(255.0)
    zp0 = zp0 if np.float32(0.0) < zp0 else np.float32(0.0)
    zp = np.int64(np.rint(zp0))
    mf[scale_at] = scale
    ms[zp_at] = zp
    for i in range(n):
        v = mf[src + i] / scale
        v = v if v > np.float32(-zp) else np.float32(-zp)           # maxps: NaN gives the bound
        v = v if v < np.float32(255 - zp) else np.float32(255 - zp)
        mb[dst + i] = np.uint8(np.int64(np.rint(v)) + zp)


@njit(cache=True, error_model="numpy")   # IEEE division: x / 0 is Inf or NaN, as in ONNX
def _unary_value(op, x, alpha, beta):
    """One vec_unary function (UNARY_OPS) of the fp32 value x, as fp32. Arithmetic in fp32, each
    operation rounded (no FMA); the transcendental ones evaluated in float64 by the C library (Numba's
    math functions call libm, as Python's math module does) and rounded once to fp32, so within
    an ulp of the correctly rounded value. alpha, beta: hard_sigmoid's, or clip's min and max (fp32)."""
    v = np.float64(x)
    if op == U_ERF:
        return np.float32(math.erf(v))
    if op == U_TANH:
        return np.float32(math.tanh(v))
    if op == U_SIGMOID:
        return np.float32(1.0 / (1.0 + math.exp(-v)))
    if op == U_EXP:
        return np.float32(math.exp(v))
    if op == U_LOG:
        return np.float32(math.log(v))
    if op == U_SQRT:                            # correctly rounded: a double sqrt rounded to fp32 is
        return np.float32(math.sqrt(v))         # (53 >= 2 x 24 + 2 bits)
    if op == U_RECIPROCAL:
        return np.float32(1.0) / x
    if op == U_NEG:
        return -x
    if op == U_ABS:
        return abs(x)
    if op == U_GELU:                            # x/2 (1 + erf(x/sqrt 2)) = x/2 erfc(-x/sqrt 2): no cancellation
        return np.float32(0.5 * v * math.erfc(-v * SQRT_HALF))
    if op == U_GELU_TANH:                       # x/2 (1 + tanh u) = x / (1 + exp(-2u))
        u = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)
        return np.float32(v / (1.0 + math.exp(-2.0 * u)))
    if op == U_HARD_SIGMOID or op == U_HARD_SWISH:
        t = np.float32(np.float32(alpha) * x) + np.float32(beta)
        t = np.float32(0.0) if t < 0 else (np.float32(1.0) if t > 1 else t)    # NaN stays NaN
        return t if op == U_HARD_SIGMOID else x * t
    if op == U_CLIP:
        t = np.float32(alpha) if x < np.float32(alpha) else x                   # NaN stays NaN
        return np.float32(beta) if t > np.float32(beta) else t
    if op == U_ROUND_FP16:
        return fp16_to_f32(f32_to_fp16(x))
    return bf16_to_f32(f32_to_bf16(x))


@njit(cache=True, error_model="numpy")   # IEEE division: x / 0 is Inf or NaN, as in ONNX
def unary(m, g, fl, s_code, d_code):
    """vec_unary: y = f(x) elementwise (_unary_value), rounded once to the destination type."""
    mf, mu, mb, ms = m
    src, dst, op = g[UNARY.src] // _size(s_code), g[UNARY.dst] // _size(d_code), g[UNARY.op]
    alpha, beta = fl[UNARY_F.alpha], fl[UNARY_F.beta]
    for j in range(g[UNARY.n]):
        _st(mf, mu, dst + j, d_code, _unary_value(op, _ld(mf, mu, src + j, s_code), alpha, beta))


@njit(cache=True)
def reduce(m, g, s_code, d_code):
    """vec_reduce: each output (the kept axes shape0..5, row-major; source strides stride0..5) is the
    sum, mean or max of its rshape0..5 block (source strides rstride0..5), read in row-major order:
    the sum in fp32 from +0, one element at a time; the mean that sum / F(count); the max NaN if any
    element is NaN."""
    mf, mu, mb, ms = m
    src, dst, op = g[REDUCE.src] // _size(s_code), g[REDUCE.dst] // _size(d_code), g[REDUCE.op]
    r0, r1, r2, r3, r4, r5 = (g[REDUCE.rshape0], g[REDUCE.rshape1], g[REDUCE.rshape2], g[REDUCE.rshape3],
                              g[REDUCE.rshape4], g[REDUCE.rshape5])
    t0, t1, t2, t3, t4, t5 = (g[REDUCE.rstride0], g[REDUCE.rstride1], g[REDUCE.rstride2], g[REDUCE.rstride3],
                              g[REDUCE.rstride4], g[REDUCE.rstride5])
    count = np.float32(r0 * r1 * r2 * r3 * r4 * r5)
    outputs = 1
    for axis in range(6):
        outputs *= g[REDUCE.shape0 + axis]
    for o in range(outputs):
        base, rest = src, o
        for axis in range(5, -1, -1):
            base += (rest % g[REDUCE.shape0 + axis]) * g[REDUCE.stride0 + axis]
            rest //= g[REDUCE.shape0 + axis]
        acc = np.float32(-np.inf) if op == R_MAX else np.float32(0.0)
        for i0 in range(r0):
            for i1 in range(r1):
                for i2 in range(r2):
                    for i3 in range(r3):
                        for i4 in range(r4):
                            at = base + i0 * t0 + i1 * t1 + i2 * t2 + i3 * t3 + i4 * t4
                            for i5 in range(r5):
                                v = _ld(mf, mu, at + i5 * t5, s_code)
                                if op != R_MAX:
                                    acc += v
                                elif acc == acc and (v > acc or v != v):    # a NaN, once met, stays
                                    acc = v
        _st(mf, mu, dst + o, d_code, acc / count if op == R_MEAN else acc)


@njit(cache=True, error_model="numpy")   # IEEE division: x / 0 is Inf or NaN, as in ONNX
def layernorm(m, g, fl, s_code, c_code, b_code, d_code):
    """vec_layernorm (LayerNormalization over rows of n elements; the ONNX function's arithmetic, in
    fp32 with each operation rounded): mean = (sum of x) / F(n); var = (sum of (x - mean)^2) / F(n),
    each sum from +0 in row order; std = sqrt(var + epsilon); y = (x - mean) / std * scale + bias
    (no bias where desc.bias < 0), rounded once to the destination type."""
    mf, mu, mb, ms = m
    src, dst, n = g[LAYERNORM.src] // _size(s_code), g[LAYERNORM.dst] // _size(d_code), g[LAYERNORM.n]
    scale, bias = g[LAYERNORM.scale] // _size(c_code), g[LAYERNORM.bias]
    bias = bias // _size(b_code) if bias >= 0 else -1
    epsilon, count = np.float32(fl[LAYERNORM_F.epsilon]), np.float32(n)
    for r in range(g[LAYERNORM.rows]):
        x = src + r * n
        total = np.float32(0.0)
        for h in range(n):
            total += _ld(mf, mu, x + h, s_code)
        mean = total / count
        total = np.float32(0.0)
        for h in range(n):
            d = _ld(mf, mu, x + h, s_code) - mean
            total += d * d
        std = np.float32(math.sqrt(np.float64(total / count + epsilon)))
        for h in range(n):
            y = (_ld(mf, mu, x + h, s_code) - mean) / std * _ld(mf, mu, scale + h, c_code)
            if bias >= 0:
                y += _ld(mf, mu, bias + h, b_code)
            _st(mf, mu, dst + r * n + h, d_code, y)


@njit(cache=True)
def _scratch(nbytes):
    """A zeroed byte buffer of at least `nbytes` (whole words) as a memory: its four typed views."""
    raw = np.zeros((nbytes + 3) // 4 * 4, np.uint8)
    return raw.view(np.float32), raw.view(np.uint16), raw, raw.view(np.int32)


@njit(cache=True)
def gemm_tile(m, desc, m0, tm, n0, tn, x_code, w_code, out_code):
    """Output rows m0..m0+tm, columns n0..n0+tn of every group of a conv/GEMM layer, DRAM to DRAM
    (memory m): each group's [K, tn] weights, then per run of rows the im2col rows over the whole K,
    the bias, the accumulation in increasing k and store_tile's epilogue, in scratch the kernel
    allocates (what a target stages on chip is its timing model's, not this memory's). The same
    datapath as load_im2col + matmul + store_tile over K tiles in increasing order: the same bits."""
    g = desc.copy()
    K, ng = g[CONV.cin_g] * g[CONV.kh] * g[CONV.kw], g[CONV.ng]
    if tm <= 0 or tn <= 0 or ng <= 0:
        return
    groups = g[CONV.cout] // ng
    integer = g[CONV.requant] != REQ_FLOAT
    rows = max(1, min(tm, GEMM_TILE_ELEMENTS // max(K, 1)))
    wm = _scratch(K * tn * _size(w_code))
    am = _scratch(rows * K * _size(x_code))
    accm = _scratch(rows * tn * 4)
    for group in range(groups):
        g[CONV.cin_off], g[CONV.cout_off] = group * g[CONV.cin_g], group * ng
        w = g[CONV.weights] // _size(w_code) + group * K * ng + n0
        for k in range(K):
            _move(m, w + k * ng, w_code, wm, k * tn, w_code, tn)
        for r0 in range(m0, m0 + tm, rows):
            tr = min(rows, m0 + tm - r0)
            load_im2col(m, g, r0, tr, 0, K, x_code, am, 0, x_code)
            bias = g[CONV.bias] // 4 + g[CONV.cout_off] + n0
            for i in range(tr):
                for j in range(tn):
                    if g[CONV.bias] < 0:
                        accm[3][i * tn + j] = 0
                    elif integer:
                        accm[3][i * tn + j] = m[3][bias + j]
                    else:
                        accm[0][i * tn + j] = m[0][bias + j]
            if integer:
                matmul_int(am, 0, wm, 0, accm[3], 0, tr, K, tn, g, m, n0)
                store_tile_int(m, g, accm[3], 0, r0, tr, n0, tn, out_code)
            else:
                matmul(am, 0, x_code, wm, 0, w_code, accm[0], 0, tr, K, tn)
                store_tile(m, g, accm[0], 0, r0, tr, n0, tn, out_code)


@njit(cache=True)
def execute(opcode, operands, desc_int, desc_float, memories, memory_codes, at):
    """Run every instruction in program order (dependencies are satisfied by construction).
    memories: per memory id (Program.memories), the (float32, uint16, uint8, int32) views of its
    byte buffer (sim/run.py memory_views; lengths multiples of 4); memory_codes: per memory id, the
    DTYPE_CODE of its elements (-1: DRAM, where instructions name them). On float layers the matrix
    operands have their memory's type; an integer layer's descriptor names its codes. at[0] holds
    the row being executed, so a caller that catches an error the kernels raise (an index out of
    bounds, under `bounds_checked_execute`) can name it. Returns -1, or the row of an unknown
    opcode, where it stopped."""
    for i in range(len(opcode)):
        op, a = opcode[i], operands[i]
        at[0] = i
        if op < 0 or op >= N_OPCODES:
            return i
        if op == OPCODE.load_im2col:
            load_im2col(memories[IM2COL_X], desc_int[a[IM2COL.desc]], a[IM2COL.m0], a[IM2COL.tm], a[IM2COL.k0],
                        a[IM2COL.tk], a[IM2COL.src_dtype], memories[IM2COL_DST], a[IM2COL.dst],
                        memory_codes[IM2COL_DST])
        elif op == OPCODE.load_weights:
            sm, dm = memories[WEIGHTS_SRC], memories[WEIGHTS_DST]
            tk, tn, stride = a[WEIGHTS.tk], a[WEIGHTS.tn], a[WEIGHTS.src_row_elems]
            s_code, d_code = a[WEIGHTS.src_dtype], memory_codes[WEIGHTS_DST]
            s, d = a[WEIGHTS.src] // _size(s_code), a[WEIGHTS.dst] // _size(d_code)
            for k in range(tk):
                if s_code == d_code == FP32:    # the common case, on fp32 views (via _move: 2x slower)
                    dm[0][d + k * tn: d + (k + 1) * tn] = sm[0][s + k * stride: s + k * stride + tn]
                else:
                    _move(sm, s + k * stride, s_code, dm, d + k * tn, d_code, tn)
        elif op == OPCODE.load_bias:
            sm, dm = memories[BIAS_SRC], memories[BIAS_DST]
            src, tm, tn, s_code = a[BIAS.src], a[BIAS.tm], a[BIAS.tn], a[BIAS.src_dtype]
            d_code = memory_codes[BIAS_DST]
            dst = a[BIAS.dst] // _size(d_code)  # an accumulator: 4-byte elements (fp32 or int32)
            if src < 0:
                dm[3][dst:dst + tm * tn] = 0
            else:
                for mm in range(tm):
                    _move(sm, src // _size(s_code), s_code, dm, dst + mm * tn, d_code, tn)
        elif op == OPCODE.matmul:
            g = desc_int[a[MATMUL.desc]]
            am, wm, accm = memories[MATMUL_A], memories[MATMUL_W], memories[MATMUL_ACC]
            tm, tk, tn = a[MATMUL.tm], a[MATMUL.tk], a[MATMUL.tn]
            if g[CONV.requant] == REQ_FLOAT:
                matmul(am, a[MATMUL.a], memory_codes[MATMUL_A], wm, a[MATMUL.w], memory_codes[MATMUL_W],
                       accm[0], a[MATMUL.acc], tm, tk, tn)
            else:
                matmul_int(am, a[MATMUL.a], wm, a[MATMUL.w], accm[3], a[MATMUL.acc], tm, tk, tn, g,
                           memories[MATMUL_DESC], a[MATMUL.n0])
        elif op == OPCODE.store_tile:
            g = desc_int[a[STORE.desc]]
            m, accm = memories[STORE_OUT], memories[STORE_ACC]
            if g[CONV.requant] == REQ_FLOAT:
                store_tile(m, g, accm[0], a[STORE.acc], a[STORE.m0], a[STORE.tm], a[STORE.n0], a[STORE.tn],
                           a[STORE.dst_dtype])
            else:
                store_tile_int(m, g, accm[3], a[STORE.acc], a[STORE.m0], a[STORE.tm], a[STORE.n0], a[STORE.tn],
                               a[STORE.dst_dtype])
        elif op == OPCODE.gemm_tile:
            gemm_tile(memories[GEMM_TILE_MEMORY], desc_int[a[GEMM_TILE.desc]], a[GEMM_TILE.m0], a[GEMM_TILE.tm],
                      a[GEMM_TILE.n0], a[GEMM_TILE.tn], a[GEMM_TILE.src_dtype], a[GEMM_TILE.w_dtype],
                      a[GEMM_TILE.dst_dtype])
        else:
            _vector(op, a, desc_int, desc_float, memories[VECTOR_MEMORY])
    return -1


@njit(cache=True, inline="always")   # part of execute (compiled apart, it links every vector kernel again)
def _vector(op, a, desc_int, desc_float, m):
    """One vector-unit instruction (operands a) on memory m, which its descriptor addresses."""
    if op == OPCODE.vec_relu:
        relu(m, desc_int[a[V_RELU.desc]], a[V_RELU.src_dtype], a[V_RELU.dst_dtype])
    elif op == OPCODE.vec_binary:
        g, fl = desc_int[a[V_BINARY.desc]], desc_float[a[V_BINARY.desc]]
        if _size(a[V_BINARY.a_dtype]) == 1:         # on 8-bit codes
            qbinary(m, g, fl, a[V_BINARY.a_dtype])
        else:
            binary(m, g, a[V_BINARY.a_dtype], a[V_BINARY.b_dtype], a[V_BINARY.dst_dtype])
    elif op == OPCODE.vec_affine:
        affine(m, desc_int[a[V_AFFINE.desc]], a[V_AFFINE.src_dtype], a[V_AFFINE.scale_dtype], a[V_AFFINE.shift_dtype],
               a[V_AFFINE.dst_dtype])
    elif op == OPCODE.vec_avgpool and _size(a[V_AVGPOOL.src_dtype]) == 1:
        qavgpool(m, desc_int[a[V_AVGPOOL.desc]], desc_float[a[V_AVGPOOL.desc]], a[V_AVGPOOL.src_dtype])
    elif op == OPCODE.vec_maxpool or op == OPCODE.vec_avgpool:
        is_max = op == OPCODE.vec_maxpool     # a run-time flag: a literal True/False compiles pool twice
        if is_max:
            g, s_code, d_code = desc_int[a[V_MAXPOOL.desc]], a[V_MAXPOOL.src_dtype], a[V_MAXPOOL.dst_dtype]
        else:
            g, s_code, d_code = desc_int[a[V_AVGPOOL.desc]], a[V_AVGPOOL.src_dtype], a[V_AVGPOOL.dst_dtype]
        pool(m, g, is_max, s_code, d_code)
    elif op == OPCODE.vec_lrn:
        lrn(m, desc_int[a[V_LRN.desc]], desc_float[a[V_LRN.desc]], a[V_LRN.src_dtype], a[V_LRN.dst_dtype])
    elif op == OPCODE.vec_softmax and _size(a[V_SOFTMAX.src_dtype]) == 1:
        qsoftmax(m, desc_int[a[V_SOFTMAX.desc]], desc_float[a[V_SOFTMAX.desc]], a[V_SOFTMAX.src_dtype])
    elif op == OPCODE.vec_softmax:
        softmax(m, desc_int[a[V_SOFTMAX.desc]], a[V_SOFTMAX.src_dtype], a[V_SOFTMAX.dst_dtype])
    elif op == OPCODE.vec_copy:
        copy(m, desc_int[a[V_COPY.desc]], a[V_COPY.src_dtype], a[V_COPY.dst_dtype])
    elif op == OPCODE.vec_quantize or op == OPCODE.vec_dequantize:
        is_quantize = op == OPCODE.vec_quantize
        if is_quantize:
            g, s_code, d_code = desc_int[a[V_QUANTIZE.desc]], a[V_QUANTIZE.src_dtype], a[V_QUANTIZE.dst_dtype]
        else:
            g, s_code, d_code = desc_int[a[V_DEQUANTIZE.desc]], a[V_DEQUANTIZE.src_dtype], a[V_DEQUANTIZE.dst_dtype]
        quantize(m, g, is_quantize, s_code, d_code)
    elif op == OPCODE.vec_dynamic_quantize:
        dynamic_quantize(m, desc_int[a[V_DYNAMIC_QUANTIZE.desc]])
    elif op == OPCODE.vec_unary:
        unary(m, desc_int[a[V_UNARY.desc]], desc_float[a[V_UNARY.desc]], a[V_UNARY.src_dtype], a[V_UNARY.dst_dtype])
    elif op == OPCODE.vec_reduce:
        reduce(m, desc_int[a[V_REDUCE.desc]], a[V_REDUCE.src_dtype], a[V_REDUCE.dst_dtype])
    elif op == OPCODE.vec_layernorm:
        layernorm(m, desc_int[a[V_LAYERNORM.desc]], desc_float[a[V_LAYERNORM.desc]], a[V_LAYERNORM.src_dtype],
                  a[V_LAYERNORM.scale_dtype], a[V_LAYERNORM.bias_dtype], a[V_LAYERNORM.dst_dtype])
    elif op == OPCODE.vec_lookup:
        g = desc_int[a[V_LOOKUP.desc]]
        src, dst, table = g[LOOKUP.src], g[LOOKUP.dst], g[LOOKUP.table]   # 8-bit codes: byte = element
        for j in range(g[LOOKUP.n]):
            m[2][dst + j] = m[2][table + np.int64(m[2][src + j])]


@njit(cache=True)
def _layout():
    """The fingerprint of the layout tables this module's cached code was compiled with."""
    return LAYOUT


@functools.cache
def executor(boundscheck: bool = False):
    """`execute` (with boundscheck: `bounds_checked_execute()`), its Numba cache first made fresh for
    the current layout tables (compiler/numba_cache.py)."""
    if boundscheck:
        return bounds_checked_execute()
    numba_cache.refresh(globals())
    return execute


@functools.cache
def bounds_checked_execute():
    """`execute` and every kernel it calls compiled again with bounds checking (Numba's boundscheck:
    an index outside an array raises IndexError; slices clip, as in NumPy), for the simulator's
    debug mode. Separate dispatchers over copies of the functions, cached on disk under their own
    names (Numba's cache key has no compile flags), so the normal kernels and their cache are
    untouched."""
    namespace = dict(globals())
    for name, kernel in globals().items():
        if isinstance(kernel, Dispatcher) and kernel.py_func.__module__ == __name__:
            f = kernel.py_func
            copy = FunctionType(f.__code__, namespace, f.__name__, f.__defaults__, f.__closure__)
            copy.__qualname__ = f"{f.__qualname__}_boundscheck"
            options = {key: value for key, value in kernel.targetoptions.items() if key in ("inline", "error_model")}
            namespace[name] = njit(cache=True, boundscheck=True, **options)(copy)
    numba_cache.refresh(namespace)
    return namespace["execute"]


@njit(cache=True)
def schedule(engine, cycles, dep_ptr, dep_idx, n_engines):
    """Event-driven timing: each engine issues in program order; an instruction starts when
    its engine is free and all its predecessors have finished."""
    n = len(engine)
    start = np.zeros(n, np.int64)
    finish = np.zeros(n, np.int64)
    free = np.zeros(n_engines, np.int64)
    for i in range(n):
        t = free[engine[i]]
        for d in range(dep_ptr[i], dep_ptr[i + 1]):
            t = max(t, finish[dep_idx[d]])
        start[i] = t
        finish[i] = t + cycles[i]
        free[engine[i]] = finish[i]
    return start, finish

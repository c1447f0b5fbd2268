"""Numba kernels that execute a Program's instructions on simulated memories.

`execute` walks the instruction table in order and dispatches on opcode. Every
memory (the DRAM image, the scratchpads, the accumulator) is a byte buffer; a
kernel reads and writes it through typed views (a memory is the tuple of its
float32, uint16, uint8 and int32 views, made once per run), and Program addresses
are bytes, converted to element indices with the element size of what they access.

The defined datapath (DESIGN principle 4):
  * Element types: fp32, and bf16/fp16 stored as 16-bit patterns. Narrow values
    widen to fp32 exactly; fp32 results narrow with round-to-nearest-even (bf16:
    the upper half of the fp32 pattern after RNE on the lower half, overflow to
    Inf; fp16: IEEE binary16, overflow to Inf, subnormals kept) and NaN stays a
    quiet NaN. compiler/numerics.py is the same in NumPy.
  * Moves convert: a load or store between memories of different types goes
    through fp32 (an im2col load of bf16 activations into an fp16 scratchpad
    rounds once, to fp16).
  * GEMM accumulation order: every output starts from its bias (or 0) in the fp32
    accumulator and adds a[m,k]*w[k,n] products one k at a time in increasing k,
    each product rounded to fp32 before the add (no FMA). A product of two 16-bit
    floats is exact in fp32 unless it over- or underflows. The order does not
    depend on tiling, so every array size and dataflow yields the same bits. A
    stored tile is rounded once, from fp32 to the output type.
  * Vector unit: reads its operands as fp32, computes exactly as the fp32
    datapath does, and rounds each result once to the destination type.
sim/reference.py defines the same in NumPy.

The integer datapath (docs/int8_datapath.md, onnxruntime's arithmetic; checked bit for
bit against onnxruntime in tests/e2e/test_int8_models.py):
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

# opcode ids, in compiler.program.OPCODES order (checked by tests/sim/test_kernels.py)
LOAD_IM2COL, LOAD_WEIGHTS, LOAD_BIAS, MATMUL, STORE_TILE = 0, 1, 2, 3, 4
VEC_RELU, VEC_BINARY, VEC_AFFINE, VEC_MAXPOOL, VEC_AVGPOOL, VEC_LRN, VEC_SOFTMAX, VEC_COPY = range(5, 13)
VEC_QUANTIZE, VEC_DEQUANTIZE, VEC_LOOKUP, VEC_DYNAMIC_QUANTIZE = 13, 14, 15, 16
# element type codes, as compiler.program.DTYPE_CODE (checked by tests/sim/test_numerics.py)
FP32, FP16, BF16, INT8, UINT8, INT16, INT32 = 0, 1, 2, 3, 4, 5, 6
# GEMM descriptor fields of the integer datapath (compiler.program.CONV_FIELDS) and REQUANT_ID
COUT_OFF, REQUANT, X_ZP, W_ZP, Y_ZP, SCALE, X_CODE, W_CODE, X_ZP_ADDR = 19, 21, 22, 23, 24, 25, 26, 27, 28
REQ_FLOAT, REQ_CODES, REQ_INT32, REQ_SCALED, REQ_FIXED = 0, 1, 2, 3, 4


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
    32 bits of the doubled product, rounded half away from zero), then a rounding right shift by
    max(-e, 0) (half away from zero)."""
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
    return np.int64(g[X_ZP]) if g[X_ZP_ADDR] < 0 else np.int64(s[g[X_ZP_ADDR] // 4])


@njit(cache=True)
def load_im2col(sm, g, m0, tm, k0, tk, x_code, dm, dst, a_code):
    """Input scratchpad [tm,tk] at byte dst <- im2col rows m0.., columns k0.. of the conv input
    (padding: 0, or the input zero point for 8-bit codes, which move as bytes)."""
    x, C, H, W = g[0] // _size(x_code), g[2], g[3], g[4]
    kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cin_off = g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[16]
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
    points (columns n0.. of the group, DRAM at g[W_ZP]) sit in the array's column registers."""
    mf, mu, mb, ms = m
    a_tile = _codes(am, a, tm * tk, g[X_CODE], _x_zero_point(m[3], g)).reshape(tm, tk)
    w_tile = _codes(wm, w, tk * tn, g[W_CODE], 0).reshape(tk, tn)
    zp = g[W_ZP] + g[COUT_OFF] + n0             # weight codes: byte address = element index
    for j in range(tn):
        z = np.int32(_ldi(mb, ms, zp + j, g[W_CODE]))
        for k in range(tk):
            w_tile[k, j] -= z
    _accumulate(a_tile, w_tile, acc_i[acc // 4:acc // 4 + tm * tn].reshape(tm, tn), np.empty(tn, np.int32))


@njit(cache=True)
def store_tile(m, g, acc_f, acc, m0, tm, n0, tn, out_code):
    """Accumulator tile (fp32, byte acc) -> the conv output in DRAM, activation applied, rounded once."""
    mf, mu, mb, ms = m
    OH, OW, out, cout, cout_off, act = g[13], g[14], g[17] // _size(out_code), g[18], g[19], g[20]
    P = OH * OW
    acc //= 4
    for mm in range(tm):
        mi = m0 + mm
        n, r = mi // P, mi % P
        for j in range(tn):
            v = acc_f[acc + mm * tn + j]
            if act == 1 and v < 0.0:
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
    OH, OW, out, cout, cout_off, act = g[13], g[14], g[17] // _size(out_code), g[18], g[19], g[20]
    requant, y_zp, scale = g[REQUANT], g[Y_ZP], g[SCALE] // 4
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
                ms[dst] = v
            elif requant == REQ_SCALED:
                mf[dst] = np.float32(v) * mf[scale + c]
            elif requant == REQ_FIXED:
                q = _requantize_fixed_point(v, ms[scale + 2 * c], ms[scale + 2 * c + 1], y_zp, out_code)
                _sti(mb, ms, dst, out_code, max(q, y_zp) if act == 1 else q)
            else:
                q = _requantize(v, mf[scale + c], y_zp, out_code)
                if act == 1 and q < y_zp:
                    q = y_zp
                _sti(mb, ms, dst, out_code, q)


@njit(cache=True)
def _row_starts(g, a, b, row):
    """Element offsets in a and b of the first element of output row `row` of a vec_binary (the
    output's first five axes flattened; strides from the descriptor, 0 where broadcast)."""
    ia, ib = a, b
    for axis in range(4, -1, -1):
        i = row % g[5 + axis]
        row //= g[5 + axis]
        ia += i * g[11 + axis]
        ib += i * g[17 + axis]
    return ia, ib


@njit(cache=True)
def binary(m, g, a_code, b_code, d_code):
    mf, mu, mb, ms = m
    a, b, o, op = g[0] // _size(a_code), g[1] // _size(b_code), g[2] // _size(d_code), g[3]
    n, sa, sb = g[10], g[16], g[22]                 # the innermost axis: length, strides
    f32 = a_code == b_code == d_code == FP32
    for row in range(g[5] * g[6] * g[7] * g[8] * g[9]):
        ia, ib = _row_starts(g, a, b, row)
        if f32 and op == 0:                         # the common case, without per-element type dispatch
            for i in range(n):
                mf[o + i] = mf[ia + i * sa] + mf[ib + i * sb]
            o += n
            continue
        for i in range(n):
            x, y = _ld(mf, mu, ia + i * sa, a_code), _ld(mf, mu, ib + i * sb, b_code)
            if op == 0:
                _st(mf, mu, o, d_code, x + y)
            elif op == 1:
                _st(mf, mu, o, d_code, x - y)
            elif op == 2:
                _st(mf, mu, o, d_code, x * y)
            else:
                _st(mf, mu, o, d_code, x / y)
            o += 1


@njit(cache=True)
def qbinary(m, g, fl, code):
    """QLinearAdd (X = a: two FMAs and the contracted constant, as MLAS's AVX2 kernel) or QLinearMul
    (exact integer product, float32 scale, zero point added before rounding), saturated, on 8-bit
    codes of one type (ints [23:26] zero points of a, b and the output)."""
    mf, mu, mb, ms = m
    a, b, o, op = g[0], g[1], g[2], g[3]       # 8-bit codes: byte addresses are element indices
    n, sa, sb = g[10], g[16], g[22]
    za, zb, zc = g[23], g[24], g[25]
    rx, ry, ratio = np.float32(fl[0]), np.float32(fl[1]), np.float32(fl[0])
    fixed = np.float32(zc) - _fma(rx, np.float32(za), ry * np.float32(zb))
    for row in range(g[5] * g[6] * g[7] * g[8] * g[9]):
        ia, ib = _row_starts(g, a, b, row)
        for i in range(n):
            x, y = _ldi(mb, ms, ia + i * sa, code), _ldi(mb, ms, ib + i * sb, code)
            if op == 0:
                v = _fma(np.float32(x), rx, _fma(np.float32(y), ry, fixed))
            else:
                v = np.float32(np.float32((x - za) * (y - zb)) * ratio) + np.float32(zc)
            _sti(mb, ms, o, code, _saturate(_rne_i32(v), code))
            o += 1


@njit(cache=True)
def relu(m, g, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[0] // _size(s_code), g[1] // _size(d_code)
    for j in range(g[2]):
        _st(mf, mu, dst + j, d_code, max(_ld(mf, mu, src + j, s_code), np.float32(0.0)))


@njit(cache=True)
def copy(m, g, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst = g[0] // _size(s_code), g[1] // _size(d_code)
    codes = _size(s_code) == 1 and _size(d_code) == 1
    for i0 in range(g[2]):
        for i1 in range(g[3]):
            for i2 in range(g[4]):
                for i3 in range(g[5]):
                    for i4 in range(g[6]):
                        s = src + i0 * g[8] + i1 * g[9] + i2 * g[10] + i3 * g[11] + i4 * g[12]
                        d = dst + i0 * g[14] + i1 * g[15] + i2 * g[16] + i3 * g[17] + i4 * g[18]
                        if codes:                    # 8-bit codes move as bytes
                            for i5 in range(g[7]):
                                mb[d + i5 * g[19]] = mb[s + i5 * g[13]]
                            continue
                        if s_code == INT32:          # Cast int32 -> fp32: round half to even
                            for i5 in range(g[7]):
                                _st(mf, mu, d + i5 * g[19], d_code, np.float32(ms[s + i5 * g[13]]))
                            continue
                        for i5 in range(g[7]):
                            _st(mf, mu, d + i5 * g[19], d_code, _ld(mf, mu, s + i5 * g[13], s_code))


@njit(cache=True)
def pool(m, g, is_max, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst, planes, H, W, OH, OW = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4], g[5], g[6]
    kh, kw, sh, sw, pt, pl, cip, pb, pr = g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
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
    src, dst, planes, H, W, OH, OW = g[0], g[1], g[2], g[3], g[4], g[5], g[6]   # byte = element
    kh, kw, sh, sw, pt, pl, cip = g[7], g[8], g[9], g[10], g[11], g[12], g[13]
    zx, zy, is_global = g[16], g[17], g[18]
    xs, ys, global_scale = np.float32(fl[0]), np.float32(fl[1]), np.float32(fl[2])
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
    src, scale, shift = g[0] // _size(s_code), g[1] // _size(scale_code), g[2] // _size(shift_code)
    dst, N, C, HW = g[3] // _size(d_code), g[4], g[5], g[6]
    for n in range(N):
        for c in range(C):
            s, t = _ld(mf, mu, scale + c, scale_code), _ld(mf, mu, shift + c, shift_code)
            base = (n * C + c) * HW
            for i in range(HW):
                _st(mf, mu, dst + base + i, d_code, _ld(mf, mu, src + base + i, s_code) * s + t)


@njit(cache=True)
def lrn(m, g, fl, s_code, d_code):
    mf, mu, mb, ms = m
    src, dst, N, C, HW, size = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4], g[5]
    alpha, beta, bias = fl[0], fl[1], fl[2]
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
    src, dst, outer, L, inner = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4]
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
    src, dst, outer, L, inner = g[0], g[1], g[2], g[3], g[4]   # byte = element
    table, y_zp, c = g[5] // 4, g[6], np.float64(fl[0])
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
    src, dst, outer, C, inner = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4]
    scale, zp = g[5] // 4, g[6] // 4
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
    src, dst, n, scale_at, zp_at = g[0] // 4, g[1], g[2], g[3] // 4, g[4] // 4
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


@njit(cache=True)
def execute(opcode, operands, desc_int, desc_float, dram, spad_in, spad_w, acc, in_code, w_code, at):
    """Run every instruction in program order (dependencies are satisfied by construction).
    Memories arrive as byte buffers (lengths multiples of 4); in_code, w_code: the scratchpads'
    element types on float layers (an integer layer's descriptor names its codes). at[0] holds the
    row being executed, so a caller that catches an error the kernels raise (an index out of bounds,
    under `bounds_checked_execute`) can name it. Returns -1, or the row of an unknown opcode, where
    it stopped."""
    m = (dram.view(np.float32), dram.view(np.uint16), dram, dram.view(np.int32))
    am = (spad_in.view(np.float32), spad_in.view(np.uint16), spad_in, spad_in.view(np.int32))
    wm = (spad_w.view(np.float32), spad_w.view(np.uint16), spad_w, spad_w.view(np.int32))
    acc_m = (acc.view(np.float32), acc.view(np.uint16), acc, acc.view(np.int32))
    f, wf = m[0], wm[0]
    for i in range(len(opcode)):
        op, a = opcode[i], operands[i]
        at[0] = i
        if op < LOAD_IM2COL or op > VEC_DYNAMIC_QUANTIZE:
            return i
        if op == LOAD_IM2COL:
            load_im2col(m, desc_int[a[0]], a[1], a[2], a[3], a[4], a[6], am, a[5], in_code)
        elif op == LOAD_WEIGHTS:
            src, tk, tn, stride, dst, s_code = a[0], a[1], a[2], a[3], a[4], a[5]
            s, d = src // _size(s_code), dst // _size(w_code)
            for k in range(tk):
                if s_code == w_code == FP32:    # the common case, on views taken once (via _move: 2x slower)
                    wf[d + k * tn: d + (k + 1) * tn] = f[s + k * stride: s + k * stride + tn]
                else:
                    _move(m, s + k * stride, s_code, wm, d + k * tn, w_code, tn)
        elif op == LOAD_BIAS:
            src, tm, tn, s_code = a[0], a[1], a[2], a[4]
            dst = a[3] // 4                     # the accumulator holds 4-byte elements (fp32 or int32)
            acc_code = INT32 if s_code == INT32 else FP32
            if src < 0:
                acc_m[3][dst:dst + tm * tn] = 0
            else:
                for mm in range(tm):
                    _move(m, src // _size(s_code), s_code, acc_m, dst + mm * tn, acc_code, tn)
        elif op == MATMUL:
            g = desc_int[a[6]]
            if g[REQUANT] == REQ_FLOAT:
                matmul(am, a[0], in_code, wm, a[1], w_code, acc_m[0], a[2], a[3], a[4], a[5])
            else:
                matmul_int(am, a[0], wm, a[1], acc_m[3], a[2], a[3], a[4], a[5], g, m, a[7])
        elif op == STORE_TILE:
            g = desc_int[a[0]]
            if g[REQUANT] == REQ_FLOAT:
                store_tile(m, g, acc_m[0], a[1], a[2], a[3], a[4], a[5], a[6])
            else:
                store_tile_int(m, g, acc_m[3], a[1], a[2], a[3], a[4], a[5], a[6])
        else:
            g, fl = desc_int[a[0]], desc_float[a[0]]
            quantised = _size(a[1]) == 1 and op != VEC_COPY and op != VEC_MAXPOOL   # on 8-bit codes
            if op == VEC_RELU:
                relu(m, g, a[1], a[2])
            elif op == VEC_BINARY:
                if quantised:
                    qbinary(m, g, fl, a[1])
                else:
                    binary(m, g, a[1], a[2], a[3])
            elif op == VEC_AFFINE:
                affine(m, g, a[1], a[2], a[3], a[4])
            elif op == VEC_AVGPOOL and quantised:
                qavgpool(m, g, fl, a[1])
            elif op == VEC_MAXPOOL or op == VEC_AVGPOOL:
                pool(m, g, op == VEC_MAXPOOL, a[1], a[2])
            elif op == VEC_LRN:
                lrn(m, g, fl, a[1], a[2])
            elif op == VEC_SOFTMAX and quantised:
                qsoftmax(m, g, fl, a[1])
            elif op == VEC_SOFTMAX:
                softmax(m, g, a[1], a[2])
            elif op == VEC_COPY:
                copy(m, g, a[1], a[2])
            elif op == VEC_QUANTIZE or op == VEC_DEQUANTIZE:
                quantize(m, g, op == VEC_QUANTIZE, a[1], a[2])
            elif op == VEC_DYNAMIC_QUANTIZE:
                dynamic_quantize(m, g)
            elif op == VEC_LOOKUP:
                src, dst, table = g[0], g[1], g[3]     # 8-bit codes: byte addresses are indices
                for j in range(g[2]):
                    m[2][dst + j] = m[2][table + np.int64(m[2][src + j])]
    return -1


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
            inline = kernel.targetoptions.get("inline", "never")
            namespace[name] = njit(cache=True, boundscheck=True, inline=inline)(copy)
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

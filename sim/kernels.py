"""Numba kernels that execute a Program's instructions on simulated memories.

`execute` walks the instruction table in order and dispatches on opcode. Every
memory (the DRAM image, the scratchpads, the accumulator) is a byte buffer; a
kernel reads and writes it through typed views, and Program addresses are bytes,
converted to element indices with the element size of what they access.

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
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# opcode ids, in compiler.program.OPCODES order (checked by tests/sim/test_kernels.py)
LOAD_IM2COL, LOAD_WEIGHTS, LOAD_BIAS, MATMUL, STORE_TILE = 0, 1, 2, 3, 4
VEC_RELU, VEC_BINARY, VEC_AFFINE, VEC_MAXPOOL, VEC_AVGPOOL, VEC_LRN, VEC_SOFTMAX, VEC_COPY = range(5, 13)
# element type codes, as compiler.program.DTYPE_CODE (checked by tests/sim/test_numerics.py)
FP32, FP16, BF16 = 0, 1, 2


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


@njit(cache=True)
def _size(code):
    return 4 if code == FP32 else 2


# A memory is passed as two views of one byte buffer, (f, u): float32 and uint16, made once per
# run; an element of type `code` at element index i is read and written through one of them.
@njit(cache=True)
def _ld(f, u, i, code):
    """Element i of a memory (f, u) of `code` elements, as float32 (narrow floats widen exactly)."""
    if code == FP32:
        return f[i]
    if code == BF16:
        return bf16_to_f32(u[i])
    return fp16_to_f32(u[i])


@njit(cache=True)
def _st(f, u, i, code, v):
    """Store value v (rounded to fp32 first if wider) as element i of type `code`."""
    if code == FP32:
        f[i] = v
    elif code == BF16:
        u[i] = f32_to_bf16(np.float32(v))
    else:
        u[i] = f32_to_fp16(np.float32(v))


@njit(cache=True)
def _move(sf, su, s, s_code, df, du, d, d_code, n):
    """Copy n elements from element s of (sf, su) to element d of (df, du), converting types."""
    if s_code == d_code and s_code == FP32:
        df[d:d + n] = sf[s:s + n]
    elif s_code == d_code:
        du[d:d + n] = su[s:s + n]
    else:
        for i in range(n):
            _st(df, du, d + i, d_code, _ld(sf, su, s + i, s_code))


@njit(cache=True)
def _floats(f, u, byte, n, code):
    """n elements of type `code` from byte address `byte`, as float32 (a view when fp32)."""
    if code == FP32:
        return f[byte // 4: byte // 4 + n]
    out = np.empty(n, np.float32)
    u16 = u[byte // 2: byte // 2 + n]
    for i in range(n):
        out[i] = bf16_to_f32(u16[i]) if code == BF16 else fp16_to_f32(u16[i])
    return out


@njit(cache=True)
def load_im2col(sf, su, g, m0, tm, k0, tk, x_code, df, du, dst, a_code):
    """Input scratchpad [tm,tk] at byte dst <- im2col rows m0.., columns k0.. of the conv input."""
    x, C, H, W = g[0] // _size(x_code), g[2], g[3], g[4]
    kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cin_off = g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[16]
    kk, P = kh * kw, OH * OW
    # the same type on both sides moves the bits (no conversion); 0 is all-zero bits in every type
    same32, same16, zero32 = x_code == a_code == FP32, x_code == a_code != FP32, a_code == FP32
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
                if same32:
                    df[row + kq] = sf[src]
                elif same16:
                    du[row + kq] = su[src]
                else:
                    _st(df, du, row + kq, a_code, _ld(sf, su, src, x_code))
            elif zero32:
                df[row + kq] = 0.0
            else:
                du[row + kq] = 0


@njit(cache=True)
def matmul(af, au, a, a_code, wf, wu, w, w_code, acc_f, acc, tm, tk, tn):
    """acc[tm,tn] (fp32 view acc_f, byte acc) += a[tm,tk] @ w[tk,tn] in the declared order."""
    a_tile = _floats(af, au, a, tm * tk, a_code).reshape(tm, tk)
    w_tile = _floats(wf, wu, w, tk * tn, w_code).reshape(tk, tn)
    acc_tile = acc_f[acc // 4:acc // 4 + tm * tn].reshape(tm, tn)
    row = np.empty(tn, np.float32)  # a private row lets LLVM vectorise over j (no aliasing)
    for i in range(tm):
        row[:] = acc_tile[i]
        for k in range(tk):
            aik = a_tile[i, k]
            for j in range(tn):
                row[j] += aik * w_tile[k, j]
        acc_tile[i] = row


@njit(cache=True)
def store_tile(f, u, g, acc_f, acc, m0, tm, n0, tn, out_code):
    """Accumulator tile (fp32, byte acc) -> the conv output in DRAM, activation applied, rounded once."""
    OH, OW, out, cout, cout_off, act = g[13], g[14], g[17] // _size(out_code), g[18], g[19], g[20]
    P = OH * OW
    acc //= 4
    for mm in range(tm):
        m = m0 + mm
        n, r = m // P, m % P
        for j in range(tn):
            v = acc_f[acc + mm * tn + j]
            if act == 1 and v < 0.0:
                v = np.float32(0.0)
            _st(f, u, out + (n * cout + cout_off + n0 + j) * P + r, out_code, v)


@njit(cache=True)
def binary(f, u, g, a_code, b_code, d_code):
    a, b, dst, op = g[0] // _size(a_code), g[1] // _size(b_code), g[2] // _size(d_code), g[3]
    s0, s1, s2, s3, s4, s5 = g[5], g[6], g[7], g[8], g[9], g[10]
    o = dst
    for i0 in range(s0):
        for i1 in range(s1):
            for i2 in range(s2):
                for i3 in range(s3):
                    for i4 in range(s4):
                        ia = a + i0 * g[11] + i1 * g[12] + i2 * g[13] + i3 * g[14] + i4 * g[15]
                        ib = b + i0 * g[17] + i1 * g[18] + i2 * g[19] + i3 * g[20] + i4 * g[21]
                        for i5 in range(s5):
                            x, y = _ld(f, u, ia + i5 * g[16], a_code), _ld(f, u, ib + i5 * g[22], b_code)
                            if op == 0:
                                _st(f, u, o, d_code, x + y)
                            elif op == 1:
                                _st(f, u, o, d_code, x - y)
                            elif op == 2:
                                _st(f, u, o, d_code, x * y)
                            else:
                                _st(f, u, o, d_code, x / y)
                            o += 1


@njit(cache=True)
def copy(f, u, g, s_code, d_code):
    src, dst = g[0] // _size(s_code), g[1] // _size(d_code)
    for i0 in range(g[2]):
        for i1 in range(g[3]):
            for i2 in range(g[4]):
                for i3 in range(g[5]):
                    for i4 in range(g[6]):
                        s = src + i0 * g[8] + i1 * g[9] + i2 * g[10] + i3 * g[11] + i4 * g[12]
                        d = dst + i0 * g[14] + i1 * g[15] + i2 * g[16] + i3 * g[17] + i4 * g[18]
                        for i5 in range(g[7]):
                            _st(f, u, d + i5 * g[19], d_code, _ld(f, u, s + i5 * g[13], s_code))


@njit(cache=True)
def pool(f, u, g, is_max, s_code, d_code):
    src, dst, planes, H, W, OH, OW = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4], g[5], g[6]
    kh, kw, sh, sw, pt, pl, cip, pb, pr = g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]
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
                            v = _ld(f, u, base + i * W + j, s_code)
                            count += 1
                            if is_max:
                                acc = max(acc, v)
                            else:
                                acc += v
                if not is_max:
                    if cip == 1:  # window clipped to the padded input, as ONNX Runtime does
                        count = (min(h0 + kh, H + pb) - h0) * (min(w0 + kw, W + pr) - w0)
                    acc = acc / count
                _st(f, u, dst + (p * OH + oh) * OW + ow, d_code, acc)


@njit(cache=True)
def affine(f, u, g, s_code, scale_code, shift_code, d_code):
    src, scale, shift = g[0] // _size(s_code), g[1] // _size(scale_code), g[2] // _size(shift_code)
    dst, N, C, HW = g[3] // _size(d_code), g[4], g[5], g[6]
    for n in range(N):
        for c in range(C):
            s, t = _ld(f, u, scale + c, scale_code), _ld(f, u, shift + c, shift_code)
            base = (n * C + c) * HW
            for i in range(HW):
                _st(f, u, dst + base + i, d_code, _ld(f, u, src + base + i, s_code) * s + t)


@njit(cache=True)
def lrn(f, u, g, fl, s_code, d_code):
    src, dst, N, C, HW, size = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4], g[5]
    alpha, beta, bias = fl[0], fl[1], fl[2]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for n in range(N):
        for c in range(C):
            for i in range(HW):
                sq = np.float32(0.0)
                for cc in range(max(0, c - lo), min(C, c + hi + 1)):
                    v = _ld(f, u, src + (n * C + cc) * HW + i, s_code)
                    sq += v * v
                x = _ld(f, u, src + (n * C + c) * HW + i, s_code)
                _st(f, u, dst + (n * C + c) * HW + i, d_code, x / (bias + alpha / size * sq) ** beta)


@njit(cache=True)
def softmax(f, u, g, s_code, d_code):
    """exp(x - max) / sum, each exp rounded to fp32; the quotient is rounded once to the
    destination type (no intermediate is stored)."""
    src, dst, outer, L, inner = g[0] // _size(s_code), g[1] // _size(d_code), g[2], g[3], g[4]
    for o in range(outer):
        for i in range(inner):
            base = o * L * inner + i
            mx = -np.inf
            for l in range(L):
                mx = max(mx, _ld(f, u, src + base + l * inner, s_code))
            total = np.float32(0.0)
            for l in range(L):
                total += np.float32(math.exp(_ld(f, u, src + base + l * inner, s_code) - mx))
            for l in range(L):
                e = np.float32(math.exp(_ld(f, u, src + base + l * inner, s_code) - mx))
                _st(f, u, dst + base + l * inner, d_code, e / total)


@njit(cache=True)
def execute(opcode, operands, desc_int, desc_float, dram, spad_in, spad_w, acc, in_code, w_code):
    """Run every instruction in program order (dependencies are satisfied by construction).
    Memories arrive as byte buffers (lengths multiples of 4); in_code, w_code: the scratchpads'
    element types (the accumulator holds fp32)."""
    f, u = dram.view(np.float32), dram.view(np.uint16)
    af, au, wf, wu = spad_in.view(np.float32), spad_in.view(np.uint16), spad_w.view(np.float32), spad_w.view(np.uint16)
    acc_f, acc_u = acc.view(np.float32), acc.view(np.uint16)
    for i in range(len(opcode)):
        op, a = opcode[i], operands[i]
        if op == LOAD_IM2COL:
            load_im2col(f, u, desc_int[a[0]], a[1], a[2], a[3], a[4], a[6], af, au, a[5], in_code)
        elif op == LOAD_WEIGHTS:
            src, tk, tn, stride, dst, s_code = a[0], a[1], a[2], a[3], a[4], a[5]
            s, d = src // _size(s_code), dst // _size(w_code)
            for k in range(tk):
                if s_code == w_code == FP32:    # the common case, without a call per row
                    wf[d + k * tn: d + (k + 1) * tn] = f[s + k * stride: s + k * stride + tn]
                else:
                    _move(f, u, s + k * stride, s_code, wf, wu, d + k * tn, w_code, tn)
        elif op == LOAD_BIAS:
            src, tm, tn, dst, s_code = a[0], a[1], a[2], a[3] // 4, a[4]
            if src < 0:
                acc_f[dst:dst + tm * tn] = 0.0
            else:
                for m in range(tm):
                    _move(f, u, src // _size(s_code), s_code, acc_f, acc_u, dst + m * tn, FP32, tn)
        elif op == MATMUL:
            matmul(af, au, a[0], in_code, wf, wu, a[1], w_code, acc_f, a[2], a[3], a[4], a[5])
        elif op == STORE_TILE:
            store_tile(f, u, desc_int[a[0]], acc_f, a[1], a[2], a[3], a[4], a[5], a[6])
        else:
            g = desc_int[a[0]]
            if op == VEC_RELU:
                s, d = g[0] // _size(a[1]), g[1] // _size(a[2])
                for j in range(g[2]):
                    _st(f, u, d + j, a[2], max(_ld(f, u, s + j, a[1]), np.float32(0.0)))
            elif op == VEC_BINARY:
                binary(f, u, g, a[1], a[2], a[3])
            elif op == VEC_AFFINE:
                affine(f, u, g, a[1], a[2], a[3], a[4])
            elif op == VEC_MAXPOOL or op == VEC_AVGPOOL:
                pool(f, u, g, op == VEC_MAXPOOL, a[1], a[2])
            elif op == VEC_LRN:
                lrn(f, u, g, desc_float[a[0]], a[1], a[2])
            elif op == VEC_SOFTMAX:
                softmax(f, u, g, a[1], a[2])
            elif op == VEC_COPY:
                copy(f, u, g, a[1], a[2])


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

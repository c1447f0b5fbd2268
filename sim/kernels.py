"""Numba kernels that execute a Program's instructions on simulated memories.

`execute` walks the instruction table in order and dispatches on opcode. All
memories are float32 arrays; Program addresses are bytes (divided by 4 here).
Float accumulation order (declared, see DESIGN principle 4): every GEMM output
starts from its bias (or 0) in the fp32 accumulator and adds a[m,k]*w[k,n]
products one k at a time in increasing k, each product rounded to fp32 before
the add (no FMA). The order does not depend on tiling, so every array size and
dataflow yields the same bits. sim/reference.py defines the same in NumPy.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

# opcode ids, in compiler.program.OPCODES order (checked by tests/sim/test_kernels.py)
LOAD_IM2COL, LOAD_WEIGHTS, LOAD_BIAS, MATMUL, STORE_TILE = 0, 1, 2, 3, 4
VEC_RELU, VEC_BINARY, VEC_AFFINE, VEC_MAXPOOL, VEC_AVGPOOL, VEC_LRN, VEC_SOFTMAX, VEC_COPY = range(5, 13)


@njit(cache=True)
def load_im2col(dram, g, m0, tm, k0, tk, spad, dst):
    x, C, H, W = g[0] // 4, g[2], g[3], g[4]
    kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, cin_off = g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[16]
    kk, P = kh * kw, OH * OW
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
        row = dst + mm * tk
        for kq in range(tk):
            ih, iw = ih0 + tap_h[kq], iw0 + tap_w[kq]
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                spad[row + kq] = dram[x + ((n * C + chan[kq]) * H + ih) * W + iw]
            else:
                spad[row + kq] = 0.0


@njit(cache=True)
def matmul(a_mem, a, w_mem, w, acc_mem, acc, tm, tk, tn):
    a_tile = a_mem[a:a + tm * tk].reshape(tm, tk)
    w_tile = w_mem[w:w + tk * tn].reshape(tk, tn)
    acc_tile = acc_mem[acc:acc + tm * tn].reshape(tm, tn)
    row = np.empty(tn, np.float32)  # a private row lets LLVM vectorise over j (no aliasing)
    for i in range(tm):
        row[:] = acc_tile[i]
        for k in range(tk):
            aik = a_tile[i, k]
            for j in range(tn):
                row[j] += aik * w_tile[k, j]
        acc_tile[i] = row


@njit(cache=True)
def store_tile(dram, g, acc_mem, acc, m0, tm, n0, tn):
    OH, OW, out, cout, cout_off, act = g[13], g[14], g[17] // 4, g[18], g[19], g[20]
    P = OH * OW
    for mm in range(tm):
        m = m0 + mm
        n, r = m // P, m % P
        for j in range(tn):
            v = acc_mem[acc + mm * tn + j]
            if act == 1 and v < 0.0:
                v = 0.0
            dram[out + (n * cout + cout_off + n0 + j) * P + r] = v


@njit(cache=True)
def binary(dram, g):
    a, b, dst, op = g[0] // 4, g[1] // 4, g[2] // 4, g[3]
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
                            x, y = dram[ia + i5 * g[16]], dram[ib + i5 * g[22]]
                            if op == 0:
                                dram[o] = x + y
                            elif op == 1:
                                dram[o] = x - y
                            elif op == 2:
                                dram[o] = x * y
                            else:
                                dram[o] = x / y
                            o += 1


@njit(cache=True)
def copy(dram, g):
    src, dst = g[0] // 4, g[1] // 4
    for i0 in range(g[2]):
        for i1 in range(g[3]):
            for i2 in range(g[4]):
                for i3 in range(g[5]):
                    for i4 in range(g[6]):
                        s = src + i0 * g[8] + i1 * g[9] + i2 * g[10] + i3 * g[11] + i4 * g[12]
                        d = dst + i0 * g[14] + i1 * g[15] + i2 * g[16] + i3 * g[17] + i4 * g[18]
                        for i5 in range(g[7]):
                            dram[d + i5 * g[19]] = dram[s + i5 * g[13]]


@njit(cache=True)
def pool(dram, g, is_max):
    src, dst, planes, H, W, OH, OW = g[0] // 4, g[1] // 4, g[2], g[3], g[4], g[5], g[6]
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
                            v = dram[base + i * W + j]
                            count += 1
                            if is_max:
                                acc = max(acc, v)
                            else:
                                acc += v
                if not is_max:
                    if cip == 1:  # window clipped to the padded input, as ONNX Runtime does
                        count = (min(h0 + kh, H + pb) - h0) * (min(w0 + kw, W + pr) - w0)
                    acc = acc / count
                dram[dst + (p * OH + oh) * OW + ow] = acc


@njit(cache=True)
def affine(dram, g):
    src, scale, shift, dst, N, C, HW = g[0] // 4, g[1] // 4, g[2] // 4, g[3] // 4, g[4], g[5], g[6]
    for n in range(N):
        for c in range(C):
            s, t = dram[scale + c], dram[shift + c]
            base = (n * C + c) * HW
            for i in range(HW):
                dram[dst + base + i] = dram[src + base + i] * s + t


@njit(cache=True)
def lrn(dram, g, f):
    src, dst, N, C, HW, size = g[0] // 4, g[1] // 4, g[2], g[3], g[4], g[5]
    alpha, beta, bias = f[0], f[1], f[2]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    for n in range(N):
        for c in range(C):
            for i in range(HW):
                sq = np.float32(0.0)
                for cc in range(max(0, c - lo), min(C, c + hi + 1)):
                    v = dram[src + (n * C + cc) * HW + i]
                    sq += v * v
                x = dram[src + (n * C + c) * HW + i]
                dram[dst + (n * C + c) * HW + i] = x / (bias + alpha / size * sq) ** beta


@njit(cache=True)
def softmax(dram, g):
    src, dst, outer, L, inner = g[0] // 4, g[1] // 4, g[2], g[3], g[4]
    for o in range(outer):
        for i in range(inner):
            base = o * L * inner + i
            mx = -np.inf
            for l in range(L):
                mx = max(mx, dram[src + base + l * inner])
            total = np.float32(0.0)
            for l in range(L):
                e = np.float32(math.exp(dram[src + base + l * inner] - mx))
                dram[dst + base + l * inner] = e
                total += e
            for l in range(L):
                dram[dst + base + l * inner] = dram[dst + base + l * inner] / total


@njit(cache=True)
def execute(opcode, operands, desc_int, desc_float, dram, spad_in, spad_w, acc):
    """Run every instruction in program order (dependencies are satisfied by construction)."""
    for i in range(len(opcode)):
        op, a = opcode[i], operands[i]
        if op == LOAD_IM2COL:
            load_im2col(dram, desc_int[a[0]], a[1], a[2], a[3], a[4], spad_in, a[5] // 4)
        elif op == LOAD_WEIGHTS:
            src, tk, tn, stride, dst = a[0] // 4, a[1], a[2], a[3], a[4] // 4
            for k in range(tk):
                spad_w[dst + k * tn: dst + (k + 1) * tn] = dram[src + k * stride: src + k * stride + tn]
        elif op == LOAD_BIAS:
            src, tm, tn, dst = a[0], a[1], a[2], a[3] // 4
            if src < 0:
                acc[dst:dst + tm * tn] = 0.0
            else:
                for m in range(tm):
                    acc[dst + m * tn: dst + (m + 1) * tn] = dram[src // 4: src // 4 + tn]
        elif op == MATMUL:
            matmul(spad_in, a[0] // 4, spad_w, a[1] // 4, acc, a[2] // 4, a[3], a[4], a[5])
        elif op == STORE_TILE:
            store_tile(dram, desc_int[a[0]], acc, a[1] // 4, a[2], a[3], a[4], a[5])
        else:
            g = desc_int[a[0]]
            if op == VEC_RELU:
                for j in range(g[2]):
                    dram[g[1] // 4 + j] = max(dram[g[0] // 4 + j], np.float32(0.0))
            elif op == VEC_BINARY:
                binary(dram, g)
            elif op == VEC_AFFINE:
                affine(dram, g)
            elif op == VEC_MAXPOOL or op == VEC_AVGPOOL:
                pool(dram, g, op == VEC_MAXPOOL)
            elif op == VEC_LRN:
                lrn(dram, g, desc_float[a[0]])
            elif op == VEC_SOFTMAX:
                softmax(dram, g)
            elif op == VEC_COPY:
                copy(dram, g)


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

"""Plain NumPy reference executor: what each Program instruction means, slow and obvious.

`execute(program, inputs)` runs the same instruction table as sim/kernels.py with
NumPy array operations on the same simulated memories and returns the outputs.
Tests require the Numba kernels to equal it bit for bit on the GEMM path and the
data-movement and elementwise ops, and within float rounding on the ops with
transcendentals or divisions (softmax, LRN, average pooling). Not used by `simulate`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.program import CONV, OPCODE_NAMES, Program
from sim.run import place_inputs, read_outputs


def _im2col(dram, g, m0, tm, k0, tk):
    d = {name: int(g[i]) for name, i in CONV.items()}
    x = dram[d["x"] // 4: d["x"] // 4 + d["n"] * d["c"] * d["h"] * d["w"]].reshape(d["n"], d["c"], d["h"], d["w"])
    m, k = np.arange(m0, m0 + tm)[:, None], np.arange(k0, k0 + tk)[None, :]
    pixels, kk = d["oh"] * d["ow"], d["kh"] * d["kw"]
    n, r = m // pixels, m % pixels
    c, tap = d["cin_off"] + k // kk, k % kk
    ih = (r // d["ow"]) * d["sh"] - d["pt"] + (tap // d["kw"]) * d["dh"]
    iw = (r % d["ow"]) * d["sw"] - d["pl"] + (tap % d["kw"]) * d["dw"]
    inside = (ih >= 0) & (ih < d["h"]) & (iw >= 0) & (iw < d["w"])
    n, c, ih, iw = np.broadcast_arrays(n, c, np.clip(ih, 0, d["h"] - 1), np.clip(iw, 0, d["w"] - 1))
    return np.where(inside, x[n, c, ih, iw], np.float32(0))


def _store(dram, g, tile, m0, n0):
    d = {name: int(g[i]) for name, i in CONV.items()}
    if d["activation"] == 1:
        tile = np.maximum(tile, np.float32(0))
    pixels = d["oh"] * d["ow"]
    m = np.arange(m0, m0 + tile.shape[0])[:, None]
    j = d["cout_off"] + n0 + np.arange(tile.shape[1])[None, :]
    dram[d["out"] // 4 + ((m // pixels) * d["cout"] + j) * pixels + m % pixels] = tile


def _view(dram, base, shape, strides):
    return as_strided(dram[base:], shape=tuple(shape), strides=tuple(4 * s for s in strides))


def _vector(op, dram, g, f):
    g = [int(v) for v in g]
    if op == "vec_relu":
        dram[g[1] // 4: g[1] // 4 + g[2]] = np.maximum(dram[g[0] // 4: g[0] // 4 + g[2]], np.float32(0))
    elif op == "vec_binary":
        shape = g[5:11]
        a, b = _view(dram, g[0] // 4, shape, g[11:17]), _view(dram, g[1] // 4, shape, g[17:23])
        fn = (np.add, np.subtract, np.multiply, np.divide)[g[3]]
        dram[g[2] // 4: g[2] // 4 + int(np.prod(shape))] = fn(a, b).ravel()
    elif op == "vec_copy":
        shape = g[2:8]
        src = _view(dram, g[0] // 4, shape, g[8:14]).copy()
        _view(dram, g[1] // 4, shape, g[14:20])[...] = src
    elif op == "vec_affine":
        n, c, hw = g[4:7]
        x = dram[g[0] // 4: g[0] // 4 + n * c * hw].reshape(n, c, hw)
        s, t = dram[g[1] // 4: g[1] // 4 + c], dram[g[2] // 4: g[2] // 4 + c]
        dram[g[3] // 4: g[3] // 4 + n * c * hw] = (x * s[:, None] + t[:, None]).ravel()
    elif op in ("vec_maxpool", "vec_avgpool"):
        _pool(dram, g, op == "vec_maxpool")
    elif op == "vec_lrn":
        n, c, hw, size = g[2:6]
        x = dram[g[0] // 4: g[0] // 4 + n * c * hw].reshape(n, c, hw)
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        sq = np.stack([(x[:, max(0, i - lo): min(c, i + hi + 1)] ** 2).sum(1) for i in range(c)], 1)
        dram[g[1] // 4: g[1] // 4 + x.size] = (x / (f[2] + f[0] / size * sq) ** f[1]).ravel()
    elif op == "vec_softmax":
        outer, length, inner = g[2:5]
        x = dram[g[0] // 4: g[0] // 4 + outer * length * inner].reshape(outer, length, inner)
        e = np.exp(x - x.max(1, keepdims=True))
        dram[g[1] // 4: g[1] // 4 + x.size] = (e / e.sum(1, keepdims=True)).ravel()


def _pool(dram, g, is_max):
    planes, h, w, oh, ow, kh, kw, sh, sw, pt, pl, cip, pb, pr = g[2:16]
    x = dram[g[0] // 4: g[0] // 4 + planes * h * w].reshape(planes, h, w)
    fill = -np.inf if is_max else 0.0
    padded = np.full((planes, pt + max(h + pb, (oh - 1) * sh + kh), pl + max(w + pr, (ow - 1) * sw + kw)),
                     fill, np.float64)
    padded[:, pt:pt + h, pl:pl + w] = x
    valid = np.zeros(padded.shape[1:], bool)
    valid[pt:pt + h, pl:pl + w] = True
    out = np.empty((planes, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = padded[:, i * sh: i * sh + kh, j * sw: j * sw + kw]
            if is_max:
                out[:, i, j] = win.max((1, 2))
                continue
            count = valid[i * sh: i * sh + kh, j * sw: j * sw + kw].sum()
            if cip:
                count = (min(i * sh + kh, pt + h + pb) - i * sh) * (min(j * sw + kw, pl + w + pr) - j * sw)
            out[:, i, j] = win.sum((1, 2)) / count
    dram[g[1] // 4: g[1] // 4 + out.size] = out.ravel()


def execute(program: Program, inputs: dict) -> dict:
    """Outputs of `program` on `inputs`, computed instruction by instruction in NumPy."""
    dram = program.dram_image().view(np.float32)
    place_inputs(program, inputs, dram)
    mem = {name: np.zeros(max(size // 4, 1), np.float32) for name, size in program.onchip.items()}
    spad, wbuf, acc = mem["input_scratchpad"], mem["weight_scratchpad"], mem["accumulator"]
    ins = program.instructions
    for i in range(len(ins)):
        op, a = OPCODE_NAMES[ins.opcode[i]], [int(v) for v in ins.operands[i]]
        if op == "load_im2col":
            spad[a[5] // 4: a[5] // 4 + a[2] * a[4]] = _im2col(dram, program.desc_int[a[0]], *a[1:5]).ravel()
        elif op == "load_weights":
            rows = _view(dram, a[0] // 4, (a[1], a[2]), (a[3], 1))
            wbuf[a[4] // 4: a[4] // 4 + a[1] * a[2]] = rows.ravel()
        elif op == "load_bias":
            bias = dram[a[0] // 4: a[0] // 4 + a[2]] if a[0] >= 0 else np.zeros(a[2], np.float32)
            acc[a[3] // 4: a[3] // 4 + a[1] * a[2]] = np.tile(bias, a[1])
        elif op == "matmul":
            tm, tk, tn = a[3:6]
            at = spad[a[0] // 4: a[0] // 4 + tm * tk].reshape(tm, tk)
            wt = wbuf[a[1] // 4: a[1] // 4 + tk * tn].reshape(tk, tn)
            ct = acc[a[2] // 4: a[2] // 4 + tm * tn].reshape(tm, tn)
            for k in range(tk):  # the declared order: one k at a time, product rounded, then added
                ct += np.multiply(at[:, k:k + 1], wt[k:k + 1, :])
        elif op == "store_tile":
            tile = acc[a[1] // 4: a[1] // 4 + a[3] * a[5]].reshape(a[3], a[5])
            _store(dram, program.desc_int[a[0]], tile, a[2], a[4])
        else:
            _vector(op, dram, program.desc_int[a[0]], program.desc_float[a[0]])
    return read_outputs(program, dram)

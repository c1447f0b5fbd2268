"""Plain NumPy reference executor: what each Program instruction means, slow and obvious.

`execute(program, inputs)` runs the same instruction table as sim/kernels.py with
NumPy array operations on the same simulated memories (byte buffers, each operand
read and written in its element type through compiler/numerics.py) and returns the
outputs. It follows the datapath sim/kernels.py declares: values widen to fp32 on
every read, GEMMs accumulate in fp32 one k at a time (bias first, no FMA), and each
result is rounded once to its destination's type. Tests require the Numba kernels to
equal it bit for bit on the GEMM path, data movement, pooling, elementwise ops and
softmax (both take exp in float64 from the C library), for every element type, and
within float rounding on LRN (a float64 power). Float datapaths only (the integer
datapath's reference is onnxruntime itself). Not used by `simulate`. An unknown opcode, or an
access outside a memory, is a SimError naming the row.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.numerics import STORAGE, decode, encode
from compiler.program import CONV, DATATYPES, ELEMENT_BYTES, OPCODE_NAMES, OPCODES, Program
from sim.errors import SimError
from sim.run import check_datapath, onchip_memories, place_inputs, read_outputs


class Memory:
    """A byte buffer read and written as elements of a given type (a name or a DTYPE_CODE);
    addresses are bytes, strides elements."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    def _typed(self, dtype):
        name = DATATYPES[dtype] if isinstance(dtype, (int, np.integer)) else dtype
        return name, self.raw.view(STORAGE[name]), ELEMENT_BYTES[name]

    def strided(self, byte: int, shape, strides, dtype) -> tuple:
        name, typed, size = self._typed(dtype)
        last = sum((n - 1) * s for n, s in zip(shape, strides))     # as_strided would read past the buffer
        if min(shape, default=1) > 0 and (byte < 0 or byte // size + last >= len(typed) or min(strides, default=0) < 0):
            raise IndexError(f"{name}[{list(shape)}] at byte {byte} lies outside the {self.raw.size}-byte memory")
        return name, as_strided(typed[byte // size:], shape=tuple(shape),
                                strides=tuple(typed.itemsize * s for s in strides))

    def read(self, byte: int, shape, dtype, strides=None) -> np.ndarray:
        """fp32 values of a (strided) block of elements."""
        shape = (shape,) if np.isscalar(shape) else tuple(shape)
        strides = strides or [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
        name, view = self.strided(byte, shape, strides, dtype)
        return decode(view, name).copy()

    def write(self, byte: int, values, dtype, strides=None) -> None:
        """Store fp32 `values` (rounded once to the element type) at a (strided) block."""
        values = np.asarray(values)
        strides = strides or [int(np.prod(values.shape[i + 1:])) for i in range(values.ndim)]
        name, view = self.strided(byte, values.shape, strides, dtype)
        view[...] = encode(values, name)

    def scatter(self, byte: int, index, values, dtype) -> None:
        """Store fp32 `values` at element offsets `index` from `byte`."""
        name, typed, size = self._typed(dtype)
        at = byte // size + index
        if at.size and (at.min() < 0 or at.max() >= len(typed)):
            raise IndexError(f"{name} elements {at.min()}..{at.max()} lie outside the {self.raw.size}-byte memory")
        typed[at] = encode(values, name)


def _conv(g) -> dict:
    return {name: int(g[i]) for name, i in CONV.items()}


def _im2col(dram: Memory, g, m0, tm, k0, tk, x_dtype):
    d = _conv(g)
    x = dram.read(d["x"], (d["n"], d["c"], d["h"], d["w"]), x_dtype)
    m, k = np.arange(m0, m0 + tm)[:, None], np.arange(k0, k0 + tk)[None, :]
    pixels, kk = d["oh"] * d["ow"], d["kh"] * d["kw"]
    n, r = m // pixels, m % pixels
    c, tap = d["cin_off"] + k // kk, k % kk
    ih = (r // d["ow"]) * d["sh"] - d["pt"] + (tap // d["kw"]) * d["dh"]
    iw = (r % d["ow"]) * d["sw"] - d["pl"] + (tap % d["kw"]) * d["dw"]
    inside = (ih >= 0) & (ih < d["h"]) & (iw >= 0) & (iw < d["w"])
    n, c, ih, iw = np.broadcast_arrays(n, c, np.clip(ih, 0, d["h"] - 1), np.clip(iw, 0, d["w"] - 1))
    return np.where(inside, x[n, c, ih, iw], np.float32(0))


def _store(dram: Memory, g, tile, m0, n0, dtype):
    d = _conv(g)
    if d["activation"] == 1:
        tile = np.maximum(tile, np.float32(0))
    pixels = d["oh"] * d["ow"]
    m = np.arange(m0, m0 + tile.shape[0])[:, None]
    j = d["cout_off"] + n0 + np.arange(tile.shape[1])[None, :]
    dram.scatter(d["out"], ((m // pixels) * d["cout"] + j) * pixels + m % pixels, tile, dtype)


def _vector(op, dram: Memory, g, f, codes):
    g = [int(v) for v in g]
    src, dst = codes[0], codes[-1]
    if op == "vec_relu":
        dram.write(g[1], np.maximum(dram.read(g[0], g[2], src), np.float32(0)), dst)
    elif op == "vec_binary":
        shape = g[5:11]
        a, b = dram.read(g[0], shape, codes[0], g[11:17]), dram.read(g[1], shape, codes[1], g[17:23])
        fn = (np.add, np.subtract, np.multiply, np.divide)[g[3]]
        dram.write(g[2], fn(a, b), dst)
    elif op == "vec_copy":
        shape = g[2:8]
        dram.write(g[1], dram.read(g[0], shape, src, g[8:14]), dst, g[14:20])
    elif op == "vec_affine":
        n, c, hw = g[4:7]
        x = dram.read(g[0], (n, c, hw), src)
        s, t = dram.read(g[1], c, codes[1]), dram.read(g[2], c, codes[2])
        dram.write(g[3], x * s[:, None] + t[:, None], dst)
    elif op in ("vec_maxpool", "vec_avgpool"):
        dram.write(g[1], _pool(dram.read(g[0], g[2:5], src), g, op == "vec_maxpool"), dst)
    elif op == "vec_lrn":
        n, c, hw, size = g[2:6]
        x = dram.read(g[0], (n, c, hw), src)
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        sq = np.stack([(x[:, max(0, i - lo): min(c, i + hi + 1)] ** 2).sum(1) for i in range(c)], 1)
        dram.write(g[1], x / (f[2] + f[0] / size * sq) ** f[1], dst)
    elif op == "vec_softmax":
        outer, length, inner = g[2:5]
        x = dram.read(g[0], (outer, length, inner), src).astype(np.float64)
        with np.errstate(invalid="ignore"):     # Inf - Inf is NaN, as in the kernel
            shifted = x - x.max(1, keepdims=True)
        e = np.array([math.exp(v) for v in shifted.ravel()], np.float64).reshape(x.shape).astype(np.float32)
        total = np.cumsum(e, axis=1, dtype=np.float32)[:, -1:]     # fp32, one term at a time
        dram.write(g[1], e / total, dst)


def _pool(x, g, is_max):
    """Pooling in float64 over window offsets in row-major order (the kernel's order)."""
    planes, h, w, oh, ow, kh, kw, sh, sw, pt, pl, cip, pb, pr = g[2:16]
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
        return acc.astype(np.float32)
    if cip:
        i, j = np.arange(oh)[:, None] * sh, np.arange(ow)[None, :] * sw
        count = (np.minimum(i + kh, pt + h + pb) - i) * (np.minimum(j + kw, pl + w + pr) - j)
    return (acc / count).astype(np.float32)


def execute(program: Program, inputs: dict) -> dict:
    """Outputs of `program` on `inputs`, computed instruction by instruction in NumPy."""
    check_datapath(program)
    if program.onchip_dtype("accumulator") != "fp32":
        raise SimError("the NumPy reference executor defines the float datapaths; the integer datapath is "
                       "checked against onnxruntime and tests/ir_reference.py (tests/e2e/test_int8_models.py)")
    raw = program.dram_image()
    place_inputs(program, inputs, raw)
    dram = Memory(raw)
    mem = {name: Memory(buf) for name, buf in onchip_memories(program).items()}
    spad, wbuf, acc = mem["input_scratchpad"], mem["weight_scratchpad"], mem["accumulator"]
    ins = program.instructions
    for i in range(len(ins)):
        code = int(ins.opcode[i])
        if not 0 <= code < len(OPCODE_NAMES):
            raise SimError(f"row {i}: unknown opcode {code}; the reference executor defines opcodes "
                           f"0..{len(OPCODE_NAMES) - 1} ({', '.join(OPCODE_NAMES)})")
        try:
            _execute_row(program, OPCODE_NAMES[code], [int(v) for v in ins.operands[i]], dram, spad, wbuf, acc)
        except IndexError as exc:
            raise SimError(f"row {i} {OPCODE_NAMES[code]}: {exc}") from None
    return read_outputs(program, raw)


def _execute_row(program: Program, op: str, a: list, dram: Memory, spad: Memory, wbuf: Memory, acc: Memory):
    """One instruction, its operands `a` in OPCODES order (an access outside a memory: IndexError)."""
    a_type, w_type = program.onchip_dtype("input_scratchpad"), program.onchip_dtype("weight_scratchpad")
    if op == "load_im2col":
        spad.write(a[5], _im2col(dram, program.desc_int[a[0]], *a[1:5], a[6]), a_type)
    elif op == "load_weights":
        wbuf.write(a[4], dram.read(a[0], (a[1], a[2]), a[5], (a[3], 1)), w_type)
    elif op == "load_bias":
        bias = dram.read(a[0], a[2], a[4]) if a[0] >= 0 else np.zeros(a[2], np.float32)
        acc.write(a[3], np.tile(bias, a[1]), "fp32")
    elif op == "matmul":
        tm, tk, tn = a[3:6]
        at, wt = spad.read(a[0], (tm, tk), a_type), wbuf.read(a[1], (tk, tn), w_type)
        _, ct = acc.strided(a[2], (tm, tn), (tn, 1), "fp32")    # the accumulator tile, in place
        for k in range(tk):  # the declared order: one k at a time, product rounded, then added
            ct += np.multiply(at[:, k:k + 1], wt[k:k + 1, :])
    elif op == "store_tile":
        _store(dram, program.desc_int[a[0]], acc.read(a[1], (a[3], a[5]), "fp32"), a[2], a[4], a[6])
    else:
        codes = a[1:len(OPCODES[op][1])]    # the dtype operands: inputs in order, then the result
        _vector(op, dram, program.desc_int[a[0]], program.desc_float[a[0]], codes)

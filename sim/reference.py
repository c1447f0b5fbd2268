"""Plain NumPy reference executor: what each Program instruction means, slow and obvious.

`execute(program, inputs)` runs the same instruction table as sim/kernels.py with
NumPy array operations on the same simulated memories (byte buffers by memory id, each
operand read and written in its element type through compiler/numerics.py) and returns
the outputs. Operands and descriptor fields are read by name (OPCODES, DESC), each address
in the memory ADDRESS_MEMORY gives it. It follows the datapath sim/kernels.py declares:
values widen to fp32 on every read, GEMMs accumulate in fp32 one k at a time (bias
first, no FMA), and each result is rounded once to its destination's type. Tests require
the Numba kernels to equal it bit for bit on the GEMM path, data movement, pooling,
elementwise ops and softmax (both take exp in float64 from the C library), for every
element type, and within float rounding on LRN (a float64 power). Float datapaths only
(the integer datapath's reference is onnxruntime itself). Not used by `simulate`. An
unknown opcode, or an access outside a memory, is a SimError naming the row.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from compiler.numerics import STORAGE, decode, encode
from compiler.program import (ACTIVATION_ID, ADDRESS_MEMORY, BINARY_OPS, CONV, DATATYPES, DESC, DESC_FLOAT,
                              ELEMENT_BYTES, MAX_RANK, OPCODE_NAMES, OPCODES, Program)
from sim.errors import SimError
from sim.run import check_datapath, memory_buffers, place_inputs, read_outputs


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
    return {field.name: int(g[field]) for field in CONV}


def _im2col(dram: Memory, g, m0, tm, k0, tk, x_dtype):
    """The [tm, tk] im2col tile at rows m0.., columns k0.. of the conv input (0 where padded)."""
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
    if d["activation"] == ACTIVATION_ID["relu"]:
        tile = np.maximum(tile, np.float32(0))
    pixels = d["oh"] * d["ow"]
    m = np.arange(m0, m0 + tile.shape[0])[:, None]
    j = d["cout_off"] + n0 + np.arange(tile.shape[1])[None, :]
    dram.scatter(d["out"], ((m // pixels) * d["cout"] + j) * pixels + m % pixels, tile, dtype)


def _vector(op, m: Memory, d, f, o):
    """One vector-unit instruction: descriptor fields d and float fields f, operands o, by name."""
    if op == "vec_relu":
        m.write(d.dst, np.maximum(m.read(d.src, d.n, o.src_dtype), np.float32(0)), o.dst_dtype)
    elif op == "vec_binary":
        shape = _group(d, "shape")
        a = m.read(d.a, shape, o.a_dtype, _group(d, "a_stride"))
        b = m.read(d.b, shape, o.b_dtype, _group(d, "b_stride"))
        fn = {BINARY_OPS["add"]: np.add, BINARY_OPS["sub"]: np.subtract, BINARY_OPS["mul"]: np.multiply,
              BINARY_OPS["div"]: np.divide}[d.op]
        m.write(d.dst, fn(a, b), o.dst_dtype)
    elif op == "vec_copy":
        m.write(d.dst, m.read(d.src, _group(d, "shape"), o.src_dtype, _group(d, "src_stride")), o.dst_dtype,
                _group(d, "dst_stride"))
    elif op == "vec_affine":
        x = m.read(d.src, (d.n, d.c, d.hw), o.src_dtype)
        s, t = m.read(d.scale, d.c, o.scale_dtype), m.read(d.shift, d.c, o.shift_dtype)
        m.write(d.dst, x * s[:, None] + t[:, None], o.dst_dtype)
    elif op in ("vec_maxpool", "vec_avgpool"):
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
        e = np.array([math.exp(v) for v in shifted.ravel()], np.float64).reshape(x.shape).astype(np.float32)
        total = np.cumsum(e, axis=1, dtype=np.float32)[:, -1:]     # fp32, one term at a time
        m.write(d.dst, e / total, o.dst_dtype)


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
        return acc.astype(np.float32)
    if cip:
        i, j = np.arange(oh)[:, None] * sh, np.arange(ow)[None, :] * sw
        count = (np.minimum(i + kh, pt + h + pb) - i) * (np.minimum(j + kw, pl + w + pr) - j)
    return (acc / count).astype(np.float32)


def execute(program: Program, inputs: dict) -> dict:
    """Outputs of `program` on `inputs`, computed instruction by instruction in NumPy."""
    check_datapath(program)
    accumulator = program.addressed("matmul", "acc")
    if accumulator is not None and accumulator.dtype != "fp32":
        raise SimError("the NumPy reference executor defines the float datapaths; the integer datapath is "
                       "checked against onnxruntime and tests/ir_reference.py (tests/e2e/test_int8_models.py)")
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
        except IndexError as exc:
            raise SimError(f"row {i} {op}: {exc}") from None
    return read_outputs(program, raw)


def _execute_row(program: Program, op: str, o: SimpleNamespace, memories: list, types: list):
    """One instruction, its operands `o` by name, on the memories by id (ADDRESS_MEMORY says which each
    address lies in; an access outside a memory: IndexError)."""
    at = ADDRESS_MEMORY[op]
    if op == "load_im2col":
        tile = _im2col(memories[at.desc], program.desc_int[o.desc], o.m0, o.tm, o.k0, o.tk, o.src_dtype)
        memories[at.dst].write(o.dst, tile, types[at.dst])
    elif op == "load_weights":
        tile = memories[at.src].read(o.src, (o.tk, o.tn), o.src_dtype, (o.src_row_elems, 1))
        memories[at.dst].write(o.dst, tile, types[at.dst])
    elif op == "load_bias":
        bias = memories[at.src].read(o.src, o.tn, o.src_dtype) if o.src >= 0 else np.zeros(o.tn, np.float32)
        memories[at.dst].write(o.dst, np.tile(bias, o.tm), types[at.dst])
    elif op == "matmul":
        a = memories[at.a].read(o.a, (o.tm, o.tk), types[at.a])
        w = memories[at.w].read(o.w, (o.tk, o.tn), types[at.w])
        _, acc = memories[at.acc].strided(o.acc, (o.tm, o.tn), (o.tn, 1), types[at.acc])   # the tile, in place
        for k in range(o.tk):  # the declared order: one k at a time, product rounded, then added
            acc += np.multiply(a[:, k:k + 1], w[k:k + 1, :])
    elif op == "store_tile":
        tile = memories[at.acc].read(o.acc, (o.tm, o.tn), types[at.acc])
        _store(memories[at.desc], program.desc_int[o.desc], tile, o.m0, o.n0, o.dst_dtype)
    else:
        d = SimpleNamespace(**{field.name: int(program.desc_int[o.desc, field]) for field in DESC[op]})
        f = SimpleNamespace(**{field.name: float(program.desc_float[o.desc, field]) for field in DESC_FLOAT[op]})
        _vector(op, memories[at.desc], d, f, o)

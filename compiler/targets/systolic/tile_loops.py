"""The tile loop nest of one GEMM layer, emitted as a block of instruction rows.

In: the layer's GEMM shape and groups, its Tiling, the buffer slot sizes and the
DRAM addresses; out: an `Instructions` block (rows numbered from `base`, the
index its first row will have in the Program) with each row's operands, bytes,
work and dependencies. Per output tile: bias preload into an accumulator slot,
then per K tile an im2col load of A and a load of W (each skipped when the same
tile is still resident from the previous load) and a matmul, then a store. An
integer layer's per-channel requantisation scales and weight zero points come with
its bias (load_bias counts their bytes), and its stores count the outputs they
requantise as work.
Buffers hold `tiling.buffers` slots used round robin, and a load into a slot
waits for the last matmul that read the slot's previous tile (the store, for an
accumulator slot). Byte counts use each operand's element size, and DMA rows name
the element type of the DRAM data they move (OperandTypes). Plain Numba loops,
because a sweep emits tens of thousands of rows per design point. They write each
operand at its column by name (compiler.program.OPERAND, compiled in as constants;
`emit_gemm` keeps their Numba cache fresh, compiler/numba_cache.py) and call nothing
else from other modules.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, vectorize

from compiler import numba_cache
from compiler.program import (DTYPE_CODE, ELEMENT_BYTES, LAYOUT, N_OPERANDS, OPCODE_ID, OPCODE_UNIT, OPERAND,
                              Instructions)

if TYPE_CHECKING:
    from compiler.targets.systolic.tiling import Tiling

KINDS = ("load_bias", "load_im2col", "load_weights", "matmul", "store_tile")
BIAS, LOAD_A, LOAD_W, MATMUL, STORE = range(len(KINDS))
OPCODES = np.array([OPCODE_ID[op] for op in KINDS], np.int16)
ENGINES = OPCODE_UNIT[OPCODES]   # the engine of each: its unit (the Program's engines are the UNITS)
# each kind's operand columns, by name
BIAS_COLS, LOAD_A_COLS, LOAD_W_COLS, MATMUL_COLS, STORE_COLS = (OPERAND[op] for op in KINDS)


@dataclass(frozen=True)
class OperandTypes:
    """Element types of what a GEMM layer's tile loops move, where each lives."""
    x: str = "fp32"            # the layer's input in DRAM (a graph input or an activation)
    input: str = "fp32"        # the input scratchpad (im2col converts x to it)
    weight: str = "fp32"       # the weights, in DRAM and in the weight scratchpad
    bias: str = "fp32"         # the bias in DRAM (loaded into the accumulator)
    accumulator: str = "fp32"  # the accumulator
    output: str = "fp32"       # the layer's output in DRAM (stores convert to it)
    channel_bytes: int = 0     # bytes per output channel of integer parameters fetched with the bias
                               # (requantisation scale, weight zero point)

    @functools.cached_property
    def arrays(self) -> tuple:
        """(element bytes of x, input, weight, bias, accumulator, output, then channel_bytes; DTYPE_CODE
        of the DRAM operands x, weight, bias, output, as the DMA rows name them): the loop nest's
        arguments."""
        names = (self.x, self.input, self.weight, self.bias, self.accumulator, self.output)
        return (np.array([ELEMENT_BYTES[t] for t in names] + [self.channel_bytes], np.int64),
                np.array([DTYPE_CODE[t] for t in (self.x, self.weight, self.bias, self.output)], np.int64))


@functools.lru_cache(maxsize=256)   # lowering asks per layer; a sweep has few type combinations
def operand_types(x: str, input: str, weight: str, accumulator: str, output: str,
                  channel_bytes: int = 0) -> OperandTypes:
    """The (shared, immutable) OperandTypes of a GEMM layer; its bias lives in the accumulator type."""
    return OperandTypes(x, input, weight, accumulator, accumulator, output, channel_bytes)


FP32 = OperandTypes()


def emit_gemm(base: int, layer: int, tiling: Tiling, slot_bytes: tuple, geom: tuple, m: int, k: int, n: int,
              groups: int, desc0: int, w_addr: int, bias_addr: int, input_ready: int,
              types: OperandTypes = FP32) -> Instructions:
    """Rows of a GEMM layer's `groups` GEMMs [m,k] x [k,n]; group g uses descriptor desc0 + g, weights
    [k,n] at w_addr + g*k*n*(weight bytes) and bias (bias_addr < 0: none) at bias_addr + g*n*(bias
    bytes). slot_bytes = (input, weight, accumulator) bytes per buffer slot; geom as in im2col_elems;
    input_ready = row that last wrote the layer's input (-1: none); types: the operands' element types."""
    t = tiling
    _fresh()
    return Instructions(*_loop_nest(
        base, layer, m, k, n, groups, t.tm, t.tk, t.tn, t.buffers, t.order == "m_outer", desc0, w_addr, bias_addr,
        *slot_bytes, input_ready, geom, OPCODES, ENGINES, *types.arrays, N_OPERANDS))


@functools.cache
def _fresh() -> None:
    """Recompile this module's kernels once if their cache holds other layout tables."""
    numba_cache.refresh(globals())


@njit(cache=True)
def _layout():
    """The fingerprint of the layout tables this module's cached code was compiled with."""
    return LAYOUT


@njit(cache=True)
def _im2col_elems(kk, oh, ow, sh, span_h, h, w, m0, tm, k0, tk):
    nch = (k0 + tk - 1) // kk - k0 // kk + 1
    pixels = oh * ow
    n0, n1 = m0 // pixels, (m0 + tm - 1) // pixels
    if n0 == n1:
        out_rows = ((m0 + tm - 1) % pixels) // ow - (m0 % pixels) // ow + 1
        total = nch * min(h, (out_rows - 1) * sh + span_h) * w
    else:
        total = (n1 - n0 + 1) * nch * h * w
    return min(total, tm * tk)


@vectorize(["int64(int64, int64, int64, int64, int64, int64, int64, int64, int64, int64, int64)"], cache=True)
def im2col_elems(kk, oh, ow, sh, span_h, h, w, m0, tm, k0, tk):
    """Input elements the im2col load of A rows m0..m0+tm, columns k0..k0+tk reads from DRAM: the
    input rows its window spans, once each (the on-chip im2col unit expands them), never more than
    the tile holds. geom = (kk, oh, ow, sh, span_h, h, w): kernel elements, output height and
    width, row stride, rows one window spans, input height and width; arguments broadcast."""
    return _im2col_elems(kk, oh, ow, sh, span_h, h, w, m0, tm, k0, tk)


@njit(cache=True, inline="always")   # a call per row would cost more than the row
def _put(rows, i, kind, d0, d1, d2, dram, onchip, work):
    """Write row i of `kind` but its operands (the caller writes them by name); its dependencies
    d0..d2 (-1: none) go in sorted, without repeats."""
    engine, opcode, _, _, dram_col, onchip_col, work_col, dep_ptr, dep_idx, opcodes, engines = rows
    engine[i], opcode[i] = engines[kind], opcodes[kind]
    dram_col[i], onchip_col[i], work_col[i] = dram, onchip, work
    if d0 > d1:
        d0, d1 = d1, d0
    if d1 > d2:
        d1, d2 = d2, d1
    if d0 > d1:
        d0, d1 = d1, d0
    nd, last = dep_ptr[i], -1
    for d in (d0, d1, d2):
        if d > last:
            dep_idx[nd] = d
            nd += 1
            last = d
    dep_ptr[i + 1] = nd


@njit(cache=True)
def _loop_nest(base, layer, m, k, n, groups, tm, tk, tn, nbuf, m_outer, desc0, w_addr0, bias_addr0,
               a_slot_bytes, w_slot_bytes, acc_slot_bytes, input_ready, geom, opcodes, engines, sizes, codes,
               n_operands):
    """The columns of emit_gemm's Instructions, in field order. sizes, codes: OperandTypes.arrays."""
    kk, oh, ow, sh, span_h, h, w = geom
    x_b, in_b, w_b, bias_b, acc_b, out_b, chan_b = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]
    x_code, w_code, bias_code, out_code = codes[0], codes[1], codes[2], codes[3]
    nm, nk, nn = -(-m // tm), -(-k // tk), -(-n // tn)
    cap = groups * nm * nn * (2 + 3 * nk)     # every load emitted; reuse only makes it shorter
    rows = (np.empty(cap, np.int8), np.empty(cap, np.int16), np.full(cap, layer, np.int32),
            np.zeros((cap, n_operands), np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64),
            np.empty(cap, np.int64), np.zeros(cap + 1, np.int64), np.empty(3 * cap, np.int64), opcodes, engines)
    o = rows[3]                                # operands, written by name (OPERAND)
    # last row that used each slot (-1: none yet); slots turn round robin across the layer's groups
    a_user, w_user, acc_user = np.full(nbuf, -1), np.full(nbuf, -1), np.full(nbuf, -1)
    a_next = w_next = acc_next = 0
    i = 0
    for g in range(groups):
        desc, w_addr = desc0 + g, w_addr0 + g * k * n * w_b
        bias = bias_addr0 + g * n * bias_b if bias_addr0 >= 0 else -1
        a_m0 = a_k0 = w_n0 = w_k0 = -1           # key of the tile the last load brought in
        a_slot = w_slot = a_row = w_row = -1     # its slot and row
        for p in range(nm * nn):
            mi, ni = (p // nn, p % nn) if m_outer else (p % nm, p // nm)
            m0, n0 = mi * tm, ni * tn
            tm_, tn_ = min(tm, m - m0), min(tn, n - n0)    # this tile's size: smaller at the edges
            acc_slot, acc_next = acc_next, (acc_next + 1) % nbuf
            acc = acc_slot * acc_slot_bytes
            src = bias + n0 * bias_b if bias >= 0 else -1
            _put(rows, i, BIAS, acc_user[acc_slot], -1, -1, (tn_ * bias_b if src >= 0 else 0) + tn_ * chan_b,
                 tm_ * tn_ * acc_b, 0)
            c = BIAS_COLS
            o[i, c.src], o[i, c.tm], o[i, c.tn], o[i, c.dst], o[i, c.src_dtype] = src, tm_, tn_, acc, bias_code
            prev = base + i
            i += 1
            for k0 in range(0, k, tk):
                tk_ = min(tk, k - k0)
                if a_m0 != m0 or a_k0 != k0:
                    a_slot, a_next = a_next, (a_next + 1) % nbuf
                    read = _im2col_elems(kk, oh, ow, sh, span_h, h, w, m0, tm_, k0, tk_) * x_b
                    _put(rows, i, LOAD_A, a_user[a_slot], input_ready, -1, read, tm_ * tk_ * in_b, 0)
                    c = LOAD_A_COLS
                    o[i, c.desc], o[i, c.m0], o[i, c.tm], o[i, c.k0], o[i, c.tk] = desc, m0, tm_, k0, tk_
                    o[i, c.dst], o[i, c.src_dtype] = a_slot * a_slot_bytes, x_code
                    a_m0, a_k0, a_row = m0, k0, base + i
                    i += 1
                if w_n0 != n0 or w_k0 != k0:
                    w_slot, w_next = w_next, (w_next + 1) % nbuf
                    w_bytes = tk_ * tn_ * w_b
                    _put(rows, i, LOAD_W, w_user[w_slot], -1, -1, w_bytes, w_bytes, 0)
                    c = LOAD_W_COLS
                    o[i, c.src], o[i, c.tk], o[i, c.tn] = w_addr + (k0 * n + n0) * w_b, tk_, tn_
                    o[i, c.src_row_elems], o[i, c.dst], o[i, c.src_dtype] = n, w_slot * w_slot_bytes, w_code
                    w_n0, w_k0, w_row = n0, k0, base + i
                    i += 1
                _put(rows, i, MATMUL, a_row, w_row, prev, 0, tm_ * tk_ * in_b + tk_ * tn_ * w_b + 2 * tm_ * tn_ * acc_b,
                     tm_ * tk_ * tn_)
                c = MATMUL_COLS
                o[i, c.a], o[i, c.w], o[i, c.acc] = a_slot * a_slot_bytes, w_slot * w_slot_bytes, acc
                o[i, c.tm], o[i, c.tk], o[i, c.tn], o[i, c.desc], o[i, c.n0] = tm_, tk_, tn_, desc, n0
                prev = base + i
                a_user[a_slot] = w_user[w_slot] = prev
                i += 1
            _put(rows, i, STORE, prev, -1, -1, tm_ * tn_ * out_b, tm_ * tn_ * acc_b, tm_ * tn_ if chan_b > 0 else 0)
            c = STORE_COLS
            o[i, c.desc], o[i, c.acc], o[i, c.m0], o[i, c.tm] = desc, acc, m0, tm_
            o[i, c.n0], o[i, c.tn], o[i, c.dst_dtype] = n0, tn_, out_code
            acc_user[acc_slot] = base + i
            i += 1
    engine, opcode, layers, operands, dram, onchip, work, dep_ptr, dep_idx = rows[:9]
    return (engine[:i], opcode[:i], layers[:i], operands[:i], dram[:i], onchip[:i], work[:i], dep_ptr[:i + 1],
            dep_idx[:dep_ptr[i]])

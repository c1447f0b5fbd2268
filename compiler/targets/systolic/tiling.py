"""Tile-shape search for GEMM-shaped layers (shared by targets with a matrix unit).

Given a GEMM [M,K] x [K,N], the array shape and dataflow, the buffer capacities
and DRAM figures, enumerate tile shapes (tm, tk, tn), buffer counts (double or
single buffering) and loop orders, keep those that fit, and pick the one with the
lowest estimated cycles. The estimate is a roofline per layer: the slowest of
matrix-unit cycles (exact, from cycles.py), DMA-load cycles and DMA-store
cycles, plus the exposed first load (all of it without double buffering).
A tile's spatial dimensions must cover at least one array fold (or the whole
dimension when it is smaller), otherwise the array cannot be filled.
Byte figures use each operand's element size: the Budget's for the scratchpads and
the accumulator, the layer's for its input and output in DRAM (a bf16 tile holds
twice the elements of an fp32 tile in the same bytes and moves half the bytes).
The search prices the candidates' compute and A-tile reads with NumPy, then scores
every tiling in a Numba loop: it runs per layer shape and design point, so a sweep
pays for it thousands of times.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

from compiler.errors import CompileError
from compiler.program import BYTES
from compiler.targets.systolic.cycles import matmul_cycles, spatial_temporal
from compiler.targets.systolic.tile_loops import im2col_elems


@dataclass(frozen=True)
class Tiling:
    tm: int
    tk: int
    tn: int
    buffers: int          # 2 = double buffering, 1 = single
    order: str            # "n_outer": weights reused across m tiles; "m_outer": inputs reused across n tiles
    est_cycles: int


@dataclass(frozen=True)
class Budget:
    """What the hardware offers a GEMM: capacities in bytes, DRAM figures, the array, and the
    element size (bytes) of what the input scratchpad, weight scratchpad (and weights in
    DRAM) and accumulator (and bias in DRAM) hold."""
    rows: int
    cols: int
    dataflow: str
    input_bytes: int
    weight_bytes: int
    acc_bytes: int
    dram_bytes_per_cycle: float
    dram_latency: int
    double_buffer: bool
    input_elem_bytes: int = BYTES
    weight_elem_bytes: int = BYTES
    acc_elem_bytes: int = BYTES
    macs_per_pe_cycle: int = 1      # K elements a PE reduces per cycle


def _candidates(dim: int, unit: int) -> list:
    values = {dim}
    v = max(1, min(unit, dim))
    while v < dim:
        values.add(v)
        v *= 2
    return sorted(values)


def im2col_read_bytes(geom, m0, tm, k0, tk, elem_bytes=BYTES):
    """DRAM bytes a [tm,tk] im2col tile reads: the input rows its window spans, once each,
    of `elem_bytes` each. geom = (kernel_elems, oh, ow, sh, span_h, h, w); the tile operands
    may be arrays. The on-chip im2col unit expands them; it never reads more than the tile holds.
    """
    return im2col_elems(*geom, m0, tm, k0, tk) * elem_bytes


def _matrix_cycles(dataflow: str, rows: int, cols: int, m: int, k: int, n: int, tms, tks, tns,
                   macs_per_pe_cycle: int = 1) -> np.ndarray:
    """Matrix-unit cycles [len(tms), len(tks), len(tns)] of every tile-size combination: each
    dimension splits into full tiles and at most one smaller edge tile, so a GEMM has up to
    2x2x2 kinds of tile, each priced exactly and weighted by how many there are."""
    sizes, counts = [], []
    for axis, (dim, t) in enumerate(((m, tms), (k, tks), (n, tns))):
        shape = [1] * 6                     # (kind_m, kind_k, kind_n, tm, tk, tn)
        shape[axis], shape[axis + 3] = 2, len(t)
        sizes.append(np.stack([t, dim % t]).reshape(shape))
        counts.append(np.stack([dim // t, dim % t > 0]).reshape(shape))
    cycles = matmul_cycles(dataflow, rows, cols, *sizes, macs_per_pe_cycle)
    return (counts[0] * counts[1] * counts[2] * cycles).sum(axis=(0, 1, 2))


def choose_tiling(b: Budget, m: int, k: int, n: int, layer: str, geom=None, x_elem_bytes: int = BYTES,
                  out_elem_bytes: int = BYTES) -> Tiling:
    """Lowest-estimate tiling that fits; CompileError naming the layer if none does.
    x_elem_bytes, out_elem_bytes: element sizes of the layer's input and output in DRAM."""
    best = _search(b, m, k, n, geom, x_elem_bytes, out_elem_bytes)
    if best is not None:
        return best
    tms, tks, tns = _priced_candidates(b.dataflow, b.rows, b.cols, m, k, n, geom, b.macs_per_pe_cycle)[:3]
    tm, tk, tn = int(tms[0]), int(tks[0]), int(tns[0])      # the smallest candidate tile, single-buffered
    raise CompileError(
        f"layer '{layer}': no tile fits the on-chip memories: the smallest tile the search tries "
        f"(m{tm} k{tk} n{tn}: one {b.rows}x{b.cols} array fold) needs input {tm * tk * b.input_elem_bytes} B, weight "
        f"{tk * tn * b.weight_elem_bytes} B, accumulator {tm * tn * b.acc_elem_bytes} B; the spec offers "
        f"{b.input_bytes}, {b.weight_bytes}, {b.acc_bytes} B (raise memory.*_kib or shrink the array)")


@functools.lru_cache(maxsize=4096)
def _search(b: Budget, m: int, k: int, n: int, geom, x_elem_bytes: int, out_elem_bytes: int) -> Tiling | None:
    tms, tks, tns, compute, a_elems = _priced_candidates(b.dataflow, b.rows, b.cols, m, k, n, geom,
                                                         b.macs_per_pe_cycle)
    elem_bytes = np.array([x_elem_bytes, b.input_elem_bytes, b.weight_elem_bytes, b.acc_elem_bytes,
                           out_elem_bytes], np.int64)
    tm, tk, tn, buffers, m_outer, est = _best(
        compute, a_elems, tms, tks, tns, m, k, n, b.dram_bytes_per_cycle, b.dram_latency, b.input_bytes,
        b.weight_bytes, b.acc_bytes, b.double_buffer, elem_bytes)
    if tm == 0:
        return None
    return Tiling(int(tm), int(tk), int(tn), int(buffers), "m_outer" if m_outer else "n_outer", int(est))


@functools.lru_cache(maxsize=4096)
def _priced_candidates(dataflow: str, rows: int, cols: int, m: int, k: int, n: int, geom,
                       macs_per_pe_cycle: int = 1) -> tuple:
    """Tile sizes to try per dimension, with what their price owes nothing to the memories (so
    design points that differ only in memory share it): matrix-unit cycles [tm, tk, tn] and the
    DRAM elements one A tile reads [tm, tk]. The Numba search loop gets these, and the element
    sizes, as arguments: its disk cache only notices changes to this file, not to other modules."""
    s_r, s_c, _ = spatial_temporal(dataflow, "m", "k", "n")
    # Candidates of the spatial dimensions start at one array fold (or the whole dimension),
    # so every candidate fills the array; the others grow from 16.
    unit = {"m": 16, "k": 16, "n": 16}
    unit[s_r], unit[s_c] = rows, cols
    unit["k"] *= macs_per_pe_cycle            # a PE reduces that many k per cycle: a fold spans rows x p of K
    tms, tks, tns = (np.array(_candidates(dim, unit[d]), np.int64) for d, dim in (("m", m), ("k", k), ("n", n)))
    compute = _matrix_cycles(dataflow, rows, cols, m, k, n, tms, tks, tns, macs_per_pe_cycle)
    a_elems = (im2col_elems(*geom, 0, tms[:, None], 0, tks[None, :]) if geom
               else tms[:, None] * tks[None, :])
    return tms, tks, tns, compute, a_elems


@njit(cache=True)
def _estimate(compute, a_tile, m, k, n, tm, tk, tn, buffers, m_outer, bytes_per_cycle, latency, w_bytes,
              out_bytes):
    """Estimated cycles of one tiling from its matrix-unit cycles and the DRAM bytes of one A tile
    (m_outer: inputs reused across n tiles, else weights across m tiles); w_bytes, out_bytes:
    element sizes of the weights and of the layer output in DRAM."""
    nm, nk, nn = -(-m // tm), -(-k // tk), -(-n // tn)
    a_loads = nm * nk * (1 if (m_outer and nk == 1) else nn)
    w_loads = nn * nk * (1 if (not m_outer and nk == 1) else nm)
    load = (a_loads * a_tile + w_loads * tk * tn * w_bytes) / bytes_per_cycle \
        + (a_loads + w_loads + nm * nn) * latency
    store = m * n * out_bytes / bytes_per_cycle + nm * nn * latency
    first = (a_tile + tk * tn * w_bytes) / bytes_per_cycle + 2 * latency
    if buffers == 1:  # nothing overlaps: loads, compute and stores take turns
        return int(compute + load + store)
    return int(max(float(compute), load, store) + first)


@njit(cache=True)
def _best(compute, a_elems, tms, tks, tns, m, k, n, bytes_per_cycle, latency, input_bytes, weight_bytes, acc_bytes,
          double_buffer, elem_bytes):
    """(tm, tk, tn, buffers, m_outer, est) of the fitting tiling with the lowest estimate, then
    double buffering, then fewest tiles; the first such in loop order. tm = 0: nothing fits.
    elem_bytes = element sizes of (input in DRAM, input scratchpad, weights, accumulator, output)."""
    x_b, in_b, w_b, acc_b, out_b = elem_bytes[0], elem_bytes[1], elem_bytes[2], elem_bytes[3], elem_bytes[4]
    best = (0, 0, 0, 0, False, 0)
    best_key = (np.iinfo(np.int64).max, 0, 0)
    for buffers in (2, 1):
        if buffers == 2 and not double_buffer:
            continue
        for i, tm in enumerate(tms):
            for j, tk in enumerate(tks):
                for l, tn in enumerate(tns):
                    if (tm * tk * in_b * buffers > input_bytes or tk * tn * w_b * buffers > weight_bytes
                            or tm * tn * acc_b * buffers > acc_bytes):
                        continue
                    tiles = -(-m // tm) * -(-k // tk) * -(-n // tn)
                    for m_outer in (False, True):
                        est = _estimate(compute[i, j, l], a_elems[i, j] * x_b, m, k, n, tm, tk, tn, buffers,
                                        m_outer, bytes_per_cycle, latency, w_b, out_b)
                        key = (est, -buffers, tiles)
                        if key < best_key:
                            best_key, best = key, (tm, tk, tn, buffers, m_outer, est)
    return best

"""Tile-shape search for GEMM-shaped layers (shared by targets with a matrix unit).

Given a GEMM [M,K] x [K,N], the array shape and dataflow, the buffer capacities
and DRAM figures, enumerate tile shapes (tm, tk, tn), buffer counts (double or
single buffering) and loop orders, keep those that fit, and pick the one with the
lowest estimated cycles. The estimate prices what the simulator charges
(sim/targets/systolic.py): matrix-unit cycles exactly (cycles.py's folds, less the
fills and drains saved where consecutive matmuls keep the stationary tile in the
PEs, `_resident_pairs`), and every DMA transfer as the timing does (latency plus the
slower of its DRAM and scratchpad transfer; one cycle each with memory.ideal, so an
ideal-memory spec is tiled for compute alone). Double buffering overlaps the three
engines (the slowest of matrix, load and store, plus the first tile's loads and the
last store, which nothing hides); single buffering takes them in turn.
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
from compiler.targets.systolic.cycles import DATAFLOW_ID, fold_phases, matmul_cycles, spatial_temporal
from compiler.targets.systolic.tile_loops import im2col_elems


@dataclass(frozen=True)
class Tiling:
    tm: int
    tk: int
    tn: int
    buffers: int          # 2 = double buffering, 1 = single
    order: str            # "n_outer": weights reused across m tiles; "m_outer": inputs reused across n tiles
    est_cycles: int
    compute_cycles: int = 0   # matrix-unit cycles of one group, as the simulator charges them


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
    scratchpad_bytes_per_cycle: float = 256.0   # on-chip transfer rate: banks x bytes per bank per cycle
    ideal_memory: bool = False      # every DMA transfer takes one cycle (memory.ideal)
    output_drain: str = "overlapped"   # array.output_stationary_drain


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
                   macs_per_pe_cycle: int = 1, output_drain: str = "overlapped") -> np.ndarray:
    """Matrix-unit cycles [len(tms), len(tks), len(tns)] of every tile-size combination: each
    dimension splits into full tiles and at most one smaller edge tile, so a GEMM has up to
    2x2x2 kinds of tile, each priced exactly and weighted by how many there are."""
    sizes, counts = [], []
    for axis, (dim, t) in enumerate(((m, tms), (k, tks), (n, tns))):
        shape = [1] * 6                     # (kind_m, kind_k, kind_n, tm, tk, tn)
        shape[axis], shape[axis + 3] = 2, len(t)
        sizes.append(np.stack([t, dim % t]).reshape(shape))
        counts.append(np.stack([dim // t, dim % t > 0]).reshape(shape))
    cycles = matmul_cycles(dataflow, rows, cols, *sizes, macs_per_pe_cycle, output_drain)
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
                                                         b.macs_per_pe_cycle, b.output_drain)
    elem_bytes = np.array([x_elem_bytes, b.input_elem_bytes, b.weight_elem_bytes, b.acc_elem_bytes,
                           out_elem_bytes], np.int64)
    array = _array(b, k)
    memory = np.array([b.dram_bytes_per_cycle, b.scratchpad_bytes_per_cycle, b.dram_latency], np.float64)
    tm, tk, tn, buffers, m_outer, est, comp = _best(
        compute, a_elems, tms, tks, tns, m, k, n, array, memory, b.ideal_memory, b.input_bytes,
        b.weight_bytes, b.acc_bytes, b.double_buffer, elem_bytes)
    if tm == 0:
        return None
    return Tiling(int(tm), int(tk), int(tn), int(buffers), "m_outer" if m_outer else "n_outer", int(est), int(comp))


def compute_cycles(b: Budget, m: int, k: int, n: int, t: Tiling) -> int:
    """Matrix-unit cycles of one group of the GEMM [m,k] x [k,n] under tiling t, as the timing
    (sim/targets/systolic.py) charges them: what the search minimises with ideal memory."""
    sizes = (np.array([v], np.int64) for v in (t.tm, t.tk, t.tn))
    full = _matrix_cycles(b.dataflow, b.rows, b.cols, m, k, n, *sizes, b.macs_per_pe_cycle, b.output_drain)
    return int(_matrix(full[0, 0, 0], _array(b, k), -(-m // t.tm), -(-k // t.tk), -(-n // t.tn), t.buffers,
                       t.order == "m_outer"))


def _array(b: Budget, k: int) -> np.ndarray:
    """What the search loop knows of the array: (dataflow id, fill, drain, whether a tile of the
    whole K is one fold deep, so a weight or input tile may stay resident: cycles.one_fold_deep)."""
    fill, drain = fold_phases(b.dataflow, b.rows, b.cols, b.output_drain)
    return np.array([DATAFLOW_ID[b.dataflow], fill, drain, -(-k // b.macs_per_pe_cycle) <= b.rows], np.int64)


@functools.lru_cache(maxsize=4096)
def _priced_candidates(dataflow: str, rows: int, cols: int, m: int, k: int, n: int, geom,
                       macs_per_pe_cycle: int = 1, output_drain: str = "overlapped") -> tuple:
    """Tile sizes to try per dimension, with what their price owes nothing to the memories (so
    design points that differ only in memory share it): matrix-unit cycles [tm, tk, tn] (before the
    resident savings, which depend on the loop order) and the DRAM elements one A tile reads
    [tm, tk]. The Numba search loop gets these, and the element sizes, as arguments: its disk
    cache only notices changes to this file, not to other modules."""
    s_r, s_c, _ = spatial_temporal(dataflow, "m", "k", "n")
    # Candidates of the spatial dimensions start at one array fold (or the whole dimension),
    # so every candidate fills the array; the others grow from 16.
    unit = {"m": 16, "k": 16, "n": 16}
    unit[s_r], unit[s_c] = rows, cols
    unit["k"] *= macs_per_pe_cycle            # a PE reduces that many k per cycle: a fold spans rows x p of K
    tms, tks, tns = (np.array(_candidates(dim, unit[d]), np.int64) for d, dim in (("m", m), ("k", k), ("n", n)))
    compute = _matrix_cycles(dataflow, rows, cols, m, k, n, tms, tks, tns, macs_per_pe_cycle, output_drain)
    a_elems = (im2col_elems(*geom, 0, tms[:, None], 0, tks[None, :]) if geom
               else tms[:, None] * tks[None, :])
    return tms, tks, tns, compute, a_elems


@njit(cache=True)
def _resident_pairs(dataflow, one_fold, nm, nk, nn, m_outer):
    """Consecutive matmuls of one group that keep the stationary tile in the PEs (the timing's rule,
    sim/targets/systolic.py `resident`), given the loop nest of tile_loops.py (output tiles m then n
    (m_outer) or n then m, K innermost; a tile is loaded again only when it changes). Weight-
    stationary: the M tiles of one N column share a weight tile when K is one tile, one fold deep;
    input-stationary: the N tiles of one M row share an input tile likewise; output-stationary: each
    K step after the first continues its output tile."""
    if dataflow == 1:
        return nm * nn * (nk - 1)
    if nk > 1 or not one_fold:
        return 0
    if dataflow == 0:
        return nn * (nm - 1) if (not m_outer or nn == 1) else 0
    return nm * (nn - 1) if (m_outer or nm == 1) else 0


@njit(cache=True)
def _matrix(compute, array, nm, nk, nn, buffers, m_outer):
    """Matrix-unit cycles of one group: `compute` (every matmul's folds in full) less the resident
    savings (cycles.resident_saving); array as in _estimate."""
    fill, drain = array[1], array[2]
    # weight- and input-stationary hide the previous drain only into another accumulator slot
    saving = fill + drain if (array[0] == 1 or buffers == 2) else fill
    return compute - _resident_pairs(array[0], array[3] == 1, nm, nk, nn, m_outer) * saving


@njit(cache=True)
def _dma(dram_bytes, onchip_bytes, memory, ideal):
    """Cycles of one DMA transfer as the timing charges them: latency (when it touches DRAM) plus the
    slower of its DRAM and scratchpad transfers; one cycle with ideal memory."""
    if ideal:
        return 1.0
    dram_bpc, spad_bpc, latency = memory[0], memory[1], memory[2]
    return max(1.0, (latency if dram_bytes > 0 else 0.0)
               + max(np.ceil(dram_bytes / dram_bpc), np.ceil(onchip_bytes / spad_bpc)))


@njit(cache=True)
def _estimate(compute, a_tile, m, k, n, tm, tk, tn, buffers, m_outer, array, memory, ideal, elem_bytes):
    """(estimated cycles, matrix-unit cycles) of one tiling, from its matrix-unit cycles before the
    resident savings and the DRAM bytes of one A tile (m_outer: inputs reused across n tiles, else
    weights across m tiles). array = (dataflow id, fill, drain, whole K one fold deep); memory =
    (DRAM bytes/cycle, scratchpad bytes/cycle, latency); elem_bytes as in _best."""
    in_b, w_b, acc_b, out_b = elem_bytes[1], elem_bytes[2], elem_bytes[3], elem_bytes[4]
    nm, nk, nn = -(-m // tm), -(-k // tk), -(-n // tn)
    matrix = _matrix(compute, array, nm, nk, nn, buffers, m_outer)
    a_loads = nm * nk * (1 if (m_outer and nk == 1) else nn)
    w_loads = nn * nk * (1 if (not m_outer and nk == 1) else nm)
    a_load = _dma(a_tile, tm * tk * in_b, memory, ideal)
    w_load = _dma(tk * tn * w_b, tk * tn * w_b, memory, ideal)
    bias_load = _dma(tn * acc_b, tm * tn * acc_b, memory, ideal)
    store = _dma(tm * tn * out_b, tm * tn * acc_b, memory, ideal)
    loads = a_loads * a_load + w_loads * w_load + nm * nn * bias_load
    stores = nm * nn * store
    if buffers == 1:  # nothing overlaps: loads, compute and stores take turns
        return int(matrix + loads + stores), matrix
    # each engine's total, or the round of the accumulator's two slots: the load engine runs in
    # program order, so a tile's bias load (and the loads behind it) waits for the store two tiles
    # back: per two tiles, loads, matmuls and stores take turns
    chained = (loads + matrix + stores) / 2
    return int(max(float(matrix), loads, stores, chained) + a_load + w_load + bias_load + store), matrix


@njit(cache=True)
def _best(compute, a_elems, tms, tks, tns, m, k, n, array, memory, ideal, input_bytes, weight_bytes, acc_bytes,
          double_buffer, elem_bytes):
    """(tm, tk, tn, buffers, m_outer, est, matrix cycles) of the fitting tiling with the lowest estimate,
    then double buffering, then fewest tiles; the first such in loop order. tm = 0: nothing fits.
    elem_bytes = element sizes of (input in DRAM, input scratchpad, weights, accumulator, output)."""
    x_b, in_b, w_b, acc_b = elem_bytes[0], elem_bytes[1], elem_bytes[2], elem_bytes[3]
    best = (0, 0, 0, 0, False, 0, 0)
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
                        est, matrix = _estimate(compute[i, j, l], a_elems[i, j] * x_b, m, k, n, tm, tk, tn, buffers,
                                                m_outer, array, memory, ideal, elem_bytes)
                        key = (est, -buffers, tiles)
                        if key < best_key:
                            best_key, best = key, (tm, tk, tn, buffers, m_outer, est, matrix)
    return best

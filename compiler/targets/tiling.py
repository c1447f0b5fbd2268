"""Tile-shape search for GEMM-shaped layers (shared by targets with a matrix unit).

Given a GEMM [M,K] x [K,N], the array shape and dataflow, the buffer capacities
and DRAM figures, enumerate tile shapes (tm, tk, tn), buffer counts (double or
single buffering) and loop orders, keep those that fit, and pick the one with the
lowest estimated cycles. The estimate is a roofline per layer: the slowest of
matrix-unit cycles (exact, from systolic_cycles), DMA-load cycles and DMA-store
cycles, plus the exposed first load (all of it without double buffering).
A tile's spatial dimensions must cover at least one array fold (or the whole
dimension when it is smaller), otherwise the array cannot be filled.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

from compiler.errors import CompileError
from compiler.targets.systolic_cycles import matmul_cycles, spatial_temporal

BYTES = 4  # fp32 operands and accumulators


@dataclass(frozen=True)
class Tiling:
    tm: int
    tk: int
    tn: int
    buffers: int          # 2 = double buffering, 1 = single
    order: str            # "n_outer": weights reused across m tiles; "m_outer": inputs reused across n tiles
    est_cycles: int

    def describe(self) -> str:
        return (f"tile m{self.tm} k{self.tk} n{self.tn} buffers={self.buffers} "
                f"order={self.order} est_cycles={self.est_cycles}")


@dataclass(frozen=True)
class Budget:
    """What the hardware offers a GEMM: capacities in bytes, DRAM figures, the array."""
    rows: int
    cols: int
    dataflow: str
    input_bytes: int
    weight_bytes: int
    acc_bytes: int
    dram_bytes_per_cycle: float
    dram_latency: int
    double_buffer: bool


def _candidates(dim: int, unit: int) -> list:
    values = {dim}
    v = max(1, min(unit, dim))
    while v < dim:
        values.add(v)
        v *= 2
    return sorted(values)


def _pieces(dim: int, tile: int) -> list:
    full, rest = divmod(dim, tile)
    return [(tile, full)] + ([(rest, 1)] if rest else [])


def im2col_read_bytes(geom, m0: int, tm: int, k0: int, tk: int) -> int:
    """DRAM bytes a [tm,tk] im2col tile reads: the input rows its window spans, once each.

    geom = (kernel_elems, oh, ow, sh, span_h, h, w). The on-chip im2col unit
    expands them; it never reads more than the tile itself holds.
    """
    kk, oh, ow, sh, span_h, h, w = geom
    nch = (k0 + tk - 1) // kk - k0 // kk + 1
    pixels = oh * ow
    n0, n1 = m0 // pixels, (m0 + tm - 1) // pixels
    if n0 == n1:
        out_rows = ((m0 + tm - 1) % pixels) // ow - (m0 % pixels) // ow + 1
        total = nch * min(h, (out_rows - 1) * sh + span_h) * w
    else:
        total = (n1 - n0 + 1) * nch * h * w
    return min(total, tm * tk) * BYTES


def estimate(b: Budget, m: int, k: int, n: int, tm: int, tk: int, tn: int, buffers: int, order: str,
             geom=None) -> int:
    compute = 0
    for (pm, cm), (pk, ck), (pn, cn) in itertools.product(_pieces(m, tm), _pieces(k, tk), _pieces(n, tn)):
        compute += cm * ck * cn * int(matmul_cycles(b.dataflow, b.rows, b.cols, pm, pk, pn))
    nm, nk, nn = -(-m // tm), -(-k // tk), -(-n // tn)
    a_tile = im2col_read_bytes(geom, 0, tm, 0, tk) if geom else tm * tk * BYTES
    a_loads = nm * nk * (1 if (order == "m_outer" and nk == 1) else nn)
    w_loads = nn * nk * (1 if (order == "n_outer" and nk == 1) else nm)
    load = (a_loads * a_tile + w_loads * tk * tn * BYTES) / b.dram_bytes_per_cycle \
        + (a_loads + w_loads + nm * nn) * b.dram_latency
    store = m * n * BYTES / b.dram_bytes_per_cycle + nm * nn * b.dram_latency
    first = (a_tile + tk * tn * BYTES) / b.dram_bytes_per_cycle + 2 * b.dram_latency
    if buffers == 1:  # nothing overlaps: loads, compute and stores take turns
        return int(compute + load + store)
    return int(max(compute, load, store) + first)


def choose_tiling(b: Budget, m: int, k: int, n: int, layer: str, geom=None) -> Tiling:
    """Lowest-estimate tiling that fits; CompileError naming the layer if none does."""
    best = _search(b, m, k, n, geom)
    if best is not None:
        return best
    s_r, s_c, _ = spatial_temporal(b.dataflow, "m", "k", "n")
    dims = {"m": m, "k": k, "n": n}
    need = {s_r: min(dims[s_r], b.rows), s_c: min(dims[s_c], b.cols)}
    tm, tk, tn = need.get("m", 1), need.get("k", 1), need.get("n", 1)
    raise CompileError(
        f"layer '{layer}': no tile fits the on-chip memories: the smallest tile that fills one "
        f"{b.rows}x{b.cols} array fold needs input {tm * tk * BYTES} B, weight {tk * tn * BYTES} B, "
        f"accumulator {tm * tn * BYTES} B; the spec offers {b.input_bytes}, {b.weight_bytes}, "
        f"{b.acc_bytes} B (raise memory.*_kib or shrink the array)")


@functools.lru_cache(maxsize=4096)
def _search(b: Budget, m: int, k: int, n: int, geom) -> Tiling | None:
    s_r, s_c, _ = spatial_temporal(b.dataflow, "m", "k", "n")
    unit = {"m": 16, "k": 16, "n": 16}
    unit[s_r], unit[s_c] = b.rows, b.cols
    minimum = {s_r: b.rows, s_c: b.cols}
    best = None
    for buffers in ((2, 1) if b.double_buffer else (1,)):
        for tm, tk, tn in itertools.product(_candidates(m, unit["m"]), _candidates(k, unit["k"]),
                                            _candidates(n, unit["n"])):
            dims = {"m": (tm, m), "k": (tk, k), "n": (tn, n)}
            if any(t < min(full, minimum[d]) for d, (t, full) in dims.items() if d in minimum):
                continue
            if (tm * tk * BYTES * buffers > b.input_bytes or tk * tn * BYTES * buffers > b.weight_bytes
                    or tm * tn * BYTES * buffers > b.acc_bytes):
                continue
            for order in ("n_outer", "m_outer"):
                est = estimate(b, m, k, n, tm, tk, tn, buffers, order, geom)
                key = (est, -buffers, math.ceil(m / tm) * math.ceil(k / tk) * math.ceil(n / tn))
                if best is None or key < best[0]:
                    best = (key, Tiling(tm, tk, tn, buffers, order, est))
    return None if best is None else best[1]

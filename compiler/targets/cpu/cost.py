"""Analytical cost of the CPU target's work, in core cycles: the lowering chooses each layer's blocking
and split over cores with it, and the timing (sim/targets/cpu.py) charges the same figures.

In: a CpuSpec and one conv/GEMM layer (GemmShape: `groups` GEMMs [M,K] x [K,N], element types, where
its input and weights are when it starts), or a vector kernel (element-ops, bytes, where they are).
Out: the BLIS blocking (Blocking), the split over cores with each core's tile cost (GemmPlan,
TileCost: cycles and the parts they come from, bytes per cache level), a VectorCost.

The GEMM is the BLIS algorithm [Goto] [BLIS]: five loops around a register-blocked micro-kernel,
  for jc (nc columns: a packed panel B~ of kc x nc, kept in the core's share of L3)
    for pc (kc of K)
      for ic (mc rows: a packed block A~ of mc x kc, kept in L2)
        for jr (nr)  for ir (mr): C[mr x nr] += A~[mr x kc] B~[kc x nr], C in registers,
with the B~ micro-panel (kc x nr) kept in L1 while A~ micro-panels stream from L2. C's columns are
vectorised (nr = whole vectors of 32-bit lanes); A's elements are broadcast. The blocking is chosen
analytically from the core and its caches, as Low et al. derive it [Low] (each rule below names its
source); the weights are constants, packed into B~ panels once at compile time (as oneDNN and
onnxruntime's MLAS prepack them), so an inference packs only A (im2col).

Sources:
  [Goto]  K. Goto and R. van de Geijn, "Anatomy of High-Performance Matrix Multiplication", ACM TOMS
          34(3), 2008: the layered blocking, packing, and which operand lives in which cache.
  [BLIS]  F. Van Zee and R. van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS
          Functionality", ACM TOMS 41(3), 2015: the five loops around the micro-kernel.
  [Low]   T. M. Low, F. D. Igual, T. M. Smith and E. S. Quintana-Orti, "Analytical Modeling Is Enough
          for High-Performance BLIS", ACM TOMS 43(2), 2016: mr x nr must hold at least
          N_vec x L_vfma x N_vfma independent accumulators to hide the FMA latency, within the register
          file; kc from L1 (one way kept for the streaming operand), mc from L2, nc from L3, each
          from the cache's capacity and associativity.
  [Little] J. D. C. Little, "A Proof for the Queuing Formula L = lambda W", Operations Research 9(3),
          1961: a core with at most `l2_outstanding_misses` lines in flight, each taking a latency,
          streams at most misses x line / latency bytes per cycle from that level.
  [Roofline] S. Williams, A. Waterman and D. Patterson, "Roofline", CACM 52(4), 2009: the slowest of
          compute and each level's transfer bounds a tile (they overlap: out-of-order issue and the
          hardware prefetchers stream the packed blocks while the micro-kernel runs).
  [MCS]   J. M. Mellor-Crummey and M. L. Scott, "Algorithms for Scalable Synchronization on Shared-Memory
          Multiprocessors", ACM TOCS 9(1), 1991: a tree (dissemination) barrier over P cores takes
          ceil(log2 P) rounds, each one cache-line transfer between two cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.errors import SpecError

LEVELS = ("l1", "l2", "l3", "dram")      # where a tile's bytes come from (sim/targets/cpu.py level_bytes)
REGISTER_VECTORS = (1, 2, 4)             # nr candidates: 1, 2 or 4 vectors (divide channel counts evenly)
TERMS = ("compute", "l2", "l3", "dram")


@dataclass(frozen=True)
class Blocking:
    """The BLIS blocking of one core's GEMM: register block mr x nr, cache blocks kc, mc, nc [Low]."""
    mr: int
    nr: int
    kc: int
    mc: int
    nc: int

    @property
    def register_block(self) -> str:
        return f"{self.mr}x{self.nr}"

    @property
    def cache_blocks(self) -> str:
        return f"kc{self.kc} mc{self.mc} nc{self.nc}"


@dataclass(frozen=True)
class GemmShape:
    """A conv/GEMM layer as the cost model sees it."""
    m: int
    n: int
    k: int
    groups: int
    datatype: str          # the MACs' operand type (the input's)
    x_bytes: int           # element bytes of the input, weights and output in DRAM
    w_bytes: int
    out_bytes: int
    input_bytes: int       # bytes of the whole input activation (an im2col row's unique elements)
    input_level: str       # where the input is when the layer starts: "l3" or "dram"
    weight_level: str      # where the weights are: "l3" or "dram"
    write_back: bool       # whether the output is written back to DRAM (the footprint exceeds L3)

    def extras(self) -> dict:
        """The fields a Mapping records so the timing rebuilds this shape (with dims and the types)."""
        return {"input_bytes": self.input_bytes, "input_level": self.input_level,
                "weight_level": self.weight_level, "write_back": self.write_back}


@dataclass(frozen=True)
class TileCost:
    """One core's tile: tm rows x tn columns of every group, over the whole K."""
    cycles: float
    compute_cycles: float   # micro-kernel + packing (or the direct depthwise kernel)
    l2_cycles: float
    l3_cycles: float
    dram_cycles: float
    latency_cycles: float   # exposed at the start of each packed block
    level_bytes: dict       # level -> bytes that level serves
    bound: str              # the largest of TERMS


@dataclass(frozen=True)
class GemmPlan:
    """A layer's split over cores: row chunks x column chunks, one tile each."""
    blocking: Blocking
    rows: tuple             # (m0, tm) per row chunk
    cols: tuple             # (n0, tn) per column chunk
    cycles: float           # the slowest tile's
    bound: str
    depthwise: bool

    @property
    def cores(self) -> int:
        return len(self.rows) * len(self.cols)

    def tiles(self) -> list:
        return [(m0, tm, n0, tn) for m0, tm in self.rows for n0, tn in self.cols]


@dataclass(frozen=True)
class VectorCost:
    cycles: float
    compute_cycles: float
    transfer_cycles: float
    bound: str


def _round_up(x: int, step: int) -> int:
    return -(-x // step) * step


def packed_bytes(spec, datatype: str) -> int:
    """Bytes of one packed A~/B~ element: fp32 lanes (4), bf16 pairs (2), int8 quads (1), int16 pairs (2)."""
    return 4 // spec.k_per_instruction(datatype)


def register_block(spec) -> tuple:
    """(mr, nr) [Low]: for nr = 1, 2 or 4 vectors, mr the most rows the register file holds (mr x v
    accumulators, v B vectors and one broadcast register); of those, the one meeting the latency rule
    (mr x v >= L_vfma x N_vfma independent accumulators) with the fewest L1 loads per vector FMA
    ((mr + v) / (mr v)), ties to more accumulators."""
    core = spec.core
    need = core.fma_latency_cycles * spec.vector_ops_per_cycle
    best = None
    for v in REGISTER_VECTORS:
        mr = (core.vector_registers - v - 1) // v
        if mr < 1:
            continue
        key = (mr * v < need, (mr + v) / (mr * v), -mr * v)
        if best is None or key < best[0]:
            best = (key, mr, v * spec.lanes)
    if best is None:
        raise SpecError(f"field 'core.vector_registers' is {core.vector_registers}; a register block needs at "
                        "least 3 (an accumulator, a B vector and a broadcast)")
    return best[1], best[2]


def blocking(spec, datatype: str, sharers: int = 1, where: str = "spec") -> Blocking:
    """The BLIS blocking for GEMMs of `datatype` with `sharers` cores sharing one L3 [Low]:
      kc: one A~ and one B~ micro-panel ((mr + nr) x kc) fill L1 but one way (which C and the
          streaming lines use), in whole dot-product steps;
      mc: the A~ block (mc x kc) fills L2 but one way (the B~ micro-panel's), in multiples of mr;
      nc: the B~ panel (kc x nc) fills the core's share of L3 but one way, in multiples of nr.
    SpecError naming the cache field if a block would be empty."""
    cache = spec.cache
    mr, nr = register_block(spec)
    size = packed_bytes(spec, datatype)
    step = spec.k_per_instruction(datatype)
    l1 = cache.l1d_kib * 1024 * (cache.l1d_ways - 1) / cache.l1d_ways
    kc = int(l1 // ((mr + nr) * size)) // step * step
    if kc < step:
        raise SpecError(f"{where}: field 'cache.l1d_kib' is {cache.l1d_kib:g}; the {mr}x{nr} register block's A and "
                        f"B micro-panels need {(mr + nr) * size * step} bytes per K step in {cache.l1d_ways - 1} of "
                        f"its {cache.l1d_ways} ways: give a larger L1")
    l2 = cache.l2_kib * 1024 * (cache.l2_ways - 1) / cache.l2_ways
    mc = int(l2 // (kc * size)) // mr * mr
    if mc < mr:
        raise SpecError(f"{where}: field 'cache.l2_kib' is {cache.l2_kib:g}; it holds no {mr}-row block of A "
                        f"(kc {kc}): give a larger L2")
    l3 = cache.l3_mib * 2 ** 20 * (cache.l3_ways - 1) / cache.l3_ways / min(max(sharers, 1), cache.cores_per_l3)
    nc = int(l3 // (kc * size)) // nr * nr
    if nc < nr:
        raise SpecError(f"{where}: field 'cache.l3_mib' is {cache.l3_mib:g}; a core's share holds no {nr}-column "
                        f"panel of B (kc {kc}): give a larger L3 or fewer cores_per_l3")
    return Blocking(mr, nr, kc, mc, nc)


def layer_blocks(spec, block: Blocking, shape: GemmShape) -> dict:
    """The cache blocks clipped to the layer, as a Mapping's tile: m = mc, k = kc, n = nc (elements)."""
    step = spec.k_per_instruction(shape.datatype)
    return {"m": min(block.mc, _round_up(shape.m, block.mr)), "k": min(block.kc, _round_up(shape.k, step)),
            "n": min(block.nc, _round_up(shape.n, spec.lanes)), "g": 1}


def is_depthwise(spec, groups: int, n: int) -> bool:
    """A grouped conv whose groups are narrower than a vector runs as a direct kernel vectorised over
    channels (as CPU libraries run depthwise convolutions), not as G GEMMs of a partial vector each."""
    return groups > 1 and n < spec.lanes


def _level_bandwidth(spec, level: str, active: int) -> float:
    """Bytes per cycle one core draws from `level` while `active` cores run: L2 and L3 ports are per
    core (the L3 is sliced); DRAM is shared by the active cores; L3 and DRAM are also bounded by the
    misses a core keeps in flight [Little]."""
    cache = spec.cache
    if level in ("l1", "l2"):
        return spec.core.load_bytes_per_cycle if level == "l1" else cache.l2_bytes_per_cycle
    in_flight = cache.l2_outstanding_misses * cache.line_bytes
    if level == "l3":
        return min(cache.l3_bytes_per_cycle, in_flight / max(cache.l3_latency_cycles, 1))
    share = spec.dram_gbps / spec.clock_ghz / max(active, 1)
    return min(share, in_flight / max(spec.dram_latency_cycles, 1))


def _latency(spec, level: str) -> float:
    return {"l1": spec.cache.l1_latency_cycles, "l2": spec.cache.l2_latency_cycles,
            "l3": spec.cache.l3_latency_cycles, "dram": spec.dram_latency_cycles}[level]


def sync_cycles(spec, active: int) -> float:
    """Cycles a layer split over `active` cores pays to fork and join them [MCS]: 2 x ceil(log2 P) rounds,
    those among the cores of one L3 domain an L3 hit each, those between domains a DRAM-latency-class
    transfer (a line crossing the I/O die). 0 on one core."""
    if active <= 1:
        return 0.0
    local = min(active, spec.cache.cores_per_l3)
    domains = -(-active // spec.cache.cores_per_l3)
    rounds = {"l3": math.ceil(math.log2(local)), "dram": math.ceil(math.log2(domains))}
    return 2 * sum(count * _latency(spec, level) for level, count in rounds.items())


def _kernel_cycles_per_k(spec, rows: int, cols: int) -> float:
    """Cycles of one K step (one SIMD MAC instruction per accumulator) of a rows x cols micro-tile: the
    FMA pipes' issue rate, the FMA latency when too few accumulators are independent [Low], and the
    L1 load ports (one load per B vector, one broadcast per row)."""
    vectors = -(-cols // spec.lanes)
    accumulators = rows * vectors
    return max(accumulators / spec.vector_ops_per_cycle, spec.core.fma_latency_cycles,
               (rows + vectors) / spec.core.load_units)


def _micro_kernel_cycles(spec, block: Blocking, tm: int, tn: int, k_steps: int, c_passes: int) -> float:
    """The micro-kernel over a tm x tn tile: full and edge micro-tiles, K steps each, plus loading and
    storing each micro-tile's accumulators once per kc pass."""
    simd_bytes = spec.core.simd_bits // 8
    total = 0.0
    for rows, row_count in ((block.mr, tm // block.mr), (tm % block.mr, 1)):
        for cols, col_count in ((block.nr, tn // block.nr), (tn % block.nr, 1)):
            count = row_count * col_count if rows and cols else 0
            if count:
                accumulators = rows * -(-cols // spec.lanes)
                c_io = accumulators * simd_bytes * (1 / spec.core.load_bytes_per_cycle +
                                                    1 / spec.core.store_bytes_per_cycle)
                total += count * (k_steps * _kernel_cycles_per_k(spec, rows, cols) + c_passes * c_io)
    return total


def _finish(spec, compute: float, level_bytes: dict, active: int, latency: float) -> TileCost:
    """A tile's cycles: the slowest of compute and each level's transfer [Roofline], plus the exposed latency."""
    terms = {"compute": compute,
             **{level: level_bytes[level] / _level_bandwidth(spec, level, active) for level in ("l2", "l3", "dram")}}
    bound = max(terms, key=terms.get)
    return TileCost(max(terms.values()) + latency, compute, terms["l2"], terms["l3"], terms["dram"], latency,
                    {level: float(level_bytes.get(level, 0.0)) for level in LEVELS}, bound)


def tile_cost(spec, shape: GemmShape, block: Blocking, tm: int, tn: int, active: int,
              row_sharers: int = 1, col_sharers: int = 1) -> TileCost:
    """Cycles and bytes per level of one core's tile (tm x tn of every group, the whole K) under the
    BLIS loops (module docstring). `active`: cores running the layer (they share DRAM bandwidth);
    row_sharers / col_sharers: cores whose tiles read the same input rows / weight columns, which one
    L3 fetches from DRAM once for all of them. Which level serves what (each byte once):
      l1    every micro-kernel operand (A broadcast once per nr columns, B once per mr rows), the C
            micro-tiles' loads and stores once per kc pass, the packing's reads and writes;
      l2    A~ micro-panels, streamed once per jr step; C when the tm x nc block fits L2; the
            im2col's re-reads of input rows (conv windows overlap);
      l3    B~ micro-panels, refetched per ic block (from L2 instead when the kc x nc panel fits one
            L2 way); C otherwise; the input and weights where they start in L3; the output (L2's victims);
      dram  the input and weights where they start in DRAM (once per L3 that shares them), the
            output when written back (the model's footprint exceeds L3)."""
    if is_depthwise(spec, shape.groups, shape.n):
        return _depthwise_cost(spec, shape, tm, active, col_sharers)
    g, k = shape.groups, shape.k
    step = spec.k_per_instruction(shape.datatype)
    size = packed_bytes(spec, shape.datatype)
    kc = min(block.kc, _round_up(k, step))
    mc, nc = min(block.mc, _round_up(tm, block.mr)), min(block.nc, _round_up(tn, spec.lanes))
    n_jc, n_pc, n_ic = -(-tn // nc), -(-k // kc), -(-tm // mc)
    k_steps = -(-k // step)
    kernel = g * _micro_kernel_cycles(spec, block, tm, tn, k_steps, n_pc)
    packed = g * tm * k * n_jc                                         # A elements packed (im2col)
    pack = packed * max(shape.x_bytes / spec.core.load_bytes_per_cycle, size / spec.core.store_bytes_per_cycle)
    a_micro = g * tm * k * size * -(-tn // block.nr)
    b_micro = g * tn * k * size * -(-tm // block.mr)
    c_passes = g * tm * tn * 4 * 2 * n_pc
    a_unique = shape.input_bytes * tm / shape.m                        # this tile's rows of the input
    weights = g * k * tn * shape.w_bytes
    output = g * tm * tn * shape.out_bytes
    l2_bytes = spec.cache.l2_kib * 1024
    b_reuse = g * tn * k * size * (n_ic - 1)
    b_in_l2 = kc * nc * size <= l2_bytes / spec.cache.l2_ways       # the B~ panel fits the way A~ leaves
    c_in_l2 = tm * nc * 4 <= l2_bytes / 2
    level = {"l1": a_micro + b_micro + c_passes + packed * (shape.x_bytes + size),
             "l2": a_micro + (c_passes if c_in_l2 else 0) + (b_reuse if b_in_l2 else 0)
             + max(packed * shape.x_bytes - a_unique * n_jc, 0),
             "l3": (0 if c_in_l2 else c_passes) + (0 if b_in_l2 else b_reuse) + output,
             "dram": output if shape.write_back else 0.0}
    for nbytes, where, sharers in ((a_unique * n_jc, shape.input_level, row_sharers),
                                   (weights, shape.weight_level, col_sharers)):
        first = nbytes / min(max(sharers, 1), spec.cache.cores_per_l3) if where == "dram" else 0.0
        level["dram"] += first
        level["l3"] += nbytes - first
    latency = g * n_jc * n_pc * (_latency(spec, shape.weight_level) + n_ic * _latency(spec, shape.input_level))
    return _finish(spec, kernel + pack, level, active, latency)


def _depthwise_cost(spec, shape: GemmShape, tm: int, active: int, weight_sharers: int) -> TileCost:
    """A depthwise (or narrow-group) conv tile as a direct kernel: each output pixel's G x N channels in
    vectors, one SIMD MAC per vector per tap; the input, weights and output stream once."""
    channels = shape.groups * shape.n
    compute = -(-channels // spec.lanes) * tm * shape.k / spec.vector_ops_per_cycle
    a_unique = shape.input_bytes * tm / shape.m
    weights = channels * shape.k * shape.w_bytes
    output = channels * tm * shape.out_bytes
    level = {"l1": channels * tm * shape.k * (shape.x_bytes + shape.w_bytes) + output, "l2": 0.0,
             "l3": output, "dram": output if shape.write_back else 0.0}
    for nbytes, where, sharers in ((a_unique, shape.input_level, 1), (weights, shape.weight_level, weight_sharers)):
        first = nbytes / min(max(sharers, 1), spec.cache.cores_per_l3) if where == "dram" else 0.0
        level["dram"] += first
        level["l3"] += nbytes - first
    latency = _latency(spec, shape.input_level) + _latency(spec, shape.weight_level)
    return _finish(spec, compute, level, active, latency)


def _chunks(extent: int, parts: int, multiple: int) -> tuple:
    """(start, size) of at most `parts` chunks covering `extent`, each a multiple of `multiple` but the last."""
    size = _round_up(-(-extent // parts), multiple)
    return tuple((start, min(size, extent - start)) for start in range(0, extent, size))


def _splits(cores: int, depthwise: bool) -> list:
    """(row chunks, column chunks) to try: every factorisation of the cores and of each power of two below
    (a layer may use fewer cores); a depthwise layer splits rows only."""
    totals = sorted({cores} | {2 ** i for i in range(cores.bit_length()) if 2 ** i < cores}, reverse=True)
    return [(pm, total // pm) for total in totals for pm in range(1, total + 1)
            if total % pm == 0 and not (depthwise and pm < total)]


def plan(spec, shape: GemmShape) -> GemmPlan:
    """The layer's split over the spec's cores and its blocking: for each split (_splits; row chunks whole
    mr blocks, column chunks whole vectors), the slowest tile's cost plus the fork and join of the cores
    it uses (sync_cycles): the fastest wins, ties to fewer cores, then to more row chunks (BLIS
    parallelises the ic loop first [BLIS]). A small layer may so leave cores idle."""
    depthwise = is_depthwise(spec, shape.groups, shape.n)
    block = blocking(spec, shape.datatype, sharers=spec.cores)
    best, seen = None, set()
    for pm, pn in _splits(spec.cores, depthwise):
        rows = _chunks(shape.m, pm, block.mr)
        cols = ((0, shape.n),) if depthwise else _chunks(shape.n, pn, spec.lanes)
        if (rows, cols) in seen:
            continue
        seen.add((rows, cols))
        active = len(rows) * len(cols)
        tile = tile_cost(spec, shape, block, rows[0][1], cols[0][1], active, len(cols), len(rows))
        cycles = tile.cycles + sync_cycles(spec, active)
        key = (cycles, active, -len(rows))
        if best is None or key < best[0]:
            best = (key, GemmPlan(block, rows, cols, cycles, tile.bound, depthwise))
    return best[1]


def vector_cost(spec, element_ops, nbytes, level: str, active: int) -> VectorCost:
    """Cycles of a core's slice of a vector op (scalars, or arrays of slices): its element-ops on 32-bit
    lanes at the FMA pipes' issue rate, or its bytes from `level` (sharing DRAM with the `active`
    cores), whichever is slower [Roofline], plus one latency of that level."""
    compute = element_ops / (spec.lanes * spec.vector_ops_per_cycle)
    transfer = nbytes / _level_bandwidth(spec, level, active)
    bound = "compute" if np.all(compute >= transfer) else level
    return VectorCost(np.maximum(compute, transfer) + _latency(spec, level), compute, transfer, bound)

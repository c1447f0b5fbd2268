"""Analytical cost of one SIMT kernel, in SM cycles: the lowering's block-tile search (choose_tile)
and the timing model both use it, so a kernel is timed with the figures its tile was chosen by.

In: a SimtSpec and one kernel: an implicit GEMM (`groups` independent M x N x K GEMMs, each thread
block computing a BM x BN tile of C over the full K in BK steps through shared memory), or an
elementwise/reduction kernel (bytes in and out, element operations). Out: a GemmCost or an
ElementwiseCost: total cycles and the parts they come from, each in cycles or bytes.

Sources (each rule below names its own):
  [CUDA]     NVIDIA, CUDA C++ Programming Guide: occupancy (resident blocks per SM are limited by
             warps, threads, registers, shared memory and a block count; registers are allocated
             per warp in units, and 1 KB of shared memory is reserved per block on compute
             capability 8.x/9.x, as cuda_occupancy.h computes it); shared memory is 32 banks of 4
             bytes per cycle; a thread's global access is at most 16 bytes.
  [CUTLASS]  NVIDIA CUTLASS docs, "Efficient GEMM in CUDA": the threadblock tile, the K loop
             staged through shared memory (double-buffered or multistage), warp tiles computed with
             MMAs from shared-memory fragments, the accumulator tile held in registers.
  [MMB]      NVIDIA Deep Learning Performance docs, "Matrix Multiplication Background User's Guide":
             tile quantisation (a tile pays for its padded M x N) and wave quantisation (B blocks run
             in ceil(B / (SMs x blocks per SM)) waves).
  [PTX]      NVIDIA PTX ISA, mma shapes: m16n8k16 for f16/bf16, m16n8k32 for s8/u8, m16n8k8 for tf32
             (K x operand bytes = 32 in each); wgmma takes M = 64 per warpgroup.
  [Volkov]   V. Volkov, "Understanding Latency Hiding on GPUs", PhD thesis, UC Berkeley, 2016: by
             Little's law, a latency L is hidden only by L x throughput of work in flight; a kernel
             with less in flight runs at the latency bound.
  [Roofline] S. Williams, A. Waterman, D. Patterson, "Roofline", CACM 52(4), 2009: a kernel takes as
             long as its slowest resource, here applied per level (tensor cores, shared memory, L2,
             DRAM) and per wave.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.errors import CompileError

# Registers per thread beyond the accumulator tile and the MMA operand fragments: addresses, loop
# counters, predicates and the shared-memory pointers of the pipeline. An assumption of this model
# (CUTLASS's A100 128x128 kernels use 200-255 registers per thread, of which the accumulators and
# fragments below account for ~190), not a published figure.
ADDRESS_REGISTERS_PER_THREAD = 32
# The widest global load one thread issues: 16 bytes [CUDA, "Device Memory Accesses": naturally
# aligned accesses of 1, 2, 4, 8 or 16 bytes]. A streaming kernel keeps one such load per resident
# thread in flight.
BYTES_IN_FLIGHT_PER_THREAD = 16
TERMS = ("mma", "shared", "l2", "dram", "latency")


@dataclass(frozen=True)
class Tile:
    """One thread block's work: a block_m x block_n tile of C, K in block_k steps, `warps` warps."""
    block_m: int
    block_n: int
    block_k: int
    warps: int

    def __str__(self) -> str:
        return f"{self.block_m}x{self.block_n}x{self.block_k}/{self.warps}w"


@dataclass(frozen=True)
class Occupancy:
    blocks_per_sm: int          # resident blocks per SM; 0: the tile cannot run (limiter says why)
    limiter: str                # what bounds blocks_per_sm
    registers_per_thread: int
    shared_memory_bytes: int    # per block, its A and B stages plus the reserved share
    warp_grid: tuple            # (MMA issuers along M, along N); an issuer is warps_per_mma warps


@dataclass(frozen=True)
class GemmCost:
    tile: Tile
    occupancy: Occupancy
    unit: str                   # "tensor_core" or "simt" (the FP32/INT32 lanes)
    macs: int                   # useful MACs: groups x M x N x K
    blocks: int
    waves: int
    cycles: float               # the kernel: launch + each wave's slowest term
    launch_cycles: float
    mma_cycles: float           # each term summed over the waves (each wave pays its largest)
    shared_cycles: float
    l2_cycles: float
    dram_cycles: float
    latency_cycles: float
    shared_bytes: float
    l2_bytes: float
    dram_bytes: float
    l2_hit_rate: float          # of the A and B reads
    bound: str                  # the largest term: launch or one of TERMS


@dataclass(frozen=True)
class ElementwiseCost:
    cycles: float
    launch_cycles: float
    compute_cycles: float
    l2_cycles: float
    dram_cycles: float
    latency_cycles: float
    l2_bytes: float
    dram_bytes: float
    bound: str


def _doubling(low: int, high: int) -> list:
    values, v = [], low
    while v <= high:
        values.append(v)
        v *= 2
    return values


def mma_k(spec, elem_bytes: int) -> int:
    """K of one MMA for operands of `elem_bytes`: the spec's 16-bit K scaled so K x bytes is constant [PTX]."""
    return max(1, spec.tensor_core.mma_k * 2 // elem_bytes)


def k_step(elements_16bit: int, elem_bytes: int) -> int:
    """A K-step bound given in 16-bit elements (spec.tiles) for operands of `elem_bytes`: the same bytes
    per step (CUTLASS's tiles keep BK x element bytes at 64 or 128 across types), as mma_k scales."""
    return max(1, elements_16bit * 2 // elem_bytes)


def _warp_grid(spec, tile: Tile) -> tuple | None:
    """(issuers along M, along N) whose issuer tiles hold whole MMAs, reading the least shared memory
    per K step (an issuer reads its A rows and B columns: gn x BM + gm x BN elements) [CUTLASS]."""
    tc = spec.tensor_core
    if tile.warps % tc.warps_per_mma:
        return None
    issuers = tile.warps // tc.warps_per_mma
    grids = [(gm, issuers // gm) for gm in range(1, issuers + 1) if issuers % gm == 0
             and tile.block_m % (gm * tc.mma_m) == 0 and tile.block_n % (issuers // gm * tc.mma_n) == 0]
    return min(grids, key=lambda g: (g[1] * tile.block_m + g[0] * tile.block_n, -g[0]), default=None)


def occupancy(spec, tile: Tile, elem_bytes_in: int) -> Occupancy:
    """Resident blocks per SM for `tile` [CUDA occupancy rules]. Per thread: the fp32/int32 accumulator
    tile spread over the block's threads (one register each) [CUTLASS], the A and B fragments of one
    MMA K step double-buffered over the issuer's threads, and ADDRESS_REGISTERS_PER_THREAD; registers
    are allocated per warp in `sm.register_allocation_unit`s. Shared memory per block: `tiles.stages`
    A (BM x BK) and B (BK x BN) tiles plus the reserved share. Tiles must hold whole MMAs even for
    GEMMs on the SIMT lanes (one tile grid for both)."""
    sm, tc = spec.sm, spec.tensor_core
    threads = tile.warps * sm.threads_per_warp
    grid = _warp_grid(spec, tile)
    stage_bytes = spec.tiles.stages * (tile.block_m + tile.block_n) * tile.block_k * elem_bytes_in
    reserved = sm.reserved_shared_memory_per_block_kib * 1024
    smem = int(stage_bytes + reserved)
    if grid is None or tile.block_k % mma_k(spec, elem_bytes_in):
        return Occupancy(0, "warp_tile", 0, smem, (0, 0))
    gm, gn = grid
    issuer_threads = tc.warps_per_mma * sm.threads_per_warp
    fragments = 2 * (tile.block_m // gm + tile.block_n // gn) * mma_k(spec, elem_bytes_in) * elem_bytes_in
    registers = (math.ceil(tile.block_m * tile.block_n / threads) + math.ceil(fragments / 4 / issuer_threads)
                 + ADDRESS_REGISTERS_PER_THREAD)
    per_warp = math.ceil(registers * sm.threads_per_warp / sm.register_allocation_unit) * sm.register_allocation_unit
    if threads > sm.max_threads_per_block:
        return Occupancy(0, "threads_per_block", registers, smem, grid)
    if registers > sm.max_registers_per_thread:
        return Occupancy(0, "registers_per_thread", registers, smem, grid)
    if stage_bytes > min(sm.max_shared_memory_per_block_kib * 1024, sm.shared_memory_kib * 1024 - reserved):
        return Occupancy(0, "shared_memory_per_block", registers, smem, grid)
    limits = {"warps": sm.max_warps // tile.warps, "threads": sm.max_threads // threads,
              "registers": sm.registers // (per_warp * tile.warps),
              "shared_memory": int(sm.shared_memory_kib * 1024 // smem), "blocks": sm.max_blocks}
    limiter = min(limits, key=limits.get)
    return Occupancy(limits[limiter], limiter, registers, smem, grid)


def fitting_tiles(spec, elem_bytes_in: int) -> tuple:
    """([(Tile, Occupancy)] of every candidate in the spec's `tiles` bounds that can run, why the
    smallest candidate cannot run, or '' if it can)."""
    t = spec.tiles
    fits, reason = [], ""
    for bm in _doubling(t.min_block_m, t.max_block_m):
        for bn in _doubling(t.min_block_n, t.max_block_n):
            for bk in _doubling(k_step(t.min_block_k, elem_bytes_in), k_step(t.max_block_k, elem_bytes_in)):
                for warps in _doubling(t.min_warps, t.max_warps):
                    tile = Tile(bm, bn, bk, warps)
                    occ = occupancy(spec, tile, elem_bytes_in)
                    if occ.blocks_per_sm:
                        fits.append((tile, occ))
                    elif not reason:
                        reason = _why(spec, tile, occ)
    return fits, reason


def _why(spec, tile: Tile, occ: Occupancy) -> str:
    sm, tc = spec.sm, spec.tensor_core
    stages_kib = occ.shared_memory_bytes / 1024 - sm.reserved_shared_memory_per_block_kib
    return {
        "warp_tile": f"tile {tile} does not split into warp tiles of whole {tc.mma_m}x{tc.mma_n} MMAs issued by "
                     f"{tc.warps_per_mma}-warp groups (tensor_core.mma_*, tensor_core.warps_per_mma)",
        "threads_per_block": f"tile {tile} needs {tile.warps * sm.threads_per_warp} threads; "
                             f"sm.max_threads_per_block is {sm.max_threads_per_block}",
        "registers_per_thread": f"tile {tile} needs ~{occ.registers_per_thread} registers per thread; "
                                f"sm.max_registers_per_thread is {sm.max_registers_per_thread}",
        "shared_memory_per_block": f"tile {tile} needs {stages_kib:g} KiB of shared memory; a block may use "
                                   f"{sm.max_shared_memory_per_block_kib:g} (sm.max_shared_memory_per_block_kib)",
    }.get(occ.limiter, f"tile {tile}: {occ.limiter} allow no resident block")


def _cluster_grid(blocks: int, bm: int, bn: int, tiles_m: int, tiles_n: int) -> tuple:
    """(cluster blocks along M, along N) reading the fewest L2 bytes per block: A / cn + B / cm, no wider
    than the grid (a lone block has no partner to share with)."""
    grids = [(cm, blocks // cm) for cm in range(1, blocks + 1) if blocks % cm == 0]
    cm, cn = min(grids, key=lambda g: (bm / g[1] + bn / g[0], -g[0]))
    return min(cm, tiles_m), min(cn, tiles_n)


def l2_traffic(spec, m, n, k, groups, tile: Tile, concurrent: int, elem_in: int, elem_out: int,
               a_distinct: float | None = None) -> tuple:
    """(bytes requested from L2, bytes from/to DRAM, L2 hit rate of the A and B reads).

    Every block reads its A row panel (BM x K) and B column panel (K x BN) through L2 (cp.async.cg
    and TMA bypass L1 [CUTLASS]) and writes its C tile; in a cluster of `tiles.multicast_blocks`
    blocks (cm along M x cn along N, the split that reads least) one L2 read feeds each A tile to
    its cn blocks and each B tile to its cm (TMA multicast, H100 whitepaper "Thread Block Clusters").
    Blocks launch in order with N tiles fastest (a row-major raster), `concurrent` at a time. Which
    reads hit (the rule, stated):
      1. all of A, B and C fit in L2: each byte comes from DRAM once (compulsory misses);
      2. else the wave's in-flight K slices (its distinct A rows and B columns x BK x stages) do not
         fit: no reuse between blocks, every request misses;
      3. else blocks of one wave share the panels they read together (they run K in step), so a
         panel is fetched once per wave that uses it, and again in a later wave unless L2 kept it:
         A rows are kept if the wave's full panels fit (a row's blocks are consecutive, so it spans
         max(1, tiles_n / concurrent) waves otherwise); B columns are kept if one group's B plus
         the wave's A panels fit, else refetched once per wave: min(tiles_m, blocks / concurrent).
    C is written once and written back to DRAM. `a_distinct`: the bytes A's rows are gathered from (a
    conv's input tensor, whose im2col rows overlap: an implicit GEMM requests M x K elements, but the
    windows of neighbouring rows share their input bytes, which hit in L2 once fetched), the compulsory
    A traffic where it is smaller than M x K."""
    bm, bn = tile.block_m, tile.block_n
    tiles_m, tiles_n = math.ceil(m / bm), math.ceil(n / bn)
    a_all, b_group, c_all = groups * m * k * elem_in, k * n * elem_in, groups * m * n * elem_out
    a_all = min(a_all, a_distinct) if a_distinct else a_all        # compulsory A bytes
    b_all = groups * b_group
    cm, cn = _cluster_grid(spec.tiles.multicast_blocks, min(bm, m), min(bn, n), tiles_m, tiles_n)
    a_req, b_req = groups * m * k * elem_in * tiles_n / cn, b_all * tiles_m / cm
    rows = min(groups * tiles_m, math.ceil(concurrent / tiles_n))     # distinct A panels in a wave
    cols = min(tiles_n, concurrent)                                     # distinct B panels in a wave
    capacity = spec.memory.l2_mib * 2 ** 20
    in_flight = (rows * bm + cols * bn) * tile.block_k * spec.tiles.stages * elem_in
    panels = (rows * bm + cols * bn) * k * elem_in
    if a_all + b_all + c_all <= capacity:
        a_dram, b_dram = a_all, b_all
    elif in_flight > capacity:
        a_dram, b_dram = a_req, b_req
    else:
        a_dram = a_all if panels <= capacity else a_all * max(1.0, tiles_n / concurrent)
        b_dram = b_all if b_group + rows * bm * k * elem_in <= capacity else \
            b_all * min(tiles_m, max(1.0, tiles_m * tiles_n / concurrent))
    a_dram, b_dram = min(a_dram, a_req), min(b_dram, b_req)          # a miss is one of the requests
    return a_req + b_req + c_all, a_dram + b_dram + c_all, 1.0 - (a_dram + b_dram) / (a_req + b_req)


def gemm_kernel(spec, m: int, n: int, k: int, groups: int, tile: Tile, elem_bytes_in: int,
                elem_bytes_out: int, datatype: str, a_distinct: float | None = None) -> GemmCost:
    """Cycles of one implicit-GEMM kernel with block tile `tile` (see the module docstring);
    a_distinct: bytes of the tensor A is gathered from (l2_traffic)."""
    occ = occupancy(spec, tile, elem_bytes_in)
    if not occ.blocks_per_sm:
        raise CompileError(f"block tile {tile} cannot run: {_why(spec, tile, occ)}")
    sm, mem = spec.sm, spec.memory
    bm, bn, bk = tile.block_m, tile.block_n, tile.block_k
    blocks = groups * math.ceil(m / bm) * math.ceil(n / bn)
    per_wave = sm.count * occ.blocks_per_sm
    waves = math.ceil(blocks / per_wave)                  # [MMB] wave quantisation
    last = blocks - (waves - 1) * per_wave
    rate, unit = spec.macs_per_sm_cycle(datatype)
    k_steps = math.ceil(k / bk)
    # One block, at its SM's full rate: the padded tile's MACs [MMB tile quantisation]; its shared
    # memory traffic per K step: A and B tiles written once, then read by every issuer that needs
    # them (gn issuers read each A row, gm each B column) [CUTLASS]; 32 banks x 4 B/cycle [CUDA].
    block_mma = bm * bn * bk * k_steps / rate
    gm, gn = occ.warp_grid
    block_shared = k_steps * bk * elem_bytes_in * (bm + bn + gn * bm + gm * bn)
    l2_bytes, dram_bytes, hit = l2_traffic(spec, m, n, k, groups, tile, min(per_wave, blocks), elem_bytes_in,
                                           elem_bytes_out, a_distinct)
    # Latency bound of one block [Volkov]: with `stages` buffers, stages - 1 K-step loads are in
    # flight, so the K loop takes at least ceil(k_steps / (stages - 1)) load latencies, plus the
    # last step's MMAs; with one stage loads and MMAs serialise. The latency is the L2 hit rate's
    # mix of L2 and DRAM latencies.
    latency = hit * mem.l2_latency_cycles + (1 - hit) * mem.dram_latency_cycles
    block_latency = math.ceil(k_steps / max(1, spec.tiles.stages - 1)) * latency + block_mma / k_steps
    if spec.tiles.stages == 1:
        block_latency += block_mma

    def wave(per_sm: int, count: int) -> dict:
        """Each resource's cycles for a wave of `count` blocks, `per_sm` on the busiest SM [Roofline]:
        the SM's MMA rate is shared by its blocks, and a block's warps reach only
        min(warps, partitions) of the SM's partitions; L2 and DRAM serve the whole wave."""
        share = min(1.0, per_sm * tile.warps / sm.partitions)
        return {"mma": per_sm * block_mma / share,
                "shared": per_sm * block_shared / sm.shared_memory_bytes_per_cycle,
                "l2": count * l2_bytes / blocks / mem.l2_bytes_per_cycle,
                "dram": count * dram_bytes / blocks / spec.dram_bytes_per_cycle,
                "latency": block_latency}

    full, tail = wave(occ.blocks_per_sm, per_wave), wave(math.ceil(last / sm.count), last)
    totals = {term: (waves - 1) * full[term] + tail[term] for term in TERMS}
    launch = spec.launch_overhead_cycles
    cycles = launch + (waves - 1) * max(full.values()) + max(tail.values())
    bound = max({"launch": launch, **totals}.items(), key=lambda kv: kv[1])[0]
    return GemmCost(tile, occ, unit, groups * m * n * k, blocks, waves, cycles, launch, totals["mma"],
                    totals["shared"], totals["l2"], totals["dram"], totals["latency"], block_shared * blocks,
                    l2_bytes, dram_bytes, hit, bound)


def choose_tile(spec, m: int, n: int, k: int, groups: int, elem_bytes_in: int, elem_bytes_out: int,
                datatype: str, a_distinct: float | None = None) -> GemmCost:
    """The candidate tile (spec.tiles bounds) with the fewest cycles by gemm_kernel; ties go to
    fewer DRAM bytes, then to the tile listed first. CompileError if no candidate can run."""
    fits, reason = fitting_tiles(spec, elem_bytes_in)
    if not fits:
        raise CompileError(f"GEMM {groups} x [{m}x{k}] x [{k}x{n}]: no block tile fits this SM: {reason}")
    costs = [gemm_kernel(spec, m, n, k, groups, tile, elem_bytes_in, elem_bytes_out, datatype, a_distinct)
             for tile, _ in fits]
    return min(costs, key=lambda c: (c.cycles, c.dram_bytes))


def elementwise_kernel(spec, bytes_in: float, bytes_out: float, element_ops: float,
                       resident_bytes_in: float = 0, datatype: str | None = None) -> ElementwiseCost:
    """Cycles of a streaming kernel (elementwise, pooling, reduction) that reads `bytes_in`, writes
    `bytes_out` and does `element_ops` operations on the SIMT lanes (FP32 lanes for float
    `datatype`, INT32 for integer; default the spec's output type). `resident_bytes_in` of the input
    are L2 hits (e.g. the previous kernel's output, when the caller knows it fits L2); the rest and
    every output byte (written back) move through DRAM. Time: launch + the slowest of lane
    throughput, L2 bandwidth, DRAM bandwidth [Roofline] and the latency bound: with one 16-byte
    load per resident thread in flight, the input takes ceil(bytes_in / (SMs x max threads x 16))
    round trips of the mean load latency [Volkov]."""
    sm, mem = spec.sm, spec.memory
    dtype = datatype or spec.datatypes.output
    lanes = sm.int32_lanes if dtype.startswith(("int", "uint")) else sm.fp32_lanes
    resident = min(resident_bytes_in, bytes_in)
    l2_bytes = bytes_in + bytes_out
    dram_bytes = bytes_in - resident + bytes_out
    hit = resident / bytes_in if bytes_in else 1.0
    latency = hit * mem.l2_latency_cycles + (1 - hit) * mem.dram_latency_cycles
    round_trips = max(1, math.ceil(bytes_in / (sm.count * sm.max_threads * BYTES_IN_FLIGHT_PER_THREAD)))
    terms = {"compute": element_ops / (sm.count * lanes), "l2": l2_bytes / mem.l2_bytes_per_cycle,
             "dram": dram_bytes / spec.dram_bytes_per_cycle, "latency": round_trips * latency}
    launch = spec.launch_overhead_cycles
    bound = max({"launch": launch, **terms}.items(), key=lambda kv: kv[1])[0]
    return ElementwiseCost(launch + max(terms.values()), launch, terms["compute"], terms["l2"], terms["dram"],
                           terms["latency"], l2_bytes, dram_bytes, bound)

"""The CPU cost model on hand-derived cases: the BLIS register block and cache blocks, a compute-bound
tile, the FMA-latency bound, a DRAM-bound GEMV under Little's law and under DRAM shared by 96 cores, the
split over cores, a depthwise conv, a vector kernel.

Every expected figure is worked out in the comments from the spec's numbers (CpuSpec's defaults are an
EPYC 9654: 96 Zen 4 cores at 3.55 GHz; 512-bit registers, 32 of them; 2 FMA pipes of 256 bits (one 512-bit
FMA per cycle, 16 fp32 MACs), FMA latency 4; 2 loads (64 B) and 32 B of stores per cycle; L1 32 KiB 8-way,
L2 1 MiB 8-way at 32 B/cycle, latency 14; L3 32 MiB 16-way per 8 cores, 32 B/cycle, latency 50; 64 L2
misses in flight; 12 x 38.4 GB/s DRAM at 110 ns = 390.5 cycles)."""
import dataclasses

import pytest

from compiler import spec as specmod
from compiler.targets.cpu import cost
from compiler.targets.cpu.spec import CpuSpec

ZEN4 = CpuSpec()


def _shape(m, n, k, groups=1, input_level="l3", weight_level="l3", write_back=False, datatype="fp32"):
    return cost.GemmShape(m=m, n=n, k=k, groups=groups, datatype=datatype, x_bytes=4, w_bytes=4, out_bytes=4,
                          input_bytes=groups * m * k * 4, input_level=input_level, weight_level=weight_level,
                          write_back=write_back)


def test_register_block_hides_the_fma_latency_with_the_fewest_loads():
    # 1, 2 or 4 vectors of 16 lanes: the most rows 32 registers hold (mr v + v + 1 <= 32) are 30, 14 and 6;
    # loads per FMA (mr + v) / (mr v): 31/30, 16/28, 10/24: 6 x 64 (24 accumulators >= 4 x 1 to hide the latency)
    assert cost.register_block(ZEN4) == (6, 64)
    # AVX2 (16 registers of 8 lanes, 2 FMAs/cycle: 8 accumulators needed): 14 x 8, 6 x 16, 2 x 32 -> BLIS's
    # Haswell sgemm block, 6 x 16
    avx2 = specmod.from_dict({"target": "cpu", "core": {"simd_bits": 256, "vector_registers": 16}})
    assert cost.register_block(avx2) == (6, 16)


def test_cache_blocks_from_capacity_and_associativity():
    # kc: 7/8 of 32 KiB = 28672 B over (6 + 64) x 4 B = 102; mc: 7/8 of 1 MiB over 102 x 4 B = 2248 -> 2244 (x6);
    # nc: 15/16 of 32 MiB over 408 B = 77101 -> 77056 (x64), or an eighth when 8 cores share the L3: 9637 -> 9600
    assert cost.blocking(ZEN4, "fp32") == cost.Blocking(6, 64, 102, 2244, 77056)
    assert cost.blocking(ZEN4, "fp32", sharers=96).nc == 9600
    # int8 (VNNI): 1-byte packed elements in whole 4-k steps: kc 28672 // 70 = 409 -> 408
    assert cost.blocking(ZEN4, "uint8").kc == 408


def test_a_compute_bound_tile():
    # M 600, N 64, K 1020 on one core: 100 micro-tiles of 6 x 64, each K step 24 FMAs at 1/cycle (loads: 10 at
    # 2/cycle; latency 4): 100 x 1020 x 24 = 2,448,000 = MACs / 16. C's 24 vectors loaded and stored once per kc
    # pass (10 passes): 24 x 64 B x (1/64 + 1/32) = 72 cycles x 1000 = 72,000. Packing A: 612,000 elements at
    # 32 B/cycle of stores: 76,500. Latency: 10 kc passes x (50 + 50) = 1000.
    block = cost.blocking(ZEN4, "fp32")
    tile = cost.tile_cost(ZEN4, _shape(600, 64, 1020), block, 600, 64, active=1)
    assert tile.compute_cycles == pytest.approx(2_448_000 + 72_000 + 76_500)
    assert tile.latency_cycles == 1000 and tile.bound == "compute"
    assert tile.cycles == pytest.approx(2_596_500 + 1000)
    # L2 serves the A micro-panels (600 x 1020 x 4 B once per 64 columns) and C's 10 passes (600 x 64 x 4 x 2 x 10)
    assert tile.level_bytes["l2"] == 600 * 1020 * 4 + 600 * 64 * 4 * 2 * 10


def test_too_few_accumulators_wait_on_the_fma_latency():
    # a 1 x 16 tile: one accumulator, so each K step waits the FMA latency (4 cycles) for 16 MACs
    assert cost._kernel_cycles_per_k(ZEN4, 1, 16) == 4
    assert cost._kernel_cycles_per_k(ZEN4, 6, 64) == 24


def test_gemv_streams_its_weights_at_the_misses_one_core_keeps_in_flight():
    # M 1, K N 4096, weights in DRAM: 64 MiB at min(460.8 / 3.55 = 129.8, 64 x 64 B / 390.5 = 10.49) B/cycle
    block = cost.blocking(ZEN4, "fp32")
    shape = _shape(1, 4096, 4096, weight_level="dram")
    tile = cost.tile_cost(ZEN4, shape, block, 1, 4096, active=1)
    assert tile.bound == "dram"
    assert tile.dram_cycles == pytest.approx(4096 * 4096 * 4 / (64 * 64 / (110 * 3.55)))
    # with 96 cores drawing from DRAM, each gets 460.8 / 3.55 / 96 = 1.35 B/cycle, fewer than it can keep in flight
    shared = cost.tile_cost(ZEN4, shape, block, 1, 4096, active=96)
    assert shared.dram_cycles == pytest.approx(4096 * 4096 * 4 / (460.8 / 3.55 / 96))


def test_plan_splits_rows_of_a_tall_gemm_and_columns_of_a_gemv():
    eight = dataclasses.replace(ZEN4, cores=8)
    tall = cost.plan(eight, _shape(3136, 64, 576))
    assert (len(tall.rows), len(tall.cols)) == (8, 1) and all(tm % 6 == 0 for _, tm in tall.rows[:-1])
    gemv = cost.plan(eight, _shape(1, 4096, 4096, weight_level="dram"))
    assert (len(gemv.rows), len(gemv.cols)) == (1, 8) and gemv.cols[0] == (0, 512)
    assert sum(tn for _, tn in gemv.cols) == 4096 and gemv.bound == "dram"


def test_depthwise_conv_runs_as_a_direct_kernel_over_channels():
    # 32 groups of 1 channel, 3 x 3 taps, 3136 pixels on one core: 2 vectors of 16 channels x 3136 x 9 taps
    shape = _shape(3136, 1, 9, groups=32)
    assert cost.is_depthwise(ZEN4, 32, 1)
    tile = cost.tile_cost(ZEN4, shape, cost.blocking(ZEN4, "fp32"), 3136, 1, active=1)
    assert tile.compute_cycles == 2 * 3136 * 9


def test_a_parallel_layer_pays_a_tree_barrier_and_a_small_one_leaves_cores_idle():
    # 2 cores of one L3: 2 x 1 round x 50 cycles; 96 cores in 12 domains of 8: 2 x (3 x 50 + 4 x 390.5)
    assert cost.sync_cycles(ZEN4, 1) == 0 and cost.sync_cycles(ZEN4, 2) == 100
    assert cost.sync_cycles(ZEN4, 96) == pytest.approx(2 * (3 * 50 + 4 * 110 * 3.55))
    tiny = cost.plan(ZEN4, _shape(48, 64, 64))           # 196,608 MACs: ~12,000 cycles on one core
    assert tiny.cores < 96


def test_vector_kernel_is_the_slower_of_lanes_and_its_level():
    # 16000 element-ops at 16 lanes x 1 op/cycle = 1000 cycles; 128000 bytes from L3 at 32 B/cycle = 4000; + 50
    v = cost.vector_cost(ZEN4, 16000.0, 128000.0, "l3", 1)
    assert (v.compute_cycles, v.transfer_cycles, v.cycles, v.bound) == (1000, 4000, 4050, "l3")

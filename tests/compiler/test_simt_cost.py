"""The SIMT per-kernel cost model on hand-derived cases: occupancy limits, wave quantisation, the L2
reuse rule, latency hiding, compute-bound and launch-bound GEMMs, streaming kernels, the tile search.

Every expected figure is worked out in the comments from the spec's numbers (SimtSpec's defaults are
an A100 in fp16: 1024 fp16 MACs per SM per cycle, 4 partitions, 65536 registers, 164 KiB shared memory
per SM, 40 MiB L2 at 5120 B/cycle, 1555 GB/s DRAM at 1.41 GHz, L2/DRAM latency 262/466 cycles, 1 us
launch = 1410 cycles)."""
import dataclasses
from pathlib import Path

import pytest
import yaml

from compiler.errors import CompileError
from compiler import spec as specmod
from compiler.targets.simt import cost
from compiler.targets.simt.cost import Tile
from compiler.targets.simt.spec import SimtSpec

A100 = SimtSpec()
LAUNCH = 1410.0                       # 1 us x 1.41 GHz
TILE = Tile(128, 128, 32, 4)          # CUTLASS's classic A100 tile: 4 warps of 64 x 64


def _with(spec, section=None, **fields):
    if section is None:
        return dataclasses.replace(spec, **fields)
    return dataclasses.replace(spec, **{section: dataclasses.replace(getattr(spec, section), **fields)})


def test_occupancy_limited_by_registers():
    # per thread: accumulators 128 x 128 / 128 threads = 128; fragments of a 64 x 64 warp tile, one
    # k16 step double-buffered: 2 x (64 + 64) x 16 x 2 B / 4 B / 32 threads = 64; + 32 = 224 registers;
    # per warp 224 x 32 = 7168 (a multiple of 256), per block 28672: 65536 // 28672 = 2 blocks.
    # Shared memory would allow 164 KiB // (2 x (128 + 128) x 32 x 2 B + 1 KiB = 33 KiB) = 4.
    occ = cost.occupancy(A100, TILE, 2)
    assert (occ.blocks_per_sm, occ.limiter, occ.registers_per_thread) == (2, "registers", 224)
    assert occ.shared_memory_bytes == 33792 and occ.warp_grid == (2, 2)


def test_occupancy_limited_by_shared_memory():
    small = _with(A100, "sm", shared_memory_kib=64, max_shared_memory_per_block_kib=63)
    occ = cost.occupancy(small, TILE, 2)                # 65536 // 33792 = 1
    assert (occ.blocks_per_sm, occ.limiter) == (1, "shared_memory")


def test_wave_quantisation_one_more_block_costs_a_wave():
    # 4 SMs x 2 blocks = 8 per wave; M = 9 x 128 gives 9 blocks: 2 waves. Each block's MMAs take
    # 128 x 128 x 4096 / 1024 = 65536 cycles at the SM's full rate; a full wave runs 2 blocks per SM
    # (131072 cycles), the last wave one block on one SM (65536). Every other term is smaller (the
    # operands, 10.3 MiB, fit L2 and move in under 10000 DRAM cycles).
    four = _with(A100, "sm", count=4)
    nine = cost.gemm_kernel(four, 9 * 128, 128, 4096, 1, TILE, 2, 2, "fp16")
    eight = cost.gemm_kernel(four, 8 * 128, 128, 4096, 1, TILE, 2, 2, "fp16")
    assert (nine.blocks, nine.waves, eight.waves) == (9, 2, 1)
    assert nine.bound == "mma" and nine.cycles == pytest.approx(LAUNCH + 131072 + 65536)
    assert eight.cycles == pytest.approx(LAUNCH + 131072)


def test_with_one_block_per_sm_a_partial_wave_costs_a_full_one():
    # The NVIDIA guide's case: one resident block per SM (shared memory allows one), 4 SMs, 5 blocks:
    # 2 waves of 65536 cycles each, though the second has a quarter of the work.
    four = _with(A100, "sm", count=4, shared_memory_kib=64, max_shared_memory_per_block_kib=63)
    five = cost.gemm_kernel(four, 5 * 128, 128, 4096, 1, TILE, 2, 2, "fp16")
    assert (five.waves, five.cycles) == (2, pytest.approx(LAUNCH + 2 * 65536))


@pytest.mark.parametrize("l2_mib, dram_mib, hit_rate", [
    # M = 2048, N = 512, K = 1024 in fp16 on 4 SMs x 2 blocks: 16 x 4 tiles, 64 blocks, 8 per wave.
    # A = 4 MiB, B = 1 MiB, C = 2 MiB; L2 requests: A x 4 column tiles + B x 16 row tiles + C = 34 MiB.
    # A wave holds 2 A rows and 4 B columns: in flight (2 x 128 + 4 x 128) x 32 x 2 stages x 2 B = 96 KiB,
    # full panels (2 x 128 + 4 x 128) x 1024 x 2 B = 1.5 MiB; B kept needs 1 MiB + 2 A panels = 1.5 MiB.
    (40, 7, 1 - 5 / 32),        # rule 1: all 7 MiB fit: compulsory misses only
    (2, 7, 1 - 5 / 32),         # rule 3: panels and B stay: A once, B once
    (1.25, 14, 1 - 12 / 32),    # rule 3: B evicted between its uses: refetched each wave, 64 / 8 = 8 x 1 MiB
    (1 / 16, 34, 0.0),          # rule 2: 64 KiB < 96 KiB in flight: every request misses
])
def test_l2_reuse_rule(l2_mib, dram_mib, hit_rate):
    spec = _with(_with(A100, "sm", count=4), "memory", l2_mib=l2_mib)
    l2_bytes, dram_bytes, hit = cost.l2_traffic(spec, 2048, 512, 1024, 1, TILE, 8, 2, 2)
    assert (l2_bytes, dram_bytes, hit) == (34 * 2 ** 20, pytest.approx(dram_mib * 2 ** 20), pytest.approx(hit_rate))
    kernel = cost.gemm_kernel(spec, 2048, 512, 1024, 1, TILE, 2, 2, "fp16")
    assert kernel.dram_bytes == pytest.approx(dram_mib * 2 ** 20) and kernel.l2_hit_rate == pytest.approx(hit_rate)


def test_latency_exposed_with_one_block_hidden_with_five():
    small = Tile(64, 64, 32, 4)             # 96 registers per thread: 5 blocks per SM
    assert cost.occupancy(A100, small, 2).blocks_per_sm == 5
    # One block alone, K = 4096: 128 K steps, one load in flight (2 stages), every read a compulsory
    # DRAM miss: 128 x 466 + its last step's MMAs (64 x 64 x 32 / 1024 = 128) = 59776 cycles, against
    # 64 x 64 x 4096 / 1024 = 16384 cycles of MMAs.
    alone = cost.gemm_kernel(A100, 64, 64, 4096, 1, small, 2, 2, "fp16")
    assert alone.bound == "latency" and alone.cycles == pytest.approx(LAUNCH + 59776)
    # A full wave (108 SMs x 5 blocks) with ample L2 and DRAM bandwidth: five blocks share each SM and
    # overlap their latencies; the wave takes 5 x 24576 cycles of shared memory (per K step each block
    # writes (64 + 64) x 32 x 2 B and its 2 x 2 warps read (2 x 64 + 2 x 64) x 32 x 2 B: 24576 B, 192
    # cycles at 128 B/cycle, x 128 steps) -- five times the work in about twice the time.
    wide = _with(A100, "memory", dram_gbps=1e6, l2_bytes_per_cycle=1e6)
    full = cost.gemm_kernel(wide, 64 * 540, 64, 4096, 1, small, 2, 2, "fp16")
    assert (full.waves, full.bound) == (1, "shared") and full.cycles == pytest.approx(LAUNCH + 5 * 24576)


def test_a_block_of_two_warps_reaches_half_the_tensor_cores():
    two = Tile(64, 64, 32, 2)
    ample = _with(A100, "memory", l2_latency_cycles=0, dram_latency_cycles=0)
    alone = cost.gemm_kernel(ample, 64, 64, 4096, 1, two, 2, 2, "fp16")
    assert alone.mma_cycles == pytest.approx(2 * 64 * 64 * 4096 / 1024)      # 2 of 4 partitions


def _draft(name: str) -> SimtSpec:
    """A draft spec, built and validated without the target registry (the target is not registered yet)."""
    path = Path(__file__).resolve().parents[2] / "hwspecs" / f"{name}.yaml"
    spec = specmod.build(SimtSpec, yaml.safe_load(path.read_text()), str(path))
    spec.validate(str(path))
    return spec


@pytest.mark.parametrize("name", ["gpu_a100_like", "gpu_h100_like"])
def test_a_large_square_gemm_approaches_peak(name):
    # 8192^3 in fp16: thousands of blocks in ~20 waves, the last nearly full; tensor-core bound. The
    # model has no clock throttling, instruction issue or epilogue costs, so it sits just under peak.
    spec = _draft(name)
    best = cost.choose_tile(spec, 8192, 8192, 8192, 1, 2, 2, "fp16")
    achieved = best.macs / best.cycles / spec.peak_macs_per_cycle
    assert best.bound == "mma" and 0.95 < achieved <= 1.0, (best.tile, achieved)


def test_a_tiny_gemm_is_launch_and_latency_bound():
    # 16 x 16 x 16: one 64 x 64 block, one K step: 1410 launch + max(one DRAM latency 466 + 128 MMA
    # cycles, 192 shared-memory cycles) = 2004; the tensor cores do 4096 of its 2.2M MAC slots.
    tiny = cost.choose_tile(A100, 16, 16, 16, 1, 2, 2, "fp16")
    assert tiny.bound == "launch" and tiny.cycles == pytest.approx(LAUNCH + 466 + 128)
    assert tiny.macs / (tiny.cycles * A100.peak_macs_per_cycle) < 1e-3


def test_no_gemm_beats_the_peak():
    for shape in [(1, 1000, 2048, 1), (12544, 64, 147, 1), (49, 2048, 512, 1), (3136, 1, 9, 64), (4096, 4096, 64, 8)]:
        best = cost.choose_tile(A100, *shape, 2, 2, "fp16")
        assert best.macs <= best.cycles * A100.peak_macs_per_cycle


def test_gemms_without_tensor_cores_run_on_the_lanes():
    fp32 = _with(A100, "datatypes", input="fp32", weight="fp32", output="fp32")
    assert fp32.macs_per_sm_cycle("fp32") == (64, "simt")          # tf32 rate 0: FP32 lanes
    assert _with(fp32, "tensor_core", tf32_macs_per_sm_cycle=512).macs_per_sm_cycle("fp32") == (512, "tensor_core")
    none = _with(A100, "tensor_core", generation="none")
    assert none.macs_per_sm_cycle("fp16") == (64, "simt") and none.macs_per_sm_cycle("int8") == (64, "simt")
    assert cost.choose_tile(none, 1024, 1024, 1024, 1, 2, 2, "fp16").unit == "simt"


def test_streaming_kernel_bandwidth_and_latency_bound():
    # 1 GB in, 1 GB out at 1555 / 1.41 = 1102.8 B/cycle; a 1 KB kernel: launch + one DRAM latency.
    big = cost.elementwise_kernel(A100, 1e9, 1e9, 2.5e8)
    assert big.bound == "dram" and big.cycles == pytest.approx(LAUNCH + 2e9 * 1.41 / 1555)
    tiny = cost.elementwise_kernel(A100, 1e3, 1e3, 250)
    assert tiny.cycles == pytest.approx(LAUNCH + 466)
    resident = cost.elementwise_kernel(A100, 1e9, 1e9, 2.5e8, resident_bytes_in=1e9)
    assert resident.dram_bytes == 1e9 and resident.cycles == pytest.approx(LAUNCH + 1e9 * 1.41 / 1555)


def test_no_fitting_tile_is_a_compile_error():
    cramped = _with(A100, "sm", max_registers_per_thread=64)     # built without validate: no tile fits
    with pytest.raises(CompileError, match=r"GEMM 1 x \[64x64\] x \[64x64\]: no block tile fits this SM: "
                                           r"tile 64x64x32/4w needs ~96 registers per thread"):
        cost.choose_tile(cramped, 64, 64, 64, 1, 2, 2, "fp16")
    with pytest.raises(CompileError, match="block tile 256x256x32/4w cannot run"):
        cost.gemm_kernel(A100, 64, 64, 64, 1, Tile(256, 256, 32, 4), 2, 2, "fp16")

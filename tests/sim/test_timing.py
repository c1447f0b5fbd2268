"""Timing model checks: compute-only cycles equal SCALE-Sim's whole-layer formula when a
layer fits in one tile; stationary tiles kept across consecutive matmuls (docs/timing_model.md)
on hand-derived cases; the tiler's matrix cycles equal the simulator's; DRAM-bound runs respect
the bandwidth roofline; evaluation is deterministic."""
import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper, numpy_helper

import dse
from compiler.program import OPCODE_ID
from compiler.targets.systolic.cycles import matmul_cycles
from compiler.targets.systolic.lower import budget_of
from compiler.targets.systolic.spec import ArraySpec, SystolicSpec
from compiler.targets.systolic.tile_loops import emit_gemm
from compiler.targets.systolic.tiling import BYTES, Tiling, choose_tiling, compute_cycles
from sim.targets.systolic import instruction_cycles

DATAFLOWS = ["weight_stationary", "output_stationary", "input_stationary"]


def conv_model(cin=16, cout=24, hw=14, k=3):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", 1, [1, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", 1, None)], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


BIG = {"input_scratchpad_kib": 4096, "weight_scratchpad_kib": 4096, "accumulator_kib": 4096, "ideal": True}


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_single_tile_layer_matches_scalesim_formula(dataflow):
    """With room for the whole layer the tiler may still split its streamed dimension, but the
    stationary tile stays resident across the pieces, so the layer takes SCALE-Sim's cycles."""
    hw = {"array": {"rows": 8, "cols": 8, "dataflow": dataflow}, "memory": BIG}
    program = dse.compile(conv_model(), hw)
    stats = dse.api.simulate(program, timing_only=True, ideal_memory=True).stats
    m, k, n = 14 * 14, 16 * 9, 24
    assert stats.engine_busy_cycles["matrix"] == matmul_cycles(dataflow, 8, 8, m, k, n)


# --- stationary tiles kept across consecutive matmuls, on a 4x4 array (R = C = 4) -------------
# weight/input-stationary: fill R = 4, drain R + C - 2 = 6; output-stationary: no fill, drain 6
# (overlapped, SCALE-Sim v3) or 2R + C - 2 = 10 (separate, ISPASS 2020).

def gemm_cycles(dataflow, m, k, n, tm, tk, tn, buffers=2, order="n_outer", groups=1, drain="overlapped",
                macs_per_pe_cycle=1) -> list:
    """Cycles of each matmul of a GEMM tiled as given, as the timing charges them."""
    spec = SystolicSpec(array=ArraySpec(rows=4, cols=4, dataflow=dataflow, output_stationary_drain=drain,
                                        macs_per_pe_cycle=macs_per_pe_cycle))
    ins = emit_gemm(0, 0, Tiling(tm, tk, tn, buffers, order, 0), (4096, 4096, 4096), (1, 1, 1, 1, 1, 1, 1),
                    m, k, n, groups, 0, 0, 64, -1)
    cycles = instruction_cycles(SimpleNamespace(spec=spec, instructions=ins), ideal_memory=True)
    return cycles[ins.opcode == OPCODE_ID["matmul"]].tolist()


def test_weight_stationary_keeps_weights_across_m_tiles():
    # M = 10 in tiles of 4, 4, 2 through one 4x4 weight tile: the first pays fill + T + drain = 14;
    # the others stream under the previous drain: T each. 14 + 4 + 2 = 20 = one fold of M = 10.
    assert gemm_cycles("weight_stationary", 10, 4, 4, 4, 4, 4) == [14, 4, 2]
    unsplit = matmul_cycles("weight_stationary", 4, 4, 10, 4, 4)
    assert sum(gemm_cycles("weight_stationary", 10, 4, 4, 4, 4, 4)) == unsplit


def test_single_buffered_accumulator_saves_only_the_fill():
    # the next M tile reuses the accumulator slot, so it waits for the store: T + drain
    assert gemm_cycles("weight_stationary", 10, 4, 4, 4, 4, 4, buffers=1) == [14, 10, 8]


def test_weights_two_folds_deep_are_not_kept():
    # K = 8 is two row folds: K folds keep their order, so the next tile starts on the first,
    # which the PEs no longer hold: every tile pays 2 x (4 + T + 6)
    assert gemm_cycles("weight_stationary", 10, 8, 4, 4, 8, 4) == [28, 28, 24]
    # packing two MACs per PE makes K = 8 one fold deep again
    assert gemm_cycles("weight_stationary", 10, 8, 4, 4, 8, 4, macs_per_pe_cycle=2) == [14, 4, 2]


def test_a_k_split_changes_the_weight_tile():
    # tiles (m0,k0), (m0,k1), (m1,k0), (m1,k1): consecutive matmuls never share weights
    assert gemm_cycles("weight_stationary", 8, 8, 4, 4, 4, 4) == [14] * 4


def test_m_outer_order_moves_to_the_next_weight_tile():
    # N = 8 in two weight tiles, output tiles m then n: each matmul loads another weight tile
    assert gemm_cycles("weight_stationary", 8, 4, 8, 4, 4, 4, order="m_outer") == [14] * 4
    assert gemm_cycles("weight_stationary", 8, 4, 8, 4, 4, 4, order="n_outer") == [14, 4, 14, 4]


def test_output_stationary_keeps_partial_sums_across_k():
    # K = 10 in tiles of 4, 4, 2 into one 4x4 output tile: 0 + 4 + 6, then T, T: 16 = R + C + K - 2
    assert gemm_cycles("output_stationary", 4, 10, 4, 4, 4, 4) == [10, 4, 2]
    assert gemm_cycles("output_stationary", 4, 10, 4, 4, 4, 4, drain="separate") == [14, 4, 2]   # 2R + C + K - 2


def test_output_stationary_keeps_only_the_last_fold():
    # an 8x4 output tile is two folds; the next K step starts on the fold the PEs hold: 20, then 20 - 6
    assert gemm_cycles("output_stationary", 8, 8, 4, 8, 4, 4) == [20, 14]


def test_input_stationary_keeps_inputs_across_n_tiles():
    assert gemm_cycles("input_stationary", 4, 4, 10, 4, 4, 4, order="m_outer") == [14, 4, 2]
    assert gemm_cycles("input_stationary", 4, 4, 10, 4, 4, 4, order="m_outer", buffers=1) == [14, 10, 8]


def test_groups_do_not_share_a_stationary_tile():
    # two groups of a 4x4x4 GEMM: other weights, other descriptor
    assert gemm_cycles("weight_stationary", 4, 4, 4, 4, 4, 4, groups=2) == [14, 14]


@settings(max_examples=80, deadline=None)
@given(m=st.integers(1, 200), k=st.integers(1, 200), n=st.integers(1, 150), data=st.data(),
       dataflow=st.sampled_from(DATAFLOWS), rows=st.sampled_from([2, 4, 8]), cols=st.sampled_from([2, 4, 8]),
       drain=st.sampled_from(["overlapped", "separate"]), packed=st.sampled_from([1, 2]), groups=st.integers(1, 3))
def test_tiler_prices_the_matrix_cycles_the_simulator_charges(m, k, n, data, dataflow, rows, cols, drain, packed,
                                                              groups):
    """Any tiling: the tiler's matrix cycles (compute_cycles) equal the simulated matmuls' sum."""
    t = Tiling(data.draw(st.integers(-(-m // 12), m)), data.draw(st.integers(-(-k // 8), k)),
               data.draw(st.integers(-(-n // 8), n)), data.draw(st.sampled_from([1, 2])),
               data.draw(st.sampled_from(["n_outer", "m_outer"])), 0)
    spec = SystolicSpec(array=ArraySpec(rows=rows, cols=cols, dataflow=dataflow, output_stationary_drain=drain,
                                        macs_per_pe_cycle=packed))
    slots = tuple(size * BYTES for size in (t.tm * t.tk, t.tk * t.tn, t.tm * t.tn))
    ins = emit_gemm(0, 0, t, slots, (1, 1, 1, 1, 1, 1, 1), m, k, n, groups, 0, 0, 64, -1)
    cycles = instruction_cycles(SimpleNamespace(spec=spec, instructions=ins), ideal_memory=True)
    assert cycles[ins.opcode == OPCODE_ID["matmul"]].sum() == groups * compute_cycles(budget_of(spec), m, k, n, t)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_ideal_memory_tiles_for_compute(dataflow):
    """memory.ideal: the tiler prices every transfer at one cycle, so it picks tiles with no more
    matrix cycles than the ones it picks for 25.6 GB/s, and times them as free."""
    spec = SystolicSpec(array=ArraySpec(rows=32, cols=32, dataflow=dataflow))
    ideal = spec.with_ideal_memory()
    assert ideal.memory.ideal and not spec.memory.ideal
    for m, k, n in ((3136, 256, 64), (12544, 147, 64), (49, 4608, 512), (784, 128, 512)):
        real, free = choose_tiling(budget_of(spec), m, k, n, "l"), choose_tiling(budget_of(ideal), m, k, n, "l")
        assert free.compute_cycles <= real.compute_cycles
        assert free.compute_cycles <= compute_cycles(budget_of(ideal), m, k, n, real)
    # the layer: 49 M tiles of 64 rows paid 49 fills; now the accumulator's 1024 rows of
    # 32 partial sums bound the M tile: 4 x 8 K folds x 2 N folds of fills against SCALE-Sim's 16
    t = choose_tiling(budget_of(dataclasses.replace(ideal, array=ArraySpec(dataflow="weight_stationary"))),
                      3136, 256, 64, "l")
    assert t.compute_cycles <= 1.1 * (16 * (2 * 32 + 32 + 3136 - 2))


def test_dram_bound_layer_respects_bandwidth():
    hw = {"array": {"rows": 32, "cols": 32}, "memory": {"dram_gbps": 0.5}}
    program = dse.compile(conv_model(), hw)
    stats = dse.api.simulate(program, timing_only=True).stats
    bytes_per_cycle = 0.5 / 1.0
    assert stats.total_cycles >= stats.bytes["dram"] / bytes_per_cycle
    assert stats.layers[0]["stall_cycles"] > stats.layers[0]["compute_cycles"]


def test_spec_with_ideal_memory_times_transfers_as_free():
    program = dse.compile(conv_model(), {"memory": {"ideal": True}})
    flagged = dse.api.simulate(program, timing_only=True, ideal_memory=True).stats
    assert dse.api.simulate(program, timing_only=True).stats.total_cycles == flagged.total_cycles


def test_same_point_twice_gives_identical_stats():
    a = dse.run("zoo:squeezenet", hw="hwspecs/systolic.yaml", timing_only=True).stats.to_dict()
    b = dse.run("zoo:squeezenet", hw="hwspecs/systolic.yaml", timing_only=True).stats.to_dict()
    assert a == b

"""Tile search: chosen tiles fit the declared buffers and fill the array; no fit is a clear error."""
import dataclasses
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from compiler.errors import CompileError
from compiler.targets.systolic.tiling import BYTES, Budget, choose_tiling, im2col_read_bytes


def budget(rows=8, cols=8, dataflow="weight_stationary", kib=(16, 16, 8), double=True):
    return Budget(rows, cols, dataflow, kib[0] * 1024, kib[1] * 1024, kib[2] * 1024, 16.0, 50, double)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 3000), k=st.integers(1, 2000), n=st.integers(1, 600),
       dataflow=st.sampled_from(["weight_stationary", "output_stationary", "input_stationary"]),
       rows=st.sampled_from([2, 4, 8, 16]), cols=st.sampled_from([2, 4, 8, 16]))
def test_tiles_fit_and_cover_a_fold(m, k, n, dataflow, rows, cols):
    b = budget(rows, cols, dataflow)
    t = choose_tiling(b, m, k, n, "layer")
    assert t.tm * t.tk * BYTES * t.buffers <= b.input_bytes
    assert t.tk * t.tn * BYTES * t.buffers <= b.weight_bytes
    assert t.tm * t.tn * BYTES * t.buffers <= b.acc_bytes
    assert 1 <= t.tm <= m and 1 <= t.tk <= k and 1 <= t.tn <= n
    spatial = {"weight_stationary": (t.tk, k, t.tn, n), "output_stationary": (t.tm, m, t.tn, n),
               "input_stationary": (t.tk, k, t.tm, m)}[dataflow]
    assert spatial[0] >= min(spatial[1], rows) and spatial[2] >= min(spatial[3], cols)


def test_double_buffering_chosen_when_it_fits():
    assert choose_tiling(budget(kib=(64, 64, 64)), 256, 256, 64, "l").buffers == 2


def test_one_kib_scratchpad_cannot_hold_a_32x32_fold():
    b = Budget(32, 32, "weight_stationary", 1024, 1024, 1024, 16.0, 50, True)
    with pytest.raises(CompileError, match="layer 'conv1': no tile fits.*32x32.*memory"):
        choose_tiling(b, 3136, 576, 64, "conv1")


def test_im2col_bytes_count_each_input_row_once():
    # 3x3 stride-1 conv on a 8x8 image, one channel: a tile of one output row (8 pixels) x 9 taps
    # reads 3 input rows of 8 pixels, not 72 elements.
    geom = (9, 8, 8, 1, 3, 8, 8)
    assert im2col_read_bytes(geom, 8, 8, 0, 9) == 3 * 8 * BYTES
    # a GEMM (1x1 geometry) reads exactly its tile
    assert im2col_read_bytes((1, 1, 1, 1, 1, 1, 1), 0, 5, 0, 7) == 35 * BYTES


def test_no_fit_error_names_a_tile_that_really_does_not_fit():
    """The smallest tile the search tries (spatial dims one array fold, the others from 16) must
    exceed one of the offered capacities, or the message would contradict itself."""
    import re
    b = Budget(rows=4, cols=4, dataflow="weight_stationary", input_bytes=64, weight_bytes=64, acc_bytes=128,
               dram_bytes_per_cycle=25.6, dram_latency=100, double_buffer=True, input_elem_bytes=1,
               weight_elem_bytes=1, acc_elem_bytes=4)
    with pytest.raises(CompileError) as err:
        choose_tiling(b, 49, 72, 6, "qc")
    need = [int(v) for v in re.search(r"input (\d+) B, weight (\d+) B, accumulator (\d+) B", str(err.value)).groups()]
    assert any(n > offered for n, offered in zip(need, (64, 64, 128))), str(err.value)


def test_ideal_memory_tiles_for_the_matrix_cycles():
    """memory.ideal: each transfer costs one cycle, so the estimate is the matrix cycles plus at most a
    few cycles per tile, and the issue's layer (M=3136, K=256, N=64 on 32x32 WS) is no longer cut into
    49 M tiles that each refill the array: the accumulator (128 KiB: 1024 rows of 32 partial sums,
    single-buffered) bounds the M tile."""
    from compiler.targets.systolic.tiling import compute_cycles
    real = Budget(32, 32, "weight_stationary", 256 * 1024, 256 * 1024, 128 * 1024, 25.6, 100, True)
    ideal = dataclasses.replace(real, ideal_memory=True)
    t = choose_tiling(ideal, 3136, 256, 64, "l")
    tiles = -(-3136 // t.tm) * -(-256 // t.tk) * -(-64 // t.tn)
    assert t.compute_cycles <= t.est_cycles <= t.compute_cycles + 4 * tiles + 4
    assert (t.tm, t.tn, t.buffers) == (1024, 32, 1)
    # 4 M tiles x 8 K folds x 2 N folds pay fill and drain (94 cycles) where SCALE-Sim pays 16
    assert t.compute_cycles == 2 * 8 * 3136 + 4 * 8 * 2 * 94
    assert t.compute_cycles < compute_cycles(ideal, 3136, 256, 64, choose_tiling(real, 3136, 256, 64, "l"))


def test_estimate_tracks_the_simulated_layer():
    """The search prices what the simulator charges: on single conv layers across arrays, dataflows,
    scratchpads and DRAM bandwidths, its estimate is within a few percent of the simulated cycles."""
    import statistics

    import numpy as np
    from onnx import helper, numpy_helper

    import dse
    errors = []
    for cin, cout, hw, k in ((64, 64, 56, 1), (64, 64, 28, 3), (256, 64, 28, 1), (512, 128, 14, 3)):
        w = numpy_helper.from_array(np.zeros((cout, cin, k, k), np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)
        model = helper.make_model(helper.make_graph(
            [node], "c", [helper.make_tensor_value_info("x", 1, [1, cin, hw, hw])],
            [helper.make_tensor_value_info("y", 1, None)], [w]), opset_imports=[helper.make_opsetid("", 13)])
        for rows, dataflow, kib, gbps in itertools.product((16, 32), ("weight_stationary", "output_stationary",
                                                                       "input_stationary"), (64, 256), (25.6, 102.4)):
            spec = {"array": {"rows": rows, "cols": rows, "dataflow": dataflow},
                    "memory": {"input_scratchpad_kib": kib, "weight_scratchpad_kib": kib, "dram_gbps": gbps}}
            program = dse.compile(model, spec)
            simulated = dse.api.simulate(program, timing_only=True).stats.total_cycles
            errors.append(abs(program.layers[0].mapping.extras["est_cycles"] / simulated - 1))
    assert statistics.median(errors) < 0.05 and max(errors) < 0.35

"""Tile search: chosen tiles fit the declared buffers and fill the array; no fit is a clear error."""
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

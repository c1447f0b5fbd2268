"""Our ideal-memory compute cycles against SCALE-Sim 3.0.0 run in-process, layer by layer.

SCALE-Sim's reported cycles differ from ours by an exact, explained amount (read from its
source; see benchmarks/scalesim_peer.py): it reports the 0-based index of a layer's last
cycle (one less than the count). Its output-stationary fold takes R + C + T - 2 cycles, as ours
does by default (array.output_stationary_drain "overlapped"); "separate" takes the ISPASS 2020
paper's 2R + C + T - 2. So per layer and per group:
    ours = SCALE-Sim + 1                 (every dataflow, overlapped drain)
    ours = SCALE-Sim + 1 + folds * R     (output_stationary, separate drain)
whether or not our tiling splits the streamed dimension (the stationary tile stays resident).
"""
import numpy as np
import pytest
from onnx import helper, numpy_helper

pytest.importorskip("scalesim")

from benchmarks.scalesim_peer import (
    gemm_layers,
    our_layers,
    peer_spec,
    run_scalesim,
    scalesim_cycles,
    streamed_split,
)
from compiler.pipeline import compile_graph

# name, input shape, weight shape, conv attributes (None = Gemm)
LAYERS = [
    ("conv_pad_stride2", (1, 3, 9, 9), (8, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ("conv_grouped", (1, 6, 7, 7), (6, 3, 3, 3), {"group": 2}),
    ("conv_depthwise", (1, 4, 6, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    ("conv_1x1_wide", (1, 10, 4, 5), (12, 10, 1, 1), {}),
    ("conv_dilated_uneven_stride", (1, 2, 11, 9), (5, 2, 3, 2),
     {"strides": [2, 1], "dilations": [2, 1], "pads": [1, 0, 1, 0]}),
    ("gemm", (6, 20), (20, 9), None),
]


def peer_model():
    """One model, one independent branch per layer (x_i -> layer -> y_i)."""
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, inits = [], [], [], []
    for i, (name, x_shape, w_shape, attrs) in enumerate(LAYERS):
        inits.append(numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), f"w{i}"))
        op = "Gemm" if attrs is None else "Conv"
        nodes.append(helper.make_node(op, [f"x{i}", f"w{i}"], [f"y{i}"], name=name, **(attrs or {})))
        inputs.append(helper.make_tensor_value_info(f"x{i}", 1, list(x_shape)))
        outputs.append(helper.make_tensor_value_info(f"y{i}", 1, None))
    graph = helper.make_graph(nodes, "peer", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def graph():
    return compile_graph(peer_model())


def expected_gap(dataflow, rows, cols, layer, drain="overlapped"):
    """ours - SCALE-Sim for one layer, from the two formulas (see the module docstring)."""
    s_r, s_c = {"weight_stationary": (layer.k, layer.n), "output_stationary": (layer.m, layer.n),
                "input_stationary": (layer.k, layer.m)}[dataflow]
    folds = -(-s_r // rows) * -(-s_c // cols)
    separate = dataflow == "output_stationary" and drain == "separate"
    return layer.groups * (1 + (folds * rows if separate else 0))


def check_point(graph, rows, cols, dataflow, memory=None, drain="overlapped"):
    """memory: our spec's memory section (default: the peer's, large scratchpads, ideal)."""
    layers = gemm_layers(graph)
    assert [lay.name for lay in layers] == [name for name, *_ in LAYERS]
    theirs = run_scalesim(layers, rows, cols, dataflow, sram_kib=(64, 64, 64))  # small: fast
    spec = peer_spec(rows, cols, dataflow)
    spec["array"]["output_stationary_drain"] = drain
    if memory is not None:
        spec["memory"] = memory
    ours = our_layers(graph, spec)
    for layer, ss, stall in zip(layers, theirs.cycles, theirs.stall_cycles):
        mine = ours[layer.name]
        where = f"{layer.name} (M{layer.m} K{layer.k} N{layer.n} g{layer.groups}) {rows}x{cols} {dataflow}"
        assert stall == 0, where
        assert ss == scalesim_cycles(dataflow, rows, cols, layer), where
        assert mine["compute_cycles"] == ss + expected_gap(dataflow, rows, cols, layer, drain), \
            f"{where}: {mine['mapping']}"


@pytest.mark.parametrize("dataflow", ["weight_stationary", "output_stationary", "input_stationary"])
def test_cycles_match_scalesim_on_square_array(graph, dataflow):
    check_point(graph, 8, 8, dataflow)


@pytest.mark.parametrize("dataflow", ["weight_stationary", "output_stationary", "input_stationary"])
def test_cycles_match_scalesim_on_rectangular_array(graph, dataflow):
    check_point(graph, 16, 4, dataflow)


def test_separate_output_drain_adds_r_per_fold(graph):
    check_point(graph, 8, 8, "output_stationary", drain="separate")


def test_output_stationary_split_over_k_keeps_the_partial_sums(graph):
    """Scratchpads that hold 16 of K (one 4x4 output fold, single-buffered) split every K > 16: the
    partial sums stay in the PEs across the pieces, so the cycles stay SCALE-Sim's."""
    memory = {"input_scratchpad_kib": 0.25, "weight_scratchpad_kib": 0.25, "accumulator_kib": 1,
              "double_buffer": False, "ideal": True}
    check_point(graph, 4, 4, "output_stationary", memory)
    split = our_layers(graph, {"array": {"rows": 4, "cols": 4, "dataflow": "output_stationary"}, "memory": memory})
    assert sum(streamed_split(layer, "output_stationary") for layer in split.values()) >= 2


def test_gemm_dims_fed_to_scalesim_match_ours(graph):
    # M = output pixels, K = Cin/g * kh * kw, N = Cout/g, one SCALE-Sim layer per group
    dims = {lay.name: (lay.m, lay.k, lay.n, lay.groups) for lay in gemm_layers(graph)}
    assert dims == {"conv_pad_stride2": (25, 27, 8, 1), "conv_grouped": (25, 27, 3, 2),
                    "conv_depthwise": (36, 9, 1, 4), "conv_1x1_wide": (20, 10, 12, 1),
                    "conv_dilated_uneven_stride": (40, 12, 5, 1), "gemm": (6, 20, 9, 1)}

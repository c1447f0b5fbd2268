"""Single int8 layers through the whole pipeline (ONNX -> Graph -> systolic Program -> simulated
integer datapath) against onnxruntime, bit for bit: hypothesis over QLinearConv, QLinearMatMul
and QDQ-wrapped Conv/MatMul (which onnxruntime fuses into them) with random shapes, scales, zero
points and small design points (array shape, dataflow, scratchpads that force several K, M and
N tiles with edge tiles). Bad quantisation parameters through `dse run`: one line, exit 2.
"""
import dataclasses
import functools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from compiler import spec as specmod
from compiler.errors import CompileError
from compiler.pipeline import compile_graph
from compiler.targets.systolic.spec import DATAFLOWS
from compiler.targets.systolic.lower import lower
from dse.cli import main as dse_main
from sim.run import simulate
from tests.quant_models import ort_outputs
from tests.sim.test_quant_golden import AWKWARD_SCALES, codes, weight_types, zero_points

F32 = np.float32
ROOT = Path(__file__).resolve().parents[2]
ONNX_TYPE = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
             np.dtype(np.float32): TensorProto.FLOAT}
OPSETS = [helper.make_opsetid("", 13)]


# ---------------------------------------------------------------- the int8 design point

@functools.cache
def int8_spec():
    """hwspecs/systolic_int8.yaml, or the fp32 spec with the integer datapath's types."""
    path = ROOT / "hwspecs" / "systolic_int8.yaml"
    if path.is_file():
        return specmod.load(path)
    spec = specmod.load(ROOT / "hwspecs" / "systolic.yaml")
    return dataclasses.replace(spec, datatypes=dataclasses.replace(
        spec.datatypes, input="uint8", weight="int8", accumulator="int32", output="uint8"))


@st.composite
def design_points(draw):
    """A small array and scratchpads of a few hundred bytes: most layers split into several K
    tiles (int32 partial sums carried in the accumulator) and M/N tiles with edge tiles."""
    return {"rows": draw(st.integers(4, 16)), "cols": draw(st.integers(4, 16)),
            "dataflow": draw(st.sampled_from(DATAFLOWS)), "double_buffer": draw(st.booleans()),
            "input_bytes": draw(st.sampled_from([64, 128, 256, 512, 2048])),
            "weight_bytes": draw(st.sampled_from([64, 128, 256, 512, 2048])),
            "acc_bytes": draw(st.sampled_from([256, 512, 1024, 4096]))}


def _spec(point, grow=1):
    spec = int8_spec()
    kib = {k: point[f"{k}_bytes"] * grow / 1024 for k in ("input", "weight", "acc")}
    return dataclasses.replace(
        spec, array=dataclasses.replace(spec.array, rows=point["rows"], cols=point["cols"],
                                        dataflow=point["dataflow"]),
        memory=dataclasses.replace(spec.memory, input_scratchpad_kib=kib["input"], weight_scratchpad_kib=kib["weight"],
                                   accumulator_kib=kib["acc"], double_buffer=point["double_buffer"]))


def simulated(model, feeds, point):
    """Outputs of the simulated Program on the design point, its scratchpads doubled until the
    smallest tile of every layer fits; also returns each GEMM layer's (M, K, N, tm, tk, tn)."""
    graph = compile_graph(model)
    assert all(graph.tensors[n.inputs[0]].dtype in ("uint8", "int8") for n in graph.nodes if n.op in ("conv", "gemm"))
    grow = 1
    while True:
        try:
            program = lower(graph, _spec(point, grow))
            break
        except CompileError as exc:
            if "no tile fits" not in str(exc) or grow > 2 ** 12:
                raise
            grow *= 2
    tiles = [tuple(layer.mapping.dims[d] for d in "mkn") + tuple(layer.mapping.tile[d] for d in "mkn")
             for layer in program.layers if layer.op in ("conv", "gemm")]
    return simulate(program, feeds).outputs, tiles


def simulated_output(model, feeds, point):
    """Output y of `simulated`, recording for --hypothesis-show-statistics how the layer tiled."""
    outputs, tiles = simulated(model, feeds, point)
    for m, k, n, tm, tk, tn in tiles:
        event(f"K tiles: {'several' if k > tk else 'one'}; edge tiles: "
              f"{'yes' if m % tm or k % tk or n % tn else 'no'}")
    return outputs["y"]


# ---------------------------------------------------------------- models and onnxruntime

def _model(nodes, inits, x_shape, out_dtype):
    """x (float32) -> nodes -> y (out_dtype); initializers from a name -> array dict."""
    graph = helper.make_graph(
        nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", ONNX_TYPE[np.dtype(out_dtype)], None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=OPSETS)
    model.ir_version = 8
    return model


def ort_output(model, feeds):
    """onnxruntime's output y: CPU provider, default session options (optimisations on), exact on
    every CPU (tests/quant_models.py)."""
    return ort_outputs(model, feeds)["y"]


def floats_for_codes(q, scale, zero_point):
    """Float32 values that QuantizeLinear(scale, zero_point) maps back to exactly the codes q:
    (q - zp) * scale, within a few ulps of an integer multiple of scale after the division."""
    return ((q.astype(np.int32) - int(zero_point)).astype(F32) * F32(scale)).astype(F32)


def assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if not np.array_equal(got, want):
        diff = got.astype(np.float64) - want.astype(np.float64)
        bad = np.flatnonzero(diff)
        raise AssertionError(f"{bad.size} of {diff.size} outputs differ (max |diff| {np.abs(diff).max()}); "
                             f"first at flat index {bad[0]}: got {got.ravel()[bad[0]]}, want {want.ravel()[bad[0]]}")


def _sweep(strategy, check, examples):
    """A default-suite property test and a 10x sweep of the same check under @pytest.mark.slow."""
    fast = settings(max_examples=examples, deadline=None)(given(case=strategy, point=design_points())(check))
    slow = pytest.mark.slow(settings(max_examples=examples * 10, deadline=None)(
        given(case=strategy, point=design_points())(check)))
    return fast, slow


# ---------------------------------------------------------------- scales

def _scale(draw, pow2, lo=1e-4, hi=1.0):
    if pow2:                         # power-of-two scales: requantisation lands on exact .5 ties
        return F32(2.0 ** -draw(st.integers(0, 12)))
    if draw(st.integers(0, 3)) == 0:
        return F32(draw(st.sampled_from([s for s in AWKWARD_SCALES if lo <= s <= hi])))
    return F32(np.exp(draw(st.floats(np.log(lo), np.log(hi)))))


def _output_scale(draw, pow2, x_scale, w_scale, k):
    """Near the accumulator's natural range times a power of two (some outputs saturate)."""
    if pow2:
        return F32(2.0 ** -draw(st.integers(-6, 10)))
    if draw(st.integers(0, 4)) == 0:
        return _scale(draw, False, 1e-5, 10.0)
    return F32(F32(x_scale) * F32(np.max(w_scale)) * F32(40 * np.sqrt(k)) * F32(2.0 ** draw(st.integers(-3, 3))))


def _weight_params(draw, wt, channels, per_channel, pow2):
    """(scale, zero point) of 8-bit weights: per tensor, or per output channel with one shared
    zero point (onnxruntime's QLinearConv requires the per-channel zero points to be equal)."""
    zp = wt(0) if wt == np.int8 and draw(st.booleans()) else draw(zero_points(wt))
    if not per_channel:
        return _scale(draw, pow2), zp
    return np.array([_scale(draw, pow2) for _ in range(channels)], F32), np.full(channels, zp, wt)


# ---------------------------------------------------------------- QLinearConv

@st.composite
def conv_cases(draw):
    act = draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.int8]))
    wt = draw(weight_types(act))
    if draw(st.integers(0, 4)) == 0:      # depthwise, channel multiplier 1 or 2
        group, cg, mg = draw(st.integers(1, 12)), 1, draw(st.integers(1, 2))
    else:
        wide = draw(st.integers(0, 3)) == 0   # K up to ~360: many K tiles
        group = draw(st.sampled_from([1, 1, 2, 3]))
        cg, mg = draw(st.integers(1, 40 if wide else 12)), draw(st.integers(1, 8))
    kernel = [draw(st.integers(1, 3)) for _ in range(2)]
    dilations = [draw(st.integers(1, 2)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    pads = [draw(st.integers(0, k)) for k in kernel + kernel]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    spatial = [draw(st.integers(max(e - p0 - p1, 1), e + 7)) for e, p0, p1 in zip(extent, pads[:2], pads[2:])]
    x = draw(codes(act, (draw(st.integers(1, 2)), group * cg, *spatial)))
    w = draw(codes(wt, (group * mg, cg, *kernel)))
    pow2 = draw(st.integers(0, 3)) == 0
    x_scale = _scale(draw, pow2)
    w_scale, w_zp = _weight_params(draw, wt, group * mg, draw(st.booleans()), pow2)
    y_scale = _output_scale(draw, pow2, x_scale, w_scale, cg * np.prod(kernel))
    bias = (np.asarray(draw(codes(np.int8, (group * mg,))), np.int32) * draw(st.sampled_from([1, 97, 20011]))
            if draw(st.booleans()) else None)
    attrs = {"group": group, "strides": strides, "pads": pads, "dilations": dilations, "kernel_shape": kernel}
    return x, x_scale, draw(zero_points(act)), w, w_scale, w_zp, y_scale, draw(zero_points(act)), bias, attrs


def qlinear_conv_model(x_shape, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias, attrs):
    """x -> QuantizeLinear -> QLinearConv -> y (codes)."""
    inits = {"xs": x_scale, "xz": x_zp, "w": w, "ws": w_scale, "wz": w_zp, "ys": y_scale, "yz": y_zp}
    names = ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if bias is not None:
        inits["b"], names = bias, names + ["b"]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", names, ["y"], name="conv", **attrs)]
    return _model(nodes, inits, x_shape, np.asarray(y_zp).dtype)


def _check_conv(case, point):
    x, xs, xz, w, ws, wz, ys, yz, bias, attrs = case
    model = qlinear_conv_model(x.shape, xs, xz, w, ws, wz, ys, yz, bias, attrs)
    feeds = {"x": floats_for_codes(x, xs, xz)}
    assert_same(simulated_output(model, feeds, point), ort_output(model, feeds))


test_qlinear_conv, test_qlinear_conv_sweep = _sweep(conv_cases(), _check_conv, 100)


# ---------------------------------------------------------------- QLinearMatMul

@st.composite
def matmul_cases(draw):
    act = draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.int8]))
    wt = draw(weight_types(act))
    wide = draw(st.integers(0, 5)) == 0   # K up to 1500: accumulators beyond 2**24 round in float32
    m, k, n = draw(st.integers(1, 40)), draw(st.integers(1, 1500 if wide else 300)), draw(st.integers(1, 40))
    batch = draw(st.sampled_from([(), (), (2,), (2, 3)]))
    a, b = draw(codes(act, batch + (m, k))), draw(codes(wt, (k, n)))
    pow2 = draw(st.integers(0, 3)) == 0
    a_scale = _scale(draw, pow2)
    b_scale, b_zp = _weight_params(draw, wt, n, draw(st.booleans()), pow2)   # per column: one zero point
    y_scale = _output_scale(draw, pow2, a_scale, b_scale, k)
    return a, a_scale, draw(zero_points(act)), b, b_scale, b_zp, y_scale, draw(zero_points(act))


def qlinear_matmul_model(a_shape, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    """x -> QuantizeLinear -> QLinearMatMul with a constant B -> y (codes)."""
    inits = {"as": a_scale, "az": a_zp, "b": b, "bs": b_scale, "bz": b_zp, "ys": y_scale, "yz": y_zp}
    nodes = [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["xq"]),
             helper.make_node("QLinearMatMul", ["xq", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="mm")]
    return _model(nodes, inits, a_shape, np.asarray(y_zp).dtype)


def _check_matmul(case, point):
    a, as_, az, b, bs, bz, ys, yz = case
    model = qlinear_matmul_model(a.shape, as_, az, b, bs, bz, ys, yz)
    feeds = {"x": floats_for_codes(a, as_, az)}
    assert_same(simulated_output(model, feeds, point), ort_output(model, feeds))


test_qlinear_matmul, test_qlinear_matmul_sweep = _sweep(matmul_cases(), _check_matmul, 60)


# ---------------------------------------------------------------- QDQ-wrapped Conv and MatMul

def qdq_model(op_node, inits, x_shape, x_q, y_q, w_axis):
    """x -> Q -> DQ -> op (DQ'd constant weights 'w' along w_axis, optional int32 bias 'b') -> Q -> DQ
    -> y (float). onnxruntime fuses the group into QLinearConv / QLinearMatMul (uint8 activations)."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=w_axis),
             op_node,
             helper.make_node("QuantizeLinear", ["f", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    if "b" in inits:
        nodes.insert(3, helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0))
    inits = {"xs": x_q[0], "xz": x_q[1], "ys": y_q[0], "yz": y_q[1], **inits}
    return _model(nodes, inits, x_shape, F32)


@st.composite
def qdq_cases(draw):
    """(model, float input) of a QDQ Conv (2-D, groups, strides, pads, dilations, bias) or MatMul."""
    wt = draw(weight_types(np.uint8))
    pow2 = draw(st.integers(0, 3)) == 0
    x_scale, x_zp, y_zp = _scale(draw, pow2), draw(zero_points(np.uint8)), draw(zero_points(np.uint8))
    per_channel = draw(st.booleans())
    if draw(st.booleans()):                                       # Conv
        group = draw(st.sampled_from([1, 1, 2]))
        cg, mg = draw(st.integers(1, 24)), draw(st.integers(1, 8))
        kernel = [draw(st.integers(1, 3)) for _ in range(2)]
        attrs = {"group": group, "kernel_shape": kernel, "strides": [draw(st.integers(1, 2)) for _ in range(2)],
                 "dilations": [draw(st.integers(1, 2)) for _ in range(2)],
                 "pads": [draw(st.integers(0, k - 1)) for k in kernel + kernel]}
        spatial = [(k - 1) * d + 1 + draw(st.integers(0, 6)) for k, d in zip(kernel, attrs["dilations"])]
        x_shape, w = (1, group * cg, *spatial), draw(codes(wt, (group * mg, cg, *kernel)))
        channels, axis, k = group * mg, 0, cg * np.prod(kernel)      # weight axis of the output channels
        node = helper.make_node("Conv", ["xd", "wd"], ["f"], name="conv", **attrs)
    else:                                                         # MatMul
        m, k, n = draw(st.integers(1, 32)), draw(st.integers(1, 200)), draw(st.integers(1, 32))
        x_shape, w, channels, axis = (m, k), draw(codes(wt, (k, n))), n, 1
        node = helper.make_node("MatMul", ["xd", "wd"], ["f"], name="matmul")
    w_scale, w_zp = _weight_params(draw, wt, channels, per_channel, pow2)
    inits = {"w": w, "ws": w_scale, "wz": w_zp}
    if node.op_type == "Conv" and draw(st.booleans()):           # int32 bias in accumulator units
        inits.update(b=np.asarray(draw(codes(np.int8, (channels,))), np.int32) * 53,
                     bs=(F32(x_scale) * np.broadcast_to(np.asarray(w_scale, F32), (channels,))).astype(F32),
                     bz=np.zeros(channels, np.int32))
        node.input.append("bd")
    y_scale = _output_scale(draw, pow2, x_scale, w_scale, k)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    spread = draw(st.sampled_from([10.0, 60.0, 200.0]))          # 200: many inputs saturate
    x = ((rng.standard_normal(x_shape) * spread + (128 - int(x_zp))) * x_scale).astype(F32)
    return qdq_model(node, inits, x_shape, (x_scale, x_zp), (y_scale, y_zp), axis), x


def _check_qdq(case, point):
    model, x = case
    assert_same(simulated_output(model, {"x": x}, point), ort_output(model, {"x": x}))


test_qdq_conv_matmul, test_qdq_conv_matmul_sweep = _sweep(qdq_cases(), _check_qdq, 60)


@pytest.mark.parametrize("op", ["Conv", "MatMul"])
def test_onnxruntime_runs_the_qdq_groups_as_integer_ops(op, tmp_path):
    """What the QDQ property test compares against is onnxruntime's integer kernel (per-channel
    s8 weights, u8 activations), not its float path."""
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (6, 4, 3, 3) if op == "Conv" else (20, 6)).astype(np.int8)
    axis = 0 if op == "Conv" else 1
    inits = {"w": w, "ws": rng.uniform(0.001, 0.01, 6).astype(F32), "wz": np.zeros(6, np.int8)}
    node = helper.make_node(op, ["xd", "wd"], ["f"], **({"pads": [1, 1, 1, 1]} if op == "Conv" else {}))
    x_shape = (1, 4, 5, 5) if op == "Conv" else (7, 20)
    model = qdq_model(node, inits, x_shape, (F32(0.02), np.uint8(120)), (F32(0.05), np.uint8(90)), axis)
    x = rng.standard_normal(x_shape).astype(F32)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert f"QLinear{op}" in {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}
    point = {"rows": 4, "cols": 8, "dataflow": "output_stationary", "double_buffer": False, "input_bytes": 128,
             "weight_bytes": 128, "acc_bytes": 512}
    assert_same(simulated(model, {"x": x}, point)[0]["y"], ort_output(model, {"x": x}))


# ---------------------------------------------------------------- tiling that must be exercised

@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_int32_partial_sums_across_k_tiles_and_edge_tiles(dataflow):
    """A conv with K = 21*3*3 = 189 on a 4x4 array with 256/96/512-byte memories: several K tiles
    whose int32 partial sums stay in the accumulator, and edge tiles in K and in M or N; extreme
    codes and large biases make the requantised output saturate at both ends."""
    rng = np.random.default_rng(11)
    x = rng.choice(np.array([0, 255, 1, 254], np.uint8), (1, 21, 9, 7))
    w = rng.choice(np.array([-128, 127, -127, 3], np.int8), (11, 21, 3, 3))
    bias = rng.integers(-50_000, 50_000, 11).astype(np.int32)
    model = qlinear_conv_model(x.shape, F32(2 ** -7), np.uint8(131), w, F32(2 ** -9), np.int8(0), F32(2 ** -5),
                               np.uint8(128), bias, {"pads": [1, 0, 2, 1], "strides": [1, 2], "kernel_shape": [3, 3]})
    feeds = {"x": floats_for_codes(x, F32(2 ** -7), 131)}
    point = {"rows": 4, "cols": 4, "dataflow": dataflow, "double_buffer": True, "input_bytes": 256,
             "weight_bytes": 96, "acc_bytes": 512}
    got, tiles = simulated(model, feeds, point)
    (m, k, n, tm, tk, tn), = tiles
    assert k > tk and k % tk and (m % tm or n % tn), tiles
    want = ort_output(model, feeds)
    assert len(np.unique(want)) > 20 and {0, 255} <= set(np.unique(want).tolist())   # saturates both ways
    assert_same(got["y"], want)


# ---------------------------------------------------------------- bad input through `dse run`

def _cli_model(tmp_path, **overrides):
    """A QLinearConv model file with quantisation parameters overridden (None = input missing)."""
    rng = np.random.default_rng(3)
    inits = {"xs": F32(0.02), "xz": np.uint8(128), "w": rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8),
             "ws": F32(0.01), "wz": np.int8(0), "ys": F32(0.05), "yz": np.uint8(100)}
    inits.update(overrides)
    names = ["xq"] + [n if inits.get(n) is not None else "" for n in ("xs", "xz", "w", "ws", "wz", "ys", "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", names, ["y"], name="conv_7", pads=[1, 1, 1, 1])]
    model = _model(nodes, {k: v for k, v in inits.items() if v is not None}, (1, 3, 6, 6), np.uint8)
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(4).standard_normal((1, 3, 6, 6)).astype(F32))
    return path, model


@pytest.mark.parametrize("overrides,needles", [
    ({"ws": F32(0.0)}, ["'ws'", "w_scale", "finite and > 0"]),
    ({"ys": F32(np.nan)}, ["'ys'", "y_scale", "nan", "finite and > 0"]),
    ({"ws": None}, ["w_scale", "missing"]),
    ({"yz": np.int64(300)}, ["'yz'", "300", "out of range", "0..255"]),
], ids=["zero-scale", "nan-scale", "missing-scale", "zero-point-out-of-range"])
def test_dse_run_refuses_bad_quantisation_parameters_naming_the_node(tmp_path, capsys, overrides, needles):
    path, _ = _cli_model(tmp_path, **overrides)
    code = dse_main(["run", str(path), "--hw", str(ROOT / "hwspecs" / "systolic_int8.yaml"),
                     "--inputs", str(tmp_path / "x.npz"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for needle in ["'conv_7'", "QLinearConv", *needles]:
        assert needle in err, (needle, err)
    assert not (tmp_path / "out").exists()


def test_the_cli_model_itself_runs(tmp_path, capsys):
    """The unmodified model of the bad-input tests runs (bit-exact), so each failure above is its
    parameter's."""
    path, model = _cli_model(tmp_path)
    code = dse_main(["run", str(path), "--hw", str(ROOT / "hwspecs" / "systolic_int8.yaml"),
                     "--inputs", str(tmp_path / "x.npz"), "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    with np.load(tmp_path / "out" / "outputs.npz") as data, np.load(tmp_path / "x.npz") as x:
        assert_same(data["y"], ort_output(model, {"x": x["x"]}))

"""ConvInteger and MatMulInteger (the int32 accumulator) and uint8/int8 graph inputs through the
whole pipeline (ONNX -> Graph -> systolic Program on the int8 spec -> simulated integer datapath)
against onnxruntime, bit for bit: hypothesis over shapes, zero points, signedness and small design
points (tests/sim/test_int8_layers.py's). One-line CompileErrors for run-time zero points, float or
wrongly typed operands and 8-bit inputs that no op quantises; an 8-bit input through `dse run`.
"""
import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as NoKernel

from compiler.errors import CompileError
from compiler.pipeline import compile_graph
from compiler.spec import load
from compiler.targets import lower
from dse.cli import main as dse_main
from sim import simulate
from tests.sim.test_int8_layers import (
    _sweep,
    assert_same,
    conv_cases,
    matmul_cases,
    ort_output,
    simulated_output,
)
from tests.sim.test_quant_golden import HAS_EXACT_U8S8, codes, zero_points

ROOT = Path(__file__).resolve().parents[2]
INT8_SPEC = ROOT / "hwspecs" / "systolic_int8.yaml"
ELEM = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
        np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
        np.dtype(np.int16): TensorProto.INT16}


def _model(nodes, inputs, inits, out_dtype=np.int32, opset=13):
    """Graph inputs {name: (dtype, shape)} -> nodes -> y (out_dtype); initializers name -> array."""
    graph = helper.make_graph(
        nodes, "integer", [helper.make_tensor_value_info(k, ELEM[np.dtype(t)], list(s)) for k, (t, s) in inputs.items()],
        [helper.make_tensor_value_info("y", ELEM[np.dtype(out_dtype)], None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _integer_model(op, name, x, w, x_zp, w_zp, attrs=None):
    """x (8-bit graph input) -> op (constant w, zero points given unless None) -> y int32."""
    inits = {k: v for k, v in {"w": w, "xz": x_zp, "wz": w_zp}.items() if v is not None}
    names = ["x", "w", "xz" if x_zp is not None else "", "wz" if w_zp is not None else ""]
    while not names[-1]:
        names.pop()
    node = helper.make_node(op, names, ["y"], name=name, **(attrs or {}))
    return _model([node], {"x": (x.dtype, x.shape)}, inits)


def conv_integer_model(x, w, x_zp, w_zp, attrs):
    return _integer_model("ConvInteger", "convint", x, w, x_zp, w_zp, attrs)


def matmul_integer_model(a, b, a_zp, b_zp):
    return _integer_model("MatMulInteger", "mmint", a, b, a_zp, b_zp)


# ---------------------------------------------------------------- which pairs onnxruntime runs

@functools.cache
def ort_runs(op: str, x_type, w_type) -> bool:
    """Whether this onnxruntime runs `op` on x_type codes with w_type weights (older releases
    register ConvInteger for uint8 x uint8 only)."""
    x, w = np.zeros((1, 1, 2, 2), x_type), np.ones((1, 1, 1, 1), w_type)
    model = (conv_integer_model(x, w, None, None, {}) if op == "ConvInteger"
             else matmul_integer_model(np.zeros((2, 1), x_type), np.ones((1, 2), w_type), None, None))
    try:
        ort_output(model, {"x": x if op == "ConvInteger" else np.zeros((2, 1), x_type)})
    except NoKernel:                                     # "Could not find an implementation"
        return False
    return True


def type_pairs(op: str):
    """Activation x weight types to test: every pair onnxruntime runs; mixed-sign ones only where
    MLAS accumulates them exactly (VNNI/AMX; without, vpmaddubsw saturates at int16)."""
    pairs = [(x, w) for x in (np.uint8, np.int8) for w in (np.uint8, np.int8)
             if ort_runs(op, x, w) and (x == w or HAS_EXACT_U8S8)]
    return st.sampled_from(pairs)


def test_every_pair_onnxruntime_runs_compiles():
    """All four 8-bit pairs compile (the int32 accumulator takes s8 x u8 too); the property tests
    below compare those this onnxruntime runs (1.32: all four)."""
    for op in ("ConvInteger", "MatMulInteger"):
        for x_type in (np.uint8, np.int8):
            for w_type in (np.uint8, np.int8):
                x, w = np.zeros((1, 2, 3, 3), x_type), np.ones((2, 2, 1, 1), w_type)
                model = (conv_integer_model(x, w, x_type(1), w_type(2), {}) if op == "ConvInteger"
                         else matmul_integer_model(np.zeros((2, 3), x_type), np.ones((3, 2), w_type), None, None))
                graph = compile_graph(model)
                assert graph.tensors["y"].dtype == "int32", (op, x_type, w_type)
    assert ort_runs("ConvInteger", np.uint8, np.uint8) and ort_runs("MatMulInteger", np.uint8, np.int8)


# ---------------------------------------------------------------- ConvInteger

@st.composite
def conv_integer_cases(draw):
    act, wt = draw(type_pairs("ConvInteger"))
    if draw(st.integers(0, 4)) == 0:          # depthwise, channel multiplier 1 or 2
        group, cg, mg = draw(st.integers(1, 12)), 1, draw(st.integers(1, 2))
    else:
        wide = draw(st.integers(0, 3)) == 0   # K up to ~360: many K tiles on a small array
        group = draw(st.sampled_from([1, 1, 2, 3]))
        cg, mg = draw(st.integers(1, 40 if wide else 12)), draw(st.integers(1, 8))
    kernel = [draw(st.integers(1, 3)) for _ in range(2)]
    dilations = [draw(st.integers(1, 2)) for _ in range(2)]
    strides = [draw(st.integers(1, 3)) for _ in range(2)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    attrs = {"group": group, "strides": strides, "dilations": dilations}
    auto_pad = draw(st.sampled_from(["NOTSET"] * 5 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = pads = [draw(st.integers(0, k)) for k in kernel + kernel]
        spatial = [draw(st.integers(max(e - p0 - p1, 1), e + 7)) for e, p0, p1 in zip(extent, pads[:2], pads[2:])]
    else:                                     # onnxruntime refuses SAME_* with dilations
        attrs["auto_pad"] = auto_pad
        if auto_pad != "VALID":
            attrs["dilations"], extent = [1, 1], kernel
        spatial = [draw(st.integers(e, e + 7)) for e in extent]
    if draw(st.booleans()):
        attrs["kernel_shape"] = kernel
    x = draw(codes(act, (draw(st.integers(1, 2)), group * cg, *spatial)))
    w = draw(codes(wt, (group * mg, cg, *kernel)))
    x_zp = draw(st.one_of(st.none(), zero_points(act), zero_points(act).map(lambda z: np.array([z]))))
    w_zp = draw(st.one_of(st.none(), zero_points(wt), zero_points(wt).map(lambda z: np.array([z]))))
    return x, w, x_zp, w_zp, attrs


def _check_conv_integer(case, point):
    x, w, x_zp, w_zp, attrs = case
    model = conv_integer_model(x, w, x_zp, w_zp, attrs)
    assert_same(simulated_output(model, {"x": x}, point), ort_output(model, {"x": x}))


test_conv_integer, test_conv_integer_sweep = _sweep(conv_integer_cases(), _check_conv_integer, 150)


# ---------------------------------------------------------------- MatMulInteger

@st.composite
def matmul_integer_cases(draw):
    act, wt = draw(type_pairs("MatMulInteger"))
    wide = draw(st.integers(0, 5)) == 0       # K up to 1500: sums far beyond 2**24 stay exact in int32
    m, k, n = draw(st.integers(1, 40)), draw(st.integers(1, 1500 if wide else 300)), draw(st.integers(1, 40))
    batch = draw(st.sampled_from([(), (), (), (2,), (2, 3)]))
    shape = (k,) if not batch and draw(st.integers(0, 7)) == 0 else batch + (m, k)   # 1-D A: [K] @ [K, N]
    a, b = draw(codes(act, shape)), draw(codes(wt, (k, n)))
    a_zp = draw(st.one_of(st.none(), zero_points(act)))
    b_zp = draw(st.one_of(st.none(), zero_points(wt), codes(wt, (n,))))      # per column: they differ
    return a, b, a_zp, b_zp


def _check_matmul_integer(case, point):
    a, b, a_zp, b_zp = case
    model = matmul_integer_model(a, b, a_zp, b_zp)
    assert_same(simulated_output(model, {"x": a}, point), ort_output(model, {"x": a}))


test_matmul_integer, test_matmul_integer_sweep = _sweep(matmul_integer_cases(), _check_matmul_integer, 100)


# ---------------------------------------------------------------- QLinearConv / QLinearMatMul on an 8-bit input

def _check_qlinear_conv_input(case, point):
    """The graph input holds the codes; QLinearConv's x_scale/x_zero_point quantise it."""
    x, xs, xz, w, ws, wz, ys, yz, bias, attrs = case
    inits = {"xs": xs, "xz": xz, "w": w, "ws": ws, "wz": wz, "ys": ys, "yz": yz, "b": bias}
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"] + (["b"] if bias is not None else [])
    model = _model([helper.make_node("QLinearConv", names, ["y"], name="qconv", **attrs)], {"x": (x.dtype, x.shape)},
                   {k: v for k, v in inits.items() if v is not None}, np.asarray(yz).dtype)
    assert_same(simulated_output(model, {"x": x}, point), ort_output(model, {"x": x}))


test_qlinear_conv_input, test_qlinear_conv_input_sweep = _sweep(conv_cases(), _check_qlinear_conv_input, 60)


def _check_qlinear_matmul_input(case, point):
    a, as_, az, b, bs, bz, ys, yz = case
    inits = {"as": as_, "az": az, "b": b, "bs": bs, "bz": bz, "ys": ys, "yz": yz}
    node = helper.make_node("QLinearMatMul", ["x", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], name="qmm")
    model = _model([node], {"x": (a.dtype, a.shape)}, inits, np.asarray(yz).dtype)
    assert_same(simulated_output(model, {"x": a}, point), ort_output(model, {"x": a}))


test_qlinear_matmul_input, test_qlinear_matmul_input_sweep = _sweep(matmul_cases(), _check_qlinear_matmul_input, 40)


# ---------------------------------------------------------------- how an 8-bit input gets its Quant

def _simulate_int8(model, feeds):
    return simulate(lower(compile_graph(model), load(INT8_SPEC)), feeds).outputs


def test_an_8bit_input_takes_the_parameters_of_the_op_that_reads_it():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 5, 6)).astype(np.int8)
    inits = {"s": np.float32(0.05), "z": np.int8(-7)}
    model = _model([helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])], {"x": (np.int8, x.shape)},
                   inits, np.float32)
    graph = compile_graph(model)
    assert graph.tensors["x"].dtype == "int8" and graph.tensors["x"].quant.zero_point == (-7,)
    assert graph.tensors["x"].quant.scale == (float(np.float32(0.05)),)
    assert_same(_simulate_int8(model, {"x": x})["y"], ort_output(model, {"x": x}))


def test_int32_accumulators_can_be_viewed_and_become_graph_outputs():
    """MatMulInteger on 3-D A (reshaped to [M, K] and back), then an ONNX Flatten of the int32 result."""
    rng = np.random.default_rng(1)
    a = rng.choice(np.array([0, 255], np.uint8), (2, 3, 300))            # sums in the millions
    b = rng.choice(np.array([-128, 127], np.int8), (300, 9), p=[0.8, 0.2])
    nodes = [helper.make_node("MatMulInteger", ["x", "b", "az"], ["acc"], name="mm"),
             helper.make_node("Flatten", ["acc"], ["y"], axis=2)]
    model = _model(nodes, {"x": (np.uint8, a.shape)}, {"b": b, "az": np.uint8(3)})
    want = ort_output(model, {"x": a})
    assert want.shape == (6, 9) and np.abs(want).max() > 2 ** 21
    assert_same(_simulate_int8(model, {"x": a})["y"], want)


def test_a_qdq_group_on_an_8bit_input_fuses_into_qlinear_conv():
    """uint8 input -> DequantizeLinear -> Conv (DQ'd int8 weights) -> QuantizeLinear: the fused
    QLinearConv gives the input the DQ's parameters, and onnxruntime runs the same integer kernel."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 3, 7, 7)).astype(np.uint8)
    inits = {"xs": np.float32(0.02), "xz": np.uint8(128), "w": rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
             "ws": np.float32(0.01), "wz": np.int8(0), "ys": np.float32(0.1), "yz": np.uint8(100)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["f"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["f", "ys", "yz"], ["y"])]
    model = _model(nodes, {"x": (np.uint8, x.shape)}, inits, np.uint8)
    graph = compile_graph(model)
    assert [n.op for n in graph.nodes] == ["conv"] and graph.tensors["x"].quant.zero_point == (128,)
    assert_same(_simulate_int8(model, {"x": x})["y"], ort_output(model, {"x": x}))


def test_conv_integer_after_quantize_linear_keeps_the_producers_scale():
    """The int32 output needs no scale: ConvInteger reads QuantizeLinear's codes as they are,
    provided its x_zero_point is theirs."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = {"s": np.float32(0.03), "z": np.uint8(120), "w": w}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("ConvInteger", ["xq", "w", "z"], ["y"], pads=[1, 1, 1, 1])]
    model = _model(nodes, {"x": (np.float32, x.shape)}, inits)
    graph = compile_graph(model)
    assert graph.tensors["xq"].quant.scale == (float(np.float32(0.03)),)
    assert_same(_simulate_int8(model, {"x": x})["y"], ort_output(model, {"x": x}))


# ---------------------------------------------------------------- errors, one line each

def _error(model) -> str:
    with pytest.raises(CompileError) as info:
        compile_graph(model)
    text = str(info.value)
    assert "\n" not in text, text
    return text


def _conv(x_type=np.uint8, w=None, x_zp=None, w_zp=None):
    w = np.ones((2, 3, 1, 1), np.uint8) if w is None else w
    return conv_integer_model(np.zeros((1, 3, 4, 4), x_type), w, x_zp, w_zp, {})


@pytest.mark.parametrize("op", ["ConvInteger", "MatMulInteger"])
def test_a_zero_point_computed_at_run_time_is_refused(op):
    x_shape = (1, 3, 4, 4) if op == "ConvInteger" else (2, 3)
    w = np.ones((2, 3, 1, 1) if op == "ConvInteger" else (3, 2), np.uint8)
    node = helper.make_node(op, ["x", "w", "xz"], ["y"], name="dyn")
    model = _model([node], {"x": (np.uint8, x_shape), "xz": (np.uint8, ())}, {"w": w})
    text = _error(model)
    for needle in ["'dyn'", op, "'xz'", "DynamicQuantizeLinear", "zero points must be constants"]:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("model,needles", [
    (lambda: _conv(np.float32), ["'convint'", "ConvInteger", "'x'", "fp32", "8-bit codes"]),
    (lambda: _conv(w=np.ones((2, 3, 1, 1), np.float32)), ["'convint'", "'w'", "float32", "allowed: uint8, int8"]),
    (lambda: _conv(w=np.ones((2, 3, 1, 1), np.int32)), ["'convint'", "'w'", "int32", "allowed: uint8, int8"]),
    (lambda: _conv(np.uint8, x_zp=np.int8(3)), ["'convint'", "'xz'", "int8", "the data is uint8"]),
    (lambda: _conv(np.uint8, w_zp=np.array([1, 2], np.uint8)), ["'convint'", "'wz'", "per-channel", "onnxruntime"]),
    (lambda: _conv(np.uint8, x_zp=np.array([1, 2], np.uint8)), ["'convint'", "'xz'", "2 values", "one value"]),
], ids=["float-input", "float-weight", "int32-weight", "zero-point-type", "per-channel-w-zero-point",
        "vector-x-zero-point"])
def test_conv_integer_refuses_what_it_cannot_run(model, needles):
    text = _error(model())
    for needle in needles:
        assert needle in text, (needle, text)


def test_onnxruntime_refuses_per_channel_conv_integer_zero_points_too():
    model = _conv(np.uint8, w_zp=np.array([1, 2], np.uint8))
    with pytest.raises(Fail, match="per-tensor"):
        ort_output(model, {"x": np.zeros((1, 3, 4, 4), np.uint8)})


def test_qlinear_conv_still_refuses_int8_activations_with_uint8_weights():
    inits = {"xs": np.float32(0.1), "xz": np.int8(0), "w": np.ones((2, 3, 1, 1), np.uint8), "ws": np.float32(0.1),
             "wz": np.uint8(0), "ys": np.float32(0.1), "yz": np.int8(0)}
    node = helper.make_node("QLinearConv", ["x", *inits], ["y"], name="qconv")
    text = _error(_model([node], {"x": (np.int8, (1, 3, 4, 4))}, inits, np.int8))
    assert "'qconv'" in text and "int8 with weights uint8" in text, text


def _reshape_first():
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("MatMulInteger", ["f", "w"], ["y"])]
    return _model(nodes, {"x": (np.uint8, (2, 3, 1))}, {"w": np.ones((3, 2), np.uint8)})


def _mismatch():
    nodes = [helper.make_node("ConvInteger", ["x", "w", "z1"], ["y"], name="first"),
             helper.make_node("ConvInteger", ["x", "w", "z2"], ["y2"], name="second")]
    model = _model(nodes, {"x": (np.uint8, (1, 3, 4, 4))},
                   {"w": np.ones((2, 3, 1, 1), np.uint8), "z1": np.uint8(1), "z2": np.uint8(2)})
    model.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.INT32, None))
    return model


@pytest.mark.parametrize("model,needles", [
    (lambda: _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], {"x": (np.uint8, (4,))}, {}, np.uint8),
     ["'relu'", "uint8 codes", "dequantize first"]),
    (_reshape_first, ["'flat'", "'x'", "uint8 graph input", "QLinearConv"]),
    (lambda: _model([helper.make_node("Identity", ["a"], ["y"])], {"a": (np.float32, (2,)), "x": (np.int8, (2,))},
                    {}, np.float32), ["input 'x'", "int8", "no op gives its scale and zero point"]),
    (_mismatch, ["'second'", "'x'", "zp=1", "x_zero_point is 2", "first quantised op"]),
    (lambda: _model([helper.make_node("MatMulInteger", ["x", "w"], ["acc"]),
                     helper.make_node("Relu", ["acc"], ["y"], name="relu_acc")],
                    {"x": (np.uint8, (2, 3))}, {"w": np.ones((3, 2), np.uint8)}), ["'relu_acc'", "int32 accumulator"]),
    (lambda: _model([helper.make_node("Identity", ["x"], ["y"])], {"x": (np.int16, (2,))}, {}, np.float32),
     ["input 'x'", "INT16", "allowed: FLOAT, UINT8, INT8"]),
], ids=["float-op-on-codes", "view-before-quantised-op", "unquantised-input", "two-zero-points",
        "op-on-accumulator", "int16-input"])
def test_8bit_input_errors_name_the_input_and_the_rule(model, needles):
    text = _error(model())
    for needle in needles:
        assert needle in text, (needle, text)


# ---------------------------------------------------------------- `dse run` with a uint8 input

def test_dse_run_takes_an_8bit_input(tmp_path, capsys):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (1, 4, 7, 7)).astype(np.uint8)
    model = conv_integer_model(x, rng.integers(-128, 128, (5, 4, 3, 3)).astype(np.int8), np.uint8(77), np.int8(-3),
                               {"pads": [1, 1, 1, 1]})
    onnx.save(model, tmp_path / "convint.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    code = dse_main(["run", str(tmp_path / "convint.onnx"), "--hw", str(INT8_SPEC), "--inputs",
                     str(tmp_path / "x.npz"), "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    with np.load(tmp_path / "out" / "outputs.npz") as data:
        assert_same(data["y"], ort_output(model, {"x": x}))
    assert (tmp_path / "out" / "stats.json").is_file()
    # without --inputs: seeded codes over the input's range; with an out-of-range code: one clear line
    assert dse_main(["run", str(tmp_path / "convint.onnx"), "--hw", str(INT8_SPEC)]) == 0
    capsys.readouterr()
    np.savez(tmp_path / "bad.npz", x=np.full((1, 4, 7, 7), 300))
    assert dse_main(["run", str(tmp_path / "convint.onnx"), "--hw", str(INT8_SPEC), "--inputs",
                     str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input 'x'" in err[0] and "0..255" in err[0] and "uint8" in err[0]

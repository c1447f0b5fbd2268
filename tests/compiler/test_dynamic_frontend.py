"""Models made by onnxruntime.quantization.quantize_dynamic through the front end and passes
(docs/int8_datapath.md section 9): DynamicQuantizeLinear -> dynamic_quantize, MatMulInteger /
ConvInteger on its codes -> gemm/conv with the run-time zero point, Cast -> cast, and the scale
Mul / bias Add as float32 ops. tests/ir_reference.py evaluating the compiled Graph must equal
onnxruntime (CPU provider, default options, so fused into DynamicQuantizeMatMul where it can)
bit for bit on every layer output. One-line CompileErrors for the casts and run-time zero points
that have no IR meaning, and Graph.verify's rules for dynamic Quants.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import CompileError
from compiler.ir import Graph, Node, Quant, TensorType
from compiler.pipeline import compile_graph
from tests.compiler.test_integer_ops import _error
from tests.ir_reference import evaluate
from tests.quant_models import ort_outputs
from tests.sim.test_quant_golden_dynamic import _assert_bits, _quantized

F32 = np.float32
# IR ops of the quantised layers (no float layers between them besides these)
LAYER_OPS = {"mlp": ["dynamic_quantize", "mul", "gemm", "cast", "mul", "add"] * 3,
             "tiny_cnn": ["dynamic_quantize", "mul", "conv", "cast", "mul", "add"] * 2
             + ["dynamic_quantize", "mul", "gemm", "cast", "mul", "add"]}


def _session_outputs(model, feeds):
    """onnxruntime's outputs, exact on every CPU (tests/quant_models.py)."""
    return ort_outputs(model, feeds)


@pytest.mark.parametrize("option", ["s8", "s8_per_channel", "u8", "u8_per_channel"])
@pytest.mark.parametrize("name", ["mlp", "tiny_cnn"])
def test_quantize_dynamic_models_evaluate_like_onnxruntime(name, option):
    model = _quantized(name, option)          # every layer output is a graph output too
    graph = compile_graph(model)
    ops = [n.op for n in graph.nodes if n.op in ("dynamic_quantize", "mul", "gemm", "conv", "cast", "add")]
    assert ops == LAYER_OPS[name], ops
    tensors = graph.tensors
    for node in graph.nodes:
        if node.op == "dynamic_quantize":
            y, scale, zp = (tensors[o] for o in node.outputs)
            assert (y.dtype, y.quant.dynamic, str(y.quant)) == ("uint8", True, "dynamic")
            assert y.shape == tensors[node.inputs[0]].shape
            assert scale == TensorType(()) and zp == TensorType((), "int32")
        if node.op in ("gemm", "conv"):
            x, w, zp = (tensors[i] for i in node.inputs)
            assert x.quant.dynamic and zp == TensorType((), "int32") and tensors[node.outputs[0]].dtype == "int32"
            assert w.dtype == ("int8" if option.startswith("s8") else "uint8") and node.inputs[1] in graph.constants
            per_column = option.endswith("per_channel") and node.op == "gemm"
            assert w.quant.axis == (1 if per_column else None) and set(w.quant.scale) == {1.0}
    shape = tensors["x"].shape
    x = (np.random.default_rng(1).standard_normal(shape) * 1.5).astype(F32)
    got = evaluate(graph, {"x": x})
    want = _session_outputs(model, {"x": x})
    assert set(got) == set(want)
    for out in want:
        if out == "probs":  # zoo:mlp's float Softmax: the IR reference computes it in float64
            np.testing.assert_allclose(got[out], want[out], rtol=1e-6, atol=1e-7)
            continue
        _assert_bits(got[out], want[out])


def _model(nodes, inputs, inits, outputs, opset=13):
    """inputs / outputs: name -> (numpy dtype, shape or None); inits: name -> array."""
    elem = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
            np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    graph = helper.make_graph(
        nodes, "dyn", [helper.make_tensor_value_info(k, elem[np.dtype(t)], s) for k, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(k, elem[np.dtype(t)], s) for k, (t, s) in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _dql_matmul(zp_input="xz", extra_inputs=None, a_shape=(2, 3)):
    w = np.arange(6, dtype=np.uint8).reshape(3, 2)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
             helper.make_node("MatMulInteger", ["xq", "w", zp_input], ["y"], name="mmi")]
    inputs = {"x": (np.float32, list(a_shape)), **(extra_inputs or {})}
    return _model(nodes, inputs, {"w": w}, {"y": (np.int32, None)})


def test_dynamic_matmul_integer_accumulator_is_exact():
    """DynamicQuantizeLinear -> MatMulInteger with an int32 graph output."""
    model = _dql_matmul()
    graph = compile_graph(model)
    assert [n.op for n in graph.nodes] == ["dynamic_quantize", "gemm"]
    assert graph.nodes[1].inputs[2] == "xz" == graph.nodes[0].outputs[2]
    x = np.array([[-1.0, 0.25, 3.0], [0.5, -2.5, 7.0]], F32)
    _assert_bits(evaluate(graph, {"x": x})["y"], _session_outputs(model, {"x": x})["y"])


def test_cast_int32_to_float_rounds_like_onnxruntime():
    """Cast of an int32 accumulator above 2**24 rounds half to even, as onnxruntime's Cast."""
    x = np.zeros((1, 2), np.uint8)
    w = np.full((2, 3), 255, np.uint8)
    nodes = [helper.make_node("MatMulInteger", ["x", "w", "xz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT)]
    model = _model(nodes, {"x": (np.uint8, [1, 2])}, {"w": w, "xz": np.uint8(255)}, {"y": (np.float32, None)})
    graph = compile_graph(model)
    assert [n.op for n in graph.nodes] == ["gemm", "cast"]
    _assert_bits(evaluate(graph, {"x": x})["y"], _session_outputs(model, {"x": x})["y"])


def test_cast_from_float_to_int32_is_refused():
    node = helper.make_node("Cast", ["x"], ["y"], name="tocast", to=TensorProto.INT32)
    text = _error(_model([node], {"x": (np.float32, [2])}, {}, {"y": (np.int32, None)}))
    for needle in ["'tocast'", "Cast", "to=6 (INT32)", "fp32", "allowed: to=1 (FLOAT)"]:
        assert needle in text, (needle, text)


def test_a_zero_point_from_a_graph_input_is_refused():
    """A run-time zero point that is not the y_zero_point of the codes' DynamicQuantizeLinear."""
    w = np.ones((3, 2), np.uint8)
    node = helper.make_node("MatMulInteger", ["x", "w", "xz"], ["y"], name="mmi")
    model = _model([node], {"x": (np.uint8, [2, 3]), "xz": (np.uint8, [])}, {"w": w}, {"y": (np.int32, None)})
    text = _error(model)
    for needle in ["'mmi'", "'xz'", "computed at run time", "DynamicQuantizeLinear"]:
        assert needle in text, (needle, text)
    # codes from DynamicQuantizeLinear with a zero point from elsewhere
    text = _error(_dql_matmul("xz2", {"xz2": (np.uint8, [])}))
    for needle in ["'mmi'", "'xq'", "'xz'", "'xz2'", "y_zero_point"]:
        assert needle in text, (needle, text)


def test_dynamic_codes_only_feed_integer_products():
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
             helper.make_node("Transpose", ["xq"], ["y"], name="tr")]
    text = _error(_model(nodes, {"x": (np.float32, [2, 3])}, {}, {"y": (np.uint8, None)}))
    assert "'tr'" in text and "DynamicQuantizeLinear" in text, text
    text = _error(_dql_matmul(a_shape=(1, 2, 3)))
    assert "'mmi'" in text and "2-D" in text, text


def _ir(nodes, tensors, constants=None, inputs=("x",), outputs=("y",)):
    return Graph("g", list(inputs), list(outputs), tensors, constants or {}, nodes)


DYN = Quant((), (), None)


def test_verify_places_dynamic_quants():
    w = np.ones((3, 2), np.uint8)
    tensors = {"x": TensorType((2, 3)), "q": TensorType((2, 3), "uint8", DYN), "s": TensorType(()),
               "z": TensorType((), "int32"), "w": TensorType((3, 2), "uint8", Quant((1.0,), (0,))),
               "y": TensorType((2, 2), "int32")}
    good = [Node("dynamic_quantize", "d", ("x",), ("q", "s", "z")), Node("gemm", "g", ("q", "w", "z"), ("y",))]
    _ir(good, tensors, {"w": w}).verify()
    bad = [
        ([good[0].replace(outputs=("q", "s")), good[1]], "output"),
        ([good[0], good[1].replace(inputs=("q", "w"))], "x_zero_point"),
        ([good[0], Node("reshape", "r", ("q",), ("y",))], "dynamic Quant"),
    ]
    for nodes, needle in bad:
        with pytest.raises(CompileError, match=needle):
            _ir(nodes, tensors, {"w": w}).verify()
    with pytest.raises(CompileError, match="dynamic Quant"):
        _ir([good[1]], tensors, {"w": w}, inputs=("q", "z")).verify()
    wrong_zp = {**tensors, "z": TensorType((), "uint8", Quant((1.0,), (0,)))}
    with pytest.raises(CompileError, match="dynamic_quantize maps"):
        _ir(good, wrong_zp, {"w": w}).verify()

"""The inputs the fuzzers found that crashed the front end, the lowering or the inputs path,
one test each, now refused with a one-line user error (or, for the last, compiled and run).
Cases that are also bad-input corpus entries (tests/test_bad_inputs.py) are not repeated."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dse
from compiler.errors import CompileError
from compiler.pipeline import compile_graph
from tests.fuzz.contract import holds


def _model(nodes, inputs=None, inits=None, outputs=("y",), opset=13, elem_type=TensorProto.FLOAT):
    inputs = {"x": [1, 4]} if inputs is None else inputs
    values = [helper.make_tensor_value_info(n, elem_type, s) for n, s in inputs.items()]
    graph = helper.make_graph(nodes, "found", values,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _refused(model, *fragments) -> str:
    with pytest.raises(CompileError) as caught:
        compile_graph(model)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and all(f in message for f in fragments), message
    return message


def test_input_elem_type_that_onnx_does_not_define():
    """Was: ValueError from TensorProto.DataType.Name(784) (a flipped bit in zoo:mlp's input type)."""
    model = _model([helper.make_node("Relu", ["x"], ["y"])])
    model.graph.input[0].type.tensor_type.elem_type = 784
    _refused(model, "input 'x' has type <784: not an ONNX type>", "allowed: FLOAT")


def test_newline_in_a_tensor_name_stays_one_line():
    """Was: a two-line CompileError (a flipped bit turned a name's length byte into a newline)."""
    model = _model([helper.make_node("Relu", ["x\nw0"], ["y"], name="r")])
    _refused(model, "input 'x\\nw0' is not produced before use")


def test_required_input_left_empty():
    """Was: KeyError '' (Gemm's B named '')."""
    _refused(_model([helper.make_node("Gemm", ["x", ""], ["y"], name="g")]), "input 1 (B) is missing")


def test_reshape_copying_a_dim_past_the_input_rank():
    """Was: IndexError in reshape_target (shape [1, 4, 0] on a rank-2 input)."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    _refused(_model(nodes, inits={"s": np.array([1, 4, 0], np.int64)}), "copies dim 2 (0) of a rank-2 input")


@pytest.mark.parametrize("inputs, fragment", [
    (["x", "s"], "has 2 inputs; com.microsoft QLinearLeakyRelu takes 4..5"),
    (["x", "", "z", "s"], "input 1 is missing"),
], ids=["too-few", "empty-scale"])
def test_com_microsoft_op_missing_inputs(inputs, fragment):
    """Was: IndexError in read_quant / bind_operand (QLinearLeakyRelu with two inputs)."""
    node = helper.make_node("QLinearLeakyRelu", inputs, ["y"], name="lr", domain="com.microsoft")
    _refused(_model([node], elem_type=TensorProto.UINT8, inits={"s": np.float32(0.1), "z": np.uint8(0)}), fragment)


@pytest.mark.parametrize("node", [
    helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
    helper.make_node("MatMulInteger", ["x", "w"], ["y"], name="mm"),
], ids=["MatMul", "MatMulInteger"])
def test_matrix_product_of_a_scalar(node):
    """Was: IndexError on shape ()[-1] (MatMulInteger of a scalar initializer)."""
    elem = TensorProto.UINT8 if node.op_type == "MatMulInteger" else TensorProto.FLOAT
    weight = np.ones((4, 2), np.uint8 if node.op_type == "MatMulInteger" else np.float32)
    _refused(_model([node], {"x": []}, {"w": weight}, elem_type=elem), "rank >= 1")


def test_constant_folding_prints_no_warning():
    """Was: NumPy RuntimeWarnings on stderr (Reciprocal of 0 folded), a second stderr line."""
    nodes = [helper.make_node("Reciprocal", ["z"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_graph(_model(nodes, inits={"z": np.zeros(4, np.float32)}))


@pytest.mark.parametrize("build", [
    lambda: _model([helper.make_node("Relu", ["x"], ["y"])], {"x": [10**6, 10**6]}),
    lambda: _model([helper.make_node("Range", ["a", "b", "c"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])],
                   inits={"a": np.int64(0), "b": np.int64(10**12), "c": np.int64(1)}),
    lambda: _model([helper.make_node("Expand", ["x", "s"], ["y"])], inits={"s": np.array([10**5, 10**5, 4])}),
], ids=["input", "Range", "Expand"])
def test_absurd_shapes_are_refused_before_allocation(build):
    """Was: accepted (input) or a multi-TiB allocation attempt (folds); now refused by
    compiler.ir.MAX_TENSOR_ELEMENTS with nothing large allocated."""
    assert holds(compile_graph, build()) is None


def test_initializer_as_graph_output_compiles_and_runs():
    """Was: KeyError 'w/const' in the memory plan (an identity viewing a constant never placed)."""
    weights = np.arange(4, dtype=np.float32).reshape(2, 2)
    model = _model([helper.make_node("Relu", ["x"], ["y"])], inits={"w": weights}, outputs=("y", "w"))
    outputs = dse.run(model, inputs={"x": np.ones((1, 4), np.float32)}).outputs
    assert np.array_equal(outputs["w"], weights) and np.array_equal(outputs["y"], np.ones((1, 4)))


def test_op_type_that_is_not_text():
    """Was: TypeError from onnx.defs.get_schema (protobuf returns a non-UTF-8 op type as bytes)."""
    data = _model([helper.make_node("Relu", ["x"], ["y"], name="r")]).SerializeToString().replace(b"Relu", b"R\xffel")
    with pytest.raises(CompileError, match="op_type is not UTF-8 text"):
        compile_graph(onnx.ModelProto.FromString(data))

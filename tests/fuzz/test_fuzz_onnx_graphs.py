"""Fuzz the ONNX front end with small random graphs built with onnx.helper: op types drawn
from ONNX's own schema list (mostly the ones the front end converts or folds, some it does
not, a few com.microsoft ones), attributes of the schema's names with values of the declared
type or another, inputs wired to graph inputs, initializers, earlier outputs, empty or unknown
names, and shapes that are small, empty, symbolic or absurd. `compile_graph` must convert or
refuse each; a converted graph is then lowered by `dse.compile` for the fp32 or the int8 spec."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import dse
from compiler.frontend.onnx import OPS
from compiler.frontend.onnx_context import MS_INPUTS
from compiler.frontend.onnx_fold import FOLDS
from compiler.frontend.onnx_quant import MS_OPS
from compiler.pipeline import compile_graph
from tests.fuzz.contract import FAST, SLOW, holds, rarely

ROOT = Path(__file__).resolve().parents[2]
SPECS = (str(ROOT / "hwspecs" / "systolic.yaml"), str(ROOT / "hwspecs" / "systolic_int8.yaml"))
CONVERTED = tuple(OPS) + tuple(sorted(set(FOLDS) - set(OPS)))        # converted first, then folded
DIMS = st.one_of(st.integers(1, 5), st.sampled_from((0, -1, None, "batch", 10**12, 2**40)))
ELEM_TYPES = (TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT64, TensorProto.INT32,
              TensorProto.BOOL, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.STRING)
NUMPY = {TensorProto.FLOAT: np.float32, TensorProto.UINT8: np.uint8, TensorProto.INT8: np.int8,
         TensorProto.INT64: np.int64, TensorProto.INT32: np.int32, TensorProto.BOOL: np.bool_,
         TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16}
A = onnx.AttributeProto
STRINGS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "", "foo", "constant")


@functools.lru_cache(maxsize=None)
def onnx_ops() -> tuple:
    """Every op of ONNX's default domain."""
    return tuple(sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}))


def _schema(op_type: str, opset: int):
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


@st.composite
def shapes(draw, max_rank=4) -> list:
    return draw(st.lists(st.integers(1, 4) | st.just(1), max_size=max_rank))


@st.composite
def constant(draw) -> np.ndarray:
    elem = draw(st.sampled_from((TensorProto.FLOAT,) * 4 + (TensorProto.INT64,) * 3 + ELEM_TYPES[1:-1]))
    shape = draw(shapes())
    odd = st.sampled_from((0.5, -0.25, float("nan"), float("inf"), 300))
    values = draw(st.lists(st.one_of(st.integers(-3, 6), odd),
                           min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    with np.errstate(all="ignore"):
        return np.array(values, dtype=np.float64).astype(NUMPY[elem]).reshape(shape)


@st.composite
def attribute_value(draw, declared: int):
    """A value of the declared attribute type (mostly) or of another."""
    kind = draw(st.sampled_from((A.INT, A.INTS, A.FLOAT, A.STRING, A.TENSOR))) if rarely(draw, 10) else declared
    small = st.integers(-2, 5) | st.sampled_from((2**31, -2**40, 10**12))
    if kind == A.INT:
        return draw(small)
    if kind == A.INTS:
        return draw(st.lists(small, max_size=5))
    if kind == A.FLOAT:
        return draw(st.sampled_from((0.0, 1.0, -1.0, 1e-5, 0.5, float("nan"), float("inf"), 1e38)))
    if kind == A.FLOATS:
        return draw(st.lists(st.sampled_from((0.0, 1.0, -1.0, float("nan"))), max_size=4))
    if kind == A.STRING:
        return draw(st.sampled_from(STRINGS))
    if kind == A.STRINGS:
        return draw(st.lists(st.sampled_from(STRINGS), max_size=3))
    if kind == A.TENSOR:
        return numpy_helper.from_array(draw(constant()))
    return draw(small)                                # graphs and sparse tensors: an int instead


@st.composite
def node(draw, index: int, names: list, opset: int):
    if rarely(draw, 8):
        op_type, domain = draw(st.sampled_from(onnx_ops())), ""
    elif rarely(draw, 8):
        op_type, domain = draw(st.sampled_from(sorted(MS_OPS))), "com.microsoft"
    else:
        op_type, domain = draw(st.sampled_from(CONVERTED)), ""
    schema = _schema(op_type, opset) if domain == "" else None
    low, high = (schema.min_input, schema.max_input) if schema is not None else MS_INPUTS.get(op_type, (1, 9))[:2]
    high = min(high, 9)
    count = draw(st.integers(0, 9)) if rarely(draw, 10) else draw(st.integers(low, high))
    source = st.sampled_from(names) if names else st.just("")
    inputs = [draw(st.sampled_from(("", "nowhere"))) if rarely(draw, 16) else draw(source) for _ in range(count)]
    extra = draw(st.integers(0, 2)) if schema is None or rarely(draw, 10) else schema.min_output - 1
    outputs = [f"t{index}"] + [f"t{index}_{k}" for k in range(extra)]
    declared = {k: int(a.type) for k, a in schema.attributes.items()} if schema is not None else {}
    chosen = draw(st.lists(st.sampled_from(sorted(declared) or ["axis"]), max_size=3, unique=True))
    made = helper.make_node(op_type, inputs, outputs, name=f"n{index}", domain=domain)
    for key in chosen:
        value = draw(attribute_value(declared.get(key, A.INT)))
        empty = {A.FLOATS: A.FLOATS, A.STRINGS: A.STRINGS}.get(declared.get(key), A.INTS)
        kind = empty if isinstance(value, list) and not value else None
        made.attribute.append(helper.make_attribute(key, value, attr_type=kind))
    return made


@st.composite
def graphs(draw) -> onnx.ModelProto:
    opset = draw(st.sampled_from((6, 22))) if rarely(draw, 30) else draw(st.sampled_from((13, 7, 9, 11, 12, 17, 21)))
    inputs, names = [], []
    for i in range(draw(st.integers(1, 2))):
        elem = draw(st.sampled_from(ELEM_TYPES[1:])) if rarely(draw, 8) else TensorProto.FLOAT
        dims = draw(st.lists(DIMS if rarely(draw, 10) else st.integers(1, 5), max_size=4))
        inputs.append(helper.make_tensor_value_info(f"x{i}", elem, None if rarely(draw, 20) else dims))
        names.append(f"x{i}")
    initializers = []
    for i in range(draw(st.integers(0, 3))):
        initializers.append(numpy_helper.from_array(draw(constant()), f"c{i}"))
        names.append(f"c{i}")
    if rarely(draw, 30):                          # declared dims far past any memory, no data
        huge = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])
        initializers.append(huge)
        names.append("huge")
    nodes = []
    for index in range(draw(st.integers(1, 4))):
        nodes.append(draw(node(index, list(names), opset)))
        names.extend(o for o in nodes[-1].output if o)
    outputs = [nodes[-1].output[0]] + ([draw(st.sampled_from(names))] if rarely(draw, 5) else [])
    results = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in dict.fromkeys(outputs)]
    graph = helper.make_graph(nodes, "fuzzed", inputs, results, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check(model: onnx.ModelProto, spec: str) -> None:
    if holds(compile_graph, model) is not None:
        holds(dse.compile, model, spec)


def _found(node: onnx.NodeProto, opset: int, inits=None) -> onnx.ModelProto:
    graph = helper.make_graph([node], "found", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("t0", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@FAST
@given(model=graphs(), spec=st.sampled_from(SPECS))
# an attribute the op does not have at this opset, of another type than the converter reads
@example(model=_found(helper.make_node("QuantizeLinear", ["x0", "x0", "x0"], ["t0"], axis=[10**12]), 12),
         spec=SPECS[1])
# axes given as a float tensor holding infinity: OverflowError in int()
@example(model=_found(helper.make_node("Unsqueeze", ["x0", "c0"], ["t0"]), 21,
                      {"c0": np.array([np.inf], np.float32)}), spec=SPECS[0])
def test_random_graphs_are_compiled_or_refused(model, spec):
    check(model, spec)


@pytest.mark.slow
@SLOW
@given(model=graphs(), spec=st.sampled_from(SPECS))
def test_random_graphs_many(model, spec):
    check(model, spec)

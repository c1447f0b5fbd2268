"""The Numba kernels against the NumPy reference executor (sim/reference.py): bit for bit
on the GEMM path, data movement, pooling and softmax; within rounding on LRN (a float64
power). tests/sim/test_low_precision_reference.py does the same for bf16 and fp16."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

import dse
from compiler.program import ADDRESS_MEMORY, CONV, OPCODE, OPCODE_ID, OPCODE_NAMES, OPCODES, OPERAND
from dse import zoo
from sim import kernels, reference
from sim.errors import SimError


def test_the_kernels_read_the_program_tables():
    """Opcode ids, operand columns, descriptor fields and memory ids come from compiler/program.py by
    name; none is copied by hand."""
    assert kernels.OPCODE is OPCODE and kernels.CONV is CONV
    assert kernels.IM2COL is OPERAND["load_im2col"] and kernels.MATMUL_ACC == ADDRESS_MEMORY["matmul"].acc
    assert list(OPCODE) == [OPCODE_ID[op.name] for op in OPCODE] == list(range(len(OPCODE_NAMES)))


def _both(model, hw, inputs):
    program = dse.compile(model, hw)
    return dse.api.simulate(program, inputs).outputs, reference.execute(program, inputs)


@settings(max_examples=15, deadline=None)
@given(rows=st.sampled_from([2, 4, 8]), cols=st.sampled_from([2, 4, 16]),
       dataflow=st.sampled_from(["weight_stationary", "output_stationary", "input_stationary"]),
       kib=st.sampled_from([1, 8, 64]), seed=st.integers(0, 50))
def test_gemm_path_bit_identical_to_reference(rows, cols, dataflow, kib, seed):
    model = zoo.small_cnn(seed=seed)
    hw = {"array": {"rows": rows, "cols": cols, "dataflow": dataflow},
          "memory": {"input_scratchpad_kib": kib, "weight_scratchpad_kib": kib, "accumulator_kib": kib}}
    x = np.random.default_rng(seed).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got, want = _both(model, hw, {"x": x})
    assert np.array_equal(got["logits"], want["logits"])


def test_vector_ops_match_reference():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("LRN", ["x"], ["l"], size=3, alpha=1e-3, beta=0.75, bias=1.0),
             helper.make_node("AveragePool", ["l"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              ceil_mode=1),
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
             helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Add", ["t", "b"], ["s"]),
             helper.make_node("Concat", ["s", "s"], ["c"], axis=3),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "vec", [helper.make_tensor_value_info("x", 1, [1, 4, 9, 9])],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    got, want = _both(model, {"array": {"rows": 4, "cols": 4}},
                      {"x": rng.standard_normal((1, 4, 9, 9)).astype(np.float32)})
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-7)


def test_reference_refuses_an_unknown_opcode_and_an_address_past_a_memory():
    program = dse.compile(zoo.small_cnn(), {"array": {"rows": 8, "cols": 8}})
    x = {"x": np.zeros((1, 3, 32, 32), np.float32)}
    ins = program.instructions
    bad = dataclasses.replace(program, instructions=dataclasses.replace(ins, opcode=ins.opcode.copy()))
    bad.instructions.opcode[3] = 99
    defined = f"0..{len(OPCODES) - 1}"
    with pytest.raises(SimError, match=f"^row 3: unknown opcode 99; the reference executor defines opcodes {defined} "):
        reference.execute(bad, x)
    bad = dataclasses.replace(program, instructions=dataclasses.replace(ins, operands=ins.operands.copy()))
    row = int(np.flatnonzero(ins.opcode == OPCODE_ID["load_weights"])[0])
    bad.instructions.operands[row, OPERAND["load_weights"].src] = program.dram_size   # src past the DRAM image
    with pytest.raises(SimError, match=f"^row {row} load_weights: fp32\\[.*\\] at byte {program.dram_size} lies "
                                       f"outside the {program.dram_size}-byte memory"):
        reference.execute(bad, x)


# ---- the float functions of transformers and MobileNets (vec_unary, vec_reduce, vec_layernorm, Pow/Min/Max) ----

def _one_op(op, attrs, shape, initializers, opset, second=False):
    names = ["x", *(["x2"] if second else []), *initializers]
    inputs = [helper.make_tensor_value_info(n, 1, list(shape)) for n in names[:1 + second]]
    graph = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], "op", inputs,
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


FLOAT_FUNCTION_CASES = [
    *[(op, {}, {}) for op in ("Erf", "Tanh", "Sigmoid", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "HardSwish")],
    ("Gelu", {}, {}), ("Gelu", {"approximate": "tanh"}, {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {}),
    ("Clip", {}, {"lo": np.float32(-0.5), "hi": np.float32(6)}),
    ("Pow", {}, {"e": np.float32(2)}), ("Pow", {}, {"e": np.float32(-1.5)}), ("Pow", {}, {}), ("Min", {}, {}),
    ("Max", {}, {}), ("ReduceSum", {"keepdims": 0}, {"axes": np.array([0, 2], np.int64)}),
    ("ReduceMean", {"keepdims": 1}, {"axes": np.array([-1], np.int64)}),
    ("ReduceMax", {"keepdims": 1}, {"axes": np.array([1], np.int64)}),
    ("LayerNormalization", {"axis": -1, "epsilon": 1e-3}, {"s": np.linspace(-2, 2, 5).astype(np.float32),
                                                           "b": np.linspace(1, -1, 5).astype(np.float32)}),
    ("LayerNormalization", {"axis": 1}, {"s": np.linspace(-2, 2, 20).astype(np.float32).reshape(4, 5)}),
    ("Cast", {"to": 10}, {}), ("Cast", {"to": 16}, {}),
]
SPECIAL_VALUES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3e38, 88.0, -100.0, 0.5], np.float32)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("op, attrs, inits", FLOAT_FUNCTION_CASES, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_float_functions_bit_identical_to_reference(op, attrs, inits, dtype):
    """vec_unary, vec_reduce, vec_layernorm and vec_binary's pow/min/max: the kernels give the reference's bits in
    every element type, on magnitudes from 1e-3 to 30 and the special values (NaN, infinities, zeros, a
    subnormal, overflow) in one of the rows a reduction or LayerNormalization sees."""
    shape = (3, 4, 5)
    opset = 17 if op == "LayerNormalization" else 20 if op in ("Gelu", "HardSwish") else 18
    model = _one_op(op, attrs, shape, inits, opset, second=op in ("Min", "Max") or (op == "Pow" and not inits))
    rng = np.random.default_rng(len(op))
    magnitudes = np.array([1e-3, 1.0, 30.0]).reshape(3, 1, 1)
    feeds = {n: (rng.standard_normal(shape) * magnitudes).astype(np.float32) for n in ("x", "x2")}
    feeds["x"][0, :2] = SPECIAL_VALUES.reshape(2, 5)
    program = dse.compile(model, {"array": {"rows": 4, "cols": 4},
                                  "datatypes": {"input": dtype, "weight": dtype, "output": dtype}})
    feeds = {n: v for n, v in feeds.items() if n in program.inputs}
    got, want = dse.api.simulate(program, feeds).outputs["y"], reference.execute(program, feeds)["y"]
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got) & ~np.isnan(got), np.signbit(want) & ~np.isnan(want))

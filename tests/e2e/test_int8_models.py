"""The int8 datapath end to end: quantised models (onnxruntime's static quantisation of
zoo:mlp and the light ResNet-50, SqueezeNet and ShuffleNet with seeded random weights, QDQ
and QOperator, per-tensor and per-channel) simulated on the integer spec must give
onnxruntime's outputs bit for bit, and every intermediate tensor the Program keeps in DRAM
must equal the IR reference (tests/ir_reference.py, itself bit-identical to onnxruntime
at every tensor in tests/compiler/test_quant_frontend.py), so a fault is located to its
layer; a float op left between integer layers (AlexNet's LRN) is compared to float
rounding, as the reference computes it in float64. The slow tier adds the other five light
models (QOperator, per tensor). The simulated outputs come from executing the Program (sim.run.simulate).
"""
import dataclasses

import numpy as np
import onnx
import pytest

from compiler.pipeline import compile_graph
from compiler.program import CONV_FIELDS, DTYPE_CODE, OPCODE_ID, REQUANT_ID
from compiler.spec import load
from compiler.targets import lower
from dse.ort_oracle import fused_model
from sim import kernels, simulate
from tests import ir_reference
from tests.quant_models import (
    FORMATS,
    MORE_MODELS,
    QUANT_MODELS,
    ort_outputs,
    quant_model_path,
)

INT8_SPEC = "hwspecs/systolic_int8.yaml"
VARIANTS = [(name, fmt, pc) for name in QUANT_MODELS for fmt in FORMATS for pc in (False, True)]
# the default tier: every op kind the zoo uses (gemm, conv incl. grouped and depthwise, lookup,
# concat, maxpool, avgpool both paths, add, transpose, softmax, quantize, dequantize) in ~10 s
QUICK = {("mlp", "qdq", False), ("mlp", "qoperator", True), ("squeezenet", "qoperator", False),
         ("shufflenet", "qdq", True)}


def _inputs(graph, seed=1):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}


def check_bit_exact(path, spec, seed=1, oracle=None):
    """Simulate `path` on `spec`: outputs == onnxruntime's (on `oracle` if given: an equivalent
    model) and every kept tensor == the IR reference."""
    graph = compile_graph(str(path))
    program = lower(graph, spec)
    inputs = _inputs(graph, seed)
    result = simulate(program, inputs, all_tensors=True)
    for name, want in ort_outputs(oracle or path, inputs).items():
        got = result.outputs[name]
        assert got.dtype == want.dtype and np.array_equal(got, want), \
            f"{name}: {int(np.sum(got != want))} of {want.size} outputs differ from onnxruntime"
    expected = ir_reference.evaluate(graph, inputs, keep_all=True)
    compared = [n for n in graph.tensors if n in expected and n in result.outputs and n not in graph.constants]
    assert len(compared) > len(graph.nodes) // 2        # the intermediates really were compared
    exact_float = {n.outputs[0] for n in graph.nodes if n.op in ("dequantize", "cast")}
    for name in compared:
        got, want = result.outputs[name], expected[name]
        if graph.tensors[name].dtype == "fp32" and name not in exact_float:
            # a float op between integer layers (LRN, softmax): the IR reference computes in float64
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"tensor {name}")
        else:
            assert np.array_equal(got, want), f"tensor {name} differs from the IR reference"
    return program, result


@pytest.mark.parametrize("name,fmt,per_channel", [
    pytest.param(*v, marks=() if v in QUICK else pytest.mark.slow) for v in VARIANTS])
def test_quantised_model_is_bit_identical_to_onnxruntime(name, fmt, per_channel):
    check_bit_exact(quant_model_path(name, fmt, per_channel), load(INT8_SPEC))


@pytest.mark.slow
@pytest.mark.parametrize("name", MORE_MODELS)
def test_the_other_light_models_are_bit_identical_too(name):
    """AlexNet and ZFNet (LRN stays float between integer layers), both Inceptions, DenseNet-121
    and VGG-19, QOperator per tensor."""
    check_bit_exact(quant_model_path(name, "qoperator", False), load(INT8_SPEC))


@pytest.mark.parametrize("activations", ["int8", pytest.param("uint8", marks=pytest.mark.slow)])
def test_qoperator_int8_weights_with_either_activation_signedness(activations):
    """QOperator with int8 activations runs onnxruntime's s8s8 integer kernels; the array takes
    either signedness of codes (it subtracts the zero points)."""
    program, _ = check_bit_exact(quant_model_path("squeezenet", "qoperator", False, activations, "int8"),
                                 load(INT8_SPEC))
    codes = {int(c) for c in program.desc_int[:, CONV_FIELDS.index("x_code")] if c}
    assert codes == {DTYPE_CODE[activations]}


def test_every_design_point_gives_the_same_bits():
    """Integer accumulation is exact, so array shape, dataflow and buffer sizes (which change the
    tiling and the order of the K tiles) cannot change any output bit."""
    path = quant_model_path("squeezenet", "qdq", True)
    graph = compile_graph(str(path))
    base = load(INT8_SPEC)
    inputs = _inputs(graph)
    outputs = []
    for rows, cols, dataflow, kib in ((32, 32, "weight_stationary", 256), (8, 16, "output_stationary", 8),
                                      (16, 4, "input_stationary", 2)):
        spec = dataclasses.replace(base, array=dataclasses.replace(base.array, rows=rows, cols=cols, dataflow=dataflow),
                                   memory=dataclasses.replace(base.memory, input_scratchpad_kib=kib,
                                                              weight_scratchpad_kib=kib, accumulator_kib=kib))
        program = lower(graph, spec)
        outputs.append(simulate(program, inputs).outputs)
    for other in outputs[1:]:
        assert all(np.array_equal(outputs[0][k], other[k]) for k in outputs[0])


def test_int8_traffic_and_work_follow_the_datatype():
    """Bytes shrink with the 8-bit types: every DMA row of an integer layer moves 1-byte codes
    (and 4-byte biases and scales), so ResNet-50's weight traffic is about a quarter of fp32's."""
    from tests.quant_models import float_model_path
    q_graph = compile_graph(str(quant_model_path("resnet50", "qoperator", False)))
    f_graph = compile_graph(str(float_model_path("resnet50")))
    q = simulate(lower(q_graph, load(INT8_SPEC)), timing_only=True).stats
    f = simulate(lower(f_graph, load("hwspecs/systolic.yaml")), timing_only=True).stats
    assert q.macs == f.macs
    ratio = q.bytes["dram"] / f.bytes["dram"]
    assert 0.2 < ratio < 0.35, ratio
    assert q.total_cycles < f.total_cycles and q.energy_j < f.energy_j


def test_kernel_constants_follow_the_program_tables():
    assert [getattr(kernels.CONV, f) for f in CONV_FIELDS] == list(range(len(CONV_FIELDS)))
    assert (kernels.REQ_FLOAT, kernels.REQ_CODES, kernels.REQ_INT32, kernels.REQ_SCALED, kernels.REQ_FIXED) == tuple(
        REQUANT_ID[k] for k in ("float", "codes", "int32", "scaled", "fixed_point"))
    assert (kernels.INT8, kernels.UINT8, kernels.INT32) == tuple(DTYPE_CODE[t] for t in ("int8", "uint8", "int32"))
    assert kernels.OPCODE.vec_quantize == OPCODE_ID["vec_quantize"]


def test_uint8_weights_with_a_zero_point_per_column():
    """`dse quantize --per-channel --weight-type uint8` gives QGemm weights whose zero points differ
    per column; the array subtracts each column's own."""
    path = quant_model_path("mlp", "qoperator", True, "uint8", "uint8")
    graph = compile_graph(str(path))
    zero_points = [set(graph.tensors[n.inputs[1]].quant.zero_point) for n in graph.nodes if n.op == "gemm"]
    assert max(len(z) for z in zero_points) > 1
    check_bit_exact(path, load(INT8_SPEC))


@pytest.mark.parametrize("name,per_channel", [("squeezenet", False), ("mlp", True),
                                               pytest.param("resnet50", True, marks=pytest.mark.slow),
                                               pytest.param("shufflenet", False, marks=pytest.mark.slow)])
def test_qdq_with_int8_activations_runs_s8s8_on_the_integer_datapath(name, per_channel):
    """QDQ with int8 activations and int8 weights (the symmetric S8S8 convention of NPU toolchains)
    runs on integer tiles as the hardware would: bit-identical to the equivalent QOperator graph's
    exact-integer semantics (the IR reference at every tensor, and onnxruntime's integer kernels on
    the fused graph), and close to onnxruntime's own run of the QDQ model, which on x86 keeps these
    groups in float. Both figures are printed (pytest -s)."""
    path = quant_model_path(name, "qdq", per_channel, "int8", "int8")
    graph = compile_graph(str(path))
    layers = [n for n in graph.nodes if n.op in ("conv", "gemm")]
    assert layers and all(graph.tensors[n.inputs[0]].dtype == "int8" for n in layers)
    spec = load(INT8_SPEC)
    program, result = check_bit_exact(path, spec, oracle=fused_model(onnx.load(str(path))))
    inputs = _inputs(graph)
    float_path = ort_outputs(path, inputs, exact=False)
    for out, want in float_path.items():
        scale = _output_step(graph, out)
        steps = float(np.max(np.abs(result.outputs[out].astype(np.float64) - want))) / scale
        print(f"{name} {out}: bit-identical to the fused QOperator graph; max {steps:.2f} codes from "
              "onnxruntime's float path")
        assert steps <= 2.001
    with pytest.raises(Exception, match="quantised.*systolic_int8.yaml"):
        lower(graph, load("hwspecs/systolic.yaml"))


def _output_step(graph, name: str) -> float:
    """The code step (scale) of the quantised tensor an output is dequantised from."""
    node = next(n for n in graph.nodes if name in n.outputs)
    while node.op not in ("dequantize",):
        node = next(n for n in graph.nodes if node.inputs[0] in n.outputs)
    return float(np.max(graph.tensors[node.inputs[0]].quant.scale))


def test_the_mapping_of_an_integer_layer_names_its_datapath():
    graph = compile_graph(str(quant_model_path("mlp", "qoperator", False)))
    spec = load(INT8_SPEC)
    fixed = dataclasses.replace(spec, datatypes=dataclasses.replace(spec.datatypes, requantize="fixed_point"))
    mapping = next(layer.mapping for layer in lower(graph, spec).layers if layer.op == "gemm")
    assert mapping.extras["datapath"] == "uint8 x int8 -> int32 acc -> uint8 (float requantizer)"
    assert "uint8 x int8 -> int32 acc -> uint8 (float requantizer)" in mapping.text() and "tile m" in mapping.text()
    fixed_mapping = next(layer.mapping for layer in lower(graph, fixed).layers if layer.op == "gemm")
    assert fixed_mapping.extras["datapath"].endswith("(fixed-point requantizer)")

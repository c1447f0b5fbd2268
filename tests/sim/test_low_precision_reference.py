"""bf16/fp16 datapaths: the Numba simulator equals the NumPy reference executor
(sim/reference.py, the same declared order: fp32 products of narrow values, fp32
accumulation bias first then k ascending, one rounding per stored result) bit for bit,
on whole models and on random conv/gemm layers, for uniform and mixed element types."""
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import helper, numpy_helper

import dse
from dse import zoo
from sim import reference
from tests.light_models import light_model_path, with_random_weights

TYPES = {"bf16": ("bf16", "bf16", "bf16"), "fp16": ("fp16", "fp16", "fp16"),
         # mixed: every load and store converts (fp16 inputs into a bf16 scratchpad and so on)
         "mixed": ("fp16", "bf16", "fp32"), "narrow_out": ("fp32", "bf16", "fp16")}


def spec(kind: str, rows=8, cols=8, dataflow="weight_stationary", kib=64) -> dict:
    x, w, y = TYPES[kind]
    return {"array": {"rows": rows, "cols": cols, "dataflow": dataflow},
            "datatypes": {"input": x, "weight": w, "output": y},
            "memory": {"input_scratchpad_kib": kib, "weight_scratchpad_kib": kib, "accumulator_kib": kib}}


def same_bits(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == want[name].dtype == np.float32
        np.testing.assert_array_equal(got[name].view(np.uint32), want[name].view(np.uint32), err_msg=name)


def both(model, hw, seed=0):
    program = dse.compile(model, hw)
    rng = np.random.default_rng(seed)
    inputs = {n: rng.standard_normal(program.regions[n].shape).astype(np.float32) for n in program.inputs}
    return dse.api.simulate(program, inputs).outputs, reference.execute(program, inputs), program


@pytest.mark.parametrize("kind", list(TYPES))
@pytest.mark.parametrize("builder", ["small_cnn", "mlp"])
def test_project_models_bit_identical_to_reference(builder, kind):
    got, want, program = both(zoo.BUILDERS[builder](), spec(kind))
    same_bits(got, want)
    x, _, y = TYPES[kind]
    assert program.regions[program.inputs[0]].dtype == x and program.regions[program.outputs[0]].dtype == y


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
def test_squeezenet_bit_identical_to_reference(kind):
    model = with_random_weights(onnx.load(light_model_path("squeezenet")), seed=0, logits_rms=None)
    got, want, _ = both(model, spec(kind, rows=32, cols=32, kib=512))
    same_bits(got, want)


def test_fp16_overflow_is_the_same_in_both():
    """The shipped SqueezeNet's constant weights push activations past fp16's 65504: both
    executors overflow to Inf at the same elements (and the softmax turns them into NaN)."""
    got, want, _ = both(zoo.resolve("zoo:squeezenet"), spec("fp16", rows=32, cols=32, kib=512))
    for name in want:
        assert not np.isfinite(want[name]).all()
        np.testing.assert_array_equal(got[name], want[name])       # NaN == NaN here


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
def test_outputs_do_not_depend_on_tiling(kind):
    model = zoo.small_cnn()
    runs = [both(model, spec(kind, rows, cols, flow, kib))[0]["logits"] for rows, cols, flow, kib in
            [(4, 4, "weight_stationary", 2), (16, 8, "output_stationary", 64), (8, 32, "input_stationary", 256)]]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.view(np.uint32), runs[0].view(np.uint32))


@st.composite
def layer_model(draw):
    """A random Conv (+Relu) or Gemm model."""
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    if draw(st.booleans()):
        groups = draw(st.sampled_from([1, 1, 2]))
        cin, cout = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 5))
        k = draw(st.integers(1, 3))
        h, w = draw(st.integers(k, 10)), draw(st.integers(k, 10))
        strides = [draw(st.integers(1, 2))] * 2
        pads = [draw(st.integers(0, 1))] * 4
        weights = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=groups, strides=strides, pads=pads),
                 helper.make_node("Relu", ["c"], ["y"])]
        xshape, bias = [draw(st.integers(1, 2)), cin, h, w], rng.standard_normal(cout)
    else:
        m, k, n = draw(st.integers(1, 20)), draw(st.integers(1, 200)), draw(st.integers(1, 40))
        weights = rng.standard_normal((k, n)).astype(np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"])]
        xshape, bias = [m, k], rng.standard_normal(n)
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", 1, xshape)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(weights, "w"),
                               numpy_helper.from_array(bias.astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=layer_model(), kind=st.sampled_from(list(TYPES)), rows=st.sampled_from([1, 4, 8]),
       cols=st.sampled_from([2, 4, 16]), kib=st.sampled_from([1, 4, 64]),
       dataflow=st.sampled_from(["weight_stationary", "output_stationary", "input_stationary"]))
def test_random_layers_bit_identical_to_reference(model, kind, rows, cols, kib, dataflow):
    got, want, _ = both(model, spec(kind, rows, cols, dataflow, kib))
    same_bits(got, want)

"""End to end: ONNX model -> Program -> simulator outputs, against onnxruntime.

Outputs come from executing the Program on simulated DRAM and scratchpads; the
reference is onnxruntime on the same model and inputs. The light models carry
ConstantOfShape weights, replaced by seeded random ones (tests/light_models.py).
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import dse
from dse import zoo
from tests.light_models import light_model_path, reference_input, with_random_weights

SMALL = {"array": {"rows": 8, "cols": 8}}
DEFAULT_RUN = ["resnet50", "squeezenet"]
SLOW = ["alexnet", "densenet121", "inception_v1", "inception_v2", "shufflenet", "vgg19", "zfnet512"]


def with_pre_softmax_output(model: onnx.ModelProto):
    """Expose the tensor feeding the final Softmax as an extra output (a saturated softmax hides errors)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    soft = [n for n in model.graph.node if n.op_type == "Softmax"]
    if soft:
        logits = soft[-1].input[0]
        model.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    return model


def ort_run(model: onnx.ModelProto, inputs: dict) -> dict:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, inputs)))


def check_against_ort(model: onnx.ModelProto, hw=SMALL, rtol=1e-4, atol=1e-5):
    model = with_pre_softmax_output(model)
    program = dse.compile(model, hw)
    inputs = reference_input(model)
    got = dse.api.simulate(program, inputs).outputs
    want = ort_run(model, inputs)
    assert set(want) <= set(got)
    for name, ref in want.items():
        np.testing.assert_allclose(got[name], ref, rtol=rtol, atol=atol, err_msg=name)
    return program, got


@pytest.mark.parametrize("name", DEFAULT_RUN + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_light_model_random_weights_match_onnxruntime(name):
    model = with_random_weights(onnx.load(light_model_path(name)), seed=0)
    check_against_ort(model, hw={"array": {"rows": 16, "cols": 16}})


@pytest.mark.parametrize("name", ["squeezenet"] + [pytest.param(n, marks=pytest.mark.slow) for n in
                                                   ["resnet50"] + SLOW])
def test_light_model_original_weights_match_shipped_reference(name):
    from tests.light_models import load_reference_output
    model = onnx.load(light_model_path(name))
    program = dse.compile(model, SMALL)
    got = dse.api.simulate(program, reference_input(model)).outputs
    np.testing.assert_allclose(got[program.outputs[0]], load_reference_output(name), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("builder", ["mlp", "small_cnn"])
def test_project_models_match_onnxruntime(builder):
    check_against_ort(zoo.BUILDERS[builder]())


def test_outputs_are_identical_across_array_sizes_and_dataflows():
    """fp32 accumulation follows one declared order whatever the tiling, so the bits agree."""
    model = zoo.small_cnn()
    inputs = reference_input(model)
    results = []
    for rows, cols, flow, kib in [(4, 4, "weight_stationary", 2), (16, 8, "output_stationary", 64),
                                  (8, 32, "input_stationary", 256)]:
        hw = {"array": {"rows": rows, "cols": cols, "dataflow": flow},
              "memory": {"input_scratchpad_kib": kib, "weight_scratchpad_kib": kib, "accumulator_kib": kib}}
        results.append(dse.run(model, hw=hw, inputs=inputs).outputs["logits"])
    for other in results[1:]:
        assert np.array_equal(results[0], other)


def test_fault_injection_changes_outputs():
    """Corrupting one DRAM address or one tile size in the Program makes the outputs wrong."""
    model = zoo.small_cnn()
    inputs = reference_input(model)
    program = dse.compile(model, SMALL)
    good = dse.api.simulate(program, inputs).outputs["logits"]
    ins = program.instructions
    from compiler.program import OPCODE_ID, OPERAND
    load, src = int(np.nonzero(ins.opcode == OPCODE_ID["load_weights"])[0][0]), OPERAND["load_weights"].src
    ins.operands[load, src] += 4          # weights read one element off
    bad = dse.api.simulate(program, inputs).outputs["logits"]
    assert not np.allclose(bad, good)
    ins.operands[load, src] -= 4
    assert np.array_equal(dse.api.simulate(program, inputs).outputs["logits"], good)
    mm = int(np.nonzero(ins.opcode == OPCODE_ID["matmul"])[0][0])
    ins.operands[mm, OPERAND["matmul"].tk] -= 1    # one fewer k in one tile
    assert not np.allclose(dse.api.simulate(program, inputs).outputs["logits"], good)


def test_timing_only_walks_the_same_instructions():
    model = zoo.small_cnn()
    program = dse.compile(model, SMALL)
    full = dse.api.simulate(program, reference_input(model)).stats
    timed = dse.api.simulate(program, timing_only=True).stats
    assert full.total_cycles == timed.total_cycles and full.instructions == timed.instructions
    assert timed.total_cycles > 0


def test_ideal_memory_is_compute_only():
    model = zoo.small_cnn()
    program = dse.compile(model, SMALL)
    real = dse.api.simulate(program, timing_only=True).stats
    ideal = dse.api.simulate(program, timing_only=True, ideal_memory=True).stats
    assert ideal.total_cycles < real.total_cycles
    assert ideal.engine_busy_cycles["matrix"] == real.engine_busy_cycles["matrix"]

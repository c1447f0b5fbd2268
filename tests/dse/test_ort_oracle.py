"""dse/ort_oracle.py: which onnxruntime integer kernels are exact on this CPU (a probe), and the
uint8-weight copy that makes onnxruntime an exact oracle where the uint8 x int8 kernel saturates.
The copy is checked against the exact-integer IR reference (tests/ir_reference.py), which does not
depend on the CPU; the slow tier reruns the probe on an emulated AVX2 CPU without VNNI (qemu-user)."""
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compiler.pipeline import compile_graph
from dse.ort_oracle import _with_uint8_weights, code_pairs, kernel_is_exact, oracle_model
from tests import ir_reference
from tests.quant_models import quant_model_path


def _ort(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_the_probe_answers_for_every_code_pair():
    """uint8 x uint8 and int8 x int8 widen to 16 bits before multiplying on every MLAS path, so
    they are exact; uint8 x int8 is exact only with VNNI/AMX on x86 (or on arm64's dot products)."""
    assert kernel_is_exact("uint8", "uint8") and kernel_is_exact("int8", "int8")
    assert kernel_is_exact("uint8", "int8") in (True, False)
    print("onnxruntime uint8 x int8 exact on this CPU:", kernel_is_exact("uint8", "int8"))


@pytest.mark.parametrize("name,fmt,per_channel", [("mlp", "qdq", True), ("squeezenet", "qoperator", False),
                                                  ("shufflenet", "qdq", True)])
def test_uint8_weight_copy_computes_the_exact_integer_semantics(name, fmt, per_channel):
    path = quant_model_path(name, fmt, per_channel)
    model = onnx.load(str(path))
    assert code_pairs(model) == {("uint8", "int8")}
    moved = _with_uint8_weights(model)
    assert code_pairs(moved) == {("uint8", "uint8")}
    graph = compile_graph(str(path))
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}
    want = ir_reference.evaluate(graph, feeds)
    got = _ort(moved, feeds)
    assert all(np.array_equal(got[k], want[k]) for k in graph.outputs)
    if kernel_is_exact("uint8", "int8"):      # both kernels exact here: the copy changes nothing
        original = _ort(model, feeds)
        assert all(np.array_equal(original[k], got[k]) for k in got)
    exact, line = oracle_model(model)
    assert exact is model if kernel_is_exact("uint8", "int8") else "uint8 copies" in line
    assert line.startswith(f"onnxruntime {ort.__version__}")


def test_a_float_model_needs_no_probe():
    from dse import zoo
    model = zoo.mlp()
    assert code_pairs(model) == set()
    exact, line = oracle_model(model)
    assert exact is model and line == f"onnxruntime {ort.__version__}"


QEMU_SCRIPT = """
from dse.ort_oracle import kernel_is_exact
print(kernel_is_exact("uint8", "int8"), kernel_is_exact("uint8", "uint8"), kernel_is_exact("int8", "int8"))
"""


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("qemu-x86_64") or sys.platform != "linux", reason="needs qemu-user (x86-64)")
def test_probe_finds_the_saturating_kernel_on_an_emulated_avx2_cpu():
    """On an emulated Haswell (AVX2, FMA, no VNNI) onnxruntime's uint8 x int8 kernel saturates and
    the probe says so; uint8 x uint8 and int8 x int8 stay exact (measured: 1,048,544 for 2,072,640)."""
    out = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", QEMU_SCRIPT],
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_dse_run_verify_names_its_oracle_and_is_bit_exact(capsys):
    from dse.cli import main
    path = quant_model_path("mlp", "qdq", True)
    assert main(["run", str(path), "--hw", "systolic_int8", "--verify"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("verify ok   max |error| 0 vs onnxruntime") and "(bit-identical)" in line
    assert ("probed" in line) and (("uint8 copies" in line) != kernel_is_exact("uint8", "int8"))


def test_compare_fails_on_one_changed_code_and_never_passes_without_a_reference():
    """The verdict --verify prints: one code off on an integer datapath is a failure; no exact
    oracle on this CPU is 'not checked' (ok None), not a pass."""
    from compiler.spec import load
    from compiler.targets import lower
    from dse.api import random_inputs
    from dse.verify import compare
    from sim import simulate
    path = quant_model_path("mlp", "qoperator", False)
    spec = load("systolic_int8")
    program = lower(compile_graph(str(path)), spec)
    feeds = random_inputs(program, 0)
    outputs = simulate(program, feeds).outputs
    expected = _ort(oracle_model(onnx.load(str(path)))[0], feeds)
    assert compare(spec, program, outputs, expected, "ort")["ok"] is True
    name = next(iter(expected))
    bad = dict(outputs)
    bad[name] = outputs[name].copy()
    bad[name].flat[0] = np.nextafter(bad[name].flat[0], np.float32(np.inf))
    assert compare(spec, program, bad, expected, "ort")["ok"] is False
    assert compare(spec, program, outputs, None, "no exact oracle")["ok"] is None


def test_s8s8_qdq_is_verified_on_its_qoperator_equivalent_with_the_float_path_gap(capsys):
    """`dse run --verify` on a QDQ model with int8 activations: bit for bit against the equivalent
    QOperator graph, and the distance to onnxruntime's x86 float path printed beside it."""
    from dse.cli import main
    path = quant_model_path("mlp", "qdq", False, "int8", "int8")
    assert main(["run", str(path), "--hw", "systolic_int8", "--verify"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("verify ok   max |error| 0 vs") and "equivalent QOperator graph" in lines[-2]
    assert "onnxruntime's own run of the QDQ model" in lines[-1]

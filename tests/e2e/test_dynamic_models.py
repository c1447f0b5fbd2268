"""Dynamically quantised models (onnxruntime.quantization.quantize_dynamic: weights int8 or
uint8 offline, activations quantised at run time by DynamicQuantizeLinear; docs/int8_datapath.md
section 9) simulated on the integer spec: every quantised layer's float output equals
onnxruntime's bit for bit (the run-time scale and zero point, the exact int32 GEMM, the float
scaling and bias), and float ops outside the quantised datapath (Softmax) agree to float32
rounding. The models (zoo:mlp, a small conv net, an input shared by two MatMuls) and options
come from tests/sim/test_quant_golden_dynamic.py, with every layer's output a graph output.
"""
import numpy as np
import pytest

from compiler.pipeline import compile_graph
from compiler.spec import load
from compiler.targets import lower
from sim import simulate
from tests.quant_models import ort_outputs
from tests.sim.test_quant_golden_dynamic import MODELS, OPTIONS, _quantized

QUICK = {("mlp", "s8"), ("tiny_cnn", "u8"), ("shared_input", "s8_per_channel")}


@pytest.mark.parametrize("name,option", [
    pytest.param(n, o, marks=() if (n, o) in QUICK else pytest.mark.slow) for n in sorted(MODELS) for o in sorted(OPTIONS)])
def test_dynamic_model_layers_bit_identical_to_onnxruntime(name, option):
    model = _quantized(name, option)
    graph = compile_graph(model)
    assert any(node.op == "dynamic_quantize" for node in graph.nodes)
    shape = graph.tensors[graph.inputs[0]].shape
    x = {graph.inputs[0]: (np.random.default_rng(1).standard_normal(shape) * 1.5).astype(np.float32)}
    got = simulate(lower(graph, load("hwspecs/systolic_int8.yaml")), x).outputs
    want = ort_outputs(model, x)      # exact on every CPU (tests/quant_models.py)
    names = list(want)
    softmax = {node.outputs[0] for node in graph.nodes if node.op == "softmax"}
    for out in names:
        if out in softmax:    # float32 softmax: the simulator's exp is not MLAS's
            np.testing.assert_allclose(got[out], want[out], rtol=1e-5, atol=1e-7)
        else:
            assert np.array_equal(got[out], want[out]), (out, int(np.sum(got[out] != want[out])))


def test_dynamic_quantize_reads_its_input_twice():
    """The range pass and the quantise pass each read the float input (4 bytes per element); the
    codes (1 byte), the scale and the zero point are written."""
    from compiler.program import OPCODE_ID
    graph = compile_graph(_quantized("mlp", "u8"))
    program = lower(graph, load("hwspecs/systolic_int8.yaml"))
    ins = program.instructions
    rows = ins.opcode == OPCODE_ID["vec_dynamic_quantize"]
    n = graph.tensors[graph.inputs[0]].size
    assert rows.sum() == 3 and ins.dram_bytes[rows][0] == 2 * 4 * n + n + 8


def test_dse_quantize_dynamic_then_run_matches_onnxruntime(tmp_path, capsys):
    """`dse quantize model --format dynamic`, then `dse run` on the int8 spec (the layers are checked bit
    for bit above; this model ends in a float softmax)."""
    import onnx

    from dse import zoo
    from dse.cli import main
    from tests.quant_models import ort_outputs
    onnx.save(zoo.mlp(), tmp_path / "mlp.onnx")
    assert main(["quantize", str(tmp_path / "mlp.onnx"), "--out", str(tmp_path / "mlp.dyn.onnx"),
                 "--format", "dynamic"]) == 0
    assert "DynamicQuantizeLinear" in capsys.readouterr().out
    x = np.random.default_rng(2).standard_normal((1, 784)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    assert main(["run", str(tmp_path / "mlp.dyn.onnx"), "--hw", "hwspecs/systolic_int8.yaml", "--inputs",
                 str(tmp_path / "x.npz"), "--out", str(tmp_path / "r")]) == 0
    got = dict(np.load(tmp_path / "r" / "outputs.npz"))
    want = ort_outputs(tmp_path / "mlp.dyn.onnx", {"x": x})
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-5, atol=1e-7)   # float softmax at the end
    assert main(["quantize", str(tmp_path / "mlp.onnx"), "--out", str(tmp_path / "bad.onnx"), "--format", "dynamic",
                 "--activation-type", "int8"]) == 2

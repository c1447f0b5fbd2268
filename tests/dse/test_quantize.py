"""`dse quantize` and dse.quantize: static int8 quantisation through onnxruntime, in both
formats, per-tensor and per-channel; accuracy against the float model; determinism; and
user errors (bad calibration data, unreadable model, onnxruntime missing)."""
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dse import zoo
from dse.cli import main
from dse.quantize import op_counts, quantize
from tests.quant_models import float_model_path, ort_outputs, quant_model_path

pytest.importorskip("onnxruntime.quantization")

FLOAT_COMPUTE = ("Conv", "Gemm", "MatMul", "Add", "Sum", "AveragePool", "GlobalAveragePool", "Softmax",
                 "Concat", "Relu", "BatchNormalization")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(capsys, *argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    onnx.save(zoo.small_cnn(), path)
    return path


def _initializers(path) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_cli_writes_a_checked_qdq_model_and_a_summary(capsys, tmp_path):
    code, out, err = run_cli(capsys, "quantize", "zoo:small_cnn", "--out", tmp_path / "cnn.int8.onnx")
    assert code == 0, err
    for text in ("format        qdq", "activations   uint8", "weights       int8, per-tensor",
                 "16 seeded standard-normal samples (seed 0)", "QuantizeLinear", "bytes", "cnn.int8.onnx"):
        assert text in out
    model = onnx.load(tmp_path / "cnn.int8.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} == {""}      # no unused imports from the optimiser
    counts = op_counts(tmp_path / "cnn.int8.onnx")
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0
    assert counts["Conv"] == 2 and "BatchNormalization" not in counts   # BN folded before quantising


def test_qoperator_uses_integer_operators(cnn_path, tmp_path):
    out = quantize(cnn_path, tmp_path / "q.onnx", format="qoperator")
    onnx.checker.check_model(onnx.load(out))
    counts = op_counts(out)
    assert counts["QLinearConv"] == 2 and counts["com.microsoft:QGemm"] == 1
    assert not any(op in counts for op in FLOAT_COMPUTE)
    assert counts["QuantizeLinear"] == 1 and counts["DequantizeLinear"] == 1   # at the graph's edges


@pytest.mark.parametrize("format", ["qdq", "qoperator"])
def test_per_channel_weight_scales_have_one_entry_per_output_channel(cnn_path, tmp_path, format):
    weight_scales = {"w0": 16, "w1": 32, "fc_w": 10}          # weight -> output channels
    for per_channel in (False, True):
        inits = _initializers(quantize(cnn_path, tmp_path / f"{per_channel}.onnx", format=format,
                                       per_channel=per_channel, calibration_samples=4))
        for weight, channels in weight_scales.items():
            scale = next(v for k, v in inits.items() if k.endswith(f"{weight}_scale"))
            assert scale.shape == ((channels,) if per_channel else ()), (weight, scale.shape)
    assert inits["x_scale"].shape == ()                        # activations stay per-tensor


def _held_out(shape, count=64, seed=123):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize("format", ["qdq", "qoperator"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantised_outputs_are_close_to_the_float_models(tmp_path, format, per_channel):
    """On 64 fresh inputs from the calibration distribution (standard normal). 8-bit MinMax
    quantisation rounds each tensor to steps of range/255, about 3 % of an activation's RMS
    for normal data (range ~ 8 sigma), i.e. rounding noise ~0.9 % RMS per tensor, growing
    ~sqrt(tensors) through the network. Measured (onnxruntime 1.32): small_cnn logits 1.1-1.5 %
    relative error, mlp probabilities 3.1-3.4 % (its Softmax output range is calibrated from 16
    samples, so larger probabilities clip); the bounds leave ~3x margin. Top-1 agreed on all 64."""
    for name, shape, bound in (("small_cnn", (1, 3, 32, 32), 0.05), ("mlp", (1, 784), 0.1)):
        float_path = tmp_path / f"{name}.onnx"
        onnx.save(zoo.BUILDERS[name](), float_path)
        quant_path = quantize(float_path, tmp_path / f"{name}.int8.onnx", format=format, per_channel=per_channel)
        xs = _held_out(shape)
        ref = np.concatenate([next(iter(ort_outputs(float_path, {"x": x}).values())) for x in xs])
        got = np.concatenate([next(iter(ort_outputs(quant_path, {"x": x}).values())) for x in xs])
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < bound, name
        assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95, name


def test_same_seed_is_byte_identical_and_another_seed_changes_scales(capsys, cnn_path, tmp_path):
    paths = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        paths[label] = tmp_path / f"{label}.onnx"
        code, _, err = run_cli(capsys, "quantize", cnn_path, "--out", paths[label], "--seed", seed,
                               "--calibration-samples", 4, "--per-channel")
        assert code == 0, err
    assert paths["a"].read_bytes() == paths["b"].read_bytes()
    assert paths["a"].read_bytes() != paths["c"].read_bytes()
    assert _initializers(paths["a"])["x_scale"] != _initializers(paths["c"])["x_scale"]


def test_calibration_data_with_and_without_a_sample_axis(capsys, cnn_path, tmp_path):
    rng = np.random.default_rng(7)
    np.savez(tmp_path / "many.npz", x=rng.standard_normal((3, 1, 3, 32, 32)).astype(np.float32))
    np.savez(tmp_path / "one.npz", x=rng.standard_normal((1, 3, 32, 32)))      # float64: cast
    for data in ("many.npz", "one.npz"):
        code, out, err = run_cli(capsys, "quantize", cnn_path, "--out", tmp_path / "q.onnx",
                                 "--calibration-data", tmp_path / data)
        assert code == 0 and f"arrays from {tmp_path / data}" in out, err


def test_bad_calibration_data_is_one_clear_error(capsys, cnn_path, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 5), np.float32))
    line = _error_line(capsys, "quantize", cnn_path, "--out", tmp_path / "q.onnx",
                       "--calibration-data", tmp_path / "bad.npz")
    assert "bad.npz" in line and "'x'" in line and "(2, 5)" in line and "(1, 3, 32, 32)" in line
    np.savez(tmp_path / "keys.npz", image=np.zeros((1, 3, 32, 32), np.float32))
    line = _error_line(capsys, "quantize", cnn_path, "--out", tmp_path / "q.onnx",
                       "--calibration-data", tmp_path / "keys.npz")
    assert "'image'" in line and "'x'" in line
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "junk.npz" in _error_line(capsys, "quantize", cnn_path, "--out", tmp_path / "q.onnx",
                                     "--calibration-data", tmp_path / "junk.npz")


def test_unreadable_model_and_unknown_zoo_name_are_one_clear_error(capsys, tmp_path):
    data = (zoo.light_dir() / "light_squeezenet.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:200])
    assert "cut.onnx" in _error_line(capsys, "quantize", tmp_path / "cut.onnx", "--out", tmp_path / "q.onnx")
    assert "zoo model 'nope'" in _error_line(capsys, "quantize", "zoo:nope", "--out", tmp_path / "q.onnx")


def test_missing_onnxruntime_names_the_install_hint(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)   # import now raises ImportError
    line = _error_line(capsys, "quantize", "zoo:mlp", "--out", tmp_path / "q.onnx")
    assert "onnxruntime" in line and "pip install 'accel-dse[quantize]'" in line
    assert not (tmp_path / "q.onnx").exists()


def _fully_integer(path, format) -> None:
    """QOperator: no float compute op, one QuantizeLinear in and one DequantizeLinear out.
    QDQ: every compute op reads only DequantizeLinear outputs (or constants) and feeds only
    QuantizeLinear, so onnxruntime fuses each into an integer kernel."""
    graph = onnx.load(str(path)).graph
    counts = op_counts(path)
    if format == "qoperator":
        assert not [op for op in FLOAT_COMPUTE if op in counts], counts
        assert counts["QuantizeLinear"] == 1 and counts["DequantizeLinear"] == 1, counts
        return
    producers = {out: node.op_type for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    for node in graph.node:
        if node.op_type in FLOAT_COMPUTE:
            assert all(producers.get(i) == "DequantizeLinear" for i in node.input if i), node.name
            assert all(c == "QuantizeLinear" for o in node.output for c in consumers.get(o, ["?"])), node.name


LIGHT = [pytest.param("squeezenet", id="squeezenet"),                          # ~0.5 s per variant
         pytest.param("shufflenet", id="shufflenet"),                          # ~1 s per variant
         pytest.param("resnet50", id="resnet50", marks=pytest.mark.slow)]       # ~5 s per variant


@pytest.mark.parametrize("name", ["mlp"] + LIGHT)
@pytest.mark.parametrize("format", ["qdq", "qoperator"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_quant_models_are_fully_integer_and_run(name, format, per_channel):
    path = quant_model_path(name, format, per_channel)
    onnx.checker.check_model(onnx.load(str(path)))
    _fully_integer(path, format)
    float_model = onnx.load(str(float_model_path(name)))
    constants = {t.name for t in float_model.graph.initializer}
    rng = np.random.default_rng(5)
    inputs = {v.name: rng.standard_normal([d.dim_value or 1 for d in v.type.tensor_type.shape.dim])
              .astype(np.float32) for v in float_model.graph.input if v.name not in constants}
    outputs = ort_outputs(path, inputs)
    reference = ort_outputs(float_model_path(name), inputs)
    assert {k: v.shape for k, v in outputs.items()} == {k: v.shape for k, v in reference.items()}
    assert all(np.isfinite(v).all() for v in outputs.values())

"""Int8 models for tests: zoo:mlp and the light ResNet-50, SqueezeNet and ShuffleNet (with
seeded random weights) quantised by dse.quantize in each format, per-tensor or per-channel,
cached for the pytest session; and onnxruntime's outputs for them (the bit-exact reference
an int8 datapath is checked against). For tests only.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import onnx

from dse import zoo
from dse.quantize import quantize
from tests.light_models import light_model_path, with_random_weights

QUANT_MODELS = ("mlp", "resnet50", "squeezenet", "shufflenet")
# the other light models, also quantisable (a slow end-to-end check runs them)
MORE_MODELS = ("alexnet", "zfnet512", "inception_v1", "inception_v2", "densenet121", "vgg19")
FORMATS = ("qdq", "qoperator")
CALIBRATION_SAMPLES = 8


@functools.cache
def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="quant-models-"))


@functools.cache
def float_model_path(name: str) -> Path:
    """The float model that is quantised: zoo:mlp, or a light model with seeded random weights."""
    model = zoo.mlp() if name == "mlp" else with_random_weights(onnx.load(light_model_path(name)), seed=0)
    path = _folder() / f"{name}.float.onnx"
    onnx.save(model, path)
    return path


@functools.cache
def quant_model_path(name: str, format: str = "qdq", per_channel: bool = False,
                     activation_type: str = "uint8", weight_type: str = "int8", seed: int = 0) -> Path:
    """Path of `name` quantised with these options (calibrated on seeded normal inputs)."""
    if name not in QUANT_MODELS + MORE_MODELS:
        raise ValueError(f"unknown quantised test model '{name}'; available: "
                         f"{', '.join(QUANT_MODELS + MORE_MODELS)}")
    channel = "pc" if per_channel else "pt"
    out = _folder() / f"{name}.{format}.{channel}.{activation_type}.{weight_type}.seed{seed}.onnx"
    return quantize(float_model_path(name), out, format=format, per_channel=per_channel,
                    calibration_samples=CALIBRATION_SAMPLES, activation_type=activation_type,
                    weight_type=weight_type, seed=seed)


def ort_outputs(model, inputs: dict, exact: bool = True) -> dict:
    """onnxruntime's outputs (output name -> array) for a model (path or ModelProto), with default
    session options on the CPU provider: graph optimisations on, which fuse QDQ groups into integer
    kernels (QLinearConv, QLinearMatMul, ...), as an int8 datapath computes. Where onnxruntime's
    uint8 x int8 kernel saturates on this CPU (no VNNI/AMX: found by a probe), the model runs with
    its int8 weights moved to uint8 (the same integers; dse/ort_oracle.py), so the reference is
    exact on every CPU; where no exact kernel exists the test is skipped with the reason. A QDQ
    model with int8 activations runs as its equivalent QOperator graph (onnxruntime keeps those
    groups float on x86). `exact=False` runs the model as onnxruntime runs it here, float path
    included."""
    import onnxruntime as ort
    import pytest

    from dse.ort_oracle import oracle_model

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    chosen, oracle = oracle_model(proto) if exact else (proto, "as is")
    if chosen is None:
        pytest.skip(oracle)
    session = ort.InferenceSession(chosen.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))

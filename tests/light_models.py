"""The nine 'light' models shipped inside the onnx package (ResNet-50, VGG-19, ...):
paths, their backend-test dummy input and reference output, and onnxruntime runs.
The copy with seeded random weights (the shipped weights are all 0.02, so every
class ties) is dse.zoo.with_random_weights, re-exported here. For tests only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dse.zoo import logits_name, with_random_weights

__all__ = ["LIGHT_DIR", "LIGHT_MODELS", "light_model_path", "load_reference_output", "logits_name",
           "reference_input", "run_onnxruntime", "runtime_inputs", "with_random_weights"]

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512"]
ALIASES = {"alexnet": "bvlc_alexnet", "zfnet": "zfnet512"}


def light_model_path(name: str) -> Path:
    return LIGHT_DIR / f"light_{ALIASES.get(name, name)}.onnx"


def load_reference_output(name: str) -> np.ndarray:
    path = LIGHT_DIR / f"light_{ALIASES.get(name, name)}_output_0.pb"
    return numpy_helper.to_array(onnx.load_tensor(str(path)))


def runtime_inputs(model: onnx.ModelProto) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in inits]


def reference_input(model: onnx.ModelProto, seed: int | None = None) -> dict:
    """onnx backend-test dummy input: arange(n).reshape(shape)/n (or seeded normal)."""
    feeds = {}
    for value in runtime_inputs(model):
        shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        if seed is None:
            feeds[value.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
        else:
            rng = np.random.default_rng(seed)
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def run_onnxruntime(model: onnx.ModelProto, feeds: dict, extra_outputs=()) -> list:
    """onnxruntime (CPU, 2 threads) outputs: graph outputs, then `extra_outputs`."""
    import onnxruntime as ort

    model = _with_outputs(model, extra_outputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _with_outputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    existing = {o.name for o in model.graph.output}
    names = [n for n in names if n not in existing]
    if not names:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name in names:
        out.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return out

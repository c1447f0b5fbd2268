"""The nine 'light' models shipped inside the onnx package (ResNet-50, VGG-19, ...):
paths, their backend-test dummy input and reference output, and a copy with
seeded random weights (the shipped weights are all 0.02, so every class ties).
For tests only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512"]
ALIASES = {"alexnet": "bvlc_alexnet", "zfnet": "zfnet512"}
PASS_THROUGH = ("Unsqueeze", "Reshape", "Squeeze", "Identity", "Cast")


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


def _roles(graph: onnx.GraphProto) -> dict:
    """tensor name -> (consumer op_type, input index, consumer node), looking through
    pass-through ops such as Unsqueeze so DenseNet's Mul/Add constants are found."""
    consumers = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, (node.op_type, index, node))
    roles = {}
    for name, role in consumers.items():
        seen = 0
        while role[0] in PASS_THROUGH and role[2].output[0] in consumers and seen < 8:
            role, seen = consumers[role[2].output[0]], seen + 1
        roles[name] = role
    return roles


def _after_relu(name: str, producers: dict, depth: int = 6) -> bool:
    """True if `name` is a Relu output, possibly through pooling/concat/reshape."""
    node = producers.get(name)
    if node is None or depth == 0:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type in ("MaxPool", "AveragePool", "Concat", "Reshape", "Dropout", "Transpose",
                        "Flatten", "LRN", "GlobalAveragePool"):
        return all(_after_relu(i, producers, depth - 1) for i in node.input[:1])
    return False


def _branch_gain(node: onnx.NodeProto, consumers: dict, producers: dict) -> float:
    """Gamma damping for a BN feeding a residual Sum/Add, so sums stay O(1)."""
    users = consumers.get(node.output[0], [])
    sums = [u for u in users if u.op_type in ("Sum", "Add")]
    if not sums:
        return 1.0
    operands = [producers.get(i) for i in sums[0].input]
    if all(p is not None and p.op_type == "BatchNormalization" for p in operands):
        return 1.0 / np.sqrt(len(operands))
    return 0.3


def _random_weight(rng, shape, role, producers, consumers) -> np.ndarray:
    op, index, node = role
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # He et al. 2015: gain 2 when the layer input went through a ReLU, else 1
    gain = 2.0 if op in ("Conv", "Gemm") and _after_relu(node.input[0], producers) else 1.0
    if op == "Conv" and index == 1:
        return rng.standard_normal(shape, np.float32) * float(np.sqrt(gain / np.prod(shape[1:])))
    if op == "Gemm" and index == 1:
        fan_in = shape[1] if attrs.get("transB", 0) else shape[0]
        return rng.standard_normal(shape, np.float32) * float(np.sqrt(gain / fan_in))
    if op == "BatchNormalization" and index == 1:
        return rng.uniform(0.5, 1.5, shape) * _branch_gain(node, consumers, producers)
    if (op == "BatchNormalization" and index == 4) or op in ("Mul", "Div"):
        return rng.uniform(0.5, 1.5, shape)
    return rng.standard_normal(shape) * 0.1


def with_random_weights(model: onnx.ModelProto, seed: int = 0,
                        logits_rms: float | None = 1.0) -> onnx.ModelProto:
    """Copy of `model` whose ConstantOfShape weights become seeded random initializers
    (He-scaled conv/gemm weights, BN scale and var in 0.5..1.5, small biases).
    With logits_rms, the classifier layer is then rescaled (one onnxruntime run on
    reference_input) so the logits have that RMS: O(1) logits keep float32
    rounding differences inside an absolute tolerance of 1e-5."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    roles = _roles(graph)
    producers = {name: node for node in graph.node for name in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        role = roles.get(node.output[0], ("", 0, node))
        value = _random_weight(rng, shape, role, producers, consumers).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        # ir_version 3 models list every initializer among the graph inputs too
        graph.input.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT,
                                                         shape))
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unused_initializers(graph)
    if logits_rms is not None:
        _calibrate_classifier(out, logits_rms)
    return out


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the ConstantOfShape shape initializers nothing reads any more."""
    used = {name for node in graph.node for name in node.input}
    used |= {value.name for value in graph.output}
    unused = {t.name for t in graph.initializer if t.name not in used}
    kept = [t for t in graph.initializer if t.name not in unused]
    inputs = [v for v in graph.input if v.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.input[:]
    graph.input.extend(inputs)


def logits_name(model: onnx.ModelProto) -> str:
    """The input of the last Softmax (the logits), else the first graph output."""
    for node in reversed(model.graph.node):
        if node.op_type == "Softmax":
            return node.input[0]
    return model.graph.output[0].name


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


def _calibrate_classifier(model: onnx.ModelProto, target_rms: float) -> None:
    """Scale the last Conv/Gemm before the logits so they have RMS target_rms
    (exact: the layers between it and the logits are positively homogeneous)."""
    producers = {name: node for node in model.graph.node for name in node.output}
    node = producers.get(logits_name(model))
    while node is not None and node.op_type not in ("Conv", "Gemm"):
        if node.op_type not in ("Relu", "GlobalAveragePool", "AveragePool", "Reshape",
                                "Flatten", "Dropout", "Identity", "MaxPool"):
            return
        node = producers.get(node.input[0])
    if node is None:
        return
    logits = run_onnxruntime(model, reference_input(model), [logits_name(model)])[-1]
    factor = target_rms / max(float(np.sqrt(np.mean(np.square(logits)))), 1e-30)
    params = set()
    for name in node.input[1:3]:
        while name in producers and producers[name].op_type in PASS_THROUGH:
            name = producers[name].input[0]            # e.g. Reshape(weight, shape)
        params.add(name)
    for tensor in model.graph.initializer:
        if tensor.name in params:
            scaled = numpy_helper.to_array(tensor) * np.float32(factor)
            tensor.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), tensor.name))

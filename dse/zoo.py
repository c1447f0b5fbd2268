"""Bundled workloads, addressed as zoo:NAME.

The nine "light" real architectures ship inside the onnx package
(onnx/backend/test/data/light/; their weights are ConstantOfShape fills, so
they time like the real networks; nothing is downloaded). `mlp` and
`small_cnn` are the project's own builders with seeded random weights.
`with_random_weights` gives a light model seeded random weights where its values
matter: tests against onnxruntime, and quantisation (dse.workloads), whose
scales would be degenerate on constant fills.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.errors import CompileError
from compiler.spec import did_you_mean

LIGHT = {
    "alexnet": "light_bvlc_alexnet", "densenet121": "light_densenet121",
    "inception_v1": "light_inception_v1", "inception_v2": "light_inception_v2",
    "resnet50": "light_resnet50", "shufflenet": "light_shufflenet",
    "squeezenet": "light_squeezenet", "vgg19": "light_vgg19", "zfnet512": "light_zfnet512",
}


def light_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def mlp(batch: int = 1, sizes=(784, 256, 256, 10), seed: int = 0) -> onnx.ModelProto:
    """Fully connected ReLU network ending in Softmax (Gemm layers)."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(
            (rng.standard_normal(fan_out) * 0.1).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"fc{i}"], name=f"fc{i}"))
        prev = f"fc{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"relu{i}"], name=f"relu{i}"))
            prev = f"relu{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probs"], name="softmax", axis=1))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", 1, [batch, sizes[0]])],
                              [helper.make_tensor_value_info("probs", 1, [batch, sizes[-1]])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def small_cnn(batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """Conv-BN-ReLU x2, max pool, global average pool, classifier (CIFAR-sized)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def add(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))

    prev, cin = "x", 3
    for i, cout in enumerate((16, 32)):
        add(f"w{i}", rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9)))
        for p, v in (("g", rng.uniform(0.5, 1.5, cout)), ("b", rng.standard_normal(cout) * 0.1),
                     ("m", rng.standard_normal(cout) * 0.1), ("v", rng.uniform(0.5, 1.5, cout))):
            add(f"bn{i}_{p}", v)
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"c{i}"] + [f"bn{i}_{p}" for p in "gbmv"],
                                   [f"n{i}"], name=f"bn{i}"),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, cin = f"r{i}", cout
        if i == 0:
            nodes.append(helper.make_node("MaxPool", [prev], ["pool"], name="pool", kernel_shape=[2, 2],
                                          strides=[2, 2]))
            prev = "pool"
    add("fc_w", rng.standard_normal((10, 32)) * np.sqrt(2 / 32))
    add("fc_b", np.zeros(10))
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", 1, [batch, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", 1, [batch, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


BUILDERS = {"mlp": mlp, "small_cnn": small_cnn}
NAMES = tuple(LIGHT) + tuple(BUILDERS)


def resolve(model):
    """zoo:NAME -> a path or ModelProto; anything else is passed through unchanged."""
    if not isinstance(model, str) or not model.startswith("zoo:"):
        return model
    name = model[4:]
    if name in LIGHT:
        return light_dir() / f"{LIGHT[name]}.onnx"
    if name in BUILDERS:
        return BUILDERS[name]()
    raise CompileError(unknown_name(model))


def unknown_name(model: str) -> str:
    """What is wrong with `zoo:NAME` (or a bare NAME) when NAME is not bundled: the closest
    bundled name and the list; '' for a bundled one."""
    name = model.removeprefix("zoo:")
    if name in NAMES:
        return ""
    return (f"unknown zoo model '{name}'; {did_you_mean(name, NAMES, 'zoo:')}"
            f"available: {', '.join('zoo:' + n for n in NAMES)} (dse models)")


# ---- seeded random weights for the light models ----------------------------------------

PASS_THROUGH = ("Unsqueeze", "Reshape", "Squeeze", "Identity", "Cast")


def with_random_weights(model: onnx.ModelProto, seed: int = 0,
                        logits_rms: float | None = 1.0) -> onnx.ModelProto:
    """Copy of `model` whose ConstantOfShape weights become seeded random initializers
    (He-scaled conv/gemm weights, BN scale and var in 0.5..1.5, small biases).
    With logits_rms, the classifier layer is then rescaled (one onnxruntime run on the
    backend-test input arange(n)/n) so the logits have that RMS: O(1) logits keep float32
    rounding differences inside an absolute tolerance of 1e-5. Shapes and ops are
    unchanged, so the copy times exactly like `model`."""
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


def logits_name(model: onnx.ModelProto) -> str:
    """The input of the last Softmax (the logits), else the first graph output."""
    for node in reversed(model.graph.node):
        if node.op_type == "Softmax":
            return node.input[0]
    return model.graph.output[0].name


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
    logits = _backend_test_logits(model)
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


def _backend_test_logits(model: onnx.ModelProto) -> np.ndarray:
    """onnxruntime's (CPU, 2 threads) logits for the backend-test input arange(n)/n."""
    import onnxruntime as ort  # optional: the `quantize` extra; only calibration needs it

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    name = logits_name(model)
    if name not in {o.name for o in probe.graph.output}:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    initialisers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name not in initialisers:
            shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            feeds[value.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([name], feeds)[0]

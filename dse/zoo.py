"""Bundled workloads, addressed as zoo:NAME.

The nine "light" real architectures ship inside the onnx package
(onnx/backend/test/data/light/; their weights are ConstantOfShape fills, so
they time like the real networks; nothing is downloaded). `mlp` and
`small_cnn` are the project's own builders with seeded random weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compiler.errors import CompileError

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
    raise CompileError(f"unknown zoo model '{name}'; available: {', '.join(NAMES)}")

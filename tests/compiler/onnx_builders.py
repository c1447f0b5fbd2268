"""Tiny ONNX models built with onnx.helper for front-end tests, and the check that
runs one through load_model + optimize + the IR reference and onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx import load_model
from compiler.passes import optimize
from tests.ir_reference import evaluate
from tests.light_models import run_onnxruntime


def make_model(nodes, inputs, outputs, initializers=(), opset=13, ir_version=None):
    """inputs/outputs: {name: shape or None}; initializers: {name: array}."""
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version or min(helper.find_min_ir_version_for(
        [helper.make_opsetid("", opset)]) + 1, onnx.IR_VERSION)
    return model


def random_feeds(model, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    return {v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim])
            .astype(np.float32) for v in model.graph.input if v.name not in inits}


def check_against_onnxruntime(model, feeds=None, rtol=1e-4, atol=1e-5, passes=True):
    """Front end (+ passes) + IR reference must match onnxruntime on every output."""
    feeds = random_feeds(model) if feeds is None else feeds
    expected = run_onnxruntime(model, feeds)
    graph = load_model(model)
    if passes:
        graph = optimize(graph)
    got = evaluate(graph, feeds)
    names = [o.name for o in model.graph.output]
    assert graph.outputs == names
    for name, want in zip(names, expected):
        assert got[name].shape == want.shape, (name, got[name].shape, want.shape)
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
    return graph

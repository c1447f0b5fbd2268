"""The compiler pipeline in one function: ONNX -> Graph -> passes -> Program.

    model --load_model--> Graph --optimize (passes)--> Graph --lower(target)--> Program
"""
from __future__ import annotations

from compiler.frontend.onnx import load_model
from compiler.passes import optimize
from compiler.targets import lower


def compile_graph(model, input_shapes=None, after_pass=None):
    """Front end and passes: an optimised, verified Graph; `after_pass(name, graph)` sees each step."""
    graph = load_model(model, input_shapes=input_shapes)
    if after_pass is not None:
        after_pass("frontend", graph)
    return optimize(graph, after_pass)


def compile_model(model, spec, input_shapes=None):
    """Whole pipeline: a verified Program for `spec`."""
    return lower(compile_graph(model, input_shapes), spec)

"""The compiler pipeline in one function: ONNX -> Graph -> passes -> Program.

    model --load_model--> Graph --optimize (passes)--> Graph --lower(target)--> Program
"""
from __future__ import annotations

from compiler.frontend.onnx import load_model
from compiler.passes import optimize
from compiler.targets import lower


def compile_graph(model, input_shapes=None):
    """Front end and passes: an optimised, verified Graph."""
    return optimize(load_model(model, input_shapes=input_shapes) if input_shapes else load_model(model))


def compile_model(model, spec, input_shapes=None):
    """Whole pipeline: a verified Program for `spec`."""
    return lower(compile_graph(model, input_shapes), spec)

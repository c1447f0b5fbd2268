"""Fold per-channel scale/shift layers into the layer before them: an `affine`
(from BatchNormalization) or a `mul`/`add`/`sub`/`div` by a per-channel constant
([C], [C,1,1], [1,C,1,1] or a scalar) that follows a conv, gemm or affine whose
output has no other consumer and is not a graph output. Conv/gemm weights are
scaled per output channel (w*scale, b*scale+shift) in float64, stored float32.
Float32 only: quantised tensors (8-bit codes) are never folded.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from compiler.ir import Graph, Node, TensorType

ABSORBERS = ("conv", "gemm", "affine")


def fold_batchnorm(graph: Graph) -> Graph:
    uses = Counter(name for node in graph.nodes for name in node.inputs)
    keep = set(graph.outputs)
    out = graph.replace(nodes=[], tensors=dict(graph.tensors), constants=dict(graph.constants))
    position = {}
    for node in graph.nodes:
        linear = _channel_linear(node, out)
        if linear is not None:
            source, scale, shift = linear
            at = position.get(source)
            if at is not None and uses[source] == 1 and source not in keep:
                merged = _absorb(out, out.nodes[at], scale, shift, node.outputs[0])
                if merged is not None:
                    out.nodes[at] = merged
                    del position[source], out.tensors[source]
                    position[node.outputs[0]] = at
                    continue
        for name in node.outputs:
            position[name] = len(out.nodes)
        out.nodes.append(node)
    return out


def _channel_vector(value: np.ndarray, shape: tuple):
    """value as a float64 [C] vector if it varies only along axis 1 of `shape`."""
    rank = len(shape)
    if rank < 2 or value.ndim > rank:
        return None
    padded = value.reshape((1,) * (rank - value.ndim) + value.shape)
    if any(d != 1 for i, d in enumerate(padded.shape) if i != 1):
        return None
    if padded.shape[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(padded.reshape(-1).astype(np.float64), (shape[1],))


def _channel_linear(node: Node, graph: Graph):
    """(source, scale[C], shift[C]) when node computes source*scale + shift per channel."""
    shape = graph.tensors[node.outputs[0]].shape
    consts = graph.constants
    if any(graph.tensors[name].dtype != "fp32" for name in (*node.inputs, node.outputs[0])):
        return None
    if node.op == "affine":
        if node.inputs[1] in consts and node.inputs[2] in consts:
            return (node.inputs[0], consts[node.inputs[1]].astype(np.float64),
                    consts[node.inputs[2]].astype(np.float64))
        return None
    if node.op not in ("mul", "add", "sub", "div") or len(shape) < 2:
        return None
    const_at = [i for i, name in enumerate(node.inputs) if name in consts]
    if len(const_at) != 1:
        return None
    k = const_at[0]
    source = node.inputs[1 - k]
    vector = _channel_vector(consts[node.inputs[k]], shape)
    if vector is None or graph.tensors[source].shape != shape:
        return None
    zeros, ones = np.zeros_like(vector), np.ones_like(vector)
    if node.op == "mul":
        return source, vector, zeros
    if node.op == "add":
        return source, ones, vector
    if node.op == "sub":
        return (source, ones, -vector) if k == 1 else (source, -ones, vector)
    if k == 1 and np.all(vector != 0):
        return source, 1.0 / vector, zeros
    return None


def _absorb(graph: Graph, producer: Node, scale, shift, output: str):
    """producer followed by y = x*scale + shift, as one node writing `output`."""
    if producer.op not in ABSORBERS or producer.attrs.get("activation", "none") != "none":
        return None
    if any(name not in graph.constants for name in producer.inputs[1:]):
        return None
    first = [graph.constants[name].astype(np.float64) for name in producer.inputs[1:]]
    if producer.op == "affine":
        params = [first[0] * scale, first[1] * scale + shift]
        hints = ("scale_folded", "shift_folded")
    else:
        weight = first[0]
        bias = first[1] if len(first) > 1 else np.zeros(scale.shape)
        axis_shape = (-1, 1, 1, 1) if producer.op == "conv" else (1, -1)
        params = [weight * scale.reshape(axis_shape), bias * scale + shift]
        hints = ("w_folded", "b_folded")
    names = [_add_constant(graph, f"{producer.name}/{hint}", value)
             for hint, value in zip(hints, params)]
    return producer.replace(inputs=(producer.inputs[0], *names), outputs=(output,))


def _add_constant(graph: Graph, base: str, value: np.ndarray) -> str:
    name, k = base, 1
    while name in graph.tensors or name in graph.constants:
        name, k = f"{base}_{k}", k + 1
    graph.constants[name] = np.ascontiguousarray(value, dtype=np.float32)
    graph.tensors[name] = TensorType(tuple(int(d) for d in value.shape))
    return name

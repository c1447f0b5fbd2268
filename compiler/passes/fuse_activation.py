"""Fuse a `relu` into the conv/gemm that feeds it: the producer gets
activation="relu" and takes over the relu's output name (so graph output names
never change). Only when the producer's output has no other consumer, is not a
graph output and has no activation yet; float32 producers only (a relu never
follows 8-bit codes in the IR). Graph -> Graph, the input is not modified.
"""
from __future__ import annotations

from collections import Counter

from compiler.ir import Graph

FUSABLE = ("conv", "gemm")


def fuse_activation(graph: Graph) -> Graph:
    uses = Counter(name for node in graph.nodes for name in node.inputs)
    keep = set(graph.outputs)
    tensors = dict(graph.tensors)
    nodes, position = [], {}
    for node in graph.nodes:
        source = node.inputs[0] if node.op == "relu" else None
        at = position.get(source)
        if (at is not None and _fusable(nodes[at], graph) and uses[source] == 1
                and source not in keep):
            producer = nodes[at]
            nodes[at] = producer.replace(outputs=node.outputs,
                                         attrs={**producer.attrs, "activation": "relu"})
            del position[source], tensors[source]
            position[node.outputs[0]] = at
            continue
        for name in node.outputs:
            position[name] = len(nodes)
        nodes.append(node)
    return graph.replace(nodes=nodes, tensors=tensors)


def _fusable(node, graph) -> bool:
    return (node.op in FUSABLE and node.attrs.get("activation", "none") == "none"
            and graph.tensors[node.inputs[0]].dtype == "fp32")

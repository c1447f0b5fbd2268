"""Dead-code elimination: drop nodes none of whose outputs reach a graph output,
then constants and tensor types nothing refers to. Graph inputs always stay
(they are the graph's signature). Graph -> Graph, the input is not modified.
"""
from __future__ import annotations

from compiler.ir import Graph


def dead_code(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(name in live for name in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    named = set(graph.inputs) | set(graph.outputs)
    for node in kept:
        named.update(node.inputs)
        named.update(node.outputs)
    return graph.replace(
        nodes=kept,
        constants={k: v for k, v in graph.constants.items() if k in named},
        tensors={k: v for k, v in graph.tensors.items() if k in named},
    )

"""Remove `identity` nodes by rewiring their consumers to the identity's input.
When the identity's output is a graph output its name must survive: the producer
of the input is renamed to write that name instead (if the input is an ordinary
intermediate), otherwise the identity stays. Graph -> Graph, input not modified.
"""
from __future__ import annotations

from compiler.ir import Graph


def remove_identity(graph: Graph) -> Graph:
    alias, rename, dropped = _plan(graph)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return rename.get(name, name)

    nodes = []
    for index, node in enumerate(graph.nodes):
        if index in dropped:
            continue
        nodes.append(node.replace(inputs=tuple(resolve(n) for n in node.inputs),
                                  outputs=tuple(rename.get(n, n) for n in node.outputs)))
    tensors = {name: t for name, t in graph.tensors.items() if name not in alias}
    for old, new in rename.items():
        tensors[new] = tensors.pop(old)
    return graph.replace(nodes=nodes, tensors=tensors)


def _plan(graph: Graph):
    """alias: dropped identity output -> its input; rename: producer output ->
    graph output name; dropped: indices of identity nodes to remove."""
    outputs = set(graph.outputs)
    produced = {name for node in graph.nodes for name in node.outputs}
    alias, rename, dropped = {}, {}, set()
    for index, node in enumerate(graph.nodes):
        if node.op != "identity":
            continue
        source, target = node.inputs[0], node.outputs[0]
        while source in alias:
            source = alias[source]
        if target not in outputs:
            alias[target] = source
            dropped.add(index)
        elif source in produced and source not in outputs and source not in rename:
            rename[source] = target
            dropped.add(index)
    return alias, rename, dropped

"""Graph passes: pure functions Graph -> Graph, run in the order of `PASSES` by
`optimize`, each followed by `Graph.verify()`. `PASSES` is a list of (name, fn)
so a `--dump-ir` switch can print the graph after every pass.
"""
from __future__ import annotations

from collections.abc import Callable

from compiler.ir import Graph
from compiler.passes.dead_code import dead_code
from compiler.passes.fold_batchnorm import fold_batchnorm
from compiler.passes.fuse_activation import fuse_activation
from compiler.passes.fuse_layernorm import fuse_layernorm
from compiler.passes.remove_identity import remove_identity

PASSES = [
    ("fuse_layernorm", fuse_layernorm),
    ("fold_batchnorm", fold_batchnorm),
    ("fuse_activation", fuse_activation),
    ("remove_identity", remove_identity),
    ("dead_code", dead_code),
]


def optimize(graph: Graph, after_pass: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run every pass in order; `after_pass(name, graph)` sees each result (for dumps)."""
    graph.verify()
    for name, run in PASSES:
        graph = run(graph).verify()
        if after_pass is not None:
            after_pass(name, graph)
    return graph

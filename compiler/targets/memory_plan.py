"""DRAM memory plan shared by every target: assigns each graph tensor a byte
offset (bump allocation, 64-byte aligned, no reuse so any intermediate can be
inspected) and places constant data in the initial DRAM image. Views (reshape,
identity) alias their input's region instead of copying.
"""
from __future__ import annotations

import numpy as np

from compiler.ir import Graph
from compiler.program import Region

ALIGN = 64
VIEW_OPS = ("reshape", "identity")


class MemoryPlan:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.regions: dict = {}
        self.chunks: list = []          # (offset, float32 array) for the DRAM image
        self.size = 0
        outputs = set(graph.outputs)
        for name in graph.inputs:
            self._place(name, graph.tensors[name].shape, "input")
        for node in graph.nodes:
            for out in node.outputs:
                kind = "output" if out in outputs else "activation"
                if node.op in VIEW_OPS:
                    src = self.regions[node.inputs[0]]
                    self.regions[out] = Region(out, src.offset, graph.tensors[out].shape, kind)
                else:
                    self._place(out, graph.tensors[out].shape, kind)

    def _place(self, name: str, shape, kind: str) -> Region:
        region = Region(name, self.size, tuple(int(d) for d in shape), kind)
        self.size += -(-max(region.nbytes, 4) // ALIGN) * ALIGN
        self.regions[name] = region
        return region

    def constant(self, name: str, data: np.ndarray) -> Region:
        """Place constant data (already in the layout the target wants) in DRAM."""
        if name in self.regions:
            return self.regions[name]
        region = self._place(name, data.shape, "weight")
        self.chunks.append((region.offset, data))
        return region

    def addr(self, name: str) -> int:
        """Byte address of a tensor; constants are placed on first use."""
        if name not in self.regions and name in self.graph.constants:
            self.constant(name, self.graph.constants[name])
        return self.regions[name].offset



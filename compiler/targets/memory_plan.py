"""DRAM memory plan shared by every target: assigns each graph tensor a byte
offset (bump allocation, 64-byte aligned, no reuse so any intermediate can be
inspected) and an element type, and places constant data in the initial DRAM
image. Views (reshape, identity) alias their input's region instead of copying.

Element types: a tensor the IR types as an integer (uint8/int8 codes of a quantised
tensor, int32 biases) is stored as that type. Float tensors take the target's
`dtypes`: graph inputs are `input`, node outputs `activation`, constants `weight`
unless the caller names another type (a GEMM bias lives in the accumulator type).
A constant needed in two types is placed once per type.
"""
from __future__ import annotations

import numpy as np

from compiler.ir import Graph
from compiler.program import Region

ALIGN = 64
VIEW_OPS = ("reshape", "identity")
FP32_TYPES = {"input": "fp32", "activation": "fp32", "weight": "fp32"}


class MemoryPlan:
    def __init__(self, graph: Graph, dtypes: dict = FP32_TYPES):
        self.graph = graph
        self.dtypes = dtypes
        self.regions: dict = {}
        self.chunks: list = []          # (Region, values) for the DRAM image
        self.size = 0
        outputs = set(graph.outputs)
        for name in graph.inputs:
            self._place(name, graph.tensors[name].shape, "input", self._dtype(name, "input"))
        for node in graph.nodes:
            for out in node.outputs:
                kind = "output" if out in outputs else "activation"
                if node.op in VIEW_OPS:
                    src = self.region(node.inputs[0])      # a constant is placed on first use
                    self.regions[out] = Region(out, src.offset, graph.tensors[out].shape, kind, src.dtype)
                else:
                    self._place(out, graph.tensors[out].shape, kind, self._dtype(out, "activation"))

    def _dtype(self, name: str, role: str) -> str:
        """Element type of tensor `name`: its IR type when an integer, else the target's for `role`."""
        ir_type = self.graph.tensors[name].dtype if name in self.graph.tensors else "fp32"
        return self.dtypes[role] if ir_type == "fp32" else ir_type

    def _place(self, name: str, shape, kind: str, dtype: str) -> Region:
        region = Region(name, self.size, tuple(int(d) for d in shape), kind, dtype)
        self.size += -(-max(region.nbytes, 4) // ALIGN) * ALIGN
        self.regions[name] = region
        return region

    def constant(self, name: str, data: np.ndarray, dtype: str | None = None) -> Region:
        """Place constant data (already in the layout the target wants) in DRAM, in `dtype`
        (default: its IR type when an integer, else the weight type)."""
        dtype = dtype or self._dtype(name, "weight")
        placed = self.regions.get(name)
        if placed is not None and placed.dtype != dtype:
            name = f"{name}::{dtype}"
            placed = self.regions.get(name)
        if placed is not None:
            return placed
        region = self._place(name, data.shape, "weight", dtype)
        self.chunks.append((region, data))
        return region

    def region(self, name: str, dtype: str | None = None) -> Region:
        """The region of a tensor; graph constants are placed on first use (in `dtype`,
        default as `constant`)."""
        if name in self.graph.constants:
            return self.constant(name, self.graph.constants[name], dtype)
        return self.regions[name]

    def addr(self, name: str, dtype: str | None = None) -> int:
        """Byte address of a tensor (see `region`)."""
        return self.region(name, dtype).offset

"""The Graph: the target-independent tensor IR every front end produces, every
pass maps to itself, and every target lowers (contract 1 of DESIGN.md).

A Graph is a list of Nodes in topological order over named tensors. Tensors
have a static shape and dtype; constants (weights, folded shapes) hold NumPy
arrays. Layout is NCHW for 4-D activations. `Graph.verify()` checks the
contract and names the offending node; `str(graph)` prints one node per line.

IR ops (inputs -> attrs), all float32 today:
  conv       (x, w[Cout,Cin/g,kh,kw], b?) strides(2) pads(t,l,b,r) dilations(2) group activation
  gemm       (x[M,K], w[K,N] const, b[N]?) activation          y = x @ w + b
  relu       (x)
  add sub mul div (a, b)   NumPy broadcasting
  affine     (x, scale[C], shift[C])   y = x*scale[c] + shift[c] over axis 1
  maxpool avgpool (x) kernel(2) strides(2) pads(t,l,b,r) count_include_pad
             (the output shape already reflects ceil_mode; avgpool divides by the cells
             inside the input, or with count_include_pad=1 inside input+pads; cells that
             ceil_mode adds beyond the pads never count, as in onnxruntime)
  lrn        (x) size alpha beta bias      (ONNX LRN, across channels)
  softmax    (x) axis                       (softmax along one axis)
  concat     (x0, x1, ...) axis
  transpose  (x) perm
  reshape    (x)   same elements, new shape (a view; no data moves)
  identity   (x)
`activation` is "none" or "relu" (a fused activation applied on the way out).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import CompileError

ACTIVATIONS = ("none", "relu")
# op -> (min inputs, max inputs); None = unbounded
IR_OPS = {
    "conv": (2, 3), "gemm": (2, 3), "relu": (1, 1), "add": (2, 2), "sub": (2, 2),
    "mul": (2, 2), "div": (2, 2), "affine": (3, 3), "maxpool": (1, 1), "avgpool": (1, 1),
    "lrn": (1, 1), "softmax": (1, 1), "concat": (1, None), "transpose": (1, 1),
    "reshape": (1, 1), "identity": (1, 1),
}


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: str = "fp32"

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Node:
    op: str
    name: str                 # the source (ONNX) node name, for errors and reports
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict, hash=False, compare=True)

    def replace(self, **changes) -> "Node":
        return dataclasses.replace(self, **changes)


@dataclass
class Graph:
    name: str
    inputs: list            # names of runtime inputs
    outputs: list           # names of graph outputs
    tensors: dict           # name -> TensorType for every tensor, constants included
    constants: dict         # name -> np.ndarray (float32 unless stated)
    nodes: list             # Nodes in topological order
    opset: int = 0

    def producers(self) -> dict:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict:
        uses: dict = {}
        for node in self.nodes:
            for name in node.inputs:
                uses.setdefault(name, []).append(node)
        return uses

    def replace(self, **changes) -> "Graph":
        return dataclasses.replace(self, **changes)

    def macs(self) -> int:
        """Multiply-accumulates of the conv and gemm nodes (one inference)."""
        total = 0
        for node in self.nodes:
            if node.op in ("conv", "gemm"):
                total += node_macs(self, node)
        return total

    def parameter_count(self) -> int:
        used = {name for node in self.nodes for name in node.inputs}
        return int(sum(int(np.prod(c.shape)) for n, c in self.constants.items() if n in used))

    def verify(self) -> "Graph":
        """Check the contract; raise CompileError naming the first bad node."""
        known = set(self.inputs) | set(self.constants)
        for name in self.inputs:
            if name not in self.tensors:
                raise CompileError(f"graph {self.name}: input '{name}' has no type")
        for node in self.nodes:
            where = f"graph {self.name}: node '{node.name}' ({node.op})"
            if node.op not in IR_OPS:
                raise CompileError(f"{where}: not an IR op; IR ops: {', '.join(IR_OPS)}")
            lo, hi = IR_OPS[node.op]
            if len(node.inputs) < lo or (hi is not None and len(node.inputs) > hi):
                raise CompileError(f"{where}: takes {lo}..{hi} inputs, got {len(node.inputs)}")
            for name in node.inputs:
                if name not in known:
                    raise CompileError(f"{where}: input '{name}' is not produced before use")
            for name in node.outputs:
                if name not in self.tensors:
                    raise CompileError(f"{where}: output '{name}' has no type")
                if name in known:
                    raise CompileError(f"{where}: output '{name}' is produced twice")
                known.add(name)
            act = node.attrs.get("activation", "none")
            if act not in ACTIVATIONS:
                raise CompileError(f"{where}: activation {act!r}; allowed: {', '.join(ACTIVATIONS)}")
        for name in self.outputs:
            if name not in known:
                raise CompileError(f"graph {self.name}: output '{name}' is never produced")
        return self

    def __str__(self) -> str:
        lines = [f"graph {self.name} (opset {self.opset})"]
        for name in self.inputs:
            lines.append(f"  input  {name}: {_fmt_type(self.tensors[name])}")
        for node in self.nodes:
            attrs = " ".join(f"{k}={v}" for k, v in sorted(node.attrs.items()))
            outs = ", ".join(f"{o}: {_fmt_type(self.tensors[o])}" for o in node.outputs)
            lines.append(f"  {outs} = {node.op}({', '.join(node.inputs)}) {attrs}".rstrip())
        lines.append(f"  output {', '.join(self.outputs)}")
        return "\n".join(lines)


def _fmt_type(t: TensorType) -> str:
    return f"{t.dtype}[{'x'.join(str(d) for d in t.shape)}]"


def node_macs(graph: Graph, node: Node) -> int:
    """MACs of one conv/gemm node (0 for every other op)."""
    if node.op not in ("conv", "gemm"):
        return 0
    out = graph.tensors[node.outputs[0]]
    w = graph.tensors[node.inputs[1]]
    if node.op == "conv":
        # every output element takes Cin/g * kh * kw MACs
        return out.size * math.prod(w.shape[1:])
    if node.op == "gemm":
        return out.size * w.shape[0]
    return 0

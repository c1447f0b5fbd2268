"""Fuse LayerNormalization written out in ONNX ops (PyTorch's export of nn.LayerNorm before opset 17, as
in BERT and GPT-2 exports) into one `layer_norm` node:

    mean = reduce_mean(x)  d = sub(x, mean)  sq = pow(d, 2) or mul(d, d)  var = reduce_mean(sq)
    std = sqrt(add(var, eps))  y = div(d, std)  [y = mul(y, scale)]  [y = add(y, bias)]

both reductions over the same trailing axes with keepdims=1, eps a constant scalar, scale and bias
constants over the normalised axes. Every intermediate must feed only the pattern and not be a graph
output; float32 only. The fused node takes the last node's output name, at its place. Its arithmetic
is the same steps in the same order, so on an fp32 datapath it gives the unfused graph's bits
(tests/e2e/test_transformer_ops.py). Graph -> Graph, the input is not modified.
"""
from __future__ import annotations

import numpy as np

from compiler.ir import Graph, Node, TensorType


def fuse_layernorm(graph: Graph) -> Graph:
    out = graph.replace(nodes=list(graph.nodes), tensors=dict(graph.tensors), constants=dict(graph.constants))
    matcher = _Matcher(graph)
    fused = {}                                  # id(last node of a pattern) -> the layer_norm replacing it
    dropped = set()                             # ids of the other nodes of matched patterns
    for node in graph.nodes:
        if node.op == "reduce_mean" and id(node) not in dropped:
            match = matcher.match(node)
            if match is not None:
                chain, x, scale, bias, epsilon, axis = match
                last = chain[-1]
                inputs = [x, _add_constant(out, f"{last.name}/ln_scale", scale)]
                if bias is not None:
                    inputs.append(_add_constant(out, f"{last.name}/ln_bias", bias))
                fused[id(last)] = Node("layer_norm", last.name, tuple(inputs), last.outputs,
                                       {"axis": axis, "epsilon": epsilon})
                dropped.update(id(n) for n in chain[:-1])
    out.nodes = [fused.get(id(n), n) for n in graph.nodes if id(n) not in dropped]
    return out


class _Matcher:
    """Follows the pattern forward from a reduce_mean through single-use intermediates."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.uses = graph.consumers()
        self.keep = set(graph.outputs)

    def _users(self, name: str) -> list:
        """The distinct nodes reading `name` (none when it is a graph output: it must survive)."""
        if name in self.keep:
            return []
        users = []
        for node in self.uses.get(name, []):
            if all(node is not u for u in users):
                users.append(node)
        return users

    def _next(self, name: str, op: str):
        users = self._users(name)
        return users[0] if len(users) == 1 and users[0].op == op else None

    def _scalar(self, name: str):
        value = self.graph.constants.get(name)
        return float(value.ravel()[0]) if value is not None and value.size == 1 else None

    def match(self, mean: Node):
        """(nodes in order, x, scale[D], bias[D] or None, epsilon, axis) or None."""
        g, x = self.graph, mean.inputs[0]
        shape = g.tensors[x].shape
        axes = tuple(mean.attrs.get("axes", ()))
        if mean.attrs.get("keepdims") != 1 or not axes or axes != tuple(range(len(shape) - len(axes), len(shape))):
            return None
        if any(g.tensors[name].dtype != "fp32" for name in (x, mean.outputs[0])):
            return None
        sub = self._next(mean.outputs[0], "sub")
        if sub is None or sub.inputs != (x, mean.outputs[0]) or g.tensors[sub.outputs[0]].shape != shape:
            return None
        d = sub.outputs[0]
        users = self._users(d)
        square = next((u for u in users if (u.op == "pow" and u.inputs[0] == d and self._scalar(u.inputs[1]) == 2.0)
                       or (u.op == "mul" and u.inputs == (d, d))), None)
        divide = next((u for u in users if u.op == "div" and u.inputs[0] == d), None)
        if len(users) != 2 or square is None or divide is None:
            return None
        var = self._next(square.outputs[0], "reduce_mean")
        if var is None or tuple(var.attrs.get("axes", ())) != axes or var.attrs.get("keepdims") != 1:
            return None
        add = self._next(var.outputs[0], "add")
        eps = None if add is None else next((self._scalar(n) for n in add.inputs if n != var.outputs[0]), None)
        if eps is None or var.outputs[0] not in add.inputs:
            return None
        sqrt = self._next(add.outputs[0], "sqrt")
        if sqrt is None or self._next(sqrt.outputs[0], "div") is not divide or divide.inputs[1] != sqrt.outputs[0]:
            return None
        chain = [mean, sub, square, var, add, sqrt, divide]
        normalised = shape[len(shape) - len(axes):]
        scale, bias = np.ones(int(np.prod(normalised)), np.float32), None
        for op in ("mul", "add"):
            step = self._next(chain[-1].outputs[0], op)
            value = None if step is None else self._parameter(step, chain[-1].outputs[0], shape, normalised)
            if value is None:
                continue
            chain.append(step)
            scale, bias = (value, None) if op == "mul" else (scale, value)
        return chain, x, scale, bias, float(np.float32(eps)), len(shape) - len(axes)

    def _parameter(self, node: Node, data: str, shape: tuple, normalised: tuple):
        """The constant operand of `node` (the other being `data`) as [D], if it spans only the normalised axes."""
        other = [name for name in node.inputs if name != data]
        constants = self.graph.constants
        if len(other) != 1 or other[0] not in constants or self.graph.tensors[node.outputs[0]].shape != shape:
            return None
        value = self.graph.constants[other[0]]
        if value.ndim > len(normalised) and any(d != 1 for d in value.shape[:value.ndim - len(normalised)]):
            return None
        trailing = value.reshape(value.shape[value.ndim - len(normalised):] if value.ndim > len(normalised)
                                 else value.shape)
        try:
            return np.broadcast_to(trailing, normalised).reshape(-1).astype(np.float32)
        except ValueError:
            return None


def _add_constant(graph: Graph, base: str, value: np.ndarray) -> str:
    name, k = base, 1
    while name in graph.tensors or name in graph.constants:
        name, k = f"{base}_{k}", k + 1
    graph.constants[name] = np.ascontiguousarray(value, dtype=np.float32)
    graph.tensors[name] = TensorType(tuple(int(d) for d in value.shape))
    return name

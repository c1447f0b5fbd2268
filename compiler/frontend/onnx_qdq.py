"""QDQ format -> QOperator format, before conversion: each DequantizeLinear -> op -> QuantizeLinear
group that onnxruntime's optimiser fuses becomes the quantised op it fuses into, so one set of
converters (onnx_quant.py) serves both formats. The rules mirror QDQSelectorActionTransformer
(core/optimizer/qdq_transformer/selectors_actions/qdq_selector_action_transformer.cc and
qdq_selectors.cc; docs/int8_datapath.md section 4) for the x86 CPU provider:

  Conv, MatMul          every input from a DQ, one Q; activation dtype == output dtype; int8
                        activations with int8 weights (S8S8, the symmetric convention of NPU
                        toolchains) are fused as onnxruntime fuses them on ARM (QDQIsInt8Allowed);
                        on x86 onnxruntime keeps them float, within a code or so of the integer
                        result; int8 activations with uint8 weights are not fused; a Conv bias
                        must be an int32 DQ.
  Gemm                  every input from a DQ, Q optional (QGemm with float output without it);
                        int8 A needs int8 B; a bias needs beta == 1 and int32.
  Add, Mul              both inputs from DQs and one Q, all one dtype (QLinearAdd / QLinearMul).
  Concat                every input from a DQ, one Q, all one dtype (QLinearConcat).
  AveragePool, GlobalAveragePool, Sigmoid, LeakyRelu, Softmax: one DQ, one Q, equal dtypes.
  MaxPool (opset >= 12, positive scale), Reshape, Flatten, Transpose, Squeeze, Unsqueeze:
                        one DQ and one Q with equal constant scalar parameters: the op runs on
                        the codes and both are dropped.
In every group the op's output goes only to the Q and is not a graph output; a Relu between
the op and a Q whose zero point is the type's minimum is redundant and dropped (the output
clamp does it). A DQ shared by several consumers serves each (EnsureUniqueDQForNodeUnit).
Groups that do not qualify stay DQ -> float op -> Q (float path: dequantize, fp32 op, quantize).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from compiler.frontend.onnx_context import attributes
from compiler.frontend.onnx_fold import Constant

MS = "com.microsoft"
UNARY = {"AveragePool": "QLinearAveragePool", "GlobalAveragePool": "QLinearGlobalAveragePool",
         "Sigmoid": "QLinearSigmoid", "LeakyRelu": "QLinearLeakyRelu", "Softmax": "QLinearSoftmax"}
BINARY = {"Add": "QLinearAdd", "Mul": "QLinearMul"}
DROP = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
QMIN = {np.dtype(np.uint8): 0, np.dtype(np.int8): -128}


class _Graph:
    """Lookups over the ONNX node list: producers, consumers, constants, 8-bit dtypes."""

    def __init__(self, nodes, consts: dict, outputs: set):
        self.producer = {out: node for node in nodes for out in node.output if out}
        self.consumers: dict = {}
        for node in nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.consts = dict(consts)
        for node in nodes:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.consts[node.output[0]] = np.asarray(Constant(attributes(node), [], 0)[0])
        self.outputs = outputs

    def dq(self, name: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def only_consumer(self, name: str):
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def zero_point_dtype(self, node) -> np.dtype:
        """8-bit dtype of a Q node's output or a DQ node's input (the zero point's, default uint8)."""
        if len(node.input) > 2 and node.input[2] in self.consts:
            return self.consts[node.input[2]].dtype
        if len(node.input) > 2 and node.input[2]:
            return np.dtype(np.float32)                   # unknown: never matches
        return np.dtype(np.uint8)

    def scalar_params(self, node):
        """(scale, zero point) of a Q/DQ node if both are constant scalars, else None."""
        scale = self.consts.get(node.input[1])
        zp = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.uint8(0)
        if scale is None or zp is None or np.size(scale) != 1 or np.size(zp) != 1:
            return None
        return np.float32(np.ravel(scale)[0]), int(np.ravel(zp)[0])


def fuse_qdq(nodes: list, consts: dict, graph_outputs: set, opset: int) -> list:
    """The node list with every qualifying QDQ group replaced by its quantised op; DQ/Q nodes
    no longer used are removed."""
    graph = _Graph(nodes, consts, graph_outputs)
    out, absorbed = [], set()
    for node in nodes:
        if id(node) in absorbed:
            continue
        fused = _fuse(graph, node, opset) if node.domain in ("", "ai.onnx") else None
        if fused is None:
            out.append(node)
            continue
        out.append(fused)
        # the fused op writes the Q's output: the Q and a redundant Relu go
        _, q, relu = _group(graph, node)
        absorbed.update(id(n) for n in (q, relu) if n is not None)
    return _drop_unused(out, graph_outputs)


def _group(graph: _Graph, node):
    """(DQ per input or None, the Q node or None, redundant Relu or None) around `node`."""
    dqs = [graph.dq(name) if name else None for name in node.input]
    tail = graph.only_consumer(node.output[0]) if len([o for o in node.output if o]) == 1 else None
    relu = None
    if tail is not None and tail.op_type == "Relu":
        relu, tail = tail, graph.only_consumer(tail.output[0])
    q = tail if tail is not None and tail.op_type == "QuantizeLinear" else None
    if relu is not None and (q is None or graph.zero_point_dtype(q) not in QMIN
                             or (graph.scalar_params(q) or (0, None))[1] != QMIN[graph.zero_point_dtype(q)]):
        return dqs, None, None                           # the Relu is not made redundant by Q
    return dqs, q, relu


def _fuse(graph: _Graph, node, opset: int):
    op = node.op_type
    if op not in UNARY and op not in BINARY and op not in DROP and op not in ("Conv", "MatMul", "Gemm", "Concat"):
        return None
    dqs, q, relu = _group(graph, node)
    present = [d for name, d in zip(node.input, dqs) if name]
    dts = [graph.zero_point_dtype(d) for d in present if d is not None]
    y_dt = graph.zero_point_dtype(q) if q is not None else None
    all_dq = all(d is not None for d in present)
    if op in DROP:
        return _drop(graph, node, dqs, q, relu, opset)
    if op == "Gemm":
        return _gemm(graph, node, dqs, q, dts, y_dt) if all_dq else None
    if q is None or not all_dq:
        return None
    if op in ("Conv", "MatMul"):
        if dts[0] != y_dt or (dts[0] == np.int8 and dts[1] != np.int8) or \
                (op == "Conv" and len(dts) == 3 and dts[2] != np.int32):
            return None
        inputs = _dq_triple(dqs[0]) + _dq_triple(dqs[1]) + _q_pair(q) + ([dqs[2].input[0]] if len(dts) == 3 else [])
        new_op = "QLinearConv" if op == "Conv" else "QLinearMatMul"
        return _node(new_op, "", node, inputs, q, attributes(node) if op == "Conv" else {})
    if op in UNARY and len(present) == 1 and dts[0] == y_dt:
        attrs = attributes(node)
        if op == "Softmax":
            attrs["opset"] = min(13, opset)
        return _node(UNARY[op], MS, node, _dq_triple(dqs[0]) + _q_pair(q), q, attrs)
    if op in BINARY and len(present) == 2 and dts[0] == dts[1] == y_dt:
        return _node(BINARY[op], MS, node, _dq_triple(dqs[0]) + _dq_triple(dqs[1]) + _q_pair(q), q, {})
    if op == "Concat" and all(d == y_dt for d in dts):
        inputs = _q_pair(q) + [v for d in present for v in _dq_triple(d)]
        return _node("QLinearConcat", MS, node, inputs, q, attributes(node))
    return None


def _gemm(graph: _Graph, node, dqs, q, dts, y_dt):
    if dts[0] == np.int8 and dts[1] != np.int8:
        return None
    if q is not None and dts[0] != y_dt:
        return None
    attrs = attributes(node)
    if len(dts) == 3 and (float(attrs.get("beta", 1.0)) != 1.0 or dts[2] != np.int32):
        return None
    inputs = _dq_triple(dqs[0]) + _dq_triple(dqs[1]) + [dqs[2].input[0] if len(dts) == 3 else ""]
    inputs += _q_pair(q) if q is not None else []
    kept = {k: v for k, v in attrs.items() if k in ("alpha", "transA", "transB")}
    return _node("QGemm", MS, node, inputs, q, kept)


def _drop(graph: _Graph, node, dqs, q, relu, opset: int):
    """DropQDQNodesSelector: the op runs on the codes when its DQ and Q parameters are equal."""
    if relu is not None or q is None or dqs[0] is None or any(d is not None for d in dqs[1:]):
        return None
    if graph.zero_point_dtype(dqs[0]) != graph.zero_point_dtype(q):
        return None
    params_in, params_out = graph.scalar_params(dqs[0]), graph.scalar_params(q)
    if params_in is None or params_in != params_out:
        return None
    if node.op_type == "MaxPool" and (opset < 12 or not params_out[0] > 0):
        return None
    new = onnx.NodeProto()
    new.CopyFrom(node)
    new.input[0] = dqs[0].input[0]
    new.output[0] = q.output[0]
    return new


def _dq_triple(dq) -> list:
    return [dq.input[0], dq.input[1], dq.input[2] if len(dq.input) > 2 else ""]


def _q_pair(q) -> list:
    return [q.input[1], q.input[2] if len(q.input) > 2 else ""]


def _node(op_type: str, domain: str, node, inputs: list, q, attrs: dict):
    name = node.name or f"{node.op_type}_{node.output[0]}"
    output = q.output[0] if q is not None else node.output[0]
    return helper.make_node(op_type, inputs, [output], name=name, domain=domain, **attrs)


def _drop_unused(nodes: list, graph_outputs: set) -> list:
    """Remove DequantizeLinear/QuantizeLinear nodes whose outputs nothing reads any more (the
    groups' own, now fused), from the back so Q -> DQ chains go too; other nodes stay."""
    live = set(graph_outputs)
    kept = []
    for node in reversed(nodes):
        unused = not any(o in live for o in node.output if o)
        if not (unused and node.op_type in ("QuantizeLinear", "DequantizeLinear")):
            kept.append(node)
            live.update(name for name in node.input if name)
    return kept[::-1]

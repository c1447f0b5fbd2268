"""onnxruntime as the reference for integer models, on any CPU.

onnxruntime's uint8 x int8 GEMM kernels (MLAS) add byte products in pairs with vpmaddubsw on x86
CPUs without VNNI or AMX, which saturates each pair at int16: their outputs then differ from ONNX's
exact integer semantics. Which kernels are exact is found by a probe (a MatMulInteger whose every
pair overflows int16), not by a list of CPU flags. `oracle_model(model)` returns the model to hand
onnxruntime and a one-line description of the oracle: the model itself where every integer kernel it
needs is exact here; otherwise, when onnxruntime's uint8 x uint8 kernel is exact, a copy whose int8
weights are moved to uint8 (w + 128, zero point + 128: the same integers, (w - zp) unchanged);
otherwise None (no exact oracle on this CPU). A QDQ model with int8 activations (S8S8), which
onnxruntime runs in float on x86, is checked on its equivalent QOperator graph (`fused_model`).
The simulator never imports this module.
"""
from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CODE_TYPES = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}
# ops whose listed inputs are (weight, weight zero point): every integer GEMM/conv onnxruntime runs,
# and DequantizeLinear (input 0, zero point 2), through which QDQ models carry their weights
WEIGHT_SLOTS = {"QLinearConv": (3, 5), "QLinearMatMul": (3, 5), "QGemm": (3, 5), "MatMulInteger": (1, 3),
                "ConvInteger": (1, 3), "DynamicQuantizeMatMul": (1, 3), "MatMulIntegerToFloat": (1, 5),
                "DequantizeLinear": (0, 2)}
PROBE_DEPTH = 64   # K of the probe: every pair of products overflows int16, and the sum needs 22 bits


def _probe_model(a_type: int, b_type: int):
    a_max = 255 if a_type == TensorProto.UINT8 else -128
    b_max = 127 if b_type == TensorProto.INT8 else 255
    a = np.full((1, PROBE_DEPTH), a_max, helper.tensor_dtype_to_np_dtype(a_type))
    b = np.full((PROBE_DEPTH, 1), b_max, helper.tensor_dtype_to_np_dtype(b_type))
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
                              [helper.make_tensor_value_info("a", a_type, a.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, a, int(a_max) * int(b_max) * PROBE_DEPTH


@functools.cache
def kernel_is_exact(activation: str, weight: str) -> bool:
    """Whether onnxruntime's integer GEMM for these code types accumulates exactly on this CPU."""
    import onnxruntime as ort

    types = {v: k for k, v in CODE_TYPES.items()}
    model, a, want = _probe_model(types[activation], types[weight])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return int(session.run(None, {"a": a})[0][0, 0]) == want


def code_pairs(model: onnx.ModelProto) -> set:
    """The (activation, weight) code types the model's integer GEMMs and convolutions may meet.

    Activations: the types QuantizeLinear writes (its zero point's, uint8 by default), 8-bit graph
    inputs, and uint8 where the model quantises at run time. Weights: 8-bit initialisers in a weight
    slot (of an integer op, or of the DequantizeLinear that carries a QDQ model's weights)."""
    inits = {t.name: t for t in model.graph.initializer}
    activations, weights = set(), set()
    for value in model.graph.input:
        if value.name not in inits and value.type.tensor_type.elem_type in CODE_TYPES:
            activations.add(CODE_TYPES[value.type.tensor_type.elem_type])
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            activations.add(CODE_TYPES.get(zp.data_type, "uint8") if zp is not None else "uint8")
        elif node.op_type in ("DynamicQuantizeLinear", "DynamicQuantizeMatMul"):
            activations.add("uint8")
        if node.op_type in WEIGHT_SLOTS:
            slot = WEIGHT_SLOTS[node.op_type][0]
            w = inits.get(node.input[slot]) if len(node.input) > slot else None
            if w is not None and w.data_type in CODE_TYPES and len(w.dims) >= 2:
                weights.add(CODE_TYPES[w.data_type])
    return {(a, w) for a in activations for w in weights}


def _with_uint8_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose int8 weight initialisers (and their zero points) are uint8: w + 128 and zp + 128."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    moved = set()
    for node in out.graph.node:
        if node.op_type not in WEIGHT_SLOTS:
            continue
        w_slot, zp_slot = WEIGHT_SLOTS[node.op_type]
        w = inits.get(node.input[w_slot]) if len(node.input) > w_slot else None
        if w is None or w.data_type != TensorProto.INT8:
            continue
        zp_name = node.input[zp_slot] if len(node.input) > zp_slot else ""
        if not zp_name:      # absent zero point means 0; give it an explicit one
            zp_name = f"{w.name}__zero_point"
            if zp_name not in inits:
                out.graph.initializer.append(numpy_helper.from_array(np.int8(0), zp_name))
                inits[zp_name] = out.graph.initializer[-1]   # append copies: keep the graph's own
            while len(node.input) <= zp_slot:
                node.input.append("")
            node.input[zp_slot] = zp_name
        for name in (w.name, zp_name):
            if name not in moved:
                shifted = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
                inits[name].CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), name))
                moved.add(name)
    return out


def fused_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The QOperator graph equivalent to a QDQ model: each DQ -> op -> Q group replaced by the
    integer op it stands for (compiler/frontend/onnx_qdq.py: onnxruntime's fusion rules, with S8S8
    groups fused as onnxruntime fuses them on ARM), as a model onnxruntime runs with its integer
    kernels: the exact-integer semantics an NPU computes for the QDQ model."""
    from compiler.frontend.onnx_qdq import fuse_qdq

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    nodes = fuse_qdq(list(model.graph.node), consts, {o.name for o in model.graph.output}, opset)
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    del fused.graph.node[:]
    fused.graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in fused.opset_import):
        fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return fused


def _has_s8s8_qdq(model: onnx.ModelProto) -> bool:
    """Whether the model quantises activations to int8 in QDQ form (QuantizeLinear with an int8
    zero point feeding DequantizeLinear), groups onnxruntime keeps float on x86."""
    inits = {t.name: t for t in model.graph.initializer}
    return any(n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits
               and inits[n.input[2]].data_type == TensorProto.INT8 for n in model.graph.node) and \
        any(n.op_type == "DequantizeLinear" for n in model.graph.node)


def oracle_model(model: onnx.ModelProto):
    """(model to run on onnxruntime or None, one line saying which oracle that is)."""
    import onnxruntime as ort

    version = f"onnxruntime {ort.__version__}"
    if _has_s8s8_qdq(model):      # the integer semantics, not onnxruntime's x86 float path
        model = fused_model(model)
        version += " on the equivalent QOperator graph (S8S8 QDQ groups fused)"
    pairs = code_pairs(model)
    if all(kernel_is_exact(a, w) for a, w in pairs):
        return model, f"{version}" + (" (integer kernels exact on this CPU: probed)" if pairs else "")
    inexact = sorted(f"{a} x {w}" for a, w in pairs if not kernel_is_exact(a, w))
    if all(a == "uint8" for a, _ in pairs) and kernel_is_exact("uint8", "uint8"):
        return (_with_uint8_weights(model),
                f"{version} on uint8 copies of the int8 weights ({', '.join(inexact)} saturates on this CPU: probed)")
    return None, f"no exact oracle: onnxruntime's {', '.join(inexact)} kernel saturates on this CPU (probed)"

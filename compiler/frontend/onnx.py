"""ONNX front end: `load_model(path or ModelProto) -> Graph` (the IR of compiler/ir.py).

Reads the file (external data only from inside the model's folder), checks the
opset (7..21), types the runtime inputs (float32, or uint8/int8 codes whose Quant the
first quantised op reading them gives: onnx_quant_params; symbolic dims -> 1 unless overridden),
rewrites QDQ groups into quantised ops as onnxruntime does (onnx_qdq), folds
all-constant nodes with NumPy (onnx_fold) and converts the rest through the op
tables (onnx_ops, and onnx_quant for quantised ops, com.microsoft included).
Tensor names are the ONNX names; errors are CompileError.
"""
from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, numpy_helper

from compiler.errors import CompileError
from compiler.frontend.onnx_context import NodeContext, attributes, check_node, dtype_name
from compiler.frontend.onnx_fold import FOLDS, fold, shape_of
from compiler.frontend.onnx_ops import OPS as LAYER_OPS
from compiler.frontend.onnx_qdq import fuse_qdq
from compiler.frontend.onnx_quant import MS_OPS
from compiler.frontend.onnx_quant import OPS as QUANT_OPS
from compiler.ir import Graph, Node, TensorType, shape_problem

INPUT_TYPES = {TensorProto.FLOAT: "fp32", TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}

OPSET_MIN, OPSET_MAX = 7, 21
DEFAULT_DOMAINS = ("", "ai.onnx")
MS_DOMAIN = "com.microsoft"
OPS = {**LAYER_OPS, **QUANT_OPS}
# ONNX ops that may read 8-bit codes: they move codes (docs/int8_datapath.md section 6)
CODE_OPS = ("MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
            "Identity", "Dropout", "Concat")
# ONNX ops that may read an int32 accumulator (ConvInteger/MatMulInteger output): views of it
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def load_model(model, input_shapes: dict | None = None) -> Graph:
    """Convert an ONNX model (path or ModelProto) into a verified Graph.

    input_shapes maps an input name to a shape that replaces the declared one
    (default: declared dims, with symbolic or 0 dims set to 1).
    """
    proto, where = read_model(model)
    opset = _opset(proto, where)
    graph = proto.graph
    consts = {t.name: _initializer(t, where) for t in graph.initializer}
    types = _input_types(graph, consts, dict(input_shapes or {}), where)
    name = graph.name or (Path(model).stem if not isinstance(model, onnx.ModelProto) else "model")
    ir = Graph(name=name, inputs=list(types), outputs=[], tensors=dict(types), constants={},
               nodes=[], opset=opset)
    nodes = list(graph.node)
    try:
        for index, node in enumerate(nodes):
            check_node(node, node.name or f"{node.op_type}_{index}", opset)
        if any(node.op_type == "DequantizeLinear" for node in nodes):
            nodes = fuse_qdq(nodes, consts, {o.name for o in graph.output}, opset)
        _walk(nodes, graph.output, opset, consts, types, ir)
    except CompileError as exc:
        raise CompileError(f"{where}: {exc}") from None
    ir.outputs = [_output(o.name, consts, types, ir, where) for o in graph.output]
    _check_bound(ir, where)
    return ir.verify()


# ---- reading -----------------------------------------------------------------

def read_model(model) -> tuple:
    """(ModelProto, label for error messages) from a path or a ModelProto; a file that is
    not a readable ONNX model, or external data that escapes its folder, is a CompileError."""
    if isinstance(model, onnx.ModelProto):
        where = f"model '{model.graph.name}'"
        _check_text(model, where, "model")
        _load_external(model, None, where)                   # refuses; never mutates
        return model, where
    path = Path(model)
    if not path.is_file():
        raise CompileError(f"{path}: no such ONNX model file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:                      # protobuf raises several types
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CompileError(f"{path}: not a readable ONNX model ({reason})") from None
    if not proto.HasField("graph") or proto.ir_version == 0:
        raise CompileError(f"{path}: not an ONNX model (no graph or ir_version in the file)")
    _check_text(proto, str(path), "model")
    _load_external(proto, path.parent, str(path))
    return proto, str(path)


def _check_text(message, where: str, path: str) -> None:
    """Every string field (names, op types, domains) is text: protobuf hands back one that is
    not UTF-8 as bytes, which is refused by its field path."""
    for field, value in message.ListFields():
        if field.type not in (field.TYPE_MESSAGE, field.TYPE_STRING):
            continue
        single = isinstance(value, (str, bytes)) or hasattr(value, "ListFields")
        for i, item in enumerate([value] if single else value):
            at = f"{path}.{field.name}" + ("" if single else f"[{i}]")
            if field.type == field.TYPE_MESSAGE:
                _check_text(item, where, at)
            elif isinstance(item, bytes):
                raise CompileError(f"{where}: {at} is not UTF-8 text ({item[:40]!r})")


def _tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _load_external(proto: onnx.ModelProto, base: Path | None, where: str) -> None:
    """Load external tensor data, refusing locations outside the model's folder."""
    for tensor in _tensors(proto.graph):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = external_data_helper.ExternalDataInfo(tensor).location
        prefix = f"{where}: tensor '{tensor.name}' external data '{location}'"
        if base is None:
            raise CompileError(f"{prefix}: external data needs the model's path; "
                               "pass the .onnx file path instead of a ModelProto")
        pure = PurePath(location)
        target = (base / location).resolve()
        if (not location or pure.is_absolute() or location.startswith(("/", "\\"))
                or ".." in pure.parts or "\\" in location or base.resolve() not in target.parents):
            raise CompileError(f"{prefix}: the location must be a relative path inside {base}")
        if not target.is_file():
            raise CompileError(f"{prefix}: file not found in {base}")
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(base))
        except Exception as exc:
            raise CompileError(f"{prefix}: cannot be read ({' '.join(str(exc).split())})") from None


def _initializer(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    """An initializer's value; a shape past the IR's size limit is refused before its data is read."""
    prefix = f"{where}: initializer '{tensor.name}'"
    problem = shape_problem(tensor.dims)
    if problem:
        raise CompileError(f"{prefix}: {problem}")
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:                      # onnx raises several types for malformed tensors
        raise CompileError(f"{prefix} ({dtype_name(tensor.data_type)}{list(tensor.dims)}) cannot be read: "
                           f"{' '.join(str(exc).split()) or type(exc).__name__}") from None


def _opset(proto: onnx.ModelProto, where: str) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise CompileError(f"{where}: no default-domain opset import; "
                           f"allowed: opset {OPSET_MIN}..{OPSET_MAX}")
    opset = int(versions[0])
    if not OPSET_MIN <= opset <= OPSET_MAX:
        raise CompileError(f"{where}: opset {opset} is not supported; "
                           f"allowed: {OPSET_MIN}..{OPSET_MAX} "
                           "(convert it with onnx.version_converter)")
    return opset


def _input_types(graph, consts: dict, overrides: dict, where: str) -> dict:
    """Runtime inputs (graph inputs that are not initializers) -> TensorType."""
    types = {}
    runtime = [value for value in graph.input if value.name not in consts]
    unknown = sorted(set(overrides) - {value.name for value in runtime})
    if unknown:
        raise CompileError(f"{where}: input_shapes names unknown input(s) {unknown}; "
                           f"inputs: {[value.name for value in runtime]}")
    for value in runtime:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type not in INPUT_TYPES:
            allowed = ", ".join(dtype_name(t) for t in INPUT_TYPES)
            raise CompileError(f"{where}: input '{value.name}' has type {dtype_name(tensor_type.elem_type)}; "
                               f"allowed: {allowed}")
        declared = None
        if tensor_type.HasField("shape"):
            declared = tuple(d.dim_value if d.dim_value > 0 else 1 for d in tensor_type.shape.dim)
        shape = overrides.get(value.name, declared)
        if shape is None:
            raise CompileError(f"{where}: input '{value.name}' has no shape; "
                               "pass input_shapes={name: shape}")
        shape = tuple(int(d) for d in shape)
        if (declared is not None and len(shape) != len(declared)) or min(shape, default=1) < 1:
            raise CompileError(f"{where}: input_shapes['{value.name}']={shape} does not fit "
                               f"the declared rank {len(declared or ())} with positive dims")
        problem = shape_problem(shape)
        if problem:
            raise CompileError(f"{where}: input '{value.name}': {problem}")
        types[value.name] = TensorType(shape, INPUT_TYPES[tensor_type.elem_type])   # 8-bit: no Quant yet
    return types


# ---- the node walk -------------------------------------------------------------

def _walk(nodes: list, outputs, opset: int, consts: dict, types: dict, ir: Graph) -> None:
    names = set(consts) | set(types)
    for node in nodes:
        names.update(node.output)
    used = {name for node in nodes for name in node.input} | {o.name for o in outputs}
    dynamic: dict = {}                 # DynamicQuantizeLinear outputs (NodeContext.dynamic)
    for index, node in enumerate(nodes):
        name = node.name or f"{node.op_type}_{index}"
        _check_inputs(node, name, consts, types)
        if node.domain not in DEFAULT_DOMAINS + (MS_DOMAIN,):
            raise CompileError(f"node '{name}' ({node.op_type}): domain '{node.domain}' is "
                               f"not supported; allowed: the default ONNX domain, {MS_DOMAIN}")
        if node.domain == MS_DOMAIN:
            converter = MS_OPS.get(node.op_type)
            if converter is None:
                raise CompileError(f"node '{name}': op {MS_DOMAIN}:{node.op_type} is not supported; "
                                   f"supported {MS_DOMAIN} ops: {', '.join(sorted(MS_OPS))}")
        elif _fold_node(node, name, opset, consts, types):
            continue
        else:
            converter = OPS.get(node.op_type)
            if converter is None:
                raise _unsupported(node, name)
            _check_codes(node, name, types)
        ctx = NodeContext(node, name, opset, types, consts, names, used, dynamic)
        result = converter(ctx)
        for cname, value in result.constants.items():
            ir.constants[cname] = value
        ir.tensors.update(result.types)
        types.update({n: t for n, t in result.types.items() if n not in result.constants})
        ir.nodes.extend(result.nodes)


def _check_inputs(node, name: str, consts: dict, types: dict) -> None:
    for value in node.input:
        if value and value not in consts and value not in types:
            raise CompileError(f"node '{name}' ({node.op_type}): input '{value}' is not "
                               "produced before use (graph not in topological order?)")


def _check_codes(node, name: str, types: dict) -> None:
    """Float ops may not read 8-bit codes; ops that move codes need one dtype and quant; an
    int32 accumulator may only be viewed; an 8-bit graph input is first read by a quantised op."""
    if node.op_type in QUANT_OPS:
        return
    quantised = [types[v] for v in node.input if v in types and types[v].dtype != "fp32"]
    if not quantised:
        return
    where = f"node '{name}' ({node.op_type})"
    if node.op_type == "Cast" and all(t.dtype == "int32" for t in quantised):
        return                                   # int32 -> float32 (the converter checks `to`)
    if any(t.quant is not None and t.quant.dynamic for t in quantised):
        raise CompileError(f"{where}: an input holds DynamicQuantizeLinear's codes; only MatMulInteger "
                           "and ConvInteger may read them")
    if any(t.dtype == "int32" for t in quantised) and node.op_type not in VIEW_OPS:
        raise CompileError(f"{where}: an input holds an int32 accumulator (ConvInteger/MatMulInteger "
                           "output) or DynamicQuantizeLinear's int32 zero point; it may only be a graph "
                           f"output, cast to float (Cast) or viewed ({', '.join(VIEW_OPS)})")
    if node.op_type not in CODE_OPS:
        raise CompileError(f"{where}: an input holds {quantised[0].dtype} codes; {node.op_type} "
                           "computes in float32 (dequantize first), and on codes only "
                           f"{', '.join(CODE_OPS)} (which move them) are allowed")
    unbound = next((v for v in node.input if v in types and types[v].quantised and types[v].quant is None), None)
    if unbound is not None:
        raise CompileError(f"{where}: input '{unbound}' is a {types[unbound].dtype} graph input read "
                           f"before any quantised op gives its scale and zero point; the first op to "
                           f"read it must be one that does ({_QUANT_READERS})")
    data = [v for v in node.input[:None if node.op_type == "Concat" else 1] if v]
    first = (quantised[0].dtype, quantised[0].quant)
    if any(v not in types or (types[v].dtype, types[v].quant) != first for v in data):
        raise CompileError(f"{where}: inputs mix codes of different dtype or quantisation "
                           "parameters (or constants); moving codes needs them all equal")


_QUANT_READERS = ("QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, DequantizeLinear, "
                  f"or a {MS_DOMAIN} QLinear op")


def _check_bound(ir: Graph, where: str) -> None:
    """Every 8-bit graph input got its Quant from an op that reads it (onnx_quant_params)."""
    for name in ir.inputs:
        t = ir.tensors[name]
        if t.quantised and t.quant is None:
            raise CompileError(f"{where}: input '{name}' is {t.dtype} and no op gives its scale and zero "
                               f"point; an 8-bit input must be read by {_QUANT_READERS}")


def _fold_node(node, name: str, opset: int, consts: dict, types: dict) -> bool:
    """Evaluate the node at compile time if it can be; True when folded."""
    present = [v for v in node.input if v]
    if node.op_type in ("Shape", "Size") and present and present[0] in types:
        shape = types[present[0]].shape
        attrs = attributes(node)
        value = shape_of(shape, attrs) if node.op_type == "Shape" else np.int64(np.prod(shape))
        consts[node.output[0]] = np.asarray(value, dtype=np.int64)
        return True
    if node.op_type not in FOLDS or not all(v in consts for v in present):
        return False
    inputs = [consts[v] if v else None for v in node.input]
    try:
        values = fold(node.op_type, node, attributes(node), inputs, opset)
    except Exception as exc:
        raise CompileError(f"node '{name}' ({node.op_type}): constant folding failed "
                           f"({' '.join(str(exc).split())})") from None
    for out, value in zip(node.output, values):
        if out:
            consts[out] = np.asarray(value)
    return True


def _unsupported(node, name: str) -> CompileError:
    hint = ""
    if node.op_type in FOLDS:
        hint = " (it is evaluated only when all its inputs are compile-time constants)"
    return CompileError(f"node '{name}': op {node.op_type} is not supported{hint}; "
                        f"supported ops: {', '.join(sorted(OPS))}; {MS_DOMAIN} ops: "
                        f"{', '.join(sorted(MS_OPS))}; on compile-time constants only: "
                        f"{', '.join(sorted(set(FOLDS) - set(OPS)))} (docs/ops.md)")


def _output(name: str, consts: dict, types: dict, ir: Graph, where: str) -> str:
    """A graph output; one folded to a constant gets an identity node to produce it."""
    if name in types:
        return name
    if name not in consts:
        raise CompileError(f"{where}: graph output '{name}' is never produced")
    source = f"{name}/const"
    while source in ir.tensors or source in consts:
        source += "_"
    value = np.asarray(consts[name], dtype=np.float32)
    ir.constants[source] = value
    ir.tensors[source] = ir.tensors[name] = TensorType(tuple(int(d) for d in value.shape))
    ir.nodes.append(Node("identity", name, (source,), (name,), {}))
    return name

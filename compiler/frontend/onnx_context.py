"""What an ONNX op converter sees and returns: `NodeContext` (one NodeProto with
its parsed attributes, the types of its activation inputs and the values of its
constant inputs) and `Converted` (the IR Nodes, output TensorTypes and new constants
it produced). Converters live in onnx_ops*.py and onnx_quant.py; the walk in onnx.py.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from compiler.errors import CompileError
from compiler.ir import CODE_MOVES, DTYPES, Node, TensorType, shape_problem


@dataclass
class Converted:
    nodes: list = field(default_factory=list)        # IR Nodes, in order
    types: dict = field(default_factory=dict)        # new tensor name -> TensorType
    constants: dict = field(default_factory=dict)    # new IR constant name -> array of its IR dtype


# The schemas of the com.microsoft ops we convert, from onnxruntime's contrib op definitions
# (onnxruntime/core/graph/contrib_ops/quantization_defs.cc); ONNX's own ops use onnx.defs.
# Inputs: (fewest, most, positions that must be non-empty); attributes: name -> type.
A = onnx.AttributeProto
_UNARY = (4, 5, (0, 1, 3))                  # X, X_scale, X_zero_point?, Y_scale, Y_zero_point?
MS_INPUTS = {
    "QGemm": (6, 9, (0, 1, 3, 4)), "QLinearAdd": (7, 8, (0, 1, 3, 4, 6)), "QLinearMul": (7, 8, (0, 1, 3, 4, 6)),
    "QLinearAveragePool": _UNARY, "QLinearGlobalAveragePool": _UNARY, "QLinearSoftmax": _UNARY,
    "QLinearSigmoid": _UNARY, "QLinearLeakyRelu": _UNARY, "QLinearConcat": (5, 2 ** 31 - 1, (0, 2)),
}
MS_ATTRIBUTE_TYPES = {
    "QGemm": {"alpha": A.FLOAT, "transA": A.INT, "transB": A.INT},
    "QLinearAveragePool": {"auto_pad": A.STRING, "ceil_mode": A.INT, "channels_last": A.INT,
                           "count_include_pad": A.INT, "dilations": A.INTS, "kernel_shape": A.INTS,
                           "pads": A.INTS, "strides": A.INTS},
    "QLinearGlobalAveragePool": {"channels_last": A.INT}, "QLinearConcat": {"axis": A.INT},
    "QLinearSoftmax": {"axis": A.INT, "opset": A.INT}, "QLinearLeakyRelu": {"alpha": A.FLOAT},
}


def dtype_name(code: int) -> str:
    """ONNX's name of a TensorProto element type code; codes ONNX does not define included."""
    known = code in onnx.TensorProto.DataType.values()
    return onnx.TensorProto.DataType.Name(code) if known else f"<{code}: not an ONNX type>"


@functools.cache
def _first_opsets() -> dict:
    """(domain, op type) -> the opset that introduced it, for every op ONNX defines."""
    first: dict = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        key = (schema.domain, schema.name)
        first[key] = min(first.get(key, schema.since_version), schema.since_version)
    return first


def _schema(node: onnx.NodeProto, opset: int):
    """ONNX's schema of the node's op at `opset`, or None (com.microsoft, or an unknown op)."""
    if node.domain == "com.microsoft":
        return None
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None


def check_node(node: onnx.NodeProto, name: str, opset: int) -> None:
    """The node has the inputs and outputs its op's schema requires, only attributes the schema
    declares, each of the declared type, and every tensor attribute a shape under the IR's size
    limit; converters then read plain values."""
    where = f"node '{name}' ({node.op_type})"
    schema = _schema(node, opset)
    if schema is not None:
        _check_arity(node, where, schema)
    elif node.domain == "com.microsoft" and node.op_type in MS_INPUTS:
        _check_ms_arity(node, where)
    elif (node.domain, node.op_type) in _first_opsets():
        raise CompileError(f"{where}: ONNX has {node.op_type} from opset "
                           f"{_first_opsets()[node.domain, node.op_type]}; the model imports opset {opset}")
    if schema is not None:
        declared = {key: int(attr.type) for key, attr in schema.attributes.items()}
        unknown = [attr.name for attr in node.attribute if attr.name not in declared]
        if unknown:                               # onnxruntime refuses these too
            raise CompileError(f"{where}: attribute '{unknown[0]}' is not one of ONNX {node.op_type} "
                               f"(opset {schema.since_version}): {', '.join(declared) or 'it takes none'}")
    else:                                         # converters read only the declared ones
        declared = MS_ATTRIBUTE_TYPES.get(node.op_type, {}) if node.domain == "com.microsoft" else {}
    for attr in node.attribute:
        wanted = declared.get(attr.name)
        if wanted is not None and attr.type != wanted:
            raise CompileError(f"{where}: attribute '{attr.name}' is {A.AttributeType.Name(attr.type)}; "
                               f"{node.op_type} takes {A.AttributeType.Name(wanted)}")
        for tensor in ([attr.t] if attr.HasField("t") else []) + list(attr.tensors):
            problem = shape_problem(tensor.dims)
            if problem:
                raise CompileError(f"{where}: attribute '{attr.name}': {problem}")


def _check_arity(node: onnx.NodeProto, where: str, schema) -> None:
    op = f"ONNX {node.op_type} (opset {schema.since_version})"
    for kind, names, low, high, formals in (("inputs", node.input, schema.min_input, schema.max_input, schema.inputs),
                                            ("outputs", node.output, schema.min_output, schema.max_output,
                                             schema.outputs)):
        if not low <= len(names) <= high:
            allowed = f"{low}..{high}" if high < 2 ** 31 - 1 else f"at least {low}"
            raise CompileError(f"{where}: has {len(names)} {kind}; {op} takes {allowed}")
        for i, formal in enumerate(formals[:len(names)]):
            if formal.option == onnx.defs.OpSchema.FormalParameterOption.Single and not names[i]:
                raise CompileError(f"{where}: {kind[:-1]} {i} ({formal.name}) is missing (an empty name); {op} "
                                   "requires it")


def _check_ms_arity(node: onnx.NodeProto, where: str) -> None:
    low, high, required = MS_INPUTS[node.op_type]
    if not low <= len(node.input) <= high:
        allowed = f"{low}..{high}" if high < 2 ** 31 - 1 else f"at least {low}"
        raise CompileError(f"{where}: has {len(node.input)} inputs; com.microsoft {node.op_type} takes {allowed}")
    empty = [i for i in required if not node.input[i]]
    if empty:
        raise CompileError(f"{where}: input {empty[0]} is missing (an empty name); com.microsoft {node.op_type} "
                           "requires it")
    if len(node.output) != 1 or not node.output[0]:
        raise CompileError(f"{where}: has outputs {list(node.output)}; com.microsoft {node.op_type} has one")


def attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded, tensors as arrays); one that
    cannot be decoded is a CompileError naming it."""
    out = {}
    for attr in node.attribute:
        try:
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif isinstance(value, onnx.TensorProto):
                value = onnx.numpy_helper.to_array(value)
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode("utf-8") for v in value]
        except Exception as exc:                  # onnx and protobuf raise several types
            raise CompileError(f"node '{node.name or node.op_type}' ({node.op_type}): attribute "
                               f"'{attr.name}' cannot be read ({' '.join(str(exc).split())})") from None
        out[attr.name] = value
    return out


class NodeContext:
    """One ONNX node being converted: its inputs, attributes and an emit buffer."""

    def __init__(self, node, name, opset, types, consts, names, used, dynamic=None):
        self.node = node
        self.name = name                  # ONNX node name, or <op_type>_<index>
        self.op_type = node.op_type
        self.opset = opset
        self.attrs = attributes(node)
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self._types = types               # activation name -> TensorType (so far)
        self._consts = consts             # constant name -> np.ndarray (any dtype)
        self._names = names               # every tensor name in use (for fresh names)
        self._used = used                 # names consumed by some node or graph output
        # DynamicQuantizeLinear's codes y -> its (y_scale, y_zero_point) names, graph-wide
        self.dynamic = {} if dynamic is None else dynamic
        self.result = Converted()

    # ---- errors and attributes -------------------------------------------------
    def error(self, message: str) -> CompileError:
        return CompileError(f"node '{self.name}' ({self.op_type}): {message}")

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)

    def ints(self, key: str, default) -> tuple:
        return tuple(int(v) for v in self.attrs.get(key, default))

    # ---- inputs ---------------------------------------------------------------
    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def is_const(self, i: int) -> bool:
        return self.has_input(i) and self.inputs[i] in self._consts

    def const(self, i: int, what: str) -> np.ndarray:
        """Value of constant input i; CompileError if it is computed at run time."""
        if not self.has_input(i):
            raise self.error(f"input {i} ({what}) is missing")
        if self.inputs[i] not in self._consts:
            raise self.error(f"input '{self.inputs[i]}' ({what}) must be a constant; "
                             "only compile-time constants are allowed here")
        return self._consts[self.inputs[i]]

    def const_ints(self, i: int, what: str) -> list:
        """Constant input i as Python ints; ONNX gives axes and shapes as integer tensors."""
        value = np.asarray(self.const(i, what))
        if value.dtype.kind not in "iu":
            raise self.error(f"input '{self.inputs[i]}' ({what}) is {value.dtype}; allowed: int64")
        return [int(v) for v in value.ravel()]

    def _present(self, i: int) -> str:
        if not self.has_input(i):
            raise self.error(f"input {i} is missing; it is required")
        return self.inputs[i]

    def shape(self, i: int) -> tuple:
        name = self._present(i)
        if name in self._consts:
            return tuple(int(d) for d in self._consts[name].shape)
        return self._types[name].shape

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def type(self, i: int) -> TensorType | None:
        """TensorType of run-time input i (dtype and quant included); None for a constant."""
        name = self._present(i)
        return None if name in self._consts else self._types[name]

    def operand(self, i: int) -> str:
        """IR name of input i; a constant input becomes a float32 IR constant."""
        name = self._present(i)
        if name in self._consts:
            self.result.constants[name] = np.asarray(self._consts[name], dtype=np.float32)
            self.result.types[name] = TensorType(self.shape(i))
        return name

    def output_used(self, i: int) -> bool:
        return i < len(self.outputs) and self.outputs[i] != "" and self.outputs[i] in self._used

    # ---- emitting -------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def constant(self, hint: str, value: np.ndarray, dtype: str = "fp32", quant=None) -> str:
        """A new IR constant computed at compile time (float32 unless `dtype` says, with
        `quant` for 8-bit codes); returns its name."""
        name = self.fresh(f"{self.name}/{hint}")
        self.typed_constant(name, value, dtype, quant)
        return name

    def typed_constant(self, name: str, value: np.ndarray, dtype: str, quant=None) -> str:
        """Register `value` as IR constant `name` of IR dtype `dtype` (an ONNX initializer
        keeps its name: int8 weights, int32 biases)."""
        value = np.ascontiguousarray(value, dtype=DTYPES[dtype])
        self.result.constants[name] = value
        self.result.types[name] = TensorType(tuple(int(d) for d in value.shape), dtype, quant)
        return name

    def emit(self, op: str, inputs, shape, output: str | None = None, *, out_type=None,
             **attrs) -> str:
        """Append one IR node; `output` defaults to a fresh intermediate name. The output is
        float32 unless `out_type` (a TensorType whose dtype and quant are taken) says; ops
        that move 8-bit codes (ir.CODE_MOVES) or view an int32 accumulator inherit their
        input's dtype and quant."""
        if output is None:
            output = self.fresh(f"{self.outputs[0]}/{op}")
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise self.error(f"computed output shape {shape} has an empty dimension")
        problem = shape_problem(shape)
        if problem:
            raise self.error(f"computed output {problem}")
        if out_type is None and op in CODE_MOVES:
            source = self.result.types.get(inputs[0]) or self._types.get(inputs[0])
            out_type = source if source is not None and source.dtype != "fp32" else None
        self.result.nodes.append(Node(op, self.name, tuple(inputs), (output,), attrs))
        self.result.types[output] = (TensorType(shape) if out_type is None
                                     else TensorType(shape, out_type.dtype, out_type.quant))
        return output

    def done(self) -> Converted:
        return self.result

"""What an ONNX op converter sees and returns: `NodeContext` (one NodeProto with
its parsed attributes, the types of its activation inputs and the values of its
constant inputs) and `Converted` (the IR Nodes, output TensorTypes and new constants
it produced). Converters live in onnx_ops*.py and onnx_quant.py; the walk in onnx.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from compiler.errors import CompileError
from compiler.ir import CODE_MOVES, DTYPES, Node, TensorType


@dataclass
class Converted:
    nodes: list = field(default_factory=list)        # IR Nodes, in order
    types: dict = field(default_factory=dict)        # new tensor name -> TensorType
    constants: dict = field(default_factory=dict)    # new IR constant name -> array of its IR dtype


def attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes as Python values (strings decoded, tensors as arrays)."""
    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, onnx.TensorProto):
            value = onnx.numpy_helper.to_array(value)
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8") for v in value]
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

    def shape(self, i: int) -> tuple:
        name = self.inputs[i]
        if name in self._consts:
            return tuple(int(d) for d in self._consts[name].shape)
        return self._types[name].shape

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def type(self, i: int) -> TensorType | None:
        """TensorType of run-time input i (dtype and quant included); None for a constant."""
        name = self.inputs[i]
        return None if name in self._consts else self._types[name]

    def operand(self, i: int) -> str:
        """IR name of input i; a constant input becomes a float32 IR constant."""
        name = self.inputs[i]
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
        if out_type is None and op in CODE_MOVES:
            source = self.result.types.get(inputs[0]) or self._types.get(inputs[0])
            out_type = source if source is not None and source.dtype != "fp32" else None
        self.result.nodes.append(Node(op, self.name, tuple(inputs), (output,), attrs))
        self.result.types[output] = (TensorType(shape) if out_type is None
                                     else TensorType(shape, out_type.dtype, out_type.quant))
        return output

    def done(self) -> Converted:
        return self.result

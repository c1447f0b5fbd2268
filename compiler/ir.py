"""The Graph: the target-independent tensor IR every front end produces, every
pass maps to itself, and every target lowers (contract 1 of DESIGN.md).

A Graph is a list of Nodes in topological order over named tensors. Tensors
have a static shape and dtype; constants (weights, folded shapes) hold NumPy
arrays of that dtype. Layout is NCHW for 4-D activations. `Graph.verify()` checks
the contract and names the offending node; `str(graph)` prints one node per line.

IR ops (inputs -> attrs) on float32 tensors:
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
  erf tanh sigmoid exp log sqrt reciprocal neg abs hard_swish (x)   elementwise (ONNX's ops of those names)
  gelu       (x) approximate ("none": x/2 (1 + erf(x / sqrt 2)); "tanh": its tanh approximation)
  hard_sigmoid (x) alpha beta               max(0, min(1, alpha x + beta))
  clip       (x) min max                    min(max(x, min), max) (floats)
  pow min max (a, b)   NumPy broadcasting
  reduce_mean reduce_sum reduce_max (x) axes keepdims   over `axes` (sorted, non-negative, not empty)
  layer_norm (x, scale[D], bias[D]?) axis epsilon   LayerNormalization over the D = prod(shape[axis:])
             trailing elements: (x - mean) / sqrt(var + epsilon) * scale + bias (var: mean square deviation)
  cast       (x fp32) -> y fp32 to ("fp16" or "bf16"): y = x rounded to that type (ONNX Cast between float
             types; the tensor stays float32 in the IR, so the ops after it compute in fp32)
`activation` is "none" or "relu" (a fused activation applied on the way out).
docs/ops.md lists the ONNX ops that become each IR op and the precision of each against onnxruntime.

Quantised tensors (docs/int8_datapath.md is the arithmetic; section numbers below):
dtype "uint8"/"int8" tensors hold codes and carry `Quant` (float32 scale, zero point,
axis None = per tensor); "int32" tensors (biases, integer accumulators) carry none.
An op takes its quantised meaning from its tensor types:
  conv gemm  x u8/s8, w const u8/s8 (per tensor, or per output channel: conv axis 0,
             gemm axis 1), b? const int32 [Cout] in accumulator units (scale x_s*w_s):
             QLinearConv / QLinearMatMul / QGemm (section 2): int32 acc of (x-zx)(w-zw)
             + b, requantised with F(F(F(alpha*x_s)*w_s[c])/y_s); gemm attr alpha
             (default 1.0, QGemm only). activation relu clamps the codes at y_zp.
             Output int32 (no quant, no bias) = ConvInteger/MatMulInteger's accumulator, which
             also takes s8 x u8 (onnxruntime 1.32 runs all four pairs; its QLinear* kernels do not);
             reshape and identity may view it, cast converts it to float32, nothing else reads it;
             gemm output fp32 = QGemm without y_scale, F(float(acc) * F(F(alpha*x_s)*w_s)).
  add mul    a, b, y the same 8-bit dtype, per tensor: QLinearAdd / QLinearMul (section 3).
  avgpool    QLinearAveragePool (float window sum, section 3); when the kernel covers the
             whole input with no pads it is QLinearGlobalAveragePool's integer sum
             (`is_global_pool`; onnxruntime's QLinearAveragePool falls back to it too).
  softmax    (x, table fp32[256] const) axis: QLinearSoftmax (opset-13 form, one axis):
             per row m = max(x); e = table[x - m + 255] (int8: index (x - m + 127) & 255);
             s = sequential float32 sum of e; c = floor(F(1 / y_s));
             y = clamp(rne(double(e) * c / s) + y_zp, qmin, qmax) (the quotient in double).
             The table is F(exp((i - 255 + B) * x_s)), B = max(0, logf(FLT_MAX / D) - 5) / x_s,
             D the axis length (contrib_ops/cpu/quantization/qlinear_softmax.cc).
  maxpool reshape transpose identity concat on 8-bit codes move codes: every input and
             the output share dtype and quant (QLinearConcat with differing input
             parameters becomes lookup(s) first).
  quantize   (x fp32) -> y 8-bit: QuantizeLinear with y's quant (per tensor or along axis).
  dequantize (x 8-bit) -> y fp32: DequantizeLinear with x's quant.
  lookup     (x 8-bit, table[256] const of y's dtype) y = table[x as uint8 bits]
             (QLinearSigmoid / QLinearLeakyRelu / QLinearConcat requantisation tables).
  conv gemm  with dynamic x (section 9): (x u8 dynamic, w, x_zero_point int32[] from the same
             dynamic_quantize) -> int32 accumulator of (x - x_zero_point)(w - w_zp) (ConvInteger /
             MatMulInteger); w const u8/s8 with a static Quant (scale unused, 1.0), per tensor
             (gemm also per column, axis 1); no bias, no activation.
  dynamic_quantize (x fp32) -> (y u8 dynamic, y_scale fp32[], y_zero_point int32[]):
             DynamicQuantizeLinear (section 9.3): per-tensor scale and zero point from min/max of
             the whole of x (range widened to contain 0), y = QuantizeLinear with them. y's Quant
             is dynamic (`Quant.dynamic`: no scale or zero point at compile time); a dynamic Quant
             may appear only on this output and be read only by a conv/gemm as above.
  cast       (x int32) -> y fp32 of x's shape: float32(x), rounded half to even (ONNX Cast).
relu, sub, div, affine and lrn are float32 only; add/sub/mul/div broadcast shape-() tensors too.
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
    "lrn": (1, 1), "softmax": (1, 2), "concat": (1, None), "transpose": (1, 1),
    "reshape": (1, 1), "identity": (1, 1), "quantize": (1, 1), "dequantize": (1, 1),
    "lookup": (2, 2), "dynamic_quantize": (1, 1), "cast": (1, 1),
    **{op: (1, 1) for op in ("erf", "tanh", "sigmoid", "exp", "log", "sqrt", "reciprocal", "neg", "abs", "gelu",
                             "hard_sigmoid", "hard_swish", "clip", "reduce_mean", "reduce_sum", "reduce_max")},
    "pow": (2, 2), "min": (2, 2), "max": (2, 2), "layer_norm": (2, 3),
}
REDUCTIONS = ("reduce_mean", "reduce_sum", "reduce_max")
FLOAT_CASTS = ("fp16", "bf16")      # the `to` of a cast between float types
# op -> number of outputs (every op not listed has one)
IR_OUTPUTS = {"dynamic_quantize": 3}
# IR dtype -> NumPy dtype of its values
DTYPES = {"fp32": np.float32, "uint8": np.uint8, "int8": np.int8, "int32": np.int32}
QUANT_DTYPES = ("uint8", "int8")          # 8-bit codes, always with a Quant
# The largest tensor the compiler accepts: 2**31 elements (8 GiB of float32). The simulator holds
# every tensor in one host-memory DRAM image (Program.dram_image), and the largest tensor of the
# bundled models (VGG-19's fc6 weight, 25088 x 4096 = 1.0e8) is 20x smaller, so a bigger shape is
# a damaged or absurd file: front ends refuse it before allocating anything of that size.
MAX_TENSOR_ELEMENTS = 2 ** 31


def shape_problem(shape) -> str | None:
    """Why a tensor of `shape` cannot exist in a Graph (a negative dim, or more elements than
    MAX_TENSOR_ELEMENTS), or None."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        return f"shape {dims} has a negative dimension"
    if math.prod(dims) > MAX_TENSOR_ELEMENTS:
        return (f"shape {dims} has {math.prod(dims):.3g} elements; the limit is {MAX_TENSOR_ELEMENTS:,} "
                "(compiler.ir.MAX_TENSOR_ELEMENTS)")
    return None


@dataclass(frozen=True)
class Quant:
    """Quantisation parameters of an 8-bit tensor: real = (code - zero_point) * scale.
    scale holds float32 values (as Python floats, exactly), one per slice along `axis`,
    or a single one when axis is None (per tensor). A dynamic Quant (scale and zero_point
    empty, axis None) marks codes whose per-tensor parameters are computed at run time
    (dynamic_quantize's y)."""
    scale: tuple
    zero_point: tuple
    axis: int | None = None

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    @property
    def dynamic(self) -> bool:
        return len(self.scale) == 0

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float32)

    def zero_point_array(self) -> np.ndarray:
        return np.asarray(self.zero_point, dtype=np.int32)

    def __str__(self) -> str:
        if self.dynamic:
            return "dynamic"
        if self.axis is None:
            return f"s={self.scale[0]:.6g} zp={self.zero_point[0]}"
        return f"axis={self.axis} s[{len(self.scale)}] zp[{len(self.zero_point)}]"


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: str = "fp32"
    quant: Quant | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def quantised(self) -> bool:
        return self.dtype in QUANT_DTYPES


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
            if self.tensors[name].quant is not None and self.tensors[name].quant.dynamic:
                raise CompileError(f"graph {self.name}: input '{name}' has a dynamic Quant; only "
                                   "dynamic_quantize produces one")
        for name, ttype in self.tensors.items():
            _check_tensor_type(f"graph {self.name}: tensor '{name}'", ttype)
        for name, value in self.constants.items():
            _check_constant(f"graph {self.name}: constant '{name}'", self.tensors.get(name), value)
        for node in self.nodes:
            where = f"graph {self.name}: node '{node.name}' ({node.op})"
            if node.op not in IR_OPS:
                raise CompileError(f"{where}: not an IR op; IR ops: {', '.join(IR_OPS)}")
            lo, hi = IR_OPS[node.op]
            if len(node.inputs) < lo or (hi is not None and len(node.inputs) > hi):
                raise CompileError(f"{where}: takes {lo}..{hi} inputs, got {len(node.inputs)}")
            if len(node.outputs) != IR_OUTPUTS.get(node.op, 1):
                raise CompileError(f"{where}: has {IR_OUTPUTS.get(node.op, 1)} output(s), "
                                   f"got {len(node.outputs)}")
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
            _check_node_types(self, node, where)
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
    text = f"{t.dtype}[{'x'.join(str(d) for d in t.shape)}]"
    return f"{text}{{{t.quant}}}" if t.quant is not None else text


def is_global_pool(graph: Graph, node: Node) -> bool:
    """An avgpool whose kernel covers the whole input without padding (on 8-bit codes:
    QLinearGlobalAveragePool's integer path, qlinear_pool.cc `fallback_to_global`)."""
    return (node.op == "avgpool" and tuple(node.attrs["kernel"]) == graph.tensors[node.inputs[0]].shape[2:]
            and not any(node.attrs["pads"]))


# ---- dtype and quantisation checks (see the module docstring for the rules) -----------

def _check_tensor_type(where: str, t: TensorType) -> None:
    if t.dtype not in DTYPES:
        raise CompileError(f"{where}: dtype {t.dtype!r}; allowed: {', '.join(DTYPES)}")
    problem = shape_problem(t.shape)
    if problem:
        raise CompileError(f"{where}: {problem}")
    if t.quantised != (t.quant is not None):
        raise CompileError(f"{where}: {t.dtype} tensors {'need' if t.quantised else 'take no'} "
                           "quantisation parameters")
    q = t.quant
    if q is None:
        return
    if q.dynamic:
        if q.zero_point or q.axis is not None or t.dtype != "uint8":
            raise CompileError(f"{where}: a dynamic Quant has no scales, no zero points and no axis, "
                               f"on uint8 codes")
        return
    count = 1 if q.axis is None else (t.shape[q.axis] if 0 <= q.axis < len(t.shape) else -1)
    if count < 0:
        raise CompileError(f"{where}: quantisation axis {q.axis} is outside rank {len(t.shape)}")
    if len(q.scale) != count or len(q.zero_point) != count:
        raise CompileError(f"{where}: {len(q.scale)} scales and {len(q.zero_point)} zero points; "
                           f"axis {q.axis} needs {count} of each")
    scale = q.scale_array()
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise CompileError(f"{where}: scales must be finite and > 0, got {scale.tolist()[:4]}")
    info = np.iinfo(DTYPES[t.dtype])
    if any(not info.min <= z <= info.max for z in q.zero_point):
        raise CompileError(f"{where}: zero points must lie in {info.min}..{info.max} for {t.dtype}")


def _check_constant(where: str, t: TensorType | None, value) -> None:
    if t is None:
        raise CompileError(f"{where} has no type")
    if t.quant is not None and t.quant.dynamic:
        raise CompileError(f"{where}: a constant cannot have a dynamic Quant")
    if not isinstance(value, np.ndarray) or value.dtype != DTYPES[t.dtype] or value.shape != t.shape:
        got = f"{getattr(value, 'dtype', type(value).__name__)}{list(getattr(value, 'shape', ()))}"
        raise CompileError(f"{where}: value is {got}, its type says {_fmt_type(t)}")


CODE_MOVES = ("maxpool", "reshape", "transpose", "identity", "concat")


def _check_node_types(graph: Graph, node: Node, where: str) -> None:
    """The dtype/quant rules of the module docstring for one node."""
    ins = [graph.tensors[name] for name in node.inputs]
    out = graph.tensors[node.outputs[0]]

    def fail(rule: str):
        types = ", ".join(_fmt_type(t) for t in ins)
        raise CompileError(f"{where}: inputs ({types}) -> {_fmt_type(out)}: {rule}")

    if any(_is_dynamic(t) for t in ins[1:]) or (ins and _is_dynamic(ins[0]) and node.op not in ("conv", "gemm")):
        fail("codes with a dynamic Quant may only be read as x by a conv/gemm")
    if node.op != "dynamic_quantize" and _is_dynamic(out):
        fail("only dynamic_quantize produces codes with a dynamic Quant")
    if node.op == "dynamic_quantize":
        y, scale, zero_point = (graph.tensors[name] for name in node.outputs)
        if not (ins[0].dtype == "fp32" and y.dtype == "uint8" and _is_dynamic(y) and y.shape == ins[0].shape
                and scale == TensorType(()) and zero_point == TensorType((), "int32")):
            fail("dynamic_quantize maps float32 x to (uint8 codes of x's shape with a dynamic Quant, "
                 "fp32[] scale, int32[] zero point)")
        return
    if node.op == "cast":
        source = "fp32" if node.attrs.get("to") in FLOAT_CASTS else "int32"
        if ins[0].dtype != source or out.dtype != "fp32" or out.shape != ins[0].shape:
            fail(f"cast maps an int32 tensor to float32 of the same shape, or (to {' or '.join(FLOAT_CASTS)}) "
                 "a float32 one")
        return
    if node.op in REDUCTIONS or node.op == "layer_norm":
        _check_shape_attrs(graph, node, ins, out, fail)
    if all(t.dtype == "fp32" for t in ins + [out]):
        if node.op in ("quantize", "dequantize", "lookup") or (node.op == "softmax" and len(ins) > 1):
            fail(f"{node.op} needs 8-bit codes")
        return
    if node.op in ("conv", "gemm") and _is_dynamic(ins[0]):
        _check_dynamic_linear(graph, node, ins, out, fail)
    elif node.op in ("conv", "gemm"):
        _check_linear(graph, node, ins, out, fail)
    elif node.op in ("add", "mul", "avgpool") or (node.op == "softmax" and len(ins) == 2):
        data = ins if node.op != "softmax" else ins[:1]
        if not (out.quantised and out.quant.per_tensor
                and all(t.dtype == out.dtype and t.quant is not None and t.quant.per_tensor for t in data)):
            fail("inputs and output must be 8-bit codes of one dtype, quantised per tensor")
        if node.op == "softmax":
            _check_table(graph, node.inputs[1], "float32", fail)
    elif node.op in ("reshape", "identity") and out.dtype == "int32" and ins[0].dtype == "int32":
        return                                    # a view of an int32 accumulator
    elif node.op in CODE_MOVES:
        if any(t.dtype != out.dtype or t.quant != out.quant for t in ins) or not out.quantised:
            fail("moves 8-bit codes, so every input and the output need the same dtype and quant")
    elif node.op == "quantize":
        if ins[0].dtype != "fp32" or not out.quantised:
            fail("quantize maps float32 to 8-bit codes")
    elif node.op == "dequantize":
        if not ins[0].quantised or out.dtype != "fp32":
            fail("dequantize maps 8-bit codes to float32")
    elif node.op == "lookup":
        if not (ins[0].quantised and out.quantised):
            fail("lookup maps 8-bit codes to 8-bit codes")
        _check_table(graph, node.inputs[1], out.dtype, fail)
    else:
        fail(f"{node.op} takes float32 only")


def _check_shape_attrs(graph: Graph, node: Node, ins, out, fail) -> None:
    """A reduction's axes and keepdims fit its input and output shapes; a layer_norm's axis, scale and bias
    (constants of the D normalised elements) fit its input."""
    shape = ins[0].shape
    if node.op == "layer_norm":
        axis, size = node.attrs.get("axis", -1), 0
        if isinstance(axis, int) and 0 <= axis < len(shape):
            size = math.prod(shape[axis:])
        if size == 0 or out.shape != shape or any(t.shape != (size,) for t in ins[1:]) or \
                any(name not in graph.constants for name in node.inputs[1:]):
            fail(f"layer_norm takes axis in 0..{len(shape) - 1} (axis={axis}) and constant scale and bias of "
                 f"the {size} elements it normalises, and keeps x's shape")
        return
    axes, keep = tuple(node.attrs.get("axes", ())), node.attrs.get("keepdims")
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    if not axes or list(axes) != sorted(set(axes)) or axes[0] < 0 or axes[-1] >= len(shape) or keep not in (0, 1) \
            or out.shape != kept:
        fail(f"{node.op} takes sorted distinct axes of x (axes={list(axes)}), keepdims 0 or 1, and an output of "
             f"the kept shape {list(kept)}")


def _is_dynamic(t: TensorType) -> bool:
    return t.quant is not None and t.quant.dynamic


def _check_dynamic_linear(graph: Graph, node: Node, ins, out, fail) -> None:
    """conv/gemm on dynamic_quantize's codes: (x, w, x_zero_point) -> int32 accumulator."""
    if len(ins) != 3:
        fail("a conv/gemm on dynamic codes takes (x, w, x_zero_point)")
    _, w, zp = ins
    source = next((n for n in graph.nodes if node.inputs[0] in n.outputs), None)
    if source is None or source.op != "dynamic_quantize" or source.outputs[0] != node.inputs[0]:
        fail("dynamic codes must come straight from a dynamic_quantize")
    if node.inputs[2] != source.outputs[2] or zp != TensorType((), "int32"):
        fail(f"x_zero_point must be '{source.outputs[2]}', the int32[] zero point of the "
             "dynamic_quantize that produced x")
    if not w.quantised or _is_dynamic(w) or node.inputs[1] not in graph.constants:
        fail("a conv/gemm on dynamic codes needs constant 8-bit weights with a static Quant")
    if w.dtype not in ("uint8", "int8"):
        fail("weights must be uint8 or int8")
    if w.quant.axis not in (None, 1) or (node.op == "conv" and w.quant.axis is not None):
        fail("weights must be quantised per tensor (a gemm also per column, axis 1)")
    if out.dtype != "int32" or node.attrs.get("activation", "none") != "none":
        fail("a conv/gemm on dynamic codes outputs the int32 accumulator, without activation")


def _check_table(graph: Graph, name: str, dtype: str, fail) -> None:
    t = graph.tensors[name]
    wanted = "fp32" if dtype == "float32" else dtype
    if name not in graph.constants or t.shape != (256,) or t.dtype != wanted:
        fail(f"'{name}' must be a constant {wanted}[256] table")


def _check_linear(graph: Graph, node: Node, ins, out, fail) -> None:
    x, w = ins[0], ins[1]
    if not (x.quantised and x.quant.per_tensor):
        fail("quantised conv/gemm needs 8-bit activations quantised per tensor")
    if not w.quantised or node.inputs[1] not in graph.constants:
        fail("quantised conv/gemm needs constant 8-bit weights")
    pairs = (("uint8", "uint8"), ("uint8", "int8"), ("int8", "int8")) + (
        (("int8", "uint8"),) if out.dtype == "int32" else ())
    if (x.dtype, w.dtype) not in pairs:
        fail("activation x weight dtypes must be u8 x u8, u8 x s8 or s8 x s8 (onnxruntime's kernels; "
             "an int32 accumulator output also s8 x u8)")
    channel_axis = 0 if node.op == "conv" else 1
    if w.quant.axis not in (None, channel_axis):
        fail(f"weights must be quantised per tensor or along axis {channel_axis} (output channels)")
    if node.op == "conv" and len(set(w.quant.zero_point)) != 1:
        fail("per-channel weight zero points of a conv must all be equal (qlinearconv.cc)")
    channels = w.shape[channel_axis]
    if len(ins) > 2 and (ins[2].dtype != "int32" or ins[2].shape != (channels,)
                         or node.inputs[2] not in graph.constants):
        fail(f"the bias must be a constant int32[{channels}]")
    if out.quantised:
        if out.dtype != x.dtype or not out.quant.per_tensor:
            fail("the output must be codes of the activations' dtype, quantised per tensor")
    elif out.dtype == "int32":
        if len(ins) > 2 or node.attrs.get("activation", "none") != "none":
            fail("an int32 accumulator output takes no bias and no activation")
    elif node.op != "gemm" or node.attrs.get("activation", "none") != "none":
        fail("only a gemm (QGemm) may output float32 from 8-bit inputs, without activation")


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

"""What every target's lowering of a conv or Gemm layer shares: the layer as GEMMs (M output rows,
K reduction, N output channels per group, G groups; weights laid out at compile time as [G, K, N]
matrices), its descriptors (compiler.program CONV_FIELDS, one per group, consecutive), the integer
datapath's fields (zero points, the host's requantisation scales; docs/int8_datapath.md), the check
that a spec's datapath can run the graph, and `emit_gemm_tiles`: the layer as gemm_tile
instructions (output tiles DRAM to DRAM), for a target whose on-chip staging lives in its timing
model rather than in the Program's memories.

In: a Graph node (op conv or gemm), the MemoryPlan, the spec's DatatypeSpec. Out: a GemmLayer (the
placed weights and biases, descriptor fields) and, from emit_gemm_tiles, instruction rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import CompileError
from compiler.ir import Graph, Node
from compiler.program import ACTIVATION_ID, CONV_FIELDS, DTYPE_CODE, ELEMENT_BYTES, REQUANT_ID
from compiler.targets.memory_plan import MemoryPlan

INT8 = ("uint8", "int8")


def check_datapath(graph: Graph, spec, integer_example: str, float_example: str) -> bool:
    """Whether the graph is quantised; a CompileError when the spec's GEMM datapath cannot run it
    (the examples: bundled specs with an integer and a float datapath, named in the errors)."""
    quantised = next((n for n in graph.nodes
                      if any(graph.tensors[t].dtype != "fp32" for t in (*n.inputs, *n.outputs))), None)
    integer = spec.integer_datapath
    if quantised is not None and not integer:
        raise CompileError(
            f"node '{quantised.name}' ({quantised.op}): this model is quantised (integer tensors), and "
            f"spec '{spec.name}' has a {spec.datatypes.input} datapath; run it on an integer datapath "
            f"(datatypes input/weight int8 or uint8, accumulator int32: {integer_example})")
    if integer:
        float_layer = next((n for n in graph.nodes if n.op in ("conv", "gemm")
                            and graph.tensors[n.inputs[0]].dtype not in INT8), None)
        if float_layer is not None and quantised is not None:
            raise CompileError(
                f"node '{float_layer.name}' ({float_layer.op}): this quantised model runs the layer in float "
                "(a QDQ group the front end cannot fuse, such as int8 activations with uint8 weights; "
                "docs/int8_datapath.md section 4), and an integer datapath has no float GEMM; quantise with "
                "int8 weights (dse quantize --weight-type int8, the default) or uint8 activations")
        if float_layer is not None:
            raise CompileError(
                f"node '{float_layer.name}' ({float_layer.op}): spec '{spec.name}' has an integer "
                f"({spec.datatypes.input} x {spec.datatypes.weight}) datapath and this layer is float; "
                "quantise the model first (dse quantize MODEL --out MODEL.int8.onnx, or a workload "
                f"with `quantize:`), or use a float spec such as {float_example}")
    return quantised is not None


def plan_types(quantised: bool, datatypes) -> dict:
    """The MemoryPlan's float types: the spec's, or fp32 for the float tensors around a quantised graph's
    quantize/dequantize (the vector unit's)."""
    if quantised:
        return {"input": "fp32", "activation": "fp32", "weight": "fp32"}
    return {"input": datatypes.input, "activation": datatypes.output, "weight": datatypes.weight}


def dynamic(graph: Graph, node: Node) -> bool:
    """Whether a conv/gemm's input is dynamically quantised (its third input is the run-time zero point)."""
    quant = graph.tensors[node.inputs[0]].quant
    return quant is not None and quant.dynamic


def geometry(graph: Graph, node: Node):
    """(descriptor fields common to all groups, groups, M, K, Ng, weight matrix [G,K,Ng], bias)."""
    out_shape = graph.tensors[node.outputs[0]].shape
    w = graph.constants[node.inputs[1]]
    bias = graph.constants[node.inputs[2]] if len(node.inputs) > 2 and not dynamic(graph, node) else None
    if node.op == "gemm":
        m, k = graph.tensors[node.inputs[0]].shape
        n = w.shape[1]
        fields = dict(n=m, c=k, h=1, w=1, kh=1, kw=1, sh=1, sw=1, pt=0, pl=0, dh=1, dw=1, oh=1, ow=1,
                      cin_g=k, cout=n)
        return fields, 1, m, k, n, w[None], bias
    nb, c, h, wd = graph.tensors[node.inputs[0]].shape
    cout, cin_g, kh, kw = w.shape
    groups = node.attrs.get("group", 1)
    sh, sw = node.attrs["strides"]
    pt, pl, _, _ = node.attrs["pads"]
    dh, dw = node.attrs["dilations"]
    oh, ow = out_shape[2], out_shape[3]
    ng = cout // groups
    wmat = w.reshape(groups, ng, cin_g * kh * kw).transpose(0, 2, 1)
    fields = dict(n=nb, c=c, h=h, w=wd, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pl=pl, dh=dh, dw=dw, oh=oh,
                  ow=ow, cin_g=cin_g, cout=cout)
    return fields, groups, nb * oh * ow, cin_g * kh * kw, ng, wmat, bias


def integer_fields(graph: Graph, node: Node, plan: MemoryPlan, fixed_point: bool) -> tuple:
    """(descriptor fields, bytes per output channel fetched with the bias) of a quantised conv/gemm
    (docs/int8_datapath.md section 2): zero points, the code types, and the per-output-channel
    weight zero points and fp32 requantisation scales placed in DRAM."""
    tx, tw, ty = (graph.tensors[name] for name in (node.inputs[0], node.inputs[1], node.outputs[0]))
    cout = tw.shape[0 if node.op == "conv" else 1]
    w_zp = plan.constant(f"{node.name}::weight_zero_point",
                         np.broadcast_to(tw.quant.zero_point_array(), (cout,)).copy(), tw.dtype)
    if dynamic(graph, node):          # the input's zero point is computed at run time (dynamic_quantize)
        fields = dict(x_zp=0, x_zp_addr=plan.addr(node.inputs[2]))
    else:
        fields = dict(x_zp=tx.quant.zero_point[0], x_zp_addr=-1)
    fields.update(w_zp=w_zp.offset, x_code=DTYPE_CODE[tx.dtype], w_code=DTYPE_CODE[tw.dtype])
    if ty.dtype == "int32":
        return dict(fields, requant=REQUANT_ID["int32"]), ELEMENT_BYTES[tw.dtype]
    f32 = np.float32
    scale = (f32(node.attrs.get("alpha", 1.0)) * f32(tx.quant.scale[0])) * np.broadcast_to(
        tw.quant.scale_array(), (cout,))                     # float32 products, onnxruntime's order
    if ty.dtype == "fp32":
        requant = REQUANT_ID["scaled"]
    else:
        scale, requant = scale / f32(ty.quant.scale[0]), REQUANT_ID["codes"]
        fields["y_zp"] = ty.quant.zero_point[0]
    if fixed_point and requant == REQUANT_ID["codes"]:
        region = plan.constant(f"{node.name}::requant_fixed_point", fixed_point_multipliers(scale), "int32")
        return dict(fields, requant=REQUANT_ID["fixed_point"], scale=region.offset), ELEMENT_BYTES[tw.dtype] + 8
    region = plan.constant(f"{node.name}::requant_scale", scale.astype(f32), "fp32")
    return dict(fields, requant=requant, scale=region.offset), ELEMENT_BYTES[tw.dtype] + ELEMENT_BYTES["fp32"]


def fixed_point_multipliers(scale: np.ndarray) -> np.ndarray:
    """int32 [channels, 2]: each real multiplier as a Q31 fraction M in [2^30, 2^31) and a power-of-two
    exponent e, scale = M 2^(e - 31) (gemmlowp's QuantizeMultiplier; TFLite's quantization_util.cc):
    frexp in double, the mantissa rounded to 31 bits (half away from zero), a carry renormalised.
    A zero scale is M = 0."""
    mantissa, exponent = np.frexp(np.asarray(scale, np.float64))
    q = np.round(mantissa * 2.0 ** 31).astype(np.int64)   # exact: a float32 scale has 24 significant bits
    carry = q == 2 ** 31
    q[carry] //= 2
    exponent = exponent + carry
    if np.any(exponent > 30) or np.any(exponent < -31):
        raise CompileError(f"requantisation scale {float(np.max(scale)):g} is outside the fixed-point "
                           "requantiser's range 2^-32 .. 2^30")
    return np.stack([q, exponent], axis=1).astype(np.int32)


@dataclass(frozen=True)
class GemmLayer:
    """A conv/gemm node as G GEMMs [M,K] x [K,N], its data placed in DRAM."""
    groups: int
    m: int
    k: int
    n: int                 # output channels per group
    fields: dict           # descriptor fields (CONV_FIELDS) of group 0; group g adds cin_off, cout_off
    integer: dict          # the integer datapath's fields ({} on a float layer)
    channel_bytes: int     # bytes per output channel fetched with the bias (integer: zero point, scale)
    weights: object        # Region of the [G, K, N] weight matrices
    bias: int              # byte address of the [cout] biases (accumulator type), -1: none
    x_type: str            # element type of the input in DRAM
    w_type: str            # of the weights
    out_type: str          # of the output

    def group_fields(self, g: int) -> dict:
        """Group g's descriptor fields: its input channels g*cin_g.., its filters g*n.."""
        return dict(self.fields, cin_off=g * self.fields["cin_g"], cout_off=g * self.n)

    @property
    def datapath_text(self) -> str:
        """e.g. 'uint8 x int8 -> int32 acc -> uint8 (float requantizer)'; '' on a float layer."""
        if not self.integer:
            return ""
        how = {REQUANT_ID["codes"]: " (float requantizer)", REQUANT_ID["fixed_point"]: " (fixed-point requantizer)",
               REQUANT_ID["scaled"]: " (scaled)"}.get(self.integer["requant"], "")
        return f"{self.x_type} x {self.w_type} -> int32 acc -> {self.out_type}{how}"


def prepare(graph: Graph, node: Node, plan: MemoryPlan, datatypes) -> GemmLayer:
    """Place a conv/gemm's data (integer fields first, then weights as [G,K,N] and the bias in the
    accumulator type) and build its descriptor fields."""
    fields, groups, m, k, ng, wmat, bias = geometry(graph, node)
    integer, channel_bytes = ({}, 0) if graph.tensors[node.inputs[0]].dtype == "fp32" else \
        integer_fields(graph, node, plan, datatypes.requantize == "fixed_point")
    w_type = graph.tensors[node.inputs[1]].dtype
    weights = plan.constant(node.inputs[1] + "::gemm_weights", wmat, None if w_type == "fp32" else w_type)
    b_addr = plan.addr(node.inputs[2], datatypes.accumulator) if bias is not None else -1
    x_type, out_type = plan.region(node.inputs[0]).dtype, plan.region(node.outputs[0]).dtype
    fields = {**{f: 0 for f in CONV_FIELDS}, "x_zp_addr": -1, **fields, **integer, "x": plan.addr(node.inputs[0]),
              "out": plan.addr(node.outputs[0]), "activation": ACTIVATION_ID[node.attrs.get("activation", "none")],
              "weights": weights.offset, "bias": b_addr, "ng": ng}
    return GemmLayer(groups=groups, m=m, k=k, n=ng, fields=fields, integer=integer, channel_bytes=channel_bytes,
                     weights=weights, bias=b_addr, x_type=x_type, w_type=weights.dtype, out_type=out_type)


def emit_gemm_tiles(builder, layer: GemmLayer, tiles, index: int, deps, engine: str | None = None,
                    cost=None) -> list:
    """The layer as gemm_tile rows, one per (m0, tm, n0, tn) in `tiles` (each covering that tile of
    every group), on `engine`; each row depends on `deps`. cost(m0, tm, n0, tn) -> (dram_bytes,
    onchip_bytes) gives the traffic a target records per row (default: the operands read once and
    the output written once). Their rows."""
    desc = builder.descriptor("gemm_tile", layer.fields)
    x_b, w_b, out_b = (ELEMENT_BYTES[t] for t in (layer.x_type, layer.w_type, layer.out_type))
    codes = {"src_dtype": DTYPE_CODE[layer.x_type], "w_dtype": DTYPE_CODE[layer.w_type],
             "dst_dtype": DTYPE_CODE[layer.out_type]}
    rows = []
    for m0, tm, n0, tn in tiles:
        g = layer.groups
        dram, onchip = cost(m0, tm, n0, tn) if cost else (
            g * (tm * layer.k * x_b + layer.k * tn * w_b + tm * tn * out_b), 0)
        rows.append(builder.emit("gemm_tile", index, dict(desc=desc, m0=m0, tm=tm, n0=n0, tn=tn, **codes),
                                 deps=deps, dram_bytes=dram, onchip_bytes=onchip, work=g * tm * tn * layer.k,
                                 engine=engine))
    return rows

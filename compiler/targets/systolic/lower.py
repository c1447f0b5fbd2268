"""Systolic-array target: lowers a Graph to a Program for a SystolicSpec.

Conv and Gemm become GEMMs [M,K] x [K,N] (M = output pixels, K = Cin/g*kh*kw,
N = Cout/g, one GEMM per group). Conv uses implicit im2col: the DMA engine reads
the input window rows a tile needs and an on-chip im2col unit expands them into
the input scratchpad, so no im2col matrix ever exists in DRAM (as in Gemmini's
hardware im2col; Genc et al., DAC 2021). Weights are laid out at compile time as
[G, K, N] matrices. Each output tile: bias preloaded into the accumulator, then
for each K tile load A and W (double-buffered where capacity allows) and
accumulate, then store through the activation unit (tile_loops.py emits these
loops). Every other op runs on the vector unit (compiler/targets/vector.py). Tile
shapes come from tiling.py.

Element types follow the spec's `datatypes`: graph inputs in DRAM and the input
scratchpad hold `input`, weights (in DRAM, converted at compile time, and in the
weight scratchpad) `weight`, the accumulator and the GEMM biases `accumulator`,
and every stored layer output (activations and graph outputs) `output`.

A spec with an integer datapath (8-bit `input` and `weight`, int32 `accumulator`)
runs quantised graphs (docs/int8_datapath.md): tensors keep the IR's types (uint8
or int8 codes, int32 biases; the fp32 tensors around quantize/dequantize stay
fp32 on the vector unit). A quantised conv/gemm is an integer GEMM: codes in the
scratchpads (the array subtracts the zero points, so uint8 and int8 codes both
run), int32 accumulation from the int32 bias, and store_tile requantises with the
per-output-channel scale F(F(F(alpha * x_scale) * w_scale[c]) / y_scale) the
host computes here, as onnxruntime's QLinearConv/QLinearMatMul/QGemm do.
"""
from __future__ import annotations

import numpy as np

from compiler.errors import CompileError
from compiler.ir import Graph, Node, node_macs
from compiler.mapping import Mapping
from compiler.program import (ACTIVATION_ID, CONV_FIELDS, DTYPE_CODE, ELEMENT_BYTES, MATRIX_A, MATRIX_ACC, MATRIX_B,
                              REQUANT_ID, Layer, Memory, Program, ProgramBuilder, dram_memory)
from compiler.targets.systolic.spec import SystolicSpec
from compiler.targets import vector
from compiler.targets.memory_plan import VIEW_OPS, MemoryPlan
from compiler.targets.systolic.tile_loops import emit_gemm, operand_types
from compiler.targets.systolic.tiling import Budget, choose_tiling


def budget_of(spec: SystolicSpec) -> Budget:
    mem, dt = spec.memory, spec.datatypes
    return Budget(rows=spec.array.rows, cols=spec.array.cols, dataflow=spec.array.dataflow,
                  input_bytes=int(mem.input_scratchpad_kib * 1024), weight_bytes=int(mem.weight_scratchpad_kib * 1024),
                  acc_bytes=int(mem.accumulator_kib * 1024), dram_bytes_per_cycle=spec.dram_bytes_per_cycle,
                  dram_latency=mem.dram_latency_cycles, double_buffer=mem.double_buffer,
                  input_elem_bytes=ELEMENT_BYTES[dt.input], weight_elem_bytes=ELEMENT_BYTES[dt.weight],
                  acc_elem_bytes=ELEMENT_BYTES[dt.accumulator], macs_per_pe_cycle=spec.array.macs_per_pe_cycle)


INT8 = ("uint8", "int8")


def memories(spec: SystolicSpec, dram_bytes: int) -> tuple:
    """The Program's memories: DRAM, then the scratchpads that hold the array's A (input) and B
    (weight) operands and the accumulator it adds into, at the ids the matrix opcodes address."""
    budget, dt = budget_of(spec), spec.datatypes
    return (dram_memory(dram_bytes),
            Memory(MATRIX_A, "input_scratchpad", 1, dt.input, budget.input_bytes),
            Memory(MATRIX_B, "weight_scratchpad", 1, dt.weight, budget.weight_bytes),
            Memory(MATRIX_ACC, "accumulator", 1, dt.accumulator, budget.acc_bytes))


def _check_datapath(graph: Graph, spec: SystolicSpec) -> bool:
    """Whether the graph is quantised; a CompileError when the spec's matrix engine cannot run it."""
    quantised = next((n for n in graph.nodes
                      if any(graph.tensors[t].dtype != "fp32" for t in (*n.inputs, *n.outputs))), None)
    integer = spec.integer_datapath
    if quantised is not None and not integer:
        raise CompileError(
            f"node '{quantised.name}' ({quantised.op}): this model is quantised (integer tensors), and "
            f"spec '{spec.name}' has a {spec.datatypes.input} datapath; run it on an integer datapath "
            "(datatypes input/weight int8 or uint8, accumulator int32: hwspecs/systolic_int8.yaml)")
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
                "with `quantize:`), or use a float spec such as hwspecs/systolic.yaml")
    return quantised is not None


def lower(graph: Graph, spec: SystolicSpec) -> Program:
    quantised = _check_datapath(graph, spec)
    dt = spec.datatypes
    # float tensors of a quantised graph (before quantize, after dequantize) are the vector unit's fp32
    floats = ({"input": "fp32", "activation": "fp32", "weight": "fp32"} if quantised else
              {"input": dt.input, "activation": dt.output, "weight": dt.weight})
    plan = MemoryPlan(graph, floats)
    builder = ProgramBuilder()
    budget = budget_of(spec)
    ready: dict = {}            # tensor name -> index of the last instruction writing it
    layers = []
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            ready[node.outputs[0]] = ready.get(node.inputs[0], -1)
            continue
        index = len(layers)
        if node.op in ("conv", "gemm"):
            mapping = _lower_gemm_layer(graph, node, plan, builder, budget, dt, ready, index)
        else:
            vector.lower(graph, node, plan, builder, ready, index)
            mapping = Mapping(unit="vector")     # one pass over its tensors: no tiling, no dataflow
        layers.append(Layer(node.name, node.op, node_macs(graph, node), mapping))
    ins, desc_int, desc_float = builder.finish()
    program = Program(target="systolic", spec=spec, regions=plan.regions, memories=memories(spec, plan.size),
                      constants=plan.chunks, instructions=ins, desc_int=desc_int,
                      desc_float=desc_float, layers=layers, inputs=list(graph.inputs),
                      outputs=list(graph.outputs))
    return program.verify(bounds=False)   # addresses: checked by a functional simulate


def _gemm_geometry(graph: Graph, node: Node):
    """(descriptor fields common to all groups, groups, M, K, Ng, weight matrix [G,K,Ng], bias)."""
    out_shape = graph.tensors[node.outputs[0]].shape
    w = graph.constants[node.inputs[1]]
    bias = graph.constants[node.inputs[2]] if len(node.inputs) > 2 and not _dynamic(graph, node) else None
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


def _dynamic(graph: Graph, node: Node) -> bool:
    """Whether a conv/gemm's input is dynamically quantised (its third input is the run-time zero point)."""
    quant = graph.tensors[node.inputs[0]].quant
    return quant is not None and quant.dynamic


def _integer_fields(graph: Graph, node: Node, plan: MemoryPlan, fixed_point: bool) -> tuple:
    """(descriptor fields, bytes per output channel fetched with the bias) of a quantised conv/gemm
    (docs/int8_datapath.md section 2): zero points, the code types, and the per-output-channel
    weight zero points and fp32 requantisation scales placed in DRAM."""
    tx, tw, ty = (graph.tensors[name] for name in (node.inputs[0], node.inputs[1], node.outputs[0]))
    cout = tw.shape[0 if node.op == "conv" else 1]
    w_zp = plan.constant(f"{node.name}::weight_zero_point",
                         np.broadcast_to(tw.quant.zero_point_array(), (cout,)).copy(), tw.dtype)
    if _dynamic(graph, node):          # the input's zero point is computed at run time (dynamic_quantize)
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


def _lower_gemm_layer(graph, node, plan, builder, budget, dt, ready, index) -> Mapping:
    fields, groups, m, k, ng, wmat, bias = _gemm_geometry(graph, node)
    geom = (fields["kh"] * fields["kw"], fields["oh"], fields["ow"], fields["sh"],
            (fields["kh"] - 1) * fields["dh"] + 1, fields["h"], fields["w"])
    integer, channel_bytes = ({}, 0) if graph.tensors[node.inputs[0]].dtype == "fp32" else \
        _integer_fields(graph, node, plan, dt.requantize == "fixed_point")
    types = operand_types(plan.region(node.inputs[0]).dtype, dt.input, dt.weight, dt.accumulator,
                          plan.region(node.outputs[0]).dtype, channel_bytes)
    tiling = choose_tiling(budget, m, k, ng, node.name, geom, ELEMENT_BYTES[types.x], ELEMENT_BYTES[types.output])
    w_type = graph.tensors[node.inputs[1]].dtype
    w_region = plan.constant(node.inputs[1] + "::gemm_weights", wmat, None if w_type == "fp32" else w_type)
    b_addr = plan.addr(node.inputs[2], dt.accumulator) if bias is not None else -1
    fields = {**{f: 0 for f in CONV_FIELDS}, "x_zp_addr": -1, **fields, **integer, "x": plan.addr(node.inputs[0]),
              "out": plan.addr(node.outputs[0]), "activation": ACTIVATION_ID[node.attrs.get("activation", "none")]}
    # one descriptor per group, consecutive: group g reads input channels g*cin_g.. and writes filters g*ng..
    descs = [builder.descriptor("matmul", dict(fields, cin_off=g * fields["cin_g"], cout_off=g * ng))
             for g in range(groups)]
    # each buffer slot starts on an element boundary of what the buffer holds
    slot_bytes = tuple(size // tiling.buffers // elem * elem for size, elem in (
        (budget.input_bytes, budget.input_elem_bytes), (budget.weight_bytes, budget.weight_elem_bytes),
        (budget.acc_bytes, budget.acc_elem_bytes)))
    block = emit_gemm(len(builder), index, tiling, slot_bytes, geom, m, k, ng, groups, descs[0], w_region.offset,
                      b_addr, ready.get(node.inputs[0], -1), types)
    builder.extend(block)
    ready[node.outputs[0]] = len(builder) - 1     # the layer's last row is its last store
    extras = {"buffers": tiling.buffers, "est_cycles": tiling.est_cycles}
    if integer:      # e.g. "uint8 x int8 -> int32 acc -> uint8 (float requantizer)"
        how = {REQUANT_ID["codes"]: " (float requantizer)", REQUANT_ID["fixed_point"]: " (fixed-point requantizer)",
               REQUANT_ID["scaled"]: " (scaled)"}.get(integer["requant"], "")
        extras["datapath"] = (f"{graph.tensors[node.inputs[0]].dtype} x {w_type} -> int32 acc -> "
                              f"{graph.tensors[node.outputs[0]].dtype}{how}")
    # tile_loops.py's nest: groups, then output tiles (m_outer: m then n; n_outer: n then m), then k
    outer = ("m", "n") if tiling.order == "m_outer" else ("n", "m")
    return Mapping(unit="matrix", dims={"m": int(m), "k": int(k), "n": int(ng), "g": int(groups)},
                   tile={"m": tiling.tm, "k": tiling.tk, "n": tiling.tn, "g": 1}, loop_order=("g", *outer, "k"),
                   dataflow=budget.dataflow, extras=extras)

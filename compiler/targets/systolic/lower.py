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
host computes (compiler/targets/gemm_layer.py, shared with other targets), as
onnxruntime's QLinearConv/QLinearMatMul/QGemm do.
"""
from __future__ import annotations

from compiler.ir import Graph, node_macs
from compiler.mapping import Mapping
from compiler.program import (ELEMENT_BYTES, MATRIX_A, MATRIX_ACC, MATRIX_B, UNITS, Layer, Memory, Program,
                              ProgramBuilder, dram_memory)
from compiler.targets.systolic.spec import SystolicSpec
from compiler.targets import gemm_layer, vector
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
                  acc_elem_bytes=ELEMENT_BYTES[dt.accumulator], macs_per_pe_cycle=spec.array.macs_per_pe_cycle,
                  scratchpad_bytes_per_cycle=mem.scratchpad_banks * mem.scratchpad_bytes_per_cycle,
                  ideal_memory=mem.ideal, output_drain=spec.array.output_stationary_drain)



def memories(spec: SystolicSpec, dram_bytes: int) -> tuple:
    """The Program's memories: DRAM, then the scratchpads that hold the array's A (input) and B
    (weight) operands and the accumulator it adds into, at the ids the matrix opcodes address."""
    budget, dt = budget_of(spec), spec.datatypes
    return (dram_memory(dram_bytes),
            Memory(MATRIX_A, "input_scratchpad", 1, dt.input, budget.input_bytes),
            Memory(MATRIX_B, "weight_scratchpad", 1, dt.weight, budget.weight_bytes),
            Memory(MATRIX_ACC, "accumulator", 1, dt.accumulator, budget.acc_bytes))


def lower(graph: Graph, spec: SystolicSpec) -> Program:
    quantised = gemm_layer.check_datapath(graph, spec, "hwspecs/systolic_int8.yaml", "hwspecs/systolic.yaml")
    dt = spec.datatypes
    plan = MemoryPlan(graph, gemm_layer.plan_types(quantised, dt))
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
                      outputs=list(graph.outputs), engines=UNITS)
    return program.verify(bounds=False)   # addresses: checked by a functional simulate


def _lower_gemm_layer(graph, node, plan, builder, budget, dt, ready, index) -> Mapping:
    layer = gemm_layer.prepare(graph, node, plan, dt)
    f = layer.fields
    geom = (f["kh"] * f["kw"], f["oh"], f["ow"], f["sh"], (f["kh"] - 1) * f["dh"] + 1, f["h"], f["w"])
    types = operand_types(layer.x_type, dt.input, dt.weight, dt.accumulator, layer.out_type, layer.channel_bytes)
    m, k, ng, groups = layer.m, layer.k, layer.n, layer.groups
    tiling = choose_tiling(budget, m, k, ng, node.name, geom, ELEMENT_BYTES[types.x], ELEMENT_BYTES[types.output])
    # one descriptor per group, consecutive: group g reads input channels g*cin_g.. and writes filters g*ng..
    descs = [builder.descriptor("matmul", layer.group_fields(g)) for g in range(groups)]
    # each buffer slot starts on an element boundary of what the buffer holds
    slot_bytes = tuple(size // tiling.buffers // elem * elem for size, elem in (
        (budget.input_bytes, budget.input_elem_bytes), (budget.weight_bytes, budget.weight_elem_bytes),
        (budget.acc_bytes, budget.acc_elem_bytes)))
    block = emit_gemm(len(builder), index, tiling, slot_bytes, geom, m, k, ng, groups, descs[0],
                      layer.weights.offset, layer.bias, ready.get(node.inputs[0], -1), types)
    builder.extend(block)
    ready[node.outputs[0]] = len(builder) - 1     # the layer's last row is its last store
    # est_cycles: the tiler's estimate of one group; compute_cycles: the layer's matrix-unit cycles, as simulated
    extras = {"buffers": tiling.buffers, "est_cycles": tiling.est_cycles,
              "compute_cycles": tiling.compute_cycles * groups}
    if layer.integer:      # e.g. "uint8 x int8 -> int32 acc -> uint8 (float requantizer)"
        extras["datapath"] = layer.datapath_text
    # tile_loops.py's nest: groups, then output tiles (m_outer: m then n; n_outer: n then m), then k
    outer = ("m", "n") if tiling.order == "m_outer" else ("n", "m")
    return Mapping(unit="matrix", dims={"m": int(m), "k": int(k), "n": int(ng), "g": int(groups)},
                   tile={"m": tiling.tm, "k": tiling.tk, "n": tiling.tn, "g": 1}, loop_order=("g", *outer, "k"),
                   dataflow=budget.dataflow, extras=extras)

"""SIMT target: lowers a Graph to a Program for a SimtSpec, one instruction per GPU kernel.

A conv or Gemm layer is one implicit-GEMM kernel (compiler/targets/gemm_layer.py: G GEMMs
[M,K] x [K,N], weights laid out at compile time as [G,K,N]): a grid of thread blocks, each computing a
BM x BN output tile over the whole K in BK steps through shared memory, the accumulators in registers
(output stationary), with bias, activation and requantisation fused into the epilogue. Its block tile
is chosen by cost.choose_tile against the same cost the timing charges; the Program holds it as one
gemm_tile over the whole output (the functional result does not depend on the tile: every output
accumulates over k in increasing order), and the layer's Mapping records the grid, block, tile and
occupancy. A grouped conv with at most DEPTHWISE_CHANNELS output channels per group (depthwise) is a
kernel on the SIMT lanes (cost.elementwise_kernel): a tensor-core tile would pad N to its minimum.
Every other op is one elementwise/reduction kernel (compiler/targets/vector.py's lowering). All run in
stream order on one engine, "stream": a kernel starts when the previous one has finished.

Element types follow the spec's `datatypes` as on every target (activations `output`, weights
`weight`, graph inputs `input`; biases in the accumulator type); a quantised graph runs on an integer
datapath (int8 tensor cores).
"""
from __future__ import annotations

from compiler.ir import Graph, node_macs
from compiler.mapping import Mapping
from compiler.program import ELEMENT_BYTES, Layer, Program, ProgramBuilder, dram_memory
from compiler.targets import gemm_layer, vector
from compiler.targets.memory_plan import VIEW_OPS, MemoryPlan
from compiler.targets.simt import cost
from compiler.targets.simt.spec import SimtSpec

ENGINE = "stream"
DEPTHWISE_CHANNELS = 4


def lower(graph: Graph, spec: SimtSpec) -> Program:
    quantised = gemm_layer.check_datapath(graph, spec, "datatypes int8 in hwspecs/gpu_a100_like.yaml",
                                          "hwspecs/simt.yaml")
    plan = MemoryPlan(graph, gemm_layer.plan_types(quantised, spec.datatypes))
    builder = ProgramBuilder(engines=(ENGINE,))
    ready: dict = {}
    layers = []
    tiles: dict = {}          # GEMM shape -> its chosen cost (a network repeats shapes)
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            ready[node.outputs[0]] = ready.get(node.inputs[0], -1)
            continue
        index = len(layers)
        if node.op in ("conv", "gemm"):
            mapping = _lower_gemm_layer(graph, node, plan, builder, spec, ready, index, tiles)
        else:
            vector.lower(graph, node, plan, builder, ready, index, engine=ENGINE)
            mapping = Mapping(unit="vector", extras={"kernel": "elementwise"})
        layers.append(Layer(node.name, node.op, node_macs(graph, node), mapping))
    ins, desc_int, desc_float = builder.finish()
    program = Program(target="simt", spec=spec, regions=plan.regions, memories=(dram_memory(plan.size),),
                      constants=plan.chunks, instructions=ins, desc_int=desc_int, desc_float=desc_float,
                      layers=layers, inputs=list(graph.inputs), outputs=list(graph.outputs), engines=(ENGINE,))
    return program.verify(bounds=False)   # addresses: checked by a functional simulate


def gemm_datatype(layer: gemm_layer.GemmLayer) -> str:
    """The type the layer's MACs run in: its input's (the tensor cores' operand type)."""
    return layer.x_type


def input_bytes(fields: dict, elem_bytes: int) -> int:
    """Bytes of the tensor a GEMM kernel gathers its A rows from (the conv's input: N x C x H x W)."""
    return fields["n"] * fields["c"] * fields["h"] * fields["w"] * elem_bytes


def is_depthwise(layer: gemm_layer.GemmLayer) -> bool:
    return layer.groups > 1 and layer.n <= DEPTHWISE_CHANNELS


def _lower_gemm_layer(graph, node, plan, builder, spec, ready, index, tiles) -> Mapping:
    layer = gemm_layer.prepare(graph, node, plan, spec.datatypes)
    x_b, w_b, out_b = (ELEMENT_BYTES[t] for t in (layer.x_type, layer.w_type, layer.out_type))
    dims = {"m": int(layer.m), "k": int(layer.k), "n": int(layer.n), "g": int(layer.groups)}
    macs = layer.groups * layer.m * layer.n * layer.k
    if is_depthwise(layer):
        bytes_in = layer.groups * (layer.m * layer.k * x_b + layer.k * layer.n * w_b)
        kernel = cost.elementwise_kernel(spec, bytes_in, layer.groups * layer.m * layer.n * out_b, macs,
                                         datatype=gemm_datatype(layer))
        dram, onchip = kernel.dram_bytes, kernel.l2_bytes
        mapping = Mapping(unit="matrix", dims=dims, tile={"m": layer.m, "k": layer.k, "n": layer.n, "g": 1},
                          loop_order=("g", "m", "n", "k"), dataflow="output_stationary",
                          extras={"kernel": "depthwise (SIMT lanes)", "est_cycles": round(kernel.cycles),
                                  "bound": kernel.bound})
    else:
        shape = (layer.m, layer.n, layer.k, layer.groups, x_b, out_b, gemm_datatype(layer),
                 input_bytes(layer.fields, x_b))
        if shape not in tiles:
            tiles[shape] = cost.choose_tile(spec, *shape)
        kernel = tiles[shape]
        t, occ = kernel.tile, kernel.occupancy
        dram, onchip = kernel.dram_bytes, kernel.l2_bytes
        mapping = Mapping(
            unit="matrix", dims=dims, tile={"m": t.block_m, "k": t.block_k, "n": t.block_n, "g": 1},
            loop_order=("g", "m", "n", "k"), dataflow="output_stationary",
            extras={"kernel": f"implicit GEMM on {kernel.unit.replace('_', ' ')}s", "grid_blocks": kernel.blocks,
                    "block_threads": t.warps * spec.sm.threads_per_warp, "blocks_per_sm": occ.blocks_per_sm,
                    "occupancy_limiter": occ.limiter, "registers_per_thread": occ.registers_per_thread,
                    "shared_memory_bytes": occ.shared_memory_bytes, "waves": kernel.waves,
                    "l2_hit_rate": round(kernel.l2_hit_rate, 4), "est_cycles": round(kernel.cycles),
                    "bound": kernel.bound})
    if layer.integer:
        mapping.extras["datapath"] = layer.datapath_text
    (row,) = gemm_layer.emit_gemm_tiles(builder, layer, [(0, layer.m, 0, layer.n)], index,
                                        [ready.get(node.inputs[0], -1)], engine=ENGINE,
                                        cost=lambda *_: (round(dram), round(onchip)))
    ready[node.outputs[0]] = row
    return mapping

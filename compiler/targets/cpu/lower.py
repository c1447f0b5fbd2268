"""CPU target: lowers a Graph to a Program for a CpuSpec, its layers split over the cores.

The Program's engines are the cores, "core0" .. "core{N-1}" (one thread each). A conv or Gemm layer
(compiler/targets/gemm_layer.py: G GEMMs [M,K] x [K,N], weights laid out at compile time as [G,K,N])
is split by cost.plan into row chunks x column chunks, one gemm_tile per core, each computing its
tile of every group over the whole K (the functional result does not depend on the split: every
output accumulates over k in increasing order); the tile's BLIS blocking (register block, kc, mc, nc)
lives in the timing model and in the layer's Mapping. Every other op is the shared vector lowering
(compiler/targets/vector.py), split into one slice per core along its outermost dimension where the
op's slices are independent (relu and other unary functions, lookup, binary ops, copies, pooling
planes, softmax and layer-norm rows, a batch-1 affine's channels) and each core gets at least MIN_SLICE_OPS element-ops; else one
instruction on core0. Each layer waits for every row of the layers it reads (a barrier, as a
thread pool's parallel-for ends), so a layer starts when its inputs are complete on every core; the
barrier's own time is the timing's (cost.sync_cycles), and cost.plan may leave cores idle where it
costs more than they save.

Element types follow the spec's `datatypes` as on every target; a quantised graph runs on the integer
datapath (u8 x s8 dot products into int32 lanes, requantised as onnxruntime does). Outputs follow the
project's declared datapath (products exact in fp32 or int32, accumulated in increasing k), bit-identical
to the other targets'; the timing charges the core's instructions for it (a VDPBF16PS adds a pair of
bf16 products per lane in its own order and flushes denormals: its rate is modelled, not its rounding).

Where a layer's input and weights are when it starts (the timing's L3 or DRAM) follows an LRU
stack-distance model [Mattson] over the tensors in program order: a tensor read again is an L3 hit
when the bytes touched since its last use fit one L3 domain (a layer's cores span the domains, and
each domain's L3 keeps its own copy of what its cores read); a tensor first read
in the inference (weights, the graph's inputs) is an L3 hit when the whole inference's footprint
(the memory plan: every tensor once) fits, as in back-to-back inferences; outputs are written back
to DRAM when it does not.
[Mattson] R. L. Mattson, J. Gecsei, D. R. Slutz and I. L. Traiger, "Evaluation techniques for storage
hierarchies", IBM Systems Journal 9(2), 1970.
"""
from __future__ import annotations

import numpy as np

from compiler.ir import Graph, node_macs
from compiler.mapping import Mapping
from compiler.program import (DATATYPES, ELEMENT_BYTES, N_OPERANDS, OPCODE_ID, OPERAND, Instructions, Layer, Program,
                              ProgramBuilder, dram_memory)
from compiler.targets import gemm_layer, vector
from compiler.targets.cpu import cost
from compiler.targets.cpu.spec import CpuSpec
from compiler.targets.memory_plan import VIEW_OPS, MemoryPlan

# Fewest element-ops a core's slice of a vector op gets (an assumption: a thread pool's parallel-for
# leaves a loop of a few thousand elements on one thread, where waking the others costs more).
MIN_SLICE_OPS = 4096


def engines(spec: CpuSpec) -> tuple:
    return tuple(f"core{i}" for i in range(spec.cores))


def lower(graph: Graph, spec: CpuSpec) -> Program:
    quantised = gemm_layer.check_datapath(graph, spec, "hwspecs/cpu.yaml with datatypes uint8, int8, int32, uint8",
                                          "hwspecs/cpu.yaml")
    plan = MemoryPlan(graph, gemm_layer.plan_types(quantised, spec.datatypes))
    names = engines(spec)
    cores = _Cores(ProgramBuilder(engines=names), names)
    residency = _Residency(spec, plan)
    ready: dict = {}
    layers = []
    plans: dict = {}           # GemmShape -> its plan (a network repeats shapes)
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            ready[node.outputs[0]] = ready.get(node.inputs[0], -1)
            residency.alias(node.outputs[0], node.inputs[0])
            continue
        index = len(layers)
        if node.op in ("conv", "gemm"):
            mapping = _lower_gemm_layer(graph, node, plan, cores, spec, ready, index, residency, plans)
        else:
            vector.lower(graph, node, plan, cores, ready, index)
            level = residency.read_all(plan, node)
            mapping = Mapping(unit="vector", extras={"kernel": "elementwise",
                                                     "cores": len({row[0] for row in cores.current}),
                                                     "level": level})
        last = cores.finish_layer()
        for name in node.outputs:
            ready[name] = last
            residency.write(name, plan.region(name).nbytes)
        layers.append(Layer(node.name, node.op, node_macs(graph, node), mapping))
    ins, desc_int, desc_float = cores.builder.finish()
    program = Program(target="cpu", spec=spec, regions=plan.regions, memories=(dram_memory(plan.size),),
                      constants=plan.chunks, instructions=ins, desc_int=desc_int, desc_float=desc_float,
                      layers=layers, inputs=list(graph.inputs), outputs=list(graph.outputs), engines=names)
    return program.verify(bounds=False)   # addresses: checked by a functional simulate


def _lower_gemm_layer(graph, node, plan, cores, spec, ready, index, residency, plans) -> Mapping:
    layer = gemm_layer.prepare(graph, node, plan, spec.datatypes)
    x_b, w_b, out_b = (ELEMENT_BYTES[t] for t in (layer.x_type, layer.w_type, layer.out_type))
    input_bytes = plan.region(node.inputs[0]).nbytes
    shape = cost.GemmShape(m=layer.m, n=layer.n, k=layer.k, groups=layer.groups, datatype=layer.x_type,
                           x_bytes=x_b, w_bytes=w_b, out_bytes=out_b, input_bytes=input_bytes,
                           input_level=residency.read(node.inputs[0], input_bytes),
                           weight_level=residency.read(node.inputs[1], layer.weights.nbytes),
                           write_back=residency.write_back)
    if shape not in plans:
        plans[shape] = cost.plan(spec, shape)
    chosen = plans[shape]
    block = chosen.blocking
    tiles = {}
    for m0, tm, n0, tn in chosen.tiles():
        if (tm, tn) not in tiles:
            tiles[tm, tn] = cost.tile_cost(spec, shape, block, tm, tn, chosen.cores, len(chosen.cols),
                                           len(chosen.rows))

    def traffic(m0, tm, n0, tn):
        t = tiles[tm, tn]
        return round(t.level_bytes["dram"]), round(t.level_bytes["l2"] + t.level_bytes["l3"])

    cores.assign(chosen.cores)
    gemm_layer.emit_gemm_tiles(cores, layer, chosen.tiles(), index, [ready.get(node.inputs[0], -1)],
                               cost=traffic)
    dims = {"m": int(layer.m), "k": int(layer.k), "n": int(layer.n), "g": int(layer.groups)}
    extras = {"kernel": "direct depthwise" if chosen.depthwise else "BLIS GEMM",
              "cores": f"{len(chosen.rows)}x{len(chosen.cols)}", "mr": block.mr, "nr": block.nr,
              **shape.extras(), "est_cycles": round(chosen.cycles), "bound": chosen.bound}
    if layer.integer:
        extras["datapath"] = layer.datapath_text
    return Mapping(unit="matrix", dims=dims, tile=cost.layer_blocks(spec, block, shape),
                   loop_order=("g", "n", "k", "m"), dataflow="output_stationary", extras=extras)


class _Residency:
    """Where a tensor is when a layer reads it, by LRU stack distance (module docstring)."""

    def __init__(self, spec: CpuSpec, plan: MemoryPlan):
        self.capacity = spec.cache.l3_mib * 2 ** 20     # one domain's: each caches its own copy of what its cores read
        self.write_back = plan.size > self.capacity
        self.clock = 0            # bytes touched so far
        self.last: dict = {}      # tensor -> clock at its last touch

    def read(self, name: str, nbytes: int) -> str:
        if name in self.last:
            hit = self.clock - self.last[name] + nbytes <= self.capacity
        else:
            hit = not self.write_back
        self.write(name, nbytes)
        return "l3" if hit else "dram"

    def read_all(self, plan: MemoryPlan, node) -> str:
        """The level of a vector op's inputs: DRAM if any of them is there."""
        levels = [self.read(name, plan.region(name).nbytes) for name in node.inputs]
        return "dram" if "dram" in levels else "l3"

    def alias(self, view: str, name: str) -> None:
        """A view (reshape) of a tensor was last touched when the tensor was."""
        if name in self.last:
            self.last[view] = self.last[name]

    def write(self, name: str, nbytes: int) -> None:
        self.clock += nbytes
        self.last[name] = self.clock


def _offsets(op: str, ints: dict, types: dict):
    """(extent, {field: bytes per unit of the split dimension}) of a vector instruction split along its
    outermost dimension, or None where its slices are not independent. `types`: operand -> element type."""
    size = {name: ELEMENT_BYTES[t] for name, t in types.items()}
    ints = _flat(ints)
    if op in ("vec_relu", "vec_lookup", "vec_unary"):
        return ints["n"], {"src": size["src"], "dst": size["dst"], "n": None}
    if op == "vec_layernorm":
        return ints["rows"], {"src": ints["n"] * size["src"], "dst": ints["n"] * size["dst"], "rows": None}
    if op in ("vec_binary", "vec_copy"):
        shape = [ints[f"shape{i}"] for i in range(6)]
        d = next((i for i, extent in enumerate(shape) if extent > 1), None)
        if d is None:
            return None
        inner = 1
        for extent in shape[d + 1:]:
            inner *= extent
        if op == "vec_copy":
            return shape[d], {"src": ints[f"src_stride{d}"] * size["src"], "dst": ints[f"dst_stride{d}"] * size["dst"],
                              "shape" + str(d): None}
        return shape[d], {"a": ints[f"a_stride{d}"] * size["a"], "b": ints[f"b_stride{d}"] * size["b"],
                          "dst": inner * size["dst"], "shape" + str(d): None}
    if op in ("vec_maxpool", "vec_avgpool"):
        return ints["planes"], {"src": ints["h"] * ints["w"] * size["src"], "dst": ints["oh"] * ints["ow"] * size["dst"],
                                "planes": None}
    if op == "vec_softmax":
        row = ints["axis_len"] * ints["inner"]
        return ints["outer"], {"src": row * size["src"], "dst": row * size["dst"], "outer": None}
    if op == "vec_affine" and ints["n"] == 1:
        return ints["c"], {"src": ints["hw"] * size["src"], "dst": ints["hw"] * size["dst"], "scale": size["scale"],
                           "shift": size["shift"], "c": None}
    return None


def _flat(ints: dict) -> dict:
    """Descriptor fields with each field group (shape=[...]) spelt out (shape0, shape1, ...)."""
    out = {}
    for name, value in ints.items():
        if isinstance(value, (list, tuple)):
            out.update({f"{name}{i}": v for i, v in enumerate(value)})
        else:
            out[name] = value
    return out


class _Cores:
    """The builder as the shared lowerings see it: each row goes on the next core `assign` queued (a
    conv/GEMM layer's tiles), or a splittable vector instruction becomes one slice per core (the
    others run on core0); a dependency on a layer's row stands for every row of that layer (the
    barrier). A layer's rows are appended as one block of arrays (ProgramBuilder.extend): with N cores
    a layer has N rows of N dependencies each."""

    def __init__(self, builder: ProgramBuilder, names: tuple):
        self.builder, self.names = builder, names
        self.queue: list = []
        self.current: list = []      # pending rows of the layer being lowered: (engine, opcode, layer, ...)
        self.group: dict = {}        # a layer's last row -> all its rows
        self.expanded: dict = {}     # dependencies -> the rows they stand for
        self.pending = None          # (op, ints, floats) of the descriptor asked for, created on emit
        self.desc = None

    def assign(self, count: int) -> None:
        self.queue = list(range(count))

    def descriptor(self, op: str, ints: dict, floats: dict | None = None) -> int:
        self.pending, self.desc = (op, ints, floats), None
        return -1

    def emit(self, op, layer, operands, deps=(), dram_bytes=0, onchip_bytes=0, work=0, engine=None) -> int:
        deps = self._barrier(tuple(deps))
        d_op, ints, floats = self.pending
        types = {name[:-6]: DATATYPES[operands[name]] for name in operands if name.endswith("_dtype")}
        split = None if self.queue or op != d_op else _offsets(op, ints, types)
        parts = min(len(self.names), split[0], max(1, work // MIN_SLICE_OPS)) if split else 1
        if parts <= 1:
            if self.desc is None:
                self.desc = self.builder.descriptor(d_op, ints, floats)
            return self._row(op, layer, dict(operands, desc=self.desc), deps, dram_bytes, onchip_bytes, work,
                             self.queue.pop(0) if self.queue else 0)
        extent, strides = split
        row = -1
        for i in range(parts):
            start, stop = extent * i // parts, extent * (i + 1) // parts
            fields = _flat(ints)
            for name, stride in strides.items():
                fields[name] = stop - start if stride is None else fields[name] + start * stride
            desc = self.builder.descriptor(d_op, fields, floats)
            row = self._row(op, layer, dict(operands, desc=desc), deps,
                            *(total * stop // extent - total * start // extent
                              for total in (dram_bytes, onchip_bytes, work)), i)
        return row

    def _barrier(self, deps: tuple) -> np.ndarray:
        """Every row the dependencies stand for (cached: a layer's tiles share theirs)."""
        if deps not in self.expanded:
            self.expanded[deps] = np.unique(np.array([row for d in deps if d is not None and d >= 0
                                                      for row in self.group.get(d, [d])], np.int64))
        return self.expanded[deps]

    def _row(self, op, layer, operands, deps, dram_bytes, onchip_bytes, work, core) -> int:
        row = np.zeros(N_OPERANDS, np.int64)
        for name, value in operands.items():
            row[OPERAND[op][name]] = value
        self.current.append((core, OPCODE_ID[op], layer, row, dram_bytes, onchip_bytes, work, deps))
        return len(self.builder) + len(self.current) - 1

    def finish_layer(self) -> int:
        """Append the layer's rows; its last row, which stands for all its rows in later dependencies."""
        rows, self.current, self.queue = self.current, [], []
        if not rows:
            return -1
        core, opcode, layer, operands, dram, onchip, work, deps = zip(*rows)
        counts = np.array([len(d) for d in deps], np.int64)
        dep_ptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(counts, out=dep_ptr[1:])
        first = len(self.builder)
        self.builder.extend(Instructions(
            engine=np.array(core, np.int8), opcode=np.array(opcode, np.int16), layer=np.array(layer, np.int32),
            operands=np.stack(operands), dram_bytes=np.array(dram, np.int64), onchip_bytes=np.array(onchip, np.int64),
            work=np.array(work, np.int64), dep_ptr=dep_ptr, dep_idx=np.concatenate(deps)))
        last = first + len(rows) - 1
        self.group[last] = list(range(first, last + 1))
        return last

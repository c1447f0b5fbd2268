"""Systolic-array target: lowers a Graph to a Program for a SystolicSpec.

Conv and Gemm become GEMMs [M,K] x [K,N] (M = output pixels, K = Cin/g*kh*kw,
N = Cout/g, one GEMM per group). Conv uses implicit im2col: the DMA engine reads
the input window rows a tile needs and an on-chip im2col unit expands them into
the input scratchpad, so no im2col matrix ever exists in DRAM (as in Gemmini's
hardware im2col; Genc et al., DAC 2021). Weights are laid out at compile time as
[G, K, N] matrices. Each output tile: bias preloaded into the accumulator, then
for each K tile load A and W (double-buffered where capacity allows) and
accumulate, then store through the activation unit. Every other op runs on the
vector unit (compiler/targets/vector.py). Tile shapes come from tiling.py.
"""
from __future__ import annotations

from compiler.ir import Graph, Node, node_macs
from compiler.program import ACTIVATION_ID, CONV_FIELDS, Layer, Program, ProgramBuilder
from compiler.spec import SystolicSpec
from compiler.targets import vector
from compiler.targets.memory_plan import VIEW_OPS, MemoryPlan
from compiler.targets.tiling import BYTES, Budget, Tiling, choose_tiling, im2col_read_bytes


def budget_of(spec: SystolicSpec) -> Budget:
    mem = spec.memory
    return Budget(rows=spec.array.rows, cols=spec.array.cols, dataflow=spec.array.dataflow,
                  input_bytes=int(mem.input_scratchpad_kib * 1024), weight_bytes=int(mem.weight_scratchpad_kib * 1024),
                  acc_bytes=int(mem.accumulator_kib * 1024), dram_bytes_per_cycle=spec.dram_bytes_per_cycle,
                  dram_latency=mem.dram_latency_cycles, double_buffer=mem.double_buffer)


def lower(graph: Graph, spec: SystolicSpec) -> Program:
    plan = MemoryPlan(graph)
    builder = ProgramBuilder()
    budget = budget_of(spec)
    ready: dict = {}            # tensor name -> index of the last instruction writing it
    layers = []
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            ready[node.outputs[0]] = ready.get(node.inputs[0], -1)
            continue
        index = len(layers)
        mapping = ""
        if node.op in ("conv", "gemm"):
            mapping = _lower_gemm_layer(graph, node, plan, builder, budget, ready, index)
        else:
            vector.lower(graph, node, plan, builder, ready, index)
        layers.append(Layer(node.name, node.op, node_macs(graph, node), mapping))
    ins, desc_int, desc_float = builder.finish()
    onchip = {"input_scratchpad": budget.input_bytes, "weight_scratchpad": budget.weight_bytes,
              "accumulator": budget.acc_bytes}
    program = Program(target="systolic", spec=spec, regions=plan.regions, dram_size=plan.size,
                      constants=plan.chunks, onchip=onchip, instructions=ins, desc_int=desc_int,
                      desc_float=desc_float, layers=layers, inputs=list(graph.inputs),
                      outputs=list(graph.outputs))
    return program.verify()


def _gemm_geometry(graph: Graph, node: Node):
    """(descriptor fields common to all groups, groups, M, K, Ng, weight matrix [G,K,Ng], bias)."""
    out_shape = graph.tensors[node.outputs[0]].shape
    w = graph.constants[node.inputs[1]]
    bias = graph.constants[node.inputs[2]] if len(node.inputs) > 2 else None
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


def _lower_gemm_layer(graph, node, plan, builder, budget, ready, index) -> str:
    fields, groups, m, k, ng, wmat, bias = _gemm_geometry(graph, node)
    geom = (fields["kh"] * fields["kw"], fields["oh"], fields["ow"], fields["sh"],
            (fields["kh"] - 1) * fields["dh"] + 1, fields["h"], fields["w"])
    tiling = choose_tiling(budget, m, k, ng, node.name, geom)
    w_region = plan.constant(node.inputs[1] + "::gemm_weights", wmat)
    b_addr = plan.addr(node.inputs[2]) if bias is not None else -1
    x_addr, out_addr = plan.addr(node.inputs[0]), plan.addr(node.outputs[0])
    act = ACTIVATION_ID[node.attrs.get("activation", "none")]
    emitter = _TileEmitter(builder, budget, tiling, index, ready.get(node.inputs[0], -1))
    for g in range(groups):
        desc_fields = dict(fields, x=x_addr, cin_off=g * fields["cin_g"], out=out_addr, cout_off=g * ng,
                           activation=act)
        desc = builder.descriptor([desc_fields[f] for f in CONV_FIELDS])
        w_addr = w_region.offset + g * k * ng * BYTES
        g_bias = b_addr + g * ng * BYTES if b_addr >= 0 else -1
        emitter.gemm(desc, geom, m, k, ng, w_addr, g_bias)
    ready[node.outputs[0]] = emitter.last_store
    return (f"gemm M{m} K{k} N{ng} groups={groups} {budget.dataflow} {tiling.describe()}")


class _TileEmitter:
    """Emits the tile loops of one GEMM layer with buffer slots and explicit dependencies."""

    def __init__(self, builder: ProgramBuilder, budget: Budget, tiling: Tiling, layer: int, input_ready: int):
        self.b, self.t, self.layer, self.input_ready = builder, tiling, layer, input_ready
        nbuf = tiling.buffers
        self.slot_bytes = {"a": budget.input_bytes // nbuf, "w": budget.weight_bytes // nbuf,
                           "acc": budget.acc_bytes // nbuf}
        self.next_slot = {"a": 0, "w": 0, "acc": 0}
        self.last_user = {(buf, s): -1 for buf in ("a", "w", "acc") for s in range(nbuf)}
        self.resident = {"a": None, "w": None}   # (key, slot, instruction) of the last load
        self.last_store = -1

    def _slot(self, buf: str) -> int:
        s = self.next_slot[buf]
        self.next_slot[buf] = (s + 1) % self.t.buffers
        return s

    def _load(self, buf: str, key, emit):
        res = self.resident[buf]
        if res is not None and res[0] == key:
            return res[1], res[2]
        slot = self._slot(buf)
        instr = emit(slot * self.slot_bytes[buf], [self.last_user[(buf, slot)]])
        self.resident[buf] = (key, slot, instr)
        return slot, instr

    def gemm(self, desc, geom, m, k, n, w_addr, bias_addr):
        t, b, layer = self.t, self.b, self.layer
        self.resident = {"a": None, "w": None}
        m_tiles, n_tiles = range(0, m, t.tm), range(0, n, t.tn)
        pairs = ([(m0, n0) for n0 in n_tiles for m0 in m_tiles] if t.order == "n_outer"
                 else [(m0, n0) for m0 in m_tiles for n0 in n_tiles])
        for m0, n0 in pairs:
            tm, tn = min(t.tm, m - m0), min(t.tn, n - n0)
            acc_slot = self._slot("acc")
            acc = acc_slot * self.slot_bytes["acc"]
            src = bias_addr + n0 * BYTES if bias_addr >= 0 else -1
            prev = b.emit("load_bias", layer, (src, tm, tn, acc), deps=[self.last_user[("acc", acc_slot)]],
                          dram_bytes=tn * BYTES if src >= 0 else 0, onchip_bytes=tm * tn * BYTES)
            for k0 in range(0, k, t.tk):
                tk = min(t.tk, k - k0)
                a_slot, a_ins = self._load("a", (m0, k0), lambda dst, deps: b.emit(
                    "load_im2col", layer, (desc, m0, tm, k0, tk, dst), deps=deps + [self.input_ready],
                    dram_bytes=im2col_read_bytes(geom, m0, tm, k0, tk), onchip_bytes=tm * tk * BYTES))
                w_slot, w_ins = self._load("w", (n0, k0), lambda dst, deps: b.emit(
                    "load_weights", layer, (w_addr + (k0 * n + n0) * BYTES, tk, tn, n, dst), deps=deps,
                    dram_bytes=tk * tn * BYTES, onchip_bytes=tk * tn * BYTES))
                prev = b.emit("matmul", layer, (a_slot * self.slot_bytes["a"], w_slot * self.slot_bytes["w"],
                                                acc, tm, tk, tn), deps=[a_ins, w_ins, prev],
                              onchip_bytes=(tm * tk + tk * tn + 2 * tm * tn) * BYTES, work=tm * tk * tn)
                self.last_user[("a", a_slot)] = prev
                self.last_user[("w", w_slot)] = prev
            self.last_store = b.emit("store_tile", layer, (desc, acc, m0, tm, n0, tn), deps=[prev],
                                     dram_bytes=tm * tn * BYTES, onchip_bytes=tm * tn * BYTES)
            self.last_user[("acc", acc_slot)] = self.last_store

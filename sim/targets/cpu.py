"""The CPU target's simulator side (sim/targets/__init__.py: the contract): timing, action counts and
unit prices of a Program lowered by compiler/targets/cpu/lower.py (one engine per core).

Timing, cycles of each instruction on its core (compiler/targets/cpu/cost.py, the model its blocking
and split were chosen by):
  gemm_tile   one core's tile of a conv/GEMM layer: the BLIS micro-kernel (FMA issue rate, FMA latency,
              L1 load ports, edge micro-tiles) and A's packing, or the direct depthwise kernel, against
              each level's transfer (L2, L3, DRAM shared by the layer's cores, Little's-law bounds),
              plus the latency exposed at each packed block; the layer's Mapping holds the blocking and
              where its input and weights start (L3 or DRAM)
  barrier     a layer on several cores adds the fork and join of its cores to each of its rows
              (cost.sync_cycles: a tree barrier's rounds of core-to-core cache-line transfers)
  vector ops  a core's slice: element-ops on 32-bit SIMD lanes at the FMA pipes' rate, or the bytes
              from the level the lowering found its inputs in (the Mapping's `level`), plus its latency
With ideal_memory, only compute counts (micro-kernel and packing; a vector slice's element-ops; no barrier).

Action counts per level (level_bytes): l1 (every load and store a core issues), l2, l3, dram, as
cost.tile_cost attributes a tile's bytes; a vector slice's bytes at l1 and at its level. Requantised
outputs: a quantised GEMM's outputs. Prices (unit_costs), per component:
  fma_units    MACs x (multiply of the wider input/weight type + add of the accumulator type
               + core.instruction_energy_pj / MACs per SIMD instruction)
  simd_alus    element-ops x (one add of the activation type, fp32 on the integer datapath,
               + core.instruction_energy_pj / lanes)
  requantizer  integer datapath: requantised outputs x (fp32 multiply + add)
  l1, l2, l3   bytes x SRAM energy per byte (sim/energy.py sram_pj_per_byte: L1 read a register wide,
               L2 and L3 a core port wide, L3 in one slice per core of its domain)
  dram         bytes x 8 x the table's pJ/bit for memory.dram_type
Areas: FMA pipes (cores x fp32 lanes in them x (multiplier + adder)), vector register file, L1 data,
L2 and L3 as SRAM. No front end, out-of-order machinery, integer units, tags, interconnect or I/O: the
figure is the SIMD datapath and SRAM area, far below a die's (a Zen 4 CCD is 70 mm^2 with 32 MiB L3).
"""
from __future__ import annotations

import numpy as np

from compiler.program import DATATYPES, ELEMENT_BYTES, OPCODE_ID, OPERAND, Program
from compiler.targets.cpu import cost
from sim.energy import PJ, UM2_PER_MM2, UnitCosts, mac_pj, sram_area_mm2, sram_pj_per_byte, technology
from sim.targets import gemm_tile_requant_ops

COMPONENTS = ("fma_units", "simd_alus", "requantizer")   # where MAC, vector and requantiser energy go
LEVELS = cost.LEVELS
GEMM_TILE = OPERAND["gemm_tile"]
DEFINITIONS = {
    "energy_fma_units_j": "J: MACs x (multiply of the wider input/weight type + add of the accumulator type + "
                          "instruction overhead / MACs per SIMD instruction)",
    "energy_simd_alus_j": "J: vector element-ops x (one add of the activation type, fp32 on the integer datapath, "
                          "+ instruction overhead / lanes)",
    "energy_requantizer_j": "J: requantised outputs x (fp32 multiply + add); 0 for float",
    "energy_l1_j": "J: L1 bytes (every load and store) x SRAM energy per byte (L1 capacity, a register wide)",
    "energy_l2_j": "J: L2 bytes x SRAM energy per byte (L2 capacity, an L2 port wide)",
    "energy_l3_j": "J: L3 bytes x SRAM energy per byte (one slice per core of its domain, an L3 port wide)",
    "energy_dram_j": "J: DRAM bytes x 8 x pJ/bit of memory.dram_type",
    "energy_leakage_j": "J: leakage W/mm^2 x area_mm2 x latency_s",
    "area_fma_units_mm2": "mm^2: cores x fp32 lanes of the FMA pipes x (multiplier + adder)",
    "area_register_file_mm2": "mm^2: cores x vector registers x simd_bits as SRAM",
    "area_l1_mm2": "mm^2: cores x L1 data KiB as SRAM",
    "area_l2_mm2": "mm^2: cores x L2 KiB as SRAM",
    "area_l3_mm2": "mm^2: L3 domains x L3 MiB as SRAM",
}


def _layer_rows(program: Program) -> list:
    """(layer index, first row, end row) of each layer's contiguous rows (the lowering emits layer by layer)."""
    layer = program.instructions.layer
    starts = np.flatnonzero(np.r_[True, layer[1:] != layer[:-1]])
    ends = np.r_[starts[1:], len(layer)]
    return [(int(layer[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _gemm_costs(program: Program, layer: int, rows: slice) -> list:
    """The tile cost of each gemm_tile row of a conv/GEMM layer."""
    spec, ins = program.spec, program.instructions
    mapping = program.layers[layer].mapping
    d, t, x = mapping.dims, mapping.tile, mapping.extras
    ops = ins.operands[rows]
    first = ops[0]
    types = [DATATYPES[first[GEMM_TILE[name]]] for name in ("src_dtype", "w_dtype", "dst_dtype")]
    shape = cost.GemmShape(m=d["m"], n=d["n"], k=d["k"], groups=d["g"], datatype=types[0],
                           x_bytes=ELEMENT_BYTES[types[0]], w_bytes=ELEMENT_BYTES[types[1]],
                           out_bytes=ELEMENT_BYTES[types[2]], input_bytes=x["input_bytes"],
                           input_level=x["input_level"], weight_level=x["weight_level"], write_back=x["write_back"])
    block = cost.Blocking(x["mr"], x["nr"], t["k"], t["m"], t["n"])
    active = len(ops)
    row_sharers = len(np.unique(ops[:, GEMM_TILE.n0]))      # tiles reading the same input rows
    col_sharers = len(np.unique(ops[:, GEMM_TILE.m0]))      # tiles reading the same weight columns
    tiles: dict = {}
    out = []
    for tm, tn in zip(ops[:, GEMM_TILE.tm].tolist(), ops[:, GEMM_TILE.tn].tolist()):
        if (tm, tn) not in tiles:
            tiles[tm, tn] = cost.tile_cost(spec, shape, block, tm, tn, active, row_sharers, col_sharers)
        out.append(tiles[tm, tn])
    return out


_LAST: list = [None, None]     # the program instruction_cycles last costed, and its costs (level_bytes reuses them)


def _costs(program: Program, fresh: bool = False) -> dict:
    """Per instruction, as arrays: "cycles", "compute" (its compute cycles) and each level's bytes."""
    if _LAST[0] is program and not fresh:
        return _LAST[1]
    spec, ins = program.spec, program.instructions
    out = {name: np.zeros(len(ins)) for name in ("cycles", "compute", *LEVELS)}
    for layer, start, end in _layer_rows(program):
        rows = slice(start, end)
        sync = cost.sync_cycles(spec, len(np.unique(ins.engine[rows])))
        if ins.opcode[start] == OPCODE_ID["gemm_tile"]:
            tiles = _gemm_costs(program, layer, rows)
            out["cycles"][rows] = [t.cycles + sync for t in tiles]
            out["compute"][rows] = [t.compute_cycles for t in tiles]
            for level in LEVELS:
                out[level][rows] = [t.level_bytes[level] for t in tiles]
            continue
        level = program.layers[layer].mapping.extras["level"]
        active = len(np.unique(ins.engine[rows]))
        nbytes = ins.dram_bytes[rows].astype(float)
        vector = cost.vector_cost(spec, ins.work[rows].astype(float), nbytes, level, active)
        out["cycles"][rows], out["compute"][rows] = vector.cycles + sync, vector.compute_cycles
        out["l1"][rows] += nbytes
        out[level][rows] += nbytes
    _LAST[:] = [program, out]
    return out


def instruction_cycles(program: Program, ideal_memory: bool = False) -> np.ndarray:
    cycles = _costs(program, fresh=True)["compute" if ideal_memory else "cycles"]
    return np.maximum(np.ceil(cycles), 1).astype(np.int64)


def level_bytes(program: Program) -> dict:
    """Bytes each instruction moves per level: level -> int64 array over instructions."""
    costs = _costs(program)
    return {level: np.round(costs[level]).astype(np.int64) for level in LEVELS}


def requant_ops(program: Program) -> np.ndarray:
    """Outputs each tile requantises: a quantised GEMM tile's outputs, every group's."""
    return gemm_tile_requant_ops(program)


def unit_costs(spec) -> UnitCosts:
    tech, dt, core, cache = technology(spec), spec.datatypes, spec.core, spec.cache
    vector_type = "fp32" if spec.integer_datapath else dt.output
    requant_pj = tech.multiply_pj["fp32"] + tech.add_pj["fp32"] if spec.integer_datapath else 0.0
    macs_per_instruction = spec.lanes * spec.k_per_instruction(dt.input)
    domains = -(-spec.cores // cache.cores_per_l3)
    l3_kib = cache.l3_mib * 1024
    byte_pj = {
        "l1": sram_pj_per_byte(tech, cache.l1d_kib, 1, core.simd_bits / 8),
        "l2": sram_pj_per_byte(tech, cache.l2_kib, 1, cache.l2_bytes_per_cycle),
        "l3": sram_pj_per_byte(tech, l3_kib, cache.cores_per_l3, cache.l3_bytes_per_cycle),
        "dram": 8 * tech.dram_pj_per_bit[spec.memory.dram_type],
    }
    pipe_lanes = core.fma_units * core.fma_unit_bits // 32
    area = {
        "fma_units": spec.cores * pipe_lanes * (tech.multiply_um2["fp32"] + tech.add_um2["fp32"]) / UM2_PER_MM2,
        "register_file": spec.cores * sram_area_mm2(tech, core.vector_registers * core.simd_bits / 8 / 1024),
        "l1": spec.cores * sram_area_mm2(tech, cache.l1d_kib),
        "l2": spec.cores * sram_area_mm2(tech, cache.l2_kib),
        "l3": domains * sram_area_mm2(tech, l3_kib),
    }
    mac_j = (mac_pj(tech, dt.input, dt.weight, dt.accumulator) + core.instruction_energy_pj / macs_per_instruction) * PJ
    vector_j = (tech.add_pj[vector_type] + core.instruction_energy_pj / spec.lanes) * PJ
    return UnitCosts(mac_j=mac_j, vector_op_j=vector_j, requant_j=requant_pj * PJ,
                     byte_j={k: v * PJ for k, v in byte_pj.items()}, area_mm2=area,
                     leakage_w=tech.leakage_w_per_mm2 * sum(area.values()), components=COMPONENTS)

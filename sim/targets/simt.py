"""The SIMT target's simulator side (sim/targets/__init__.py: the contract): timing, action counts
and unit prices of a Program lowered by compiler/targets/simt/lower.py (one instruction per kernel).

Timing, cycles of each kernel (compiler/targets/simt/cost.py, the model its tile was chosen by):
  gemm_tile     an implicit-GEMM kernel with the layer's block tile (its Mapping): launch + per wave
                the slowest of tensor-core (or SIMT-lane) MACs, shared-memory, L2 and DRAM traffic
                and the latency bound (occupancy-limited), with wave quantisation; a depthwise conv
                (lower.is_depthwise) is a streaming kernel on the SIMT lanes
  vector ops    a streaming kernel: launch + the slowest of lane throughput (element-ops), L2 and DRAM
                bandwidth (the instruction's DRAM bytes, all read from and written to DRAM: no
                producer's output is assumed resident in L2) and the latency bound
With ideal_memory, only launch and compute count (tensor-core or lane cycles, and shared memory).

Action counts per level: dram (the kernel's DRAM bytes), l2 (bytes requested from L2), shared_memory
(a GEMM's A and B tiles written and read by its warps); requantised outputs: a quantised GEMM's
outputs. Prices (unit_costs), per component:
  tensor_cores   MACs x (multiply of the wider input/weight type + add of the accumulator type)
  simt_lanes     element-ops x one add of the activation type (fp32 on the integer datapath)
  requantizer    integer datapath: requantised outputs x (fp32 multiply + add), as the epilogue
  shared_memory, l2   bytes x SRAM energy per byte (sim/energy.py sram_pj_per_byte: shared memory
                 per SM in 32 banks of 4 bytes; L2 in 64-byte slices, l2_bytes_per_cycle / 64 of them)
  dram           bytes x 8 x the table's pJ/bit for memory.dram_type
Areas: tensor cores = SMs x MACs/cycle/SM x (multiplier + adder + operand registers); SIMT lanes =
SMs x (FP32 + INT32 lanes) x (multiplier + adder); register file, L1/shared memory (per SM) and L2 as
SRAM (KiB x bitcells / array efficiency). No schedulers, caches' tags, NoC, I/O or HBM PHYs: the
figure is the datapath and SRAM area, far below a die's (A100: 826 mm^2, NVIDIA A100 whitepaper).
"""
from __future__ import annotations

import numpy as np

from compiler.program import CONV, DATATYPES, ELEMENT_BYTES, OPCODE_ID, OPERAND, Program
from compiler.targets.simt import cost
from compiler.targets.simt.lower import DEPTHWISE_CHANNELS, input_bytes
from sim.energy import PJ, UM2_PER_MM2, UnitCosts, mac_pj, pe_area_um2, sram_area_mm2, sram_pj_per_byte, technology
from sim.targets import gemm_tile_requant_ops

COMPONENTS = ("tensor_cores", "simt_lanes", "requantizer")   # where MAC, vector and requantiser energy go
LEVELS = ("dram", "l2", "shared_memory")
GEMM_TILE = OPERAND["gemm_tile"]
L2_SLICE_BYTES = 64       # bytes one L2 slice returns per cycle (its line sector pair)
SHARED_BANKS, SHARED_BANK_BYTES = 32, 4    # CUDA C++ Programming Guide, shared memory banks
DEFINITIONS = {
    "energy_tensor_cores_j": "J: MACs x (multiply of the wider input/weight type + add of the accumulator type)",
    "energy_simt_lanes_j": "J: element-ops x one add of the activation type (fp32 on the integer datapath)",
    "energy_requantizer_j": "J: requantised outputs x (fp32 multiply + add); 0 for float",
    "energy_shared_memory_j": "J: shared-memory bytes x SRAM energy per byte (per-SM capacity, 32 x 4-byte banks)",
    "energy_l2_j": "J: L2 bytes x SRAM energy per byte (capacity, 64-byte slices)",
    "energy_dram_j": "J: DRAM bytes x 8 x pJ/bit of memory.dram_type",
    "energy_leakage_j": "J: leakage W/mm^2 x area_mm2 x latency_s",
    "area_tensor_cores_mm2": "mm^2: SMs x MACs/cycle/SM x (multiplier + adder + operand registers)",
    "area_simt_lanes_mm2": "mm^2: SMs x (FP32 + INT32 lanes) x (multiplier + adder)",
    "area_register_file_mm2": "mm^2: SMs x registers x 4 bytes as SRAM",
    "area_shared_memory_mm2": "mm^2: SMs x L1/shared-memory KiB as SRAM",
    "area_l2_mm2": "mm^2: L2 MiB x 1024 KiB as SRAM",
}


def _kernels(program: Program) -> list:
    """Each instruction's kernel cost (cost.GemmCost or cost.ElementwiseCost)."""
    spec, ins = program.spec, program.instructions
    out, gemms = [], {}
    for i in range(len(ins)):
        if ins.opcode[i] != OPCODE_ID["gemm_tile"]:
            out.append(cost.elementwise_kernel(spec, float(ins.dram_bytes[i]), 0.0, float(ins.work[i])))
            continue
        mapping = program.layers[ins.layer[i]].mapping
        ops = ins.operands[i]
        d = mapping.dims
        types = (DATATYPES[ops[GEMM_TILE.src_dtype]], DATATYPES[ops[GEMM_TILE.w_dtype]],
                 DATATYPES[ops[GEMM_TILE.dst_dtype]])
        x_b, w_b, out_b = (ELEMENT_BYTES[t] for t in types)
        if d["g"] > 1 and d["n"] <= DEPTHWISE_CHANNELS:
            out.append(cost.elementwise_kernel(spec, d["g"] * (d["m"] * d["k"] * x_b + d["k"] * d["n"] * w_b),
                                               d["g"] * d["m"] * d["n"] * out_b, d["g"] * d["m"] * d["n"] * d["k"],
                                               datatype=types[0]))
            continue
        warps = mapping.extras["block_threads"] // spec.sm.threads_per_warp
        tile = cost.Tile(mapping.tile["m"], mapping.tile["n"], mapping.tile["k"], warps)
        desc = program.desc_int[ops[GEMM_TILE.desc]]
        a_distinct = input_bytes({f: desc[CONV[f]] for f in ("n", "c", "h", "w")}, x_b)
        key = (d["m"], d["n"], d["k"], d["g"], tile, x_b, out_b, types[0], a_distinct)
        if key not in gemms:
            gemms[key] = cost.gemm_kernel(spec, *key[:4], tile, x_b, out_b, types[0], a_distinct)
        out.append(gemms[key])
    return out


def instruction_cycles(program: Program, ideal_memory: bool = False) -> np.ndarray:
    cycles = []
    for k in _kernels(program):
        if not ideal_memory:
            cycles.append(k.cycles)
        elif isinstance(k, cost.GemmCost):
            cycles.append(k.launch_cycles + max(k.mma_cycles, k.shared_cycles))
        else:
            cycles.append(k.launch_cycles + k.compute_cycles)
    return np.maximum(np.ceil(np.array(cycles, dtype=float)), 1).astype(np.int64)


def level_bytes(program: Program) -> dict:
    """Bytes each kernel moves per level: level -> int64 array over instructions."""
    kernels = _kernels(program)
    shared = [k.shared_bytes if isinstance(k, cost.GemmCost) else 0.0 for k in kernels]
    return {"dram": np.round([k.dram_bytes for k in kernels]).astype(np.int64),
            "l2": np.round([k.l2_bytes for k in kernels]).astype(np.int64),
            "shared_memory": np.round(shared).astype(np.int64)}


def requant_ops(program: Program) -> np.ndarray:
    """Outputs each kernel requantises: a quantised GEMM's outputs (its epilogue), every group's."""
    return gemm_tile_requant_ops(program)


def unit_costs(spec) -> UnitCosts:
    tech, dt, sm, mem = technology(spec), spec.datatypes, spec.sm, spec.memory
    vector_type = "fp32" if spec.integer_datapath else dt.output
    requant_pj = tech.multiply_pj["fp32"] + tech.add_pj["fp32"] if spec.integer_datapath else 0.0
    l2_kib = mem.l2_mib * 1024
    byte_pj = {
        "dram": 8 * tech.dram_pj_per_bit[mem.dram_type],
        "l2": sram_pj_per_byte(tech, l2_kib, max(1, round(mem.l2_bytes_per_cycle / L2_SLICE_BYTES)), L2_SLICE_BYTES),
        "shared_memory": sram_pj_per_byte(tech, sm.shared_memory_kib, SHARED_BANKS, SHARED_BANK_BYTES),
    }
    macs_per_sm = spec.macs_per_sm_cycle(dt.input)[0]
    lane_um2 = {t: tech.multiply_um2[t] + tech.add_um2[t] for t in ("fp32", "int32")}
    area = {
        "tensor_cores": sm.count * macs_per_sm * pe_area_um2(tech, dt.input, dt.weight, dt.accumulator) / UM2_PER_MM2,
        "simt_lanes": sm.count * (sm.fp32_lanes * lane_um2["fp32"] + sm.int32_lanes * lane_um2["int32"]) / UM2_PER_MM2,
        "register_file": sm.count * sram_area_mm2(tech, sm.registers * 4 / 1024),
        "shared_memory": sm.count * sram_area_mm2(tech, mem.l1_kib),
        "l2": sram_area_mm2(tech, l2_kib),
    }
    return UnitCosts(mac_j=mac_pj(tech, dt.input, dt.weight, dt.accumulator) * PJ,
                     vector_op_j=tech.add_pj[vector_type] * PJ, requant_j=requant_pj * PJ,
                     byte_j={k: v * PJ for k, v in byte_pj.items()}, area_mm2=area,
                     leakage_w=tech.leakage_w_per_mm2 * sum(area.values()), components=COMPONENTS)

"""The systolic target's simulator side (sim/targets/__init__.py: the contract): timing, action
counts and unit prices.

Timing, cycles of each instruction:

  matmul        SCALE-Sim fold formula (compiler/targets/systolic/cycles.py), less the fill (and
                the previous fold's drain) when its stationary tile is still in the PEs: see
                `resident` below and docs/timing_model.md
  DMA (loads, stores)  dram_latency + max(DRAM bytes / DRAM bytes-per-cycle,
                on-chip bytes / scratchpad bytes-per-cycle (banks x width))
  vector ops    max(element-ops / lanes, DRAM bytes / DRAM bytes-per-cycle) + latency
With ideal_memory (or a spec with memory.ideal, whose tiles were also chosen for it), every
transfer is free and DRAM traffic costs nothing, so the total is the compute-only figure peers
such as SCALE-Sim report.

Action counts: bytes per level (a matmul reads its A and W tiles and reads and writes its
accumulator tile, each element the size of what that memory holds; DMA moves its own bytes), and
the outputs each store_tile requantises. Prices (unit_costs), per component:
  pe_array          MACs x (multiply of the wider of input/weight type + add of the
                    accumulator type); operand-forwarding registers are not priced.
  vector_unit       element-ops x one add of the activation (output) type; element-ops
                    are the lowering's count (an affine is 2 ops, a softmax 4 per element).
                    On the integer datapath the vector unit computes in fp32 (QuantizeLinear,
                    QLinearAdd's FMAs, softmax), so it is priced as fp32.
  requantizer       integer datapath only: requantised outputs x (one multiply + one add):
                    fp32 for the float requantiser, int32 for the fixed-point one.
  input_scratchpad, weight_scratchpad, accumulator
                    bytes moved x SRAM energy per byte (sim/energy.py sram_pj_per_byte).
  dram              bytes moved x 8 x the table's pJ/bit for memory.dram_type.
Areas: PE array = rows x cols x (p x (multiplier + adder) + pipeline registers for p
inputs, p weights and one partial sum), p = array.macs_per_pe_cycle; each SRAM = KiB x
bitcells / array efficiency; vector unit = lanes x (multiplier + adder) of its type;
requantizer = cols x (multiplier + adder) (one row of outputs per cycle), 0 on float
datapaths.
"""
from __future__ import annotations

import numpy as np

from compiler.program import OPCODE_ID, OPCODE_UNIT, OPERAND, UNIT_ID, Program
from compiler.spec import DATATYPE_BITS
from compiler.targets.systolic.cycles import matmul_cycles, one_fold_deep, resident_saving
from sim.energy import (PJ, UM2_PER_MM2, UnitCosts, mac_pj, pe_area_um2, sram_area_mm2, sram_pj_per_byte,
                        technology)

COMPONENTS = ("pe_array", "vector_unit", "requantizer")   # where MAC, vector and requantiser energy go
LEVELS = ("dram", "input_scratchpad", "weight_scratchpad", "accumulator")   # level_bytes' keys: its memories
MATMUL = OPERAND["matmul"]
# The operand a dataflow keeps in the PEs, the matmul operands that identify its tile (address,
# shape, the group's descriptor, its first column), and the load that replaces it
STATIONARY = {
    "weight_stationary": ("w", ("w", "tk", "tn", "desc", "n0"), "load_weights"),
    "input_stationary": ("a", ("a", "tm", "tk", "desc"), "load_im2col"),
    "output_stationary": ("acc", ("acc", "tm", "tn", "desc", "n0"), "load_bias"),
}
# What each energy and area component of this target prices (sim/stats.py adds these to DEFINITIONS)
DEFINITIONS = {
    "energy_pe_array_j": "J: MACs x (multiply of the wider input/weight type + add of the accumulator type)",
    "energy_vector_unit_j": "J: vector element-ops x one add of the activation type (fp32 on the integer datapath)",
    "energy_requantizer_j": "J: requantised outputs x (multiply + add), fp32 or int32 (fixed point); 0 for float",
    "energy_input_scratchpad_j": "J: input-scratchpad bytes x SRAM energy per byte (capacity, banks, width)",
    "energy_weight_scratchpad_j": "J: weight-scratchpad bytes x SRAM energy per byte (capacity, banks, width)",
    "energy_accumulator_j": "J: accumulator bytes x SRAM energy per byte (capacity, one row of partial sums wide)",
    "energy_dram_j": "J: DRAM bytes x 8 x pJ/bit of memory.dram_type",
    "energy_leakage_j": "J: leakage W/mm^2 x area_mm2 x latency_s",
    "area_pe_array_mm2": "mm^2: rows x cols x (multiplier + adder + input/weight/partial-sum registers)",
    "area_vector_unit_mm2": "mm^2: lanes x (multiplier + adder) of the activation type (fp32 on the integer datapath)",
    "area_requantizer_mm2": "mm^2: array columns x (multiplier + adder) of the requantiser; 0 for float",
    "area_input_scratchpad_mm2": "mm^2: KiB x 8192 x bitcell area / array efficiency",
    "area_weight_scratchpad_mm2": "mm^2: KiB x 8192 x bitcell area / array efficiency",
    "area_accumulator_mm2": "mm^2: KiB x 8192 x bitcell area / array efficiency",
}


def instruction_cycles(program: Program, ideal_memory: bool = False) -> np.ndarray:
    spec = program.spec
    ins = program.instructions
    ops = ins.operands
    cycles = np.zeros(len(ins), np.int64)
    dram_bpc = spec.dram_bytes_per_cycle
    spad_bpc = spec.memory.scratchpad_banks * spec.memory.scratchpad_bytes_per_cycle
    latency = spec.memory.dram_latency_cycles

    mm = ins.opcode == OPCODE_ID["matmul"]
    arr = spec.array
    full = matmul_cycles(arr.dataflow, arr.rows, arr.cols, ops[mm, MATMUL.tm], ops[mm, MATMUL.tk],
                         ops[mm, MATMUL.tn], arr.macs_per_pe_cycle, arr.output_stationary_drain)
    kept, drain_hidden = resident(program)
    cycles[mm] = full - np.where(kept, resident_saving(arr.dataflow, arr.rows, arr.cols,
                                                       arr.output_stationary_drain, drain_hidden), 0)
    ideal_memory = ideal_memory or spec.memory.ideal

    unit = OPCODE_UNIT[ins.opcode]
    dma = (unit == UNIT_ID["dma_load"]) | (unit == UNIT_ID["dma_store"])
    vec = unit == UNIT_ID["vector"]
    if ideal_memory:
        cycles[dma] = 0
        cycles[vec] = np.ceil(ins.work[vec] / spec.vector.lanes)
    else:
        onchip = np.ceil(ins.onchip_bytes[dma] / spad_bpc)
        dram = np.ceil(ins.dram_bytes[dma] / dram_bpc)
        cycles[dma] = np.maximum(onchip, dram) + np.where(ins.dram_bytes[dma] > 0, latency, 0)
        cycles[vec] = np.maximum(np.ceil(ins.work[vec] / spec.vector.lanes),
                                 np.ceil(ins.dram_bytes[vec] / dram_bpc)) + latency
    return np.maximum(cycles, 1)


def resident(program: Program) -> tuple:
    """(kept, drain_hidden), bool per matmul in program order. kept: the previous matmul on the
    array used the same stationary tile (same operand address, tile shape, descriptor and first
    column, and no load replaced the tile in between) and the tile is one fold deep in K
    (cycles.one_fold_deep). drain_hidden: kept, and its outputs need not wait for the previous
    matmul's to drain: they go to another accumulator address, or continue the same tile with no
    bias load in between (output-stationary over K). A fresh tile in the previous matmul's
    accumulator slot (single buffering) waits for that slot's store: only the fill is saved."""
    ins, arr = program.instructions, program.spec.array
    operand, identity, load = STATIONARY[arr.dataflow]
    rows = np.flatnonzero(ins.opcode == OPCODE_ID["matmul"])
    ops = ins.operands[rows]
    same = np.zeros(len(rows), bool)
    same[1:] = (ins.engine[rows[1:]] == ins.engine[rows[:-1]]) & np.all(
        [ops[1:, getattr(MATMUL, f)] == ops[:-1, getattr(MATMUL, f)] for f in identity], axis=0)
    same &= one_fold_deep(arr.dataflow, arr.rows, ops[:, MATMUL.tk], arr.macs_per_pe_cycle)
    # a load between two matmuls into the stationary operand's (or the accumulator's) address
    replaced, new_acc = (_loaded_between(ins, rows, op, ops[:, getattr(MATMUL, col)])
                         for op, col in ((load, operand), ("load_bias", "acc")))
    kept = same & ~replaced
    other_acc = np.ones(len(rows), bool)
    other_acc[1:] = ops[1:, MATMUL.acc] != ops[:-1, MATMUL.acc]
    return kept, kept & (other_acc | ~new_acc)


def _loaded_between(ins, rows: np.ndarray, opcode: str, address: np.ndarray) -> np.ndarray:
    """Per matmul (rows: their indices), whether an `opcode` row since the previous matmul wrote
    `address` (that matmul's operand address) in its dst."""
    loads = np.flatnonzero(ins.opcode == OPCODE_ID[opcode])
    nxt = np.searchsorted(rows, loads)             # the matmul each load precedes
    inside = nxt < len(rows)
    loads, nxt = loads[inside], nxt[inside]
    hit = np.zeros(len(rows), bool)
    hit[nxt[ins.operands[loads, OPERAND[opcode].dst] == address[nxt]]] = True
    return hit


def level_bytes(program: Program) -> dict:
    """Bytes each instruction moves per memory level: level -> int64 array over instructions."""
    ins = program.instructions
    op, ops, onchip = ins.opcode, ins.operands, ins.onchip_bytes
    in_b, w_b, acc_b = (program.memory(m).element_bytes for m in LEVELS[1:])
    mm = op == OPCODE_ID["matmul"]
    tm, tk, tn = (np.where(mm, ops[:, i], 0) for i in (MATMUL.tm, MATMUL.tk, MATMUL.tn))
    return {
        "dram": ins.dram_bytes.astype(np.int64),
        "input_scratchpad": np.where(op == OPCODE_ID["load_im2col"], onchip, 0) + in_b * tm * tk,
        "weight_scratchpad": np.where(op == OPCODE_ID["load_weights"], onchip, 0) + w_b * tk * tn,
        "accumulator": np.where((op == OPCODE_ID["load_bias"]) | (op == OPCODE_ID["store_tile"]), onchip, 0)
                       + 2 * acc_b * tm * tn,
    }


def requant_ops(program: Program) -> np.ndarray:
    """Outputs each instruction requantises: a store_tile's work."""
    ins = program.instructions
    return np.where(ins.opcode == OPCODE_ID["store_tile"], ins.work, 0).astype(np.int64)


def unit_costs(spec) -> UnitCosts:
    tech, dt, mem = technology(spec), spec.datatypes, spec.memory
    vector_type = "fp32" if spec.integer_datapath else dt.output
    requant_type = ("int32" if dt.requantize == "fixed_point" else "fp32") if spec.integer_datapath else None
    requant_pj = tech.multiply_pj[requant_type] + tech.add_pj[requant_type] if requant_type else 0.0
    requant_um2 = tech.multiply_um2[requant_type] + tech.add_um2[requant_type] if requant_type else 0.0
    acc_width = spec.array.cols * DATATYPE_BITS[dt.accumulator] / 8  # one row of partial sums per cycle
    byte_pj = {
        "input_scratchpad": sram_pj_per_byte(tech, mem.input_scratchpad_kib, mem.scratchpad_banks,
                                             mem.scratchpad_bytes_per_cycle),
        "weight_scratchpad": sram_pj_per_byte(tech, mem.weight_scratchpad_kib, mem.scratchpad_banks,
                                              mem.scratchpad_bytes_per_cycle),
        "accumulator": sram_pj_per_byte(tech, mem.accumulator_kib, 1, acc_width),
        "dram": 8 * tech.dram_pj_per_bit[mem.dram_type],
    }
    area = {
        "pe_array": spec.array.rows * spec.array.cols
        * pe_area_um2(tech, dt.input, dt.weight, dt.accumulator, spec.array.macs_per_pe_cycle) / UM2_PER_MM2,
        "vector_unit": spec.vector.lanes * (tech.multiply_um2[vector_type] + tech.add_um2[vector_type]) / UM2_PER_MM2,
        "requantizer": spec.array.cols * requant_um2 / UM2_PER_MM2,
        "input_scratchpad": sram_area_mm2(tech, mem.input_scratchpad_kib),
        "weight_scratchpad": sram_area_mm2(tech, mem.weight_scratchpad_kib),
        "accumulator": sram_area_mm2(tech, mem.accumulator_kib),
    }
    return UnitCosts(mac_j=mac_pj(tech, dt.input, dt.weight, dt.accumulator) * PJ,
                     vector_op_j=tech.add_pj[vector_type] * PJ, requant_j=requant_pj * PJ,
                     byte_j={k: v * PJ for k, v in byte_pj.items()}, area_mm2=area,
                     leakage_w=tech.leakage_w_per_mm2 * sum(area.values()), components=COMPONENTS)

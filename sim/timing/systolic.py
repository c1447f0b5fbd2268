"""Timing model of the systolic target: cycles of each instruction.

  matmul        SCALE-Sim fold formula (compiler/targets/systolic_cycles.py)
  DMA (loads, stores)  dram_latency + max(DRAM bytes / DRAM bytes-per-cycle,
                on-chip bytes / scratchpad bytes-per-cycle (banks x width))
  vector ops    max(element-ops / lanes, DRAM bytes / DRAM bytes-per-cycle) + latency
With ideal_memory, every transfer is free and DRAM traffic costs nothing, so the
total is the compute-only figure peers such as SCALE-Sim report.
"""
from __future__ import annotations

import numpy as np

from compiler.program import ENGINE_ID, OPCODE_ID, Program
from compiler.targets.systolic_cycles import matmul_cycles


def instruction_cycles(program: Program, ideal_memory: bool = False) -> np.ndarray:
    spec = program.spec
    ins = program.instructions
    ops = ins.operands
    cycles = np.zeros(len(ins), np.int64)
    dram_bpc = spec.dram_bytes_per_cycle
    spad_bpc = spec.memory.scratchpad_banks * spec.memory.scratchpad_bytes_per_cycle
    latency = spec.memory.dram_latency_cycles

    mm = ins.opcode == OPCODE_ID["matmul"]
    cycles[mm] = matmul_cycles(spec.array.dataflow, spec.array.rows, spec.array.cols,
                               ops[mm, 3], ops[mm, 4], ops[mm, 5], spec.array.macs_per_pe_cycle)

    dma = (ins.engine == ENGINE_ID["dma_load"]) | (ins.engine == ENGINE_ID["dma_store"])
    vec = ins.engine == ENGINE_ID["vector"]
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

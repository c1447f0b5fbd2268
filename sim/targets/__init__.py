"""The simulator side of each registered target (compiler/targets/__init__.py names the module).

A target's sim module provides, for a Program it lowered:
  instruction_cycles(program, ideal_memory) -> int64[n]   cycles of each instruction on its engine
  level_bytes(program) -> {level: int64[n]}    bytes each instruction moves per memory level
                                               ("dram" and the target's on-chip levels)
  requant_ops(program) -> int64[n]             outputs each instruction requantises
  unit_costs(spec) -> sim.energy.UnitCosts      J per action and mm^2 per component, from the
                                               spec's technology table
The generic simulator (sim/run.py, sim/stats.py) schedules the cycles, sums the action counts per
layer and prices them; it never names a target.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from compiler import targets
from compiler.program import OPCODE_ID, OPERAND


def of(name: str) -> ModuleType:
    """The sim module of target `name`."""
    sim = targets.get(name).sim
    return importlib.import_module(sim) if isinstance(sim, str) else sim


def gemm_tile_requant_ops(program) -> np.ndarray:
    """Outputs each instruction requantises, for a target whose quantised GEMMs are gemm_tile rows:
    a quantised layer's tile outputs (its epilogue), every group's; 0 elsewhere."""
    ins, gemm = program.instructions, OPERAND["gemm_tile"]
    out = np.zeros(len(ins), np.int64)
    for i in np.flatnonzero(ins.opcode == OPCODE_ID["gemm_tile"]):
        mapping = program.layers[ins.layer[i]].mapping
        if mapping.extras.get("datapath"):
            out[i] = mapping.dims["g"] * ins.operands[i, gemm.tm] * ins.operands[i, gemm.tn]
    return out

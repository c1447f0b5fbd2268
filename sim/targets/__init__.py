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

from compiler import targets


def of(name: str) -> ModuleType:
    """The sim module of target `name`."""
    sim = targets.get(name).sim
    return importlib.import_module(sim) if isinstance(sim, str) else sim

"""Run a Program: place inputs in the simulated DRAM image, execute (functional
mode) or only time (timing mode) the same instruction table, read outputs back
from DRAM and collect Stats."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.program import ENGINES, Program
from sim import kernels
from sim.errors import SimError
from sim.stats import Stats, collect
from sim.timing import systolic as systolic_timing

TIMING = {"systolic": systolic_timing.instruction_cycles}


@dataclass
class SimResult:
    outputs: dict        # graph output name -> np.ndarray (empty in timing mode)
    stats: Stats


def place_inputs(program: Program, inputs: dict, dram: np.ndarray) -> None:
    """Write each graph input into its DRAM region (float32 view), checking names and shapes."""
    missing = [n for n in program.inputs if n not in inputs]
    if missing:
        raise SimError(f"missing input(s) {', '.join(missing)}; the model takes {', '.join(program.inputs)}")
    for name in program.inputs:
        region = program.regions[name]
        value = np.asarray(inputs[name])
        if tuple(value.shape) != tuple(region.shape):
            raise SimError(f"input '{name}' has shape {list(value.shape)}, the model expects {list(region.shape)}")
        dram[region.offset // 4: region.offset // 4 + value.size] = value.astype(np.float32).ravel()


def read_outputs(program: Program, dram: np.ndarray) -> dict:
    """Copy each graph output's DRAM region (float32 view) into an array of its shape."""
    return {name: dram[r.offset // 4: r.offset // 4 + r.nbytes // 4].reshape(r.shape).copy()
            for name, r in ((n, program.regions[n]) for n in program.outputs)}


def simulate(program: Program, inputs: dict | None = None, timing_only: bool = False,
             ideal_memory: bool = False) -> SimResult:
    """Execute `program`; `inputs` maps graph input names to arrays (required unless timing_only)."""
    outputs = {}
    if not timing_only:
        if inputs is None:
            raise SimError("functional simulation needs inputs (or use timing_only=True)")
        dram = program.dram_image().view(np.float32)
        place_inputs(program, inputs, dram)
        onchip = {name: np.zeros(max(size // 4, 1), np.float32) for name, size in program.onchip.items()}
        ins = program.instructions
        kernels.execute(ins.opcode, ins.operands, program.desc_int, program.desc_float, dram,
                        onchip["input_scratchpad"], onchip["weight_scratchpad"], onchip["accumulator"])
        outputs = read_outputs(program, dram)
    cycles = TIMING[program.target](program, ideal_memory)
    ins = program.instructions
    start, finish = kernels.schedule(ins.engine, cycles, ins.dep_ptr, ins.dep_idx, len(ENGINES))
    return SimResult(outputs, collect(program, cycles, start, finish, ideal_memory))

"""Run a Program: place inputs in the simulated DRAM image, execute (functional
mode) or only time (timing mode) the same instruction table, read outputs back
from DRAM and collect Stats.

Memories are byte buffers (the DRAM image, and one per on-chip memory); inputs are
encoded in their region's element type when placed (fp32 -> bf16/fp16 rounds to
nearest even, compiler/numerics.py) and outputs are widened exactly to float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.numerics import FLOAT_TYPES, decode, encode
from compiler.program import DTYPE_CODE, DTYPE_OPERANDS, ENGINES, Program
from sim import kernels
from sim.errors import SimError
from sim.stats import Stats, collect
from sim.timing import systolic as systolic_timing

TIMING = {"systolic": systolic_timing.instruction_cycles}


@dataclass
class SimResult:
    outputs: dict        # graph output name -> np.ndarray (float32; empty in timing mode)
    stats: Stats


def place_inputs(program: Program, inputs: dict, dram: np.ndarray) -> None:
    """Write each graph input into its DRAM region (byte buffer `dram`), encoded in the
    region's element type, checking names and shapes."""
    missing = [n for n in program.inputs if n not in inputs]
    if missing:
        raise SimError(f"missing input(s) {', '.join(missing)}; the model takes {', '.join(program.inputs)}")
    for name in program.inputs:
        region = program.regions[name]
        value = np.asarray(inputs[name])
        if tuple(value.shape) != tuple(region.shape):
            raise SimError(f"input '{name}' has shape {list(value.shape)}, the model expects {list(region.shape)}")
        raw = encode(value.ravel(), region.dtype).view(np.uint8)
        dram[region.offset: region.offset + raw.size] = raw


def read_outputs(program: Program, dram: np.ndarray) -> dict:
    """Each graph output's DRAM region (byte buffer `dram`) as a float32 array of its shape."""
    outputs = {}
    for name in program.outputs:
        r = program.regions[name]
        stored = dram[r.offset: r.offset + r.nbytes].view(np.float32 if r.dtype == "fp32" else np.uint16)
        outputs[name] = decode(stored, r.dtype).reshape(r.shape).copy()
    return outputs


def onchip_memories(program: Program) -> dict:
    """A zeroed byte buffer per on-chip memory (whole 4-byte words, so every typed view fits)."""
    return {name: np.zeros(max(-(-size // 4) * 4, 4), np.uint8) for name, size in program.onchip.items()}


def check_datapath(program: Program) -> None:
    """The element types the kernels implement: float types (in regions, on-chip memories
    and every *_dtype operand), an fp32 accumulator."""
    types = {"region " + r.name: r.dtype for r in program.regions.values()}
    types.update({m: program.onchip_dtype(m) for m in program.onchip})
    bad = [(where, t) for where, t in types.items() if t not in FLOAT_TYPES]
    ins = program.instructions
    codes = ins.operands[DTYPE_OPERANDS[ins.opcode]]
    wrong = codes[~np.isin(codes, [DTYPE_CODE[t] for t in FLOAT_TYPES])]
    if len(wrong):
        bad.append(("a *_dtype operand", f"code {int(wrong[0])}"))
    if program.onchip_dtype("accumulator") != "fp32":
        bad.append(("accumulator", program.onchip_dtype("accumulator")))
    if bad:
        raise SimError(f"{bad[0][0]} holds {bad[0][1]}; the simulator executes float datapaths only "
                       f"({', '.join(FLOAT_TYPES)} with an fp32 accumulator)")


def simulate(program: Program, inputs: dict | None = None, timing_only: bool = False,
             ideal_memory: bool = False) -> SimResult:
    """Execute `program`; `inputs` maps graph input names to arrays (required unless timing_only)."""
    outputs = {}
    if not timing_only:
        if inputs is None:
            raise SimError("functional simulation needs inputs (or use timing_only=True)")
        check_datapath(program)
        dram = program.dram_image()
        place_inputs(program, inputs, dram)
        onchip = onchip_memories(program)
        ins = program.instructions
        kernels.execute(ins.opcode, ins.operands, program.desc_int, program.desc_float, dram,
                        onchip["input_scratchpad"], onchip["weight_scratchpad"], onchip["accumulator"],
                        DTYPE_CODE[program.onchip_dtype("input_scratchpad")],
                        DTYPE_CODE[program.onchip_dtype("weight_scratchpad")])
        outputs = read_outputs(program, dram)
    cycles = TIMING[program.target](program, ideal_memory)
    ins = program.instructions
    start, finish = kernels.schedule(ins.engine, cycles, ins.dep_ptr, ins.dep_idx, len(ENGINES))
    return SimResult(outputs, collect(program, cycles, start, finish, ideal_memory))

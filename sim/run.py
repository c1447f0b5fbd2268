"""Run a Program: place inputs in the simulated DRAM image, execute (functional
mode) or only time (timing mode) the same instruction table, read outputs back
from DRAM and collect Stats.

Memories are byte buffers, one per memory the Program declares (Program.memories, by id:
the DRAM image, then the target's on-chip memories), handed to the kernels by id; inputs are
encoded in their region's element type when placed (fp32 -> bf16/fp16 rounds to
nearest even, compiler/numerics.py) and float outputs are widened exactly to float32
(integer outputs, the codes of a quantised model, come back as stored).
A functional run verifies the Program first (every address inside its memory); the debug mode
(DSE_BOUNDSCHECK=1, or simulate(..., boundscheck=True)) runs the kernels compiled with bounds
checking instead, to find an access verify does not see.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from compiler.numerics import FLOAT_TYPES, INT_TYPES, STORAGE, decode, encode
from compiler.program import ADDRESS_MEMORY, DRAM, DTYPE_CODE, DTYPE_OPERANDS, OPCODE_NAMES, OPCODES, Program
from sim import kernels
from sim.errors import SimError
from sim.stats import Stats, collect
from sim import targets as sim_targets
# NumPy kinds an input array may have (booleans, integers, real floats), converted to its region's
# type; complex numbers, strings, dates, records and Python objects are not data a model reads.
INPUT_KINDS = "biuf"
BOUNDSCHECK_ENV = "DSE_BOUNDSCHECK"   # =1: functional runs use the bounds-checked kernels (simulate)


@dataclass
class SimResult:
    outputs: dict        # output name -> np.ndarray (float32, or an integer output's codes; empty in timing mode)
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
        if value.dtype.kind not in INPUT_KINDS:
            raise SimError(f"input '{name}' is an array of {value.dtype}; the model takes {region.dtype} numbers "
                           "(pass booleans, integers or real floats)")
        if tuple(value.shape) != tuple(region.shape):
            raise SimError(f"input '{name}' has shape {list(value.shape)}, the model expects {list(region.shape)}")
        try:
            raw = encode(value.ravel(), region.dtype).view(np.uint8)
        except ValueError as exc:
            raise SimError(f"input '{name}': {exc} (the model takes {region.dtype} here)") from None
        dram[region.offset: region.offset + raw.size] = raw


def read_outputs(program: Program, dram: np.ndarray, names=None) -> dict:
    """Each graph output's (or each named region's) DRAM region (byte buffer `dram`) as an array of
    its shape: float32 for float types, the stored integers for integer types."""
    outputs = {}
    for name in program.outputs if names is None else names:
        r = program.regions[name]
        stored = dram[r.offset: r.offset + r.nbytes].view(STORAGE[r.dtype])
        outputs[name] = decode(stored, r.dtype).reshape(r.shape).copy()
    return outputs


# Memory ids the opcodes address (compiler.program.ADDRESS_MEMORY): the kernels receive at least these
MEMORY_IDS = 1 + max(memory for addresses in ADDRESS_MEMORY.values() for memory in addresses)


def memory_buffers(program: Program, dram: np.ndarray) -> list:
    """A byte buffer per memory id: `dram` (the DRAM image) for memory 0, a zeroed one for each other
    memory the program declares (whole 4-byte words, so every typed view fits), and an empty word
    for an id an opcode names that the program does not declare (verify keeps instructions off it)."""
    buffers = [np.zeros(max(-(-m.nbytes // 4) * 4, 4), np.uint8) for m in program.memories]
    buffers[DRAM] = dram
    return buffers + [np.zeros(4, np.uint8) for _ in range(len(buffers), MEMORY_IDS)]


def memory_views(buffers: list) -> tuple:
    """The kernels' memories: per id, the (float32, uint16, uint8, int32) views of its buffer."""
    return tuple((b.view(np.float32), b.view(np.uint16), b, b.view(np.int32)) for b in buffers)


def check_datapath(program: Program) -> None:
    """The element types the kernels implement: float types and 8-bit codes and int32 (in
    regions, on-chip memories and every *_dtype operand); an fp32 accumulator for float inputs,
    int32 for 8-bit ones."""
    implemented = FLOAT_TYPES + INT_TYPES
    types = {"region " + r.name: r.dtype for r in program.regions.values()}
    types.update({m.name: m.dtype for m in program.memories if m.dtype is not None})
    bad = [(where, t) for where, t in types.items() if t not in implemented]
    ins = program.instructions
    known = (ins.opcode >= 0) & (ins.opcode < len(OPCODE_NAMES))    # the executors refuse the others
    if known.all():
        codes = ins.operands[DTYPE_OPERANDS[ins.opcode]]
    else:
        codes = ins.operands[known][DTYPE_OPERANDS[ins.opcode[known]]]
    wrong = codes[~np.isin(codes, [DTYPE_CODE[t] for t in implemented])]
    if len(wrong):
        bad.append(("a *_dtype operand", f"code {int(wrong[0])}"))
    operand, accumulator = program.addressed("matmul", "a"), program.addressed("matmul", "acc")
    if operand is not None and accumulator is not None and \
            accumulator.dtype != ("int32" if operand.dtype in INT_TYPES else "fp32"):
        bad.append((accumulator.name, accumulator.dtype))
    if bad:
        raise SimError(f"{bad[0][0]} holds {bad[0][1]}; the simulator executes {', '.join(FLOAT_TYPES)} "
                       f"with an fp32 accumulator, and uint8/int8 codes with an int32 accumulator")


def boundscheck_requested() -> bool:
    """Whether the environment asks for the bounds-checked kernels: DSE_BOUNDSCHECK=1."""
    return os.environ.get(BOUNDSCHECK_ENV, "").strip() not in ("", "0")


def execute(program: Program, inputs: dict, boundscheck: bool = False) -> np.ndarray:
    """Run the instruction table on a fresh DRAM image holding `inputs`; the image afterwards. The
    Program is taken as verified. With boundscheck, the kernels compiled with bounds checking run it
    (slower): an access outside a memory is a SimError naming the row, not a silent corruption."""
    check_datapath(program)
    dram = program.dram_image()
    place_inputs(program, inputs, dram)
    memories = memory_views(memory_buffers(program, dram))
    codes = np.array([DTYPE_CODE[m.dtype] if m.dtype else -1 for m in program.memories]
                     + [-1] * (len(memories) - len(program.memories)), np.int64)    # per memory id
    ins = program.instructions
    at = np.zeros(1, np.int64)
    try:
        stopped = kernels.executor(boundscheck)(ins.opcode, ins.operands, program.desc_int, program.desc_float,
                                                memories, codes, at)
    except IndexError as exc:
        if not boundscheck:
            raise
        raise SimError(f"{_row_text(program, int(at[0]))}: {exc} (an access outside its memory, found by the "
                       "bounds-checked kernels)") from None
    if stopped >= 0:
        raise SimError(f"row {stopped}: unknown opcode {int(ins.opcode[stopped])}; the simulator executes opcodes "
                       f"0..{len(OPCODE_NAMES) - 1} ({', '.join(OPCODE_NAMES)})")
    return dram


def _row_text(program: Program, i: int) -> str:
    """'row I OPCODE (operand=value ...)', from the table alone (an unverified row may name anything)."""
    op = OPCODE_NAMES[program.instructions.opcode[i]]
    values = " ".join(f"{name}={int(v)}" for name, v in zip(OPCODES[op][1], program.instructions.operands[i]))
    return f"row {i} {op} ({values})"


def simulate(program: Program, inputs: dict | None = None, timing_only: bool = False,
             ideal_memory: bool = False, all_tensors: bool = False, boundscheck: bool | None = None) -> SimResult:
    """Execute `program`; `inputs` maps graph input names to arrays (required unless timing_only).
    With all_tensors, `outputs` holds every tensor the Program keeps in DRAM (inputs, every
    intermediate, outputs; compile-time data under `name::...` too), for inspection.
    A functional run first verifies the Program (Program.verify: every address inside its memory),
    unless boundscheck (default: the DSE_BOUNDSCHECK environment variable) asks for the debug mode:
    the kernels compiled with bounds checking run it unverified, and an access outside a memory is a
    SimError naming the row (what finds an access verify misses)."""
    outputs = {}
    if not timing_only:
        if inputs is None:
            raise SimError("functional simulation needs inputs (or use timing_only=True)")
        boundscheck = boundscheck_requested() if boundscheck is None else boundscheck
        if not boundscheck:
            program.verify()
        dram = execute(program, inputs, boundscheck)
        outputs = read_outputs(program, dram, list(program.regions) if all_tensors else None)
    ideal_memory = ideal_memory or getattr(program.spec, "ideal_memory", False)   # a spec compiled for it
    cycles = sim_targets.of(program.target).instruction_cycles(program, ideal_memory)
    ins = program.instructions
    start, finish = kernels.schedule(ins.engine, cycles, ins.dep_ptr, ins.dep_idx, len(program.engines))
    return SimResult(outputs, collect(program, cycles, start, finish, ideal_memory))

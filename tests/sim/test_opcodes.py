"""The executors refuse what a Program must not hold: an unknown opcode is a SimError naming the row
(in the Numba kernels and in the NumPy reference), and the debug mode (DSE_BOUNDSCHECK=1, or
simulate(..., boundscheck=True)) runs the kernels compiled with bounds checking, so an address past
a memory that skipped Program.verify is a one-line SimError naming the row instead of a silent
corruption. The normal path verifies first, and names the operand."""
import dataclasses

import numpy as np
import pytest

import dse
from compiler.errors import ProgramError
from compiler.program import OPCODE_ID, OPCODES, OPERAND
from dse import zoo
from sim.errors import SimError
from sim.run import BOUNDSCHECK_ENV, execute, simulate
from tests.light_models import reference_input

SMALL = {"array": {"rows": 8, "cols": 8}}


@pytest.fixture(scope="module")
def cnn():
    model = zoo.small_cnn()
    return dse.compile(model, SMALL), reference_input(model)


def _copy(program):
    ins = dataclasses.replace(program.instructions, opcode=program.instructions.opcode.copy(),
                              operands=program.instructions.operands.copy())
    return dataclasses.replace(program, instructions=ins, desc_int=program.desc_int.copy(), _image=None)


def _past_input_scratchpad(program) -> int:
    """Point the first im2col load past the end of the input scratchpad; its row."""
    row = int(np.flatnonzero(program.instructions.opcode == OPCODE_ID["load_im2col"])[0])
    program.instructions.operands[row, OPERAND["load_im2col"].dst] = program.memory("input_scratchpad").nbytes
    return row


@pytest.mark.parametrize("code", [99, -1])
def test_kernels_refuse_an_unknown_opcode(cnn, code):
    program, inputs = cnn
    program = _copy(program)
    program.instructions.opcode[7] = code
    with pytest.raises(SimError, match=f"^row 7: unknown opcode {code}; the simulator executes opcodes 0..{len(OPCODES) - 1} "):
        execute(program, inputs)
    with pytest.raises(SimError, match=f"^row 7: unknown opcode {code};"):
        simulate(program, inputs, boundscheck=True)      # unverified: the kernel itself stops
    with pytest.raises(ProgramError, match=f"row 7 has unknown opcode {code}"):
        simulate(program, inputs)                        # the normal path: verify stops it first


def test_bounds_checked_kernels_name_the_row(cnn, monkeypatch):
    program, inputs = cnn
    program = _copy(program)
    row = _past_input_scratchpad(program)
    size = program.memory("input_scratchpad").nbytes
    with pytest.raises(ProgramError, match=f"row {row} load_im2col: operand dst={size} addresses "
                                           f"input_scratchpad bytes \\[{size}, \\d+\\), outside its {size} bytes"):
        simulate(program, inputs)
    with pytest.raises(SimError) as info:
        simulate(program, inputs, boundscheck=True)
    text = str(info.value)
    assert text.startswith(f"row {row} load_im2col (desc=0 m0=0 ") and f"dst={size}" in text
    assert "out of bounds" in text and "\n" not in text
    monkeypatch.setenv(BOUNDSCHECK_ENV, "1")
    with pytest.raises(SimError, match=f"^row {row} load_im2col "):
        simulate(program, inputs)


def test_bounds_checked_kernels_compute_the_same_outputs(cnn):
    program, inputs = cnn
    normal = simulate(program, inputs)
    checked = simulate(program, inputs, boundscheck=True)
    assert np.array_equal(normal.outputs["logits"], checked.outputs["logits"])
    assert normal.stats.total_cycles == checked.stats.total_cycles

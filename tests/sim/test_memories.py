"""Memories by id (compiler.program.Program.memories): a Program that declares DRAM alone, as a
target with one memory would, verifies and runs on the Numba kernels and on the NumPy reference,
and an instruction that addresses a memory it does not declare is refused."""
import numpy as np
import pytest

from compiler.errors import ProgramError
from compiler.program import Layer, Program, ProgramBuilder, Region, dram_memory
from sim import reference
from sim.run import execute, read_outputs


def _relu_program(load_bias: bool = False) -> Program:
    """y = relu(x) for x of 5 fp32 elements, in DRAM only (and a load into the accumulator memory)."""
    builder = ProgramBuilder()
    desc = builder.descriptor("vec_relu", dict(src=0, dst=64, n=5))
    builder.emit("vec_relu", 0, dict(desc=desc, src_dtype=0, dst_dtype=0), dram_bytes=40, work=5)
    if load_bias:                # an opcode that addresses an on-chip memory
        builder.emit("load_bias", 0, dict(src=-1, tm=1, tn=1, dst=0))
    ins, desc_int, desc_float = builder.finish()
    regions = {"x": Region("x", 0, (5,), "input"), "y": Region("y", 64, (5,), "output")}
    return Program(target="toy", spec=None, regions=regions, memories=(dram_memory(128),), constants=[],
                   instructions=ins, desc_int=desc_int, desc_float=desc_float, layers=[Layer("relu", "relu", 0)],
                   inputs=["x"], outputs=["y"])


def test_a_dram_only_program_runs():
    program = _relu_program().verify()
    x = np.array([-2, -0.5, 0, 1.5, 3], np.float32)
    got = read_outputs(program, execute(program, {"x": x}))["y"]
    np.testing.assert_array_equal(got, np.maximum(x, 0))
    np.testing.assert_array_equal(reference.execute(program, {"x": x})["y"], got)
    assert "memory 0 dram level=0 per-region bytes=128" in str(program)


def test_an_undeclared_memory_is_refused():
    with pytest.raises(ProgramError, match="load_bias: it addresses memory 3, which the program does not declare "
                                           r"\(it declares 0 \(dram\)\)"):
        _relu_program(load_bias=True).verify()

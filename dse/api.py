"""Python API: `dse.run(model, hw=...)` compiles a model for a spec and simulates it.

    r = dse.run("model.onnx", hw="hwspecs/systolic.yaml", inputs={"x": x})
    r.outputs["y"], r.stats.total_cycles
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler import spec as specmod
from compiler.pipeline import compile_model
from compiler.program import Program
from dse import zoo
from sim import simulate
from sim.stats import Stats


@dataclass
class RunResult:
    outputs: dict
    stats: Stats
    program: Program


def load_spec(hw):
    """A Spec object, a path to a YAML spec, or a dict of spec fields."""
    if isinstance(hw, dict):
        return specmod.from_dict(hw)
    if isinstance(hw, str) or hasattr(hw, "__fspath__"):
        return specmod.load(hw)
    return hw


def random_inputs(program: Program, seed: int = 0) -> dict:
    """Seeded standard-normal inputs of the program's input shapes."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(program.regions[n].shape).astype(np.float32) for n in program.inputs}


def compile(model, hw="hwspecs/systolic.yaml") -> Program:  # noqa: A001 - mirrors `dse compile`
    return compile_model(zoo.resolve(model), load_spec(hw))


def run(model, hw="hwspecs/systolic.yaml", inputs=None, timing_only=False, ideal_memory=False,
        seed=0) -> RunResult:
    """Compile `model` (path, ModelProto or zoo:NAME) for `hw` and simulate it.

    Without `inputs`, a functional run uses seeded random inputs (see random_inputs).
    """
    program = compile(model, hw)
    if inputs is None and not timing_only:
        inputs = random_inputs(program, seed)
    result = simulate(program, inputs, timing_only=timing_only, ideal_memory=ideal_memory)
    return RunResult(result.outputs, result.stats, program)

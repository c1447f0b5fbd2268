"""Python API: `dse.run(model, hw=...)` compiles a model for a spec and simulates it.

    r = dse.run("model.onnx", hw=NAME, inputs={"x": x})   # a bundled spec's name, a YAML path or a dict
    r.outputs["y"], r.stats.total_cycles
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler import spec as specmod
from compiler.bundled import DEFAULT_SPEC
from compiler.numerics import INT_TYPES, STORAGE
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
    """A Spec object, a bundled spec's name, a path to a YAML spec, or a dict of spec fields."""
    if isinstance(hw, dict):
        return specmod.from_dict(hw)
    if isinstance(hw, str) or hasattr(hw, "__fspath__"):
        return specmod.load(hw)
    return hw


def random_inputs(program: Program, seed: int = 0) -> dict:
    """Seeded inputs of the program's input shapes: standard-normal floats, or uniform codes over
    an integer input's whole range."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in program.inputs:
        region = program.regions[name]
        if region.dtype in INT_TYPES:
            info = np.iinfo(STORAGE[region.dtype])
            out[name] = rng.integers(info.min, info.max, region.shape, endpoint=True).astype(STORAGE[region.dtype])
        else:
            out[name] = rng.standard_normal(region.shape).astype(np.float32)
    return out


def compile(model, hw=DEFAULT_SPEC, ideal_memory=False) -> Program:  # noqa: A001 - mirrors `dse compile`
    """The Program of `model` on `hw`; with ideal_memory, for the spec's ideal-memory variant where its
    target has one (`with_ideal_memory`: the systolic tiler then chooses tiles for compute alone)."""
    spec = load_spec(hw)
    if ideal_memory and hasattr(spec, "with_ideal_memory"):
        spec = spec.with_ideal_memory()
    return compile_model(zoo.resolve(model), spec)


def run(model, hw=DEFAULT_SPEC, inputs=None, timing_only=False, ideal_memory=False,
        seed=0) -> RunResult:
    """Compile `model` (path, ModelProto or zoo:NAME) for `hw` and simulate it.

    Without `inputs`, a functional run uses seeded random inputs (see random_inputs).
    """
    program = compile(model, hw, ideal_memory)
    if inputs is None and not timing_only:
        inputs = random_inputs(program, seed)
    result = simulate(program, inputs, timing_only=timing_only, ideal_memory=ideal_memory)
    return RunResult(result.outputs, result.stats, program)


def layer_mappings(folder, key: str) -> list | None:
    """Which mapping gave a stored evaluation its cycles: per layer {name, op, cycles, mapping (a
    compiler.mapping.Mapping)} of the evaluation `key` (the key column of `dse.load(folder)`) in a
    sweep's report folder; None for an infeasible evaluation or one stored before mappings were kept."""
    from pathlib import Path

    from compiler.errors import SpecError
    from dse.store import STORE_FILE, Store
    if not (Path(folder) / STORE_FILE).exists():
        raise SpecError(f"{folder}: no sweep results here ({STORE_FILE}); run `dse sweep` first")
    with Store(folder) as store:
        return store.layer_mappings(key)

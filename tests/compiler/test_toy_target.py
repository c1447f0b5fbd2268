"""A target defined in this file, registered, and run end to end through `dse run`: the target
interface (compiler/targets/__init__.py, sim/targets/__init__.py) is enough to add a machine
without editing a generic module.

The toy machine: one engine ("core") that does one multiply-accumulate or one element-op per cycle,
DRAM its only memory (DRAM_BYTES_PER_CYCLE bytes per cycle, whichever bounds the instruction). It
lowers every conv/gemm layer to one gemm_tile over the whole output (compiler/targets/gemm_layer.py)
and every other op to the shared vector lowering (compiler/targets/vector.py), both on its core.
"""
from __future__ import annotations

import dataclasses
import json
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest

from compiler import targets
from compiler.ir import node_macs
from compiler.mapping import Mapping
from compiler.program import Layer, Program, ProgramBuilder, dram_memory
from compiler.spec import DatatypeSpec, check_datatypes, check_technology, load, spec_field
from compiler.targets import gemm_layer, vector
from compiler.targets.memory_plan import VIEW_OPS, MemoryPlan
from dse import api
from dse.cli import main as dse_main
from sim.energy import PJ, UnitCosts, technology
from tests.light_models import light_model_path, reference_input, run_onnxruntime, with_random_weights
from tests.quant_models import quant_model_path

ROOT = Path(__file__).resolve().parents[2]

NAME = "toy_scalar"
DRAM_BYTES_PER_CYCLE = 8


@dataclass(frozen=True)
class ToySpec:
    name: str = spec_field("toy", "spec name")
    target: str = spec_field(NAME, "which target lowers to this hardware", choices=(NAME,))
    clock_ghz: float = spec_field(1.0, "core clock (GHz)", minimum=0.001)
    technology: str = spec_field("45nm", "energy/area table", check=check_technology)
    datatypes: DatatypeSpec = field(default_factory=DatatypeSpec, metadata={"doc": "datapath types"})
    workloads: tuple = spec_field(("zoo:mlp",), "models the explorer evaluates")
    sweep: dict = spec_field(None, "explorer grid")
    FIGURE_FIELDS = ()
    FIGURES = {}

    @property
    def peak_macs_per_cycle(self) -> int:
        return 1

    @property
    def integer_datapath(self) -> bool:
        return self.datatypes.input in ("int8", "uint8")

    @property
    def figures(self) -> dict:
        return {}

    def validate(self, where: str) -> None:
        check_datatypes(self.datatypes, where)


def lower(graph, spec: ToySpec) -> Program:
    quantised = gemm_layer.check_datapath(graph, spec, "an integer toy spec", "a float toy spec")
    plan = MemoryPlan(graph, gemm_layer.plan_types(quantised, spec.datatypes))
    builder = ProgramBuilder(engines=("core",))
    ready, layers = {}, []
    for node in graph.nodes:
        if node.op in VIEW_OPS:
            ready[node.outputs[0]] = ready.get(node.inputs[0], -1)
            continue
        index = len(layers)
        if node.op in ("conv", "gemm"):
            layer = gemm_layer.prepare(graph, node, plan, spec.datatypes)
            (row,) = gemm_layer.emit_gemm_tiles(builder, layer, [(0, layer.m, 0, layer.n)], index,
                                                [ready.get(node.inputs[0], -1)], engine="core")
            ready[node.outputs[0]] = row
            mapping = Mapping(unit="matrix", dims={"m": layer.m, "k": layer.k, "n": layer.n, "g": layer.groups},
                              tile={"m": layer.m, "k": layer.k, "n": layer.n, "g": 1}, loop_order=("g", "m", "n", "k"))
        else:
            vector.lower(graph, node, plan, builder, ready, index, engine="core")
            mapping = Mapping(unit="vector")
        layers.append(Layer(node.name, node.op, node_macs(graph, node), mapping))
    ins, desc_int, desc_float = builder.finish()
    return Program(target=NAME, spec=spec, regions=plan.regions, memories=(dram_memory(plan.size),),
                   constants=plan.chunks, instructions=ins, desc_int=desc_int, desc_float=desc_float,
                   layers=layers, inputs=list(graph.inputs), outputs=list(graph.outputs),
                   engines=("core",)).verify(bounds=False)


def _instruction_cycles(program, ideal_memory=False):
    ins = program.instructions
    memory = 0 if ideal_memory else -(-ins.dram_bytes // DRAM_BYTES_PER_CYCLE)
    return np.maximum(np.maximum(ins.work, memory), 1).astype(np.int64)


def _unit_costs(spec) -> UnitCosts:
    tech, dt = technology(spec), spec.datatypes
    area = {"core": (tech.multiply_um2[dt.input] + tech.add_um2[dt.accumulator]) / 1e6}
    return UnitCosts(mac_j=(tech.multiply_pj[dt.input] + tech.add_pj[dt.accumulator]) * PJ,
                     vector_op_j=tech.add_pj["fp32"] * PJ, requant_j=0.0,
                     byte_j={"dram": 8 * tech.dram_pj_per_bit["ddr4"] * PJ}, area_mm2=area,
                     leakage_w=tech.leakage_w_per_mm2 * area["core"], components=("core", "core_vector", "none"))


SIM = types.SimpleNamespace(
    instruction_cycles=_instruction_cycles,
    level_bytes=lambda program: {"dram": program.instructions.dram_bytes.astype(np.int64)},
    requant_ops=lambda program: np.zeros(len(program.instructions), np.int64),
    unit_costs=_unit_costs,
    DEFINITIONS={"energy_core_j": "J: MACs x (multiply + add)", "energy_core_vector_j": "J: element-ops x one add",
                 "energy_none_j": "J: 0 (no requantiser)", "energy_dram_j": "J: DRAM bytes x 8 x pJ/bit (DDR4)",
                 "energy_leakage_j": "J: leakage", "area_core_mm2": "mm^2: one multiplier and adder"},
)


@pytest.fixture
def toy_target():
    target = targets.register(targets.Target(name=NAME, spec=ToySpec, lower=lower, sim=SIM))
    yield target
    targets._REGISTRY.pop(NAME, None)


def test_a_toy_target_runs_a_light_model_through_dse_run(toy_target, tmp_path, capsys):
    model = with_random_weights(onnx.load(str(light_model_path("squeezenet"))), seed=0)
    model_path = tmp_path / "squeezenet.onnx"
    onnx.save(model, str(model_path))
    inputs = reference_input(model, seed=0)
    np.savez(tmp_path / "inputs.npz", **inputs)
    spec_path = tmp_path / "toy.yaml"
    spec_path.write_text(f"name: toy\ntarget: {NAME}\nclock_ghz: 0.5\n")
    out = tmp_path / "run"
    code = dse_main(["run", str(model_path), "--hw", str(spec_path), "--inputs", str(tmp_path / "inputs.npz"),
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    got = np.load(out / "outputs.npz")
    expected = run_onnxruntime(model, inputs)
    for output, value in zip(model.graph.output, expected):
        np.testing.assert_allclose(got[output.name], value, rtol=1e-4, atol=1e-5)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["target"] == NAME and set(stats["engine_busy_cycles"]) == {"core"}
    # one MAC per cycle: the matrix layers' cycles are at least their MACs; the run at least every MAC
    assert stats["total_cycles"] >= stats["macs"] > 0
    convs = [layer for layer in stats["layers"] if layer["op"] == "conv"]
    assert convs and all(layer["compute_cycles"] >= layer["macs"] for layer in convs)
    assert all(layer["mapping"]["tiles"] == {"m": 1, "k": 1, "n": 1, "g": layer["mapping"]["dims"]["g"]}
               for layer in convs)
    assert stats["energy_by_component_j"]["core"] > 0


INT8 = DatatypeSpec(input="uint8", weight="int8", accumulator="int32", output="uint8")


@pytest.mark.parametrize("model, datatypes, systolic", [
    ("zoo:small_cnn", DatatypeSpec(input="bf16", weight="bf16", accumulator="fp32", output="bf16"), "systolic_bf16"),
    ("qdq", INT8, "systolic_int8"),
    ("qoperator", dataclasses.replace(INT8, requantize="fixed_point"), "systolic_int8"),
    ("dynamic", INT8, "systolic_int8"),
])
def test_gemm_tiles_give_the_systolic_arrays_bits(toy_target, model, datatypes, systolic):
    """gemm_tile (a whole layer, DRAM to DRAM) and the systolic tile loops (K split, on-chip memories)
    accumulate in the same order and requantise alike: the same outputs, bit for bit, on 16-bit
    floats and on the integer datapath (the systolic one is checked against onnxruntime elsewhere)."""
    if model in ("qdq", "qoperator", "dynamic"):
        model = str(quant_model_path("mlp" if model == "dynamic" else "squeezenet", format=model,
                                     per_channel=model == "qoperator"))
    hw = load(ROOT / "hwspecs" / f"{systolic}.yaml")
    if datatypes.requantize != hw.datatypes.requantize:
        hw = dataclasses.replace(hw, datatypes=dataclasses.replace(hw.datatypes, requantize=datatypes.requantize))
    reference = api.run(model, hw, seed=1)
    toy = api.run(model, ToySpec(datatypes=datatypes), seed=1)
    assert toy.program.target == NAME
    for name, value in reference.outputs.items():
        assert toy.outputs[name].dtype == value.dtype
        np.testing.assert_array_equal(toy.outputs[name], value)


def test_the_toy_target_is_refused_once_unregistered(tmp_path, capsys):
    spec_path = tmp_path / "toy.yaml"
    spec_path.write_text(f"target: {NAME}\n")
    assert dse_main(["run", "zoo:mlp", "--hw", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert f"'target' is '{NAME}'" in err and "systolic" in err

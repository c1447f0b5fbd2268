"""End to end on the CPU target (hwspecs/cpu.yaml, cpu_zen4_like.yaml): the light models' outputs from
executing its Programs (one gemm_tile per core per conv/GEMM layer, vector slices per core) against
onnxruntime, and the systolic target's bits on every datapath whatever the split; the int8 datapath bit for
bit; the Program's shape (cores, barriers); the mapping printout; a faulted tile; timing-only speed; and
`dse probe-cpu` with benchmarks/validate_cpu.py --quick on this machine."""
import math
import re
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import dse
from compiler.pipeline import compile_graph
from compiler.program import OPCODE_ID, OPERAND
from compiler.targets import lower
from dse.api import load_spec
from dse.cli import main as dse_main
from dse import zoo
from sim import simulate
from tests.e2e.test_int8_models import check_bit_exact
from tests.e2e.test_models import DEFAULT_RUN, SLOW, check_against_ort
from tests.light_models import light_model_path, reference_input, with_random_weights
from tests.quant_models import quant_model_path

ROOT = Path(__file__).resolve().parents[2]
CPU = str(ROOT / "hwspecs" / "cpu.yaml")
INT8 = {"target": "cpu", "cores": 3, "cache": {"cores_per_l3": 2},
        "datatypes": {"input": "uint8", "weight": "int8", "accumulator": "int32", "output": "uint8"}}
GEMM_TILE = OPCODE_ID["gemm_tile"]


@pytest.mark.parametrize("name", DEFAULT_RUN + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_the_nine_light_models_on_cpu_yaml_match_onnxruntime(name):
    model = with_random_weights(onnx.load(light_model_path(name)), seed=0)
    program, _ = check_against_ort(model, hw=CPU)
    assert program.target == "cpu" and program.engines == tuple(f"core{i}" for i in range(8))


@pytest.mark.parametrize("cores, datatypes, systolic", [
    (1, None, {"array": {"rows": 16, "cols": 16}}), (5, None, {"array": {"rows": 16, "cols": 16}}),
    (3, {"input": "bf16", "weight": "bf16", "accumulator": "fp32", "output": "bf16"}, "systolic_bf16"),
])
def test_any_split_gives_the_systolic_bits(cores, datatypes, systolic):
    """Every output accumulates over k in increasing order from its bias, on either target and whatever
    the split over cores, so the bits agree (SqueezeNet: convs, concat copies, pools split per core)."""
    model = with_random_weights(onnx.load(light_model_path("squeezenet")), seed=0)
    hw = {"target": "cpu", "cores": cores, **({"datatypes": datatypes} if datatypes else {})}
    got, want = dse.run(model, hw=hw, seed=2), dse.run(model, hw=systolic, seed=2)
    for name, value in want.outputs.items():
        np.testing.assert_array_equal(got.outputs[name], value)


@pytest.mark.parametrize("name, fmt, per_channel", [
    ("mlp", "qdq", False), ("squeezenet", "qoperator", True),
    *(pytest.param(n, f, c, marks=pytest.mark.slow) for n, f, c in
      [("resnet50", "qdq", False), ("shufflenet", "qdq", True), ("squeezenet", "qdq", False)])])
def test_quantised_zoo_on_vnni_cores_is_bit_exact(name, fmt, per_channel):
    """The quantised models on the int8 datapath (VPDPBUSD dot products into int32 lanes, a float
    requantiser): onnxruntime's outputs bit for bit and every intermediate the IR reference's."""
    check_bit_exact(quant_model_path(name, fmt, per_channel), load_spec(INT8))


def test_layers_run_one_tile_per_core_after_every_row_of_their_input():
    program = dse.compile("zoo:resnet50", {"target": "cpu", "cores": 4})
    ins = program.instructions
    convs = [i for i, layer in enumerate(program.layers) if layer.op == "conv"]
    for index in convs[:3]:
        rows = np.flatnonzero(ins.layer == index)
        assert sorted(ins.engine[rows]) == [0, 1, 2, 3] and (ins.opcode[rows] == GEMM_TILE).all()
    second = np.flatnonzero(ins.layer == convs[1])
    producer = set(np.flatnonzero(ins.layer == convs[1] - 1).tolist())   # the pool before it, on 4 cores
    assert len(producer) == 4
    for row in second:
        assert set(ins.dep_idx[ins.dep_ptr[row]:ins.dep_ptr[row + 1]].tolist()) == producer


def test_a_faulted_tile_changes_the_outputs():
    """Outputs come from the Program: one core's tile moved by one row computes the wrong rows."""
    model = zoo.small_cnn()
    inputs = reference_input(model)
    program = dse.compile(model, {"target": "cpu", "cores": 2})
    good = simulate(program, inputs).outputs["logits"]
    row = int(np.flatnonzero(program.instructions.opcode == GEMM_TILE)[1])
    program.instructions.operands[row, OPERAND["gemm_tile"].m0] -= 1
    assert not np.allclose(simulate(program, inputs).outputs["logits"], good)


def test_mapping_printout_shows_the_blocking_per_layer(capsys):
    assert dse_main(["compile", "zoo:squeezenet", "--hw", CPU, "--mapping"]) == 0
    out = capsys.readouterr().out
    for word in ("kernel=BLIS GEMM", "cores=8x1", "mr=6", "nr=64", "input_level=", "est_cycles=", "bound=compute",
                 "kernel=elementwise cores=8"):
        assert word in out, word
    assert re.search(r" m\d+ k102 n64 g1 ", out)       # the cache blocks mc, kc, nc as the layer's tile


def test_resnet50_timing_only_is_fast_and_repeatable():
    graph = compile_graph(zoo.resolve("zoo:resnet50"))
    spec = load_spec(CPU)
    stats = simulate(lower(graph, spec), timing_only=True).stats
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        again = simulate(lower(graph, spec), timing_only=True).stats
        best = min(best, time.perf_counter() - start)
    assert again.to_dict() == stats.to_dict()
    assert best < 0.15, f"{best * 1e3:.0f} ms to lower and time ResNet-50 on 8 cores (aim: < 50 ms)"
    assert 0.5 < stats.utilisation < 1 and set(stats.bytes) == {"l1", "l2", "l3", "dram"}
    assert all(stats.energy_by_component_j[k] > 0 for k in ("fma_units", "simd_alus", "l1", "l2", "l3", "dram"))


def test_probe_writes_a_spec_of_this_machine_and_validation_runs_on_it(tmp_path, capsys):
    """`dse probe-cpu` (cpuinfo, the kernel's caches, a short probe) writes a spec that loads and runs; the
    validation's quick mode predicts and measures every kind of case on it."""
    from benchmarks.validate_cpu import main as validate
    path = tmp_path / "runs" / "this_cpu.yaml"
    assert dse_main(["probe-cpu", "--out", str(path)]) == 0
    spec = load_spec(str(path))
    assert spec.target == "cpu" and spec.cores >= 1 and 0.5 < spec.clock_ghz < 7
    assert spec.cache.l2_kib > spec.cache.l1d_kib and spec.memory.dram_channel_gbps > 0
    assert "# measured by dse probe-cpu" in path.read_text()
    rows = validate(["--quick", "--spec", str(path), "--repeat", "1"])
    out = capsys.readouterr().out
    assert {r.kind for r in rows} == {"gemm", "conv", "network"}
    for r in rows:
        assert math.isfinite(r.predicted_s) and r.predicted_s > 0 and r.ort_s > 0, r
    for word in ("predicted ms", "NumPy ms", "ORT ms", "resnet50 end to end", "mean |error|", "cores this process got"):
        assert word in out, word

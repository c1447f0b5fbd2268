"""`array.macs_per_pe_cycle`: a PE completing p MACs per cycle reduces p consecutive K elements
at once (narrow types packed into one PE; TPU v1 runs 8x8-bit MACs at four times its 16x16-bit rate).
Cycles follow the fold formula with K -> ceil(K / p); outputs do not change; the PE array's area
grows with its multipliers; utilisation is measured against the p-fold peak."""
import dataclasses

import numpy as np

import dse
from compiler.pipeline import compile_graph
from compiler.spec import load
from compiler.targets import lower
from compiler.targets.systolic.cycles import matmul_cycles
from sim import simulate


def _with(spec, **array):
    return dataclasses.replace(spec, array=dataclasses.replace(spec.array, **array))


def test_fold_formula_with_packed_reduction_by_hand():
    # WS on 32x32: K=300 over p=4 -> 75 rows of reduction -> 3 row folds x 2 col folds (N=40), T = M = 100
    assert matmul_cycles("weight_stationary", 32, 32, 100, 300, 40, 4) == 3 * 2 * (2 * 32 + 32 + 100 - 2)
    # OS: K is temporal: T = ceil(300 / 4) = 75; folds over M=100 (4) and N=40 (2), outputs shifted
    # out under the next fold's skew (SCALE-Sim v3; "separate": the array stops R cycles for them)
    assert matmul_cycles("output_stationary", 32, 32, 100, 300, 40, 4) == 4 * 2 * (32 + 32 + 75 - 2)
    assert matmul_cycles("output_stationary", 32, 32, 100, 300, 40, 4, "separate") == 4 * 2 * (2 * 32 + 32 + 75 - 2)
    assert matmul_cycles("weight_stationary", 32, 32, 100, 300, 40) == 10 * 2 * (2 * 32 + 32 + 100 - 2)


def test_packed_pes_speed_up_the_array_but_not_the_results():
    spec = load("hwspecs/systolic.yaml")
    graph = compile_graph(dse.zoo.resolve("zoo:small_cnn"))
    x = {n: np.random.default_rng(0).standard_normal(graph.tensors[n].shape).astype(np.float32)
         for n in graph.inputs}
    runs = {p: simulate(lower(graph, _with(spec, macs_per_pe_cycle=p)), x) for p in (1, 2, 4)}
    for p in (2, 4):
        assert all(np.array_equal(runs[1].outputs[k], runs[p].outputs[k]) for k in runs[1].outputs)
        assert runs[p].stats.engine_busy_cycles["matrix"] < runs[1].stats.engine_busy_cycles["matrix"]
        assert runs[p].stats.area_by_component_mm2["pe_array"] > runs[1].stats.area_by_component_mm2["pe_array"]
        assert 0 < runs[p].stats.utilisation <= 1
    # ResNet-50's reductions (K = 64 .. 4608) span many 32-row folds, so packing four MACs per PE more
    # than halves the compute-only cycles (small K, as small_cnn's, gains only fill and drain)
    resnet = compile_graph(dse.zoo.resolve("zoo:resnet50"))
    ideal = {p: simulate(lower(resnet, _with(spec, macs_per_pe_cycle=p)), timing_only=True, ideal_memory=True)
             for p in (1, 4)}
    ratio = ideal[4].stats.engine_busy_cycles["matrix"] / ideal[1].stats.engine_busy_cycles["matrix"]
    assert 0.25 <= ratio < 0.5, ratio

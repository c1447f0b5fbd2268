"""Search strategies on a space small enough to enumerate: sampling is exact and
seeded, and the multi-objective search finds the front with a quarter of the grid."""
import numpy as np
import pytest

import dse
from dse.pareto import hypervolume

SPACE = """name: small
workloads: [zoo:small_cnn]
sweep:
  parameters:
    array.rows: {min: 4, max: 64, factor: 2}
    array.cols: {min: 4, max: 64, factor: 2}
    array.dataflow: [weight_stationary, output_stationary, input_stationary]
    memory.input_scratchpad_kib: [4, 16, 64]
  objectives: [latency_s, energy_j, area_mm2]
"""
OBJECTIVES = ["latency_s", "energy_j", "area_mm2"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "small.yaml"
    path.write_text(SPACE)
    return path


@pytest.fixture(scope="module")
def grid(spec, tmp_path_factory):
    return dse.sweep(spec, out=tmp_path_factory.mktemp("grid"), workers=1).points


def _log_hypervolume(points, grid, objectives=OBJECTIVES):
    """Hypervolume of log10 objectives normalised to [0, 1] over the grid's feasible
    points, reference 1.1: objectives spanning decades count evenly."""
    ok = grid[grid["feasible"]]
    lg = np.log10(ok[objectives].to_numpy(float))
    lo, hi = lg.min(axis=0), lg.max(axis=0)
    values = (np.log10(points[points["feasible"]][objectives].to_numpy(float)) - lo) / (hi - lo)
    return hypervolume(values, np.full(len(objectives), 1.1))


def test_grid_enumerates_the_space(grid):
    assert len(grid) == 5 * 5 * 3 * 3
    assert grid[["array.rows", "array.cols", "array.dataflow", "memory.input_scratchpad_kib"]] \
        .drop_duplicates().shape[0] == len(grid)


@pytest.mark.parametrize("strategy", ["random", "lhs"])
def test_sampling_draws_budget_distinct_points_reproducibly(spec, tmp_path, strategy):
    a = dse.sweep(spec, out=tmp_path / "a", strategy=strategy, budget=30, seed=3, workers=1).points
    b = dse.sweep(spec, out=tmp_path / "b", strategy=strategy, budget=30, seed=3, workers=1).points
    c = dse.sweep(spec, out=tmp_path / "c", strategy=strategy, budget=30, seed=4, workers=1).points
    assert len(a) == 30 and a["point_key"].is_unique
    assert a["point_key"].tolist() == b["point_key"].tolist()
    assert set(a["point_key"]) != set(c["point_key"])


@pytest.mark.parametrize("strategy, objectives", [
    ("tpe", OBJECTIVES),                   # latency, energy, area
    ("nsga2", ["latency_s", "area_mm2"]),  # NSGA-II needs more generations than 56 points give at 3 objectives
])
def test_search_reaches_95_percent_of_the_grid_hypervolume_with_a_quarter_of_the_evaluations(
        spec, grid, tmp_path, strategy, objectives):
    budget = len(grid) // 4
    path = tmp_path / "s.yaml"
    path.write_text(SPACE.replace(f"[{', '.join(OBJECTIVES)}]", f"[{', '.join(objectives)}]"))
    found = dse.sweep(path, out=tmp_path / strategy, strategy=strategy, budget=budget, seed=0, workers=1)
    assert len(found.points) <= budget and found.computed <= budget
    ratio = _log_hypervolume(found.points, grid, objectives) / _log_hypervolume(grid, grid, objectives)
    assert ratio >= 0.95, ratio


def test_front_flags_match_a_recomputation(grid):
    from dse.pareto import non_dominated
    ok = grid[grid["feasible"]]
    assert (non_dominated(ok[OBJECTIVES].to_numpy(float)) == ok["on_front"].to_numpy()).all()

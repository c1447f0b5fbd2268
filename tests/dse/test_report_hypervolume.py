"""Hypervolume and the search-convergence chart: the exact 3-D sweep against a count of unit cells,
the curve against the hypervolume of each prefix, the normalised space and its reference point in
the objectives' own units, the evaluation order the store keeps, and a grid and a tpe study of one
space on one chart (the grid, holding every point the search could find, never below it)."""
import base64
import json
import re
import time

import numpy as np
import pandas as pd
import pytest

import dse
from dse.cli import main
from dse.pareto import hypervolume, hypervolume_trace, non_dominated
from dse.report_convergence import MAX_CHECKPOINTS, Scale, curve, evaluated_in_order

SPACE = """name: small
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [4, 8, 16, 32]
    array.cols: [4, 8, 16]
    memory.input_scratchpad_kib: [16, 64]
  objectives: [latency_s, energy_j, area_mm2]
"""
OBJECTIVES = ["latency_s", "energy_j", "area_mm2"]


def _cells(values: np.ndarray, size: int) -> int:
    """Unit cells of [0, size)^d that some point dominates: the exact volume, counted."""
    d = values.shape[1]
    cells = np.stack(np.meshgrid(*[np.arange(size)] * d, indexing="ij"), -1).reshape(-1, d)
    return int((cells[:, None, :] >= values[None, :, :]).all(axis=2).any(axis=1).sum())


def test_the_3d_sweep_counts_what_a_grid_of_cells_counts():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n, size = int(rng.integers(1, 30)), int(rng.integers(2, 8))
        values = rng.integers(0, size + 1, (n, 3)).astype(float)      # ties, repeats, points on the reference
        assert hypervolume(values, np.full(3, float(size))) == _cells(values[(values < size).all(axis=1)], size)


def test_four_objectives_slice_down_to_the_3d_sweep():
    rng = np.random.default_rng(8)
    for _ in range(40):
        values = rng.integers(0, 5, (int(rng.integers(1, 12)), 4)).astype(float)
        assert hypervolume(values, np.full(4, 5.0)) == _cells(values[(values < 5).all(axis=1)], 5)


def test_the_curve_is_the_hypervolume_of_each_prefix():
    rng = np.random.default_rng(9)
    for _ in range(100):
        n = int(rng.integers(1, 40))
        values = rng.random((n, 3))
        values[rng.random(n) < 0.2] = np.nan              # infeasible points add nothing
        want = [hypervolume(values[:k][~np.isnan(values[:k]).any(axis=1)], np.full(3, 1.1)) for k in range(1, n + 1)]
        assert hypervolume_trace(values, np.full(3, 1.1)) == pytest.approx(want, abs=1e-12)
        at = np.unique(rng.integers(1, n + 1, 5))
        assert hypervolume_trace(values, np.full(3, 1.1), at) == pytest.approx(np.array(want)[at - 1], abs=1e-12)


def test_ten_thousand_points_all_on_the_front_take_well_under_a_second():
    rng = np.random.default_rng(0)
    values = rng.random((10_000, 3))
    values /= np.linalg.norm(values, axis=1, keepdims=True)      # a sphere's octant: every point on the front
    t0 = time.perf_counter()
    volume = hypervolume(values, np.full(3, 1.0))
    assert time.perf_counter() - t0 < 1.0
    assert 1 - np.pi / 6 - 0.02 < volume < 1 - np.pi / 6        # the unit cube less the sphere's octant, nearly


def test_the_scale_is_log_from_best_to_worst_and_states_its_reference_point():
    frame = pd.DataFrame({"latency_s": [1e-3, 1e-2, 1e-1, 5.0], "throughput_inf_s": [10.0, 100.0, 1000.0, 1.0],
                          "utilisation": [0.0, 0.5, 1.0, 0.2], "feasible": [True, True, True, False]})
    scale = Scale.fit([frame], [("latency_s", 1.0), ("throughput_inf_s", -1.0), ("utilisation", -1.0)])
    assert scale.log == (True, True, False)         # utilisation has a 0: linear
    values = scale.normalised(frame)
    assert values[:3, 0] == pytest.approx([0, 0.5, 1]) and values[:3, 1] == pytest.approx([1, 0.5, 0])
    assert values[:3, 2] == pytest.approx([1, 0.5, 0]) and np.isnan(values[3]).all()
    latency, throughput, utilisation = scale.reference_values()
    assert latency == pytest.approx(0.1 * 100 ** 0.1)         # the worst x (worst / best)^0.1, in log space
    assert throughput == pytest.approx(10 / 100 ** 0.1)        # maximised: the lowest, 10 % of the range lower
    assert utilisation == pytest.approx(-0.1)                  # linear: 10 % of the range below 0
    text = scale.describe()
    assert "reference point 1.1 in each" in text and "(here latency_s 158.5 ms, throughput_inf_s 6.31" in text
    assert "(linear where some value is not positive: utilisation)" in text


def test_evaluations_are_in_the_order_the_store_committed_them():
    points = pd.DataFrame({"point_key": ["a", "b", "c", "d", "b"], "feasible": [True, True, False, True, True]})
    evaluations = pd.DataFrame({"point_key": ["c", "b", "a", "b", "d"]})   # b's second workload came after a
    assert evaluated_in_order(points, evaluations)["point_key"].tolist() == ["c", "a", "b", "d"]
    no_store = evaluations[evaluations["point_key"] != "d"]     # d ruled out before simulating: no evaluation
    assert evaluated_in_order(points, no_store)["point_key"].tolist() == ["c", "a", "b"]
    many = pd.DataFrame({"point_key": [str(i) for i in range(1000)], "feasible": True,
                         "x": np.linspace(1, 2, 1000), "y": np.linspace(2, 1, 1000), "z": 1.0})
    scale = Scale.fit([many], [("x", 1.0), ("y", 1.0), ("z", 1.0)])
    counts, values = curve(many, scale)
    assert len(counts) == MAX_CHECKPOINTS + 1 and counts[0] == 0 and counts[-1] == 1000
    assert values[-1] == pytest.approx(hypervolume(scale.normalised(many), scale.reference))


def _plot(page: str, div_id: str) -> list:
    """The traces of the plot in <div id=div_id>, typed arrays decoded."""
    start = page.index(f'"{div_id}",', page.index(f'id="{div_id}"')) + len(div_id) + 3
    data, _ = json.JSONDecoder().raw_decode(page[page.index("[", start):])

    def decode(value):
        if isinstance(value, dict) and "bdata" in value:
            return np.frombuffer(base64.b64decode(value["bdata"]), np.dtype(value["dtype"])).tolist()
        return value
    return [{k: decode(v) for k, v in trace.items()} for trace in data]


def _log_hypervolume(rows: pd.DataFrame, over: pd.DataFrame) -> float:
    """The test's own oracle: log10 objectives scaled from the best to the worst of `over`, reference 1.1."""
    lg = np.log10(over[OBJECTIVES].to_numpy(float))
    lo, hi = lg.min(axis=0), lg.max(axis=0)
    values = (np.log10(rows[OBJECTIVES].to_numpy(float)) - lo) / (hi - lo)
    return hypervolume(values[non_dominated(values)], np.full(3, 1.1))


@pytest.fixture(scope="module")
def grid_and_tpe(tmp_path_factory):
    root = tmp_path_factory.mktemp("convergence")
    (root / "s.yaml").write_text(SPACE)
    grid = dse.sweep(root / "s.yaml", out=root / "grid", workers=1)
    tpe = dse.sweep(root / "s.yaml", out=root / "tpe", strategy="tpe", budget=8, seed=0, workers=1)
    return root, grid, tpe


def test_a_studys_page_states_its_hypervolume_and_draws_its_convergence(grid_and_tpe):
    root, grid, _ = grid_and_tpe
    page = (root / "grid" / "index.html").read_text()
    stored = dse.load(root / "grid")                             # one workload: a row per design point
    ok = stored[stored["feasible"]]
    want = _log_hypervolume(ok, ok)
    overview = page[page.index('<section id="overview">'):page.index('<section id="fronts">')]
    assert re.search(rf"<dt>hypervolume</dt><dd>{want:.4g}, in a normalised space: each objective taken as log10, ",
                     overview)
    assert "reference point 1.1 in each, the worst value plus 10% of the range (here latency_s " in overview
    (trace,) = _plot(page, "convergence")
    assert trace["x"] == list(range(len(stored) + 1))            # every evaluated point, in store order
    assert trace["y"][-1] == pytest.approx(want) and trace["y"] == sorted(trace["y"])
    prefix = [_log_hypervolume(stored.iloc[:k][stored["feasible"].iloc[:k]], ok) if stored["feasible"].iloc[:k].any()
              else 0.0 for k in range(1, len(stored) + 1)]
    assert trace["y"][1:] == pytest.approx(prefix)


def test_a_grid_and_a_search_share_one_chart_and_one_scale(grid_and_tpe, tmp_path):
    root, grid, tpe = grid_and_tpe
    assert main(["report", str(root / "grid"), str(root / "tpe"), "--compare", "--out", str(tmp_path / "c")]) == 0
    page = (tmp_path / "c" / "index.html").read_text()
    curves = _plot(page, "convergence")
    assert [c["name"].split(":")[0] for c in curves] == ["grid", "tpe"]
    assert curves[0]["x"][-1] == len(grid.points) and curves[1]["x"][-1] == len(tpe.points) == 8
    ok = grid.points[grid.points["feasible"]]                  # the grid holds every point the search could find
    found = tpe.points[tpe.points["feasible"]]
    assert curves[0]["y"][-1] == pytest.approx(_log_hypervolume(ok, ok))
    assert curves[1]["y"][-1] == pytest.approx(_log_hypervolume(found, ok)) and curves[1]["y"][-1] <= curves[0]["y"][-1]
    assert "over every study together" in page

"""Sensitivity in the report: Spearman's rho and the Kruskal-Wallis effect size against hand-computed
ranks, and the section of a real sweep (a numeric and a named parameter): its heatmaps' cells and the
parallel coordinates of every feasible point."""
import base64
import json

import numpy as np
import pandas as pd
import pytest

import dse
from dse.report_sensitivity import numeric, rank_effect, spearman

SPACE = """name: sens
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [4, 8, 16]
    array.cols: [8, 16]
    array.dataflow: [weight_stationary, output_stationary]
  objectives: [latency_s, energy_j, area_mm2]
"""


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions: by hand, no library."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_spearman_is_the_correlation_of_the_ranks():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(3, 40))
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 7, n).astype(float)   # ties
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        rx, ry = _ranks(x), _ranks(y)
        want = ((rx - rx.mean()) * (ry - ry.mean())).sum() / np.sqrt(((rx - rx.mean()) ** 2).sum()
                                                                      * ((ry - ry.mean()) ** 2).sum())
        rho, p, count = spearman(pd.Series(x), pd.Series(y))
        assert rho == pytest.approx(want) and 0 <= p <= 1 and count == n
    rho, _, count = spearman(pd.Series([1.0, 2.0, np.nan, 4.0]), pd.Series([3.0, 1.0, 2.0, np.nan]))
    assert np.isnan(rho) and count == 2                 # two complete pairs: undefined
    assert np.isnan(spearman(pd.Series([1.0, 1.0, 1.0]), pd.Series([1.0, 2.0, 3.0]))[0])   # a constant


def test_the_effect_size_is_kruskal_wallis_h_over_n_minus_one():
    rng = np.random.default_rng(4)
    groups = pd.Series(rng.choice(["a", "b", "c"], 30))
    y = pd.Series(rng.random(30))
    ranks = _ranks(y.to_numpy())                        # no ties in y: H without the tie correction
    n = len(y)
    h = 12 / (n * (n + 1)) * sum(ranks[groups == g].sum() ** 2 / (groups == g).sum() for g in "abc") - 3 * (n + 1)
    effect, p, count = rank_effect(groups, y)
    assert effect == pytest.approx(h / (n - 1)) and count == n and 0 < p < 1
    separated = pd.Series(np.where(groups == "a", 0.0, np.where(groups == "b", 10.0, 20.0)) + y)
    assert rank_effect(groups, separated)[0] > 0.85 > effect   # the group decides the rank
    assert np.isnan(rank_effect(pd.Series(["a"] * 5), pd.Series(range(5), dtype=float))[0])
    assert numeric(pd.Series([1, 2.5])) and not numeric(pd.Series(["a", 1])) and not numeric(pd.Series([True]))


def _plot(page: str, div_id: str) -> list:
    start = page.index(f'"{div_id}",', page.index(f'id="{div_id}"')) + len(div_id) + 3
    data, _ = json.JSONDecoder().raw_decode(page[page.index("[", start):])
    return data


def _array(value):
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), np.dtype(value["dtype"])).tolist()
    return value


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sensitivity")
    (folder / "s.yaml").write_text(SPACE)
    result = dse.sweep(folder / "s.yaml", out=folder / "r", workers=1)
    return result, (folder / "r" / "index.html").read_text()


def test_the_heatmaps_hold_each_parameters_rank_measure_per_objective(swept):
    result, page = swept
    ok = result.points[result.points["feasible"]]
    (numbers,) = _plot(page, "sensitivity-0")
    assert numbers["y"] == ["array.rows", "array.cols"] and numbers["x"] == ["latency_s", "energy_j", "area_mm2"]
    z = [_array(row) for row in numbers["z"]] if isinstance(numbers["z"], list) else _array(numbers["z"])
    for i, param in enumerate(numbers["y"]):
        for j, objective in enumerate(numbers["x"]):
            assert z[i][j] == pytest.approx(spearman(ok[param], ok[objective])[0])
    assert z[0][2] > 0.5            # more rows, more area
    (named,) = _plot(page, "sensitivity-1")
    assert named["y"] == ["array.dataflow"] and "epsilon^2" in named["colorbar"]["title"]["text"]
    assert "Spearman&#x27;s rho: the rank correlation" in page


def test_parallel_coordinates_run_from_the_parameters_to_the_objectives(swept):
    result, page = swept
    ok = result.points[result.points["feasible"]]
    (trace,) = _plot(page, "parallel")
    labels = [d["label"] for d in trace["dimensions"]]
    assert labels == ["array.rows", "array.cols", "array.dataflow", "latency_s in ms per inference",
                      "energy_j in mJ per inference", "area_mm2 (mm^2)"]
    dataflow = trace["dimensions"][2]
    assert sorted(dataflow["ticktext"]) == ["output_stationary", "weight_stationary"]
    assert all(len(_array(d["values"])) == len(ok) for d in trace["dimensions"])
    rows = trace["dimensions"][0]
    assert [rows["ticktext"][int(v)] for v in _array(rows["values"])] == [str(v) for v in ok["array.rows"]]

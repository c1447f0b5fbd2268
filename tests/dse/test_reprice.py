"""`dse reprice`: a stored sweep priced again with another technology table equals a fresh sweep with
that table, and compiles and simulates nothing."""
import json
import shutil

import pandas as pd
import pytest

import dse
from dse.cli import main
from dse.store import Store

SPEC = """name: tiny
{technology}workloads: [zoo:mlp, {{model: zoo:mlp, batch: 2, weight: 2}}]
sweep:
  parameters:
    array.rows: [4, 8]
    array.cols: [4, 16]
    memory.weight_scratchpad_kib: [0.01, 64]
  constraints:
    - array.rows * array.cols <= 64
    - area_mm2 <= 2.5
  objectives: [latency_s, energy_j, area_mm2]
"""
# 8 points: 8x16 breaks the parameter constraint, 0.01 KiB holds no weight tile (3 more unmappable), and
# at 45 nm all but one mappable point break area_mm2 <= 2.5, which every one meets at 7 nm.
PRICED = ["technology", "energy_j", "area_mm2", "power_w", "edp_j_s"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("reprice")
    (root / "s.yaml").write_text(SPEC.format(technology=""))
    dse.sweep(root / "s.yaml", out=root / "rep", workers=1, stream=open(root / "log", "w"))
    return root


def _nothing_runs(monkeypatch):
    """Every way to compile or simulate a design point raises."""
    import compiler.pipeline
    import compiler.targets
    import sim
    from dse import evaluate, executors, report_drilldown, workloads

    def forbidden(*args, **kwargs):
        raise AssertionError("dse reprice compiled or simulated something")
    for module, name in ((compiler.targets, "lower"), (compiler.pipeline, "compile_graph"), (sim, "simulate"),
                         (evaluate, "evaluate"), (evaluate, "run_task"), (evaluate, "run_chunk"),
                         (executors, "make"), (workloads, "graph_of"), (report_drilldown, "simulate"),
                         (report_drilldown, "lower")):
        monkeypatch.setattr(module, name, forbidden)


def test_reprice_equals_a_fresh_sweep_with_that_table_and_simulates_nothing(source, tmp_path, monkeypatch, capsys):
    (tmp_path / "s7.yaml").write_text(SPEC.format(technology="technology: 7nm\n"))
    fresh = dse.sweep(tmp_path / "s7.yaml", out=tmp_path / "fresh", workers=1, stream=open(tmp_path / "log", "w"))
    before = pd.read_csv(source / "rep" / "results.csv")
    with monkeypatch.context() as patch:
        _nothing_runs(patch)
        assert main(["reprice", str(source / "rep"), "--technology", "7nm", "--out", str(tmp_path / "r7")]) == 0
    err = capsys.readouterr().err
    assert "nothing is compiled or simulated" in err and f"wrote {tmp_path / 'r7'}/" in err
    # exactly (==, not approximately): the same counts times the same prices, summed in the same order
    drop = ["eval_seconds"]
    assert len(fresh.points) == 8
    assert pd.read_csv(tmp_path / "r7" / "results.csv").drop(columns=drop).equals(
        pd.read_csv(tmp_path / "fresh" / "results.csv").drop(columns=drop))
    points = pd.read_csv(tmp_path / "r7" / "points.csv")
    assert points.equals(pd.read_csv(tmp_path / "fresh" / "points.csv"))
    assert points["feasible"].sum() == 3 and points["on_front"].sum() >= 1          # the front, as a fresh sweep's
    assert (points.loc[points["array.rows"] * points["array.cols"] > 64, "reason"]
            == "constraint violated: array.rows * array.cols <= 64").all()
    assert points["reason"].str.contains("no tile fits").sum() == 3                 # infeasible, with its reason
    old = pd.read_csv(source / "rep" / "points.csv")
    assert old["feasible"].sum() == 1 and (old["reason"] == "constraint violated: area_mm2 <= 2.5").sum() == 2
    # the source is untouched; cycles and counts are its own
    assert pd.read_csv(source / "rep" / "results.csv").equals(before)
    assert (before["technology"].dropna() == "45nm").all()
    new = pd.read_csv(tmp_path / "r7" / "results.csv")
    same = [c for c in before.columns if c not in PRICED and not c.startswith(("energy_", "area_")) and c not in
            ("key", "point_key", "eval_seconds")]
    assert new[same].equals(before[same])
    # same study and keys: a sweep of the 7 nm spec into the re-priced folder computes nothing
    assert json.loads((tmp_path / "r7" / "sweep.json").read_text())["study"] == \
        json.loads((tmp_path / "fresh" / "sweep.json").read_text())["study"]
    again = dse.sweep(tmp_path / "s7.yaml", out=tmp_path / "r7", workers=1, stream=open(tmp_path / "log", "w"))
    assert again.computed == 0


def test_component_energies_and_areas_sum_to_the_totals(source, tmp_path):
    result = dse.reprice(source / "rep", "7nm", out=tmp_path / "r7", stream=open(tmp_path / "log", "w"))
    rows = result.evaluations[result.evaluations["feasible"]]
    energy = [c for c in rows.columns if c.startswith("energy_") and c.endswith("_j") and c != "energy_j"]
    area = [c for c in rows.columns if c.startswith("area_") and c.endswith("_mm2") and c != "area_mm2"]
    assert "energy_leakage_j" in energy and "energy_dram_j" in energy and len(area) >= 4
    # to 1e-12 relative: the columns come back from the store in name order, not in the order summed
    assert rows[energy].sum(axis=1).to_numpy() == pytest.approx(rows["energy_j"].to_numpy(), rel=1e-12)
    assert rows[area].sum(axis=1).to_numpy() == pytest.approx(rows["area_mm2"].to_numpy(), rel=1e-12)
    assert (rows["power_w"] == rows["energy_j"] / rows["latency_s"]).all()


def test_dse_report_rebuilds_a_repriced_folder_with_its_drilldown(source, tmp_path, capsys):
    dse.reprice(source / "rep", "7nm", stream=open(tmp_path / "log", "w"), out=tmp_path / "r7")
    page = (tmp_path / "r7" / "index.html").read_text()
    assert "Re-priced by dse reprice" in page and "drill-data" not in page and "dse report</code> on this" in page
    assert main(["report", str(tmp_path / "r7")]) == 0
    assert "8 design points, 3 on the front" in capsys.readouterr().out
    assert "drill-data" in (tmp_path / "r7" / "index.html").read_text()


def test_default_folder_and_refusals(source, tmp_path, capsys):
    copy = tmp_path / "rep"
    shutil.copytree(source / "rep", copy)
    assert main(["reprice", str(copy), "--technology", "7nm"]) == 0
    assert (tmp_path / "rep-7nm" / "index.html").exists()
    capsys.readouterr()
    assert "--force" in _error_line(capsys, "reprice", copy, "--technology", "7nm")   # never mixed into
    assert main(["reprice", str(copy), "--technology", "7nm", "--force"]) == 0
    capsys.readouterr()
    assert "is the study being re-priced" in _error_line(capsys, "reprice", copy, "--technology", "7nm",
                                                         "--out", copy, "--force")


def _error_line(capsys, *argv):
    code = main([str(a) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_a_folder_without_a_sweep_and_an_unknown_table_are_one_error_line(source, tmp_path, capsys):
    assert "no results store" in _error_line(capsys, "reprice", tmp_path, "--technology", "7nm")
    line = _error_line(capsys, "reprice", source / "rep", "--technology", "3nm", "--out", tmp_path / "x")
    assert "'3nm'" in line and "45nm, 7nm" in line
    (tmp_path / "t.yaml").write_text("name: t\nleakage_w_per_mm2: -1\n")
    assert "t.yaml" in _error_line(capsys, "reprice", source / "rep", "--technology", tmp_path / "t.yaml")
    assert not (tmp_path / "x").exists() and not (source / "rep-t").exists()


def test_a_study_that_sweeps_technology_is_refused(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: t\nworkloads: [zoo:mlp]\nsweep:\n  parameters:\n"
                                     "    technology: [45nm, 7nm]\n")
    dse.sweep(tmp_path / "s.yaml", out=tmp_path / "rep", workers=1, stream=open(tmp_path / "log", "w"))
    line = _error_line(capsys, "reprice", tmp_path / "rep", "--technology", "7nm")
    assert "technology as a swept parameter" in line


def test_rows_keep_the_compiler_version_that_simulated_them(source, tmp_path, monkeypatch):
    from dse import store
    with Store(source / "rep") as s:
        versions = {v for v, _ in s.origins().values()}
    monkeypatch.setattr(store, "compiler_version", lambda: "a-newer-compiler")
    result = dse.reprice(source / "rep", "7nm", out=tmp_path / "r7", stream=open(tmp_path / "log", "w"))
    assert len(result.points) == 8 and result.points["feasible"].sum() == 3
    with Store(tmp_path / "r7") as s:
        assert {v for v, _ in s.origins().values()} == versions      # a newer compiler's sweep re-runs them
        assert all(s.layer_mappings(k) for k in result.evaluations.loc[result.evaluations["feasible"], "key"])

"""Sweep behaviour end to end: constraints and derived fields in a real sweep, and a
local worker process that dies mid-sweep costs nothing."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dse
from compiler.errors import SpecError
from dse.sweeper import NoFeasiblePoint

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_and_derived_fields_shape_the_results(tmp_path):
    (tmp_path / "s.yaml").write_text("""name: c
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [4, 8, 16, 32]
    array.cols: [4, 8, 16, 32]
  derived:
    memory.accumulator_kib: array.cols / 2
  constraints:
    - array.rows * array.cols <= 256
    - area_mm2 <= 4.5
  objectives: [latency_s, area_mm2]
""")
    result = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "r", workers=1)
    pts = result.points
    too_big = pts["array.rows"] * pts["array.cols"] > 256
    assert (pts.loc[too_big, "reason"] == "constraint violated: array.rows * array.cols <= 256").all()
    assert too_big.sum() == 3 and not result.evaluations["point_key"].isin(pts.loc[too_big, "point_key"]).any()
    over_area = ~too_big & (pts["area_mm2"] > 4.5)
    assert over_area.any() and (pts.loc[over_area, "reason"] == "constraint violated: area_mm2 <= 4.5").all()
    assert pts.loc[over_area, "latency_s"].notna().all()      # measured, then ruled out
    assert not pts.loc[~pts["feasible"], "on_front"].any()
    assert (pts["memory.accumulator_kib"] == pts["array.cols"] / 2).all()  # derived values are reported


def _children(pid: int) -> list:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_a_local_worker_that_dies_is_replaced_and_nothing_is_lost(tmp_path):
    (tmp_path / "s.yaml").write_text("""name: w
workloads: [zoo:resnet50, zoo:mlp]
sweep:
  parameters:
    array.rows: {min: 8, max: 128, factor: 2}
    array.cols: {min: 8, max: 128, factor: 2}
    array.dataflow: [weight_stationary, output_stationary, input_stationary]
    memory.input_scratchpad_kib: [64, 256, 1024]
""")  # ResNet-50 (~10 ms per evaluation): the sweep is still running when the worker dies
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        import pytest
        pytest.skip("needs /proc/<pid>/task/<pid>/children (Linux)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "sweep", str(tmp_path / "s.yaml"), "--out",
                             str(tmp_path / "r"), "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        try:
            db = sqlite3.connect(tmp_path / "r" / "results.sqlite")
            stored = db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
            db.close()
        except sqlite3.Error:
            continue
        workers = _children(proc.pid)
        if stored >= 40 and workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, "the sweep finished before a worker could be killed"
    assert proc.returncode == 0, err
    assert "done: 225 points" in err and "450 evaluations computed" in err
    assert len(dse.load(tmp_path / "r")) == 450


def test_verify_on_a_bf16_design_uses_the_narrow_tolerance(tmp_path):
    (tmp_path / "s.yaml").write_text("name: b\nworkloads: [zoo:mlp]\n"
                                     "datatypes: {input: bf16, weight: bf16, output: bf16}\n"
                                     "sweep:\n  parameters:\n    array.rows: [16, 32]\n")
    result = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "r", workers=1, verify=1)
    (check,) = result.verified
    assert check["ok"] and "relative L2" in check["criterion"]
    assert check["max_abs_error"] > 1e-6  # the narrow datapath really ran (fp32 would be ~1e-8)


# ---- mistakes caught before any work (issue 13) ----------------------------------------------

def _spec(tmp_path, workloads="[zoo:mlp]", sweep="  parameters:\n    array.rows: [4, 8]\n", extra=""):
    (tmp_path / "s.yaml").write_text(f"name: m\nworkloads: {workloads}\n{extra}sweep:\n{sweep}")
    return tmp_path / "s.yaml"


@pytest.mark.parametrize("workloads, sweep, expected", [
    ("[zoo:squeezent]", None, "workloads[0]: unknown zoo model 'squeezent'; did you mean 'zoo:squeezenet'?"),
    ("[{model: zoo:mlp, weight: .nan}]", None, "workloads[0].weight: must be a finite number > 0, got nan"),
    (None, "  parameters:\n    array.rowz: [4, 8]\n",
     "sweep.parameters: unknown field 'array.rowz'; did you mean 'array.rows'? allowed: name,"),
    (None, "  parameters:\n    clock_ghz: [.nan, 1.0]\n",
     "sweep.parameters.clock_ghz: field 'clock_ghz' is nan; must be a finite number >= 0.001"),
    (None, "  parameters:\n    clock_ghz: {min: 0.5, max: .inf, factor: 2}\n", "must be finite numbers"),
    (None, "  parameters:\n    clock_ghz: {min: 0.5, max: 2, step: 0.0000001}\n",
     "the range gives 1.5e+07 values; at most 10,000 per parameter"),
    (None, "  parameters:\n    array.rows: {min: 1024, max: 65536, factor: 2}\n",
     "field 'array.rows' is 8192; must be >= 1 and <= 4096"),
    (None, "  derived:\n    array.colz: array.rows\n", "sweep.derived: unknown field 'array.colz'; did you mean"),
    (None, "  derived:\n    array.cols: array.rowz\n", "'array.rowz' is not a spec field; did you mean 'array.rows'?"),
    (None, "  derived:\n    array.cols: 64 / (array.rows - 32)\n",
     "sweep.derived.array.cols: '64 / (array.rows - 32)' cannot be evaluated at the spec's own values (division"),
    (None, "  constraints: ['area_mm <= 20']\n",
     "'area_mm' is neither a spec field nor a metric; did you mean 'area_mm2'?"),
    (None, "  constraints: ['array.dataflow < 3']\n", "cannot be evaluated at the spec's own values"),
    (None, "  constraints: ['array.rows < 1e999']\n", "numbers must be finite"),
    (None, "  objectives: [latncy_s]\n", "unknown metric 'latncy_s'; did you mean 'latency_s'? allowed: latency_s,"),
    (None, "  strategy: tpee\n", "sweep.strategy: 'tpee'; did you mean 'tpe'?"),
])
def test_mistakes_in_a_sweep_spec_are_one_error_before_any_work(tmp_path, workloads, sweep, expected):
    """Each used to run (a misspelt workload: every evaluation, then an empty report, exit 0)."""
    path = _spec(tmp_path, **{k: v for k, v in (("workloads", workloads), ("sweep", sweep)) if v})
    with pytest.raises(SpecError) as info:
        dse.sweep(path, out=tmp_path / "r", workers=1)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)
    assert not (tmp_path / "r").exists()          # nothing evaluated, nothing written


def test_a_sweep_with_no_feasible_point_raises_after_writing_its_report(tmp_path):
    path = _spec(tmp_path, extra="memory: {weight_scratchpad_kib: 0.01}\n")   # 10 B holds no weight tile
    with pytest.raises(NoFeasiblePoint) as info:
        dse.sweep(path, out=tmp_path / "r", workers=1)
    message = str(info.value)
    assert message.startswith(f"{path}: no feasible design point; most common reason (2 of 2 points): zoo:mlp: ")
    assert "no tile fits" in message and "\n" not in message
    pts = info.value.result.points
    assert len(pts) == 2 and not pts["feasible"].any()
    for name in ("points.csv", "results.csv", "index.html", "sweep.json"):
        assert (tmp_path / "r" / name).exists()
    assert "no tile fits" in (tmp_path / "r" / "index.html").read_text()


def test_a_constraint_that_cannot_be_evaluated_at_a_point_rules_out_that_point(tmp_path):
    path = _spec(tmp_path, sweep="  parameters:\n    array.rows: [8, 16]\n"
                                 "  constraints: ['64 / (array.rows - 8) >= 1']\n")
    pts = dse.sweep(path, out=tmp_path / "r", workers=1).points.set_index("array.rows")
    assert pts.loc[16, "feasible"] and not pts.loc[8, "feasible"]
    assert "cannot be evaluated here (division by zero)" in pts.loc[8, "reason"]

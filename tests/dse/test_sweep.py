"""Sweep behaviour end to end: constraints and derived fields in a real sweep, and a
local worker process that dies mid-sweep costs nothing."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dse

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

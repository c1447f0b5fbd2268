"""The durable store: content-hash keys, re-runs that recompute nothing, and a sweep
killed with SIGKILL that resumes to exactly the uninterrupted result."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dse
from compiler.targets.systolic.spec import SystolicSpec
from dse.store import STORE_FILE, Store, evaluation_key, point_key

ROOT = Path(__file__).resolve().parents[2]
# Long enough (ResNet-50, ~10 ms per evaluation) that a signal lands mid-sweep.
SPEC = """name: durable
workloads: [zoo:resnet50, zoo:mlp]
sweep:
  parameters:
    array.rows: {min: 8, max: 128, factor: 2}
    array.cols: {min: 8, max: 128, factor: 2}
    array.dataflow: [weight_stationary, output_stationary, input_stationary]
    memory.input_scratchpad_kib: [64, 256, 1024]
"""
TOTAL = 225 * 2


def _rows(folder):
    db = sqlite3.connect(Path(folder) / STORE_FILE)
    rows = db.execute("SELECT key, point_key, workload, feasible, reason, metrics FROM evaluations").fetchall()
    db.close()
    return rows


def test_keys_depend_on_what_changes_results_only():
    a = SystolicSpec()
    renamed = SystolicSpec(name="other", workloads=("zoo:mlp",), sweep={"strategy": "grid"})
    assert point_key(a) == point_key(renamed)
    bigger = SystolicSpec(clock_ghz=2.0)
    assert point_key(a) != point_key(bigger)
    assert evaluation_key(point_key(a), "zoo:mlp|batch 1") != evaluation_key(point_key(a), "zoo:mlp|batch 2")


def test_put_is_idempotent_and_survives_reopening(tmp_path):
    record = {"key": "k1", "point_key": "p", "point": {"array.rows": 8}, "workload": "zoo:mlp",
              "feasible": True, "reason": "", "metrics": {"latency_s": 1e-3}, "eval_seconds": 0.01}
    with Store(tmp_path) as store:
        store.put(record)
        store.put({**record, "metrics": {"latency_s": 5.0}})
        assert len(store) == 1
    with Store(tmp_path) as store:
        assert store.records(["k1", "k2"])["k1"]["metrics"] == {"latency_s": 1e-3}
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rerun_reuses_everything_and_load_returns_the_store(tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC.replace("factor: 2}", "factor: 4}").replace("resnet50", "small_cnn"))
    first = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "r", workers=1)
    again = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "r", workers=1)
    assert first.computed == 3 * 3 * 3 * 3 * 2 and again.computed == 0
    assert first.points.equals(again.points)
    df = dse.load(tmp_path / "r")
    assert len(df) == first.computed and df["key"].is_unique
    assert {"latency_s", "total_cycles", "array.rows", "workload", "feasible"} <= set(df.columns)
    assert len(dse.load(tmp_path / "r", level="points")) == 81


def _sweep_cmd(spec, out, *extra):
    return [sys.executable, "-m", "dse.cli", "sweep", str(spec), "--out", str(out), *extra]


def _start_and_interrupt(spec, out, sig, at_least=60):
    """Start `dse sweep` in its own process group; once `at_least` evaluations are
    stored, send `sig` to the whole group. Returns (process, rows stored when signalled)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_sweep_cmd(spec, out, "--workers", "2"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        try:
            if len(_rows(out)) >= at_least:
                break
        except sqlite3.Error:
            continue  # the store is being created
    assert proc.poll() is None, "the sweep finished before it could be stopped; make the space larger"
    os.killpg(proc.pid, sig)
    return proc


def _resume(spec, out):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    resumed = subprocess.run(_sweep_cmd(spec, out, "--resume", "--workers", "2"), cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    return int(re.search(r"(\d+) evaluations computed", resumed.stderr).group(1))


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    spec = tmp_path / "durable.yaml"
    spec.write_text(SPEC)
    proc = _start_and_interrupt(spec, tmp_path / "killed", signal.SIGKILL)  # sweep and workers, as a crash
    proc.communicate()
    before = len(_rows(tmp_path / "killed"))
    assert 60 <= before < TOTAL
    assert _resume(spec, tmp_path / "killed") == TOTAL - before  # nothing recomputed

    clean = dse.sweep(spec, out=tmp_path / "clean", workers=1)
    killed, reference = _rows(tmp_path / "killed"), _rows(tmp_path / "clean")
    assert len(killed) == len(reference) == TOTAL  # none lost, none duplicated
    as_dict = {r[0]: (r[1], r[2], r[3], r[4], json.loads(r[5])) for r in reference}
    assert {r[0]: (r[1], r[2], r[3], r[4], json.loads(r[5])) for r in killed} == as_dict
    assert clean.computed == TOTAL


def test_ctrl_c_stops_cleanly_keeping_what_finished(tmp_path):
    spec = tmp_path / "durable.yaml"
    spec.write_text(SPEC)
    proc = _start_and_interrupt(spec, tmp_path / "stopped", signal.SIGINT)  # Ctrl-C reaches the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "run the same command again" in err and "Traceback" not in err
    before = len(_rows(tmp_path / "stopped"))
    assert (tmp_path / "stopped" / "points.csv").exists() and before >= 60
    assert _resume(spec, tmp_path / "stopped") == TOTAL - before

"""The durable store: content-hash keys, re-runs that recompute nothing, a sweep killed with
SIGKILL that resumes to exactly the uninterrupted result, per-layer mappings stored once each,
and stores of an older schema read, of a newer one refused."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dse
from compiler.mapping import Mapping
from compiler.targets.systolic.spec import SystolicSpec
from dse.store import SCHEMA_VERSION, STORE_FILE, Store, StoreError, evaluation_key, point_key

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


def _layers(tiles: int) -> list:
    """Stats.layers' per-layer list: two convs sharing one mapping, one with another, a vector layer."""
    conv = Mapping("matrix", {"m": 64, "k": 27, "n": 16}, {"m": 16, "k": 27, "n": 16}, ("n", "m", "k"),
                   "weight_stationary", {"buffers": 2}).to_dict()
    other = dict(conv, tile={"m": 64 // tiles, "k": 27, "n": 16})
    return [{"name": "c0", "op": "conv", "cycles": 100, "mapping": conv},
            {"name": "c1", "op": "conv", "cycles": 90, "mapping": conv},
            {"name": "c2", "op": "conv", "cycles": 80 * tiles, "mapping": other},
            {"name": "r", "op": "relu", "cycles": 7, "mapping": Mapping("vector").to_dict()},
            {"name": "x", "op": "reshape", "cycles": 0, "mapping": None}]


def _expected(layers: list) -> list:
    return [dict(layer, mapping=layer["mapping"] and Mapping.from_dict(layer["mapping"])) for layer in layers]


def test_each_distinct_mapping_is_stored_once_and_read_back_per_layer(tmp_path):
    base = {"point_key": "p", "point": {}, "workload": "zoo:mlp", "feasible": True, "metrics": {}}
    with Store(tmp_path) as store:
        store.put_many([{**base, "key": "k1", "layers": _layers(1)}, {**base, "key": "k2", "layers": _layers(2)}])
        store.put({**base, "key": "k3", "feasible": False, "reason": "does not fit"})
    with Store(tmp_path) as store:
        # conv's mapping, the other conv's at 1 and at 2 tiles, the vector unit's: 4 distinct of 8 mappings
        assert store.db.execute("SELECT COUNT(*) FROM mapping_dicts").fetchone()[0] == 4
        assert store.layer_mappings("k1") == _expected(_layers(1))
        assert store.layer_mappings("k2") == _expected(_layers(2))
        assert store.layer_mappings("k3") is None and store.layer_mappings("nowhere") is None
        first, second = store.layer_mappings("k1")[:2]
        assert first["mapping"].dims is not second["mapping"].dims  # layers sharing a mapping own a Mapping each


def _schema_1_store(folder: Path) -> None:
    """A store as schema 1 wrote it: the per-layer list as JSON per evaluation in `mappings`."""
    folder.mkdir()
    db = sqlite3.connect(folder / STORE_FILE)
    db.executescript("""
        CREATE TABLE evaluations (key TEXT PRIMARY KEY, point_key TEXT NOT NULL, point TEXT NOT NULL,
            workload TEXT NOT NULL, feasible INTEGER NOT NULL, reason TEXT NOT NULL, metrics TEXT NOT NULL,
            eval_seconds REAL NOT NULL, finished_at REAL NOT NULL, compiler_version TEXT NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE mappings (key TEXT PRIMARY KEY, layers TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO evaluations VALUES ('old', 'p', '{}', 'zoo:mlp', 1, '', '{"latency_s": 0.001}', 0.01, 0, 'v0');""")
    db.execute("INSERT INTO mappings VALUES ('old', ?)", (json.dumps(_layers(1)),))
    db.commit()
    db.close()


def test_a_schema_1_store_is_read_and_takes_new_rows(tmp_path):
    _schema_1_store(tmp_path / "r")
    assert dse.layer_mappings(tmp_path / "r", "old") == _expected(_layers(1))
    with Store(tmp_path / "r") as store:
        assert store.records(["old"])["old"]["metrics"] == {"latency_s": 0.001}
        store.put({"key": "new", "point_key": "p", "point": {}, "workload": "zoo:mlp", "feasible": True,
                   "metrics": {}, "layers": _layers(2)})
    with Store(tmp_path / "r") as store:
        assert store.layer_mappings("old") == _expected(_layers(1))
        assert store.layer_mappings("new") == _expected(_layers(2))
        assert store.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION)


def test_a_store_of_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    with Store(tmp_path) as store:
        store.db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        store.db.commit()
    with pytest.raises(StoreError, match=f"store schema {SCHEMA_VERSION + 1}, newer than this dse reads "
                                         f"\\(schema {SCHEMA_VERSION} and older\\): upgrade accel-dse"):
        Store(tmp_path)


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
    with Store(tmp_path / "killed") as resumed, Store(tmp_path / "clean") as uninterrupted:  # committed with them
        assert all(resumed.layer_mappings(r[0]) == uninterrupted.layer_mappings(r[0]) is not None
                   for r in reference if r[3])


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

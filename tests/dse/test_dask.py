"""Sweeps on a real Dask cluster: a scheduler and two workers on localhost, each its
own process. Results equal a local run's; a worker killed mid-sweep loses nothing."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import dse

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[2]
SPEC = """name: cluster
workloads: [zoo:small_cnn]
sweep:
  parameters:
    array.rows: {min: 4, max: 64, factor: 2}
    array.cols: {min: 4, max: 64, factor: 2}
    array.dataflow: [weight_stationary, output_stationary]
    memory.input_scratchpad_kib: [4, 16, 64]
"""


def _start(args, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "w")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, [worker processes]) on localhost; torn down after the test."""
    info = tmp_path / "scheduler.json"
    procs = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(info), "--port", "0", "--no-dashboard",
                     "--host", "127.0.0.1"], tmp_path, "scheduler")]
    deadline = time.time() + 60
    while not info.exists() and time.time() < deadline:
        time.sleep(0.1)
    address = json.loads(info.read_text())["address"]
    workers = [_start([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                       "--name", f"w{i}"], tmp_path, f"worker{i}") for i in range(2)]
    procs += workers
    client = distributed.Client(address, timeout="30s")
    client.wait_for_workers(2, timeout=60)
    client.close()
    yield address, workers
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _metrics(result):
    df = result.evaluations.set_index("key").sort_index()
    return df.drop(columns=["eval_seconds"])


def test_cluster_sweep_equals_the_local_sweep(cluster, tmp_path):
    address, _ = cluster
    (tmp_path / "s.yaml").write_text(SPEC)
    remote = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "remote", scheduler=address)
    local = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "local", workers=1)
    assert remote.computed == local.computed == 150
    assert _metrics(remote).equals(_metrics(local))
    assert remote.points.equals(local.points)


def test_a_worker_killed_mid_sweep_loses_nothing(cluster, tmp_path):
    address, workers = cluster
    # ResNet-50 (~10 ms per evaluation) so the sweep is still running when the worker dies.
    (tmp_path / "s.yaml").write_text(SPEC.replace("[4, 16, 64]", "[64, 128, 256, 512, 1024, 2048]")
                                     .replace("zoo:small_cnn", "zoo:resnet50").replace("min: 4,", "min: 8,")
                                     .replace("max: 64,", "max: 128,"))
    store = tmp_path / "remote" / "results.sqlite"

    def kill_one_worker_once_results_arrive():
        import sqlite3
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.05)
            try:
                db = sqlite3.connect(store)
                stored = db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
                db.close()
            except sqlite3.Error:
                continue
            if stored >= 20:
                os.killpg(workers[0].pid, signal.SIGKILL)
                return

    killer = threading.Thread(target=kill_one_worker_once_results_arrive)
    killer.start()
    result = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "remote", scheduler=address)
    killer.join()
    assert workers[0].poll() is not None, "the worker was not killed during the sweep"
    assert result.computed == 300 and len(result.points) == 300 and not result.interrupted
    assert result.evaluations["key"].is_unique

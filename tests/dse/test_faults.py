"""A sweep's report folder under faults: another study already there, two sweeps at once,
a full disk or read-only folder, a SIGKILLed sweep's pool workers, and SIGKILL at random
moments followed by a resume, which must equal an uninterrupted run row for row."""
import errno
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dse import store as storemod
from dse.cli import main
from dse.folder import claim
from dse.store import STORE_FILE

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# Nine quick evaluations, in-process.
SMALL = """name: small
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [4, 8, 16]
    array.cols: [4, 8, 16]
"""
# 120 evaluations of ~10 ms (ResNet-50): a few seconds on 2 workers, long enough to be killed mid-way.
KILLABLE = """name: killable
workloads: [zoo:resnet50, zoo:mlp]
sweep:
  parameters:
    array.rows: {min: 8, max: 128, factor: 2}
    array.cols: {min: 8, max: 64, factor: 2}
    array.dataflow: [weight_stationary, output_stationary, input_stationary]
"""
KILLABLE_TOTAL = 5 * 4 * 3 * 2


def _spec(tmp_path, text=SMALL, name="s.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    """A user error is exactly one line, the last, and no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and [line for line in lines if line.startswith("error:")] == lines[-1:], err
    return lines[-1]


def _rows(folder) -> dict:
    """(point, workload) -> (feasible, reason, metrics) of each stored row, asserting there is
    one row per pair. Keyed by the point's values rather than the store's content hash, which
    changes with the compiler's sources. Empty for a store killed before its tables were made."""
    db = sqlite3.connect(Path(folder) / STORE_FILE)
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'evaluations'").fetchone():
        db.close()
        return {}
    rows = db.execute("SELECT point, workload, feasible, reason, metrics FROM evaluations").fetchall()
    db.close()
    out = {(point, workload): (feasible, reason, json.loads(metrics)) for point, workload, feasible, reason, metrics
           in rows}
    assert len(out) == len(rows), "a (point, workload) stored twice"
    return out


def test_another_study_is_refused_before_any_work_and_force_replaces_it(capsys, tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "r"
    code, _ = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1", "--verify", "1")
    assert code == 0 and (out / "verify.csv").exists()
    grid = _rows(out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "sweep.lock"}

    code, err = _cli(capsys, "sweep", spec, "--out", out, "--strategy", "random", "--budget", "2")
    line = _one_error_line(err)
    assert code == 2 and "holds another study (small, grid over array.rows, array.cols)" in line
    assert "random, budget 2" in line and "--out DIR" in line and "--force" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "sweep.lock"} == before
    assert err.count("\n") == 1  # refused before the sweep's first line

    code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")  # the same study resumes
    assert code == 0 and "0 evaluations computed" in err and _rows(out) == grid
    assert not (out / "verify.csv").exists()  # the earlier run's check is not part of this report

    code, err = _cli(capsys, "sweep", spec, "--out", out, "--strategy", "random", "--budget", "2", "--force",
                     "--workers", "1")
    assert code == 0 and "2 evaluations computed" in err
    assert len(_rows(out)) == 2 and len(pd.read_csv(out / "points.csv")) == 2
    assert json.loads((out / "sweep.json").read_text())["strategy"] == "random"


def test_a_store_that_recorded_no_study_is_not_taken_over(tmp_path):
    with storemod.Store(tmp_path) as store:  # as written before studies were recorded
        store.put({"key": "k", "point_key": "p", "point": {}, "workload": "zoo:mlp", "feasible": True})
    with pytest.raises(storemod.StoreError, match="recorded no study.*--force"):
        claim(tmp_path, "a study", "a description")
    claim(tmp_path, "a study", "a description", force=True).close()
    with storemod.Store(tmp_path) as store:
        assert len(store) == 0 and store.study == ("a study", "a description")


def test_a_second_sweep_is_refused_naming_the_holder_until_the_holder_dies(capsys, tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dse.folder import claim\n"
         "store = claim(sys.argv[1], 'another', 'a test holder'); print('held', flush=True); time.sleep(120)",
         str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")
        assert code == 2 and f"{out} is in use by another dse sweep (PID {holder.pid})" in _one_error_line(err)
    finally:
        holder.kill()  # SIGKILL: the OS releases its lock
        holder.communicate()
    code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")
    assert code == 2 and "holds another study (a test holder)" in _one_error_line(err)
    code, _ = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1", "--force")
    assert code == 0 and len(_rows(out)) == 9


class _DiskFillsUp:
    """A SQLite connection whose disk is full after `room` more evaluations: the error
    comes from execute(), where SQLite raises it."""

    def __init__(self, db, room: int, error: Exception):
        self.db, self.room, self.error = db, room, error

    def execute(self, sql, *args):
        if sql.startswith("INSERT OR IGNORE INTO evaluations"):
            if self.room == 0:
                raise self.error
            self.room -= 1
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def _fill_disk_after(monkeypatch, room: int, error: Exception) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(storemod.sqlite3, "connect", lambda *a, **k: _DiskFillsUp(connect(*a, **k), room, error))


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database or disk is full"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_full_disk_stops_with_one_line_keeping_every_commit(capsys, monkeypatch, tmp_path, error):
    spec, out = _spec(tmp_path), tmp_path / "r"
    with monkeypatch.context() as patch:
        _fill_disk_after(patch, 4, error)
        code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")
    line = _one_error_line(err)
    assert code == 2 and f"error: {out}: cannot write ({error})" in line and "every result committed" in line
    assert len(_rows(out)) == 4
    code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")  # space freed: resume
    assert code == 0 and "5 evaluations computed" in err and len(_rows(out)) == 9


def test_a_full_disk_while_writing_the_report_is_one_line_too(capsys, monkeypatch, tmp_path):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    code, err = _cli(capsys, "sweep", _spec(tmp_path), "--out", tmp_path / "r", "--workers", "1")
    assert code == 2 and "No space left on device" in _one_error_line(err) and len(_rows(tmp_path / "r")) == 9


def _read_only_command(folder: Path, argv: list) -> list:
    """argv run with `folder` read-only: chmod, and for root (whom chmod does not stop) a
    read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        return argv
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", mount, str(folder), *argv]


def test_a_read_only_folder_stops_with_one_line_keeping_every_commit(capsys, monkeypatch, tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "r"
    with monkeypatch.context() as patch:  # a sweep that committed 4 of its 9 evaluations
        _fill_disk_after(patch, 4, sqlite3.OperationalError("database or disk is full"))
        _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")
    kept = _rows(out)
    modes = {p: p.stat().st_mode for p in [out, *out.iterdir()]}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        argv = [sys.executable, "-m", "dse.cli", "sweep", str(spec), "--out", str(out), "--workers", "1"]
        proc = subprocess.run(_read_only_command(out, argv), cwd=ROOT, env=ENV, capture_output=True, text=True,
                              timeout=300)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2 and f"{out}: cannot write" in line and "make the folder writable" in line
    assert _rows(out) == kept
    code, err = _cli(capsys, "sweep", spec, "--out", out, "--workers", "1")
    assert code == 0 and "5 evaluations computed" in err


def _children(pid: int) -> list:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, waiting for init to reap it


def _start(spec, out, *extra) -> subprocess.Popen:
    """`dse sweep` with 2 workers in its own session, so a test can clean up after it."""
    return subprocess.Popen([sys.executable, "-m", "dse.cli", "sweep", str(spec), "--out", str(out),
                             "--workers", "2", *extra], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _reap(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the session still alive
    except ProcessLookupError:
        pass
    proc.communicate()


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="needs /proc/<pid>/task/<pid>/children (Linux)")
def test_pool_workers_die_with_a_sigkilled_sweep(tmp_path):
    proc = _start(_spec(tmp_path, KILLABLE), tmp_path / "r")
    try:
        deadline, workers = time.time() + 120, []
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = _children(proc.pid)
        assert len(workers) == 2, "the sweep ended before its workers could be seen"
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone, as `kill -9 PID` does
        proc.wait()
        deadline = time.time() + 5
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "pool workers outlived their sweep"
    finally:
        _reap(proc)


def _wait_for_store(proc: subprocess.Popen, out: Path) -> None:
    """Until the sweep has created its store (past Python's start-up) or has ended."""
    deadline = time.time() + 120
    while not (out / STORE_FILE).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The killable spec, its uninterrupted run's rows, and the seconds that run took from
    creating its store to exiting."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = _spec(folder, KILLABLE)
    proc = _start(spec, folder / "r")
    _wait_for_store(proc, folder / "r")
    t0 = time.perf_counter()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = _rows(folder / "r")
    assert len(rows) == KILLABLE_TOTAL
    return spec, rows, time.perf_counter() - t0


def _kill_at_random_moments_then_resume(uninterrupted, tmp_path, trials: int) -> list:
    """Each trial SIGKILLs `dse sweep` a random delay after it created its store, anywhere in
    the rest of a run (claiming the folder, starting workers, commits, writing the report,
    exiting), checks that every stored row is one the uninterrupted run has, then resumes:
    nothing is recomputed and the store equals the uninterrupted one. Returns how many rows
    each killed run had stored."""
    spec, reference, seconds = uninterrupted
    rng, stored = random.Random(13), []
    for trial in range(trials):
        out = tmp_path / f"trial{trial}"
        delay = rng.uniform(0.0, seconds)
        proc = _start(spec, out)
        try:
            _wait_for_store(proc, out)
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            _reap(proc)
        kept = _rows(out) if (out / STORE_FILE).exists() else {}
        stored.append(len(kept))
        assert all(reference.get(k) == row for k, row in kept.items()), f"trial {trial} (killed at {delay:.2f} s)"
        resumed = _start(spec, out, "--resume")
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        computed = int(re.search(r"(\d+) evaluations computed", err).group(1))
        assert computed == KILLABLE_TOTAL - len(kept), f"trial {trial} (killed at {delay:.2f} s)"
        assert _rows(out) == reference, f"trial {trial} (killed at {delay:.2f} s)"
    return stored


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(uninterrupted, tmp_path):
    _kill_at_random_moments_then_resume(uninterrupted, tmp_path, trials=2)


@pytest.mark.slow
def test_sigkill_at_twenty_random_moments_loses_and_duplicates_nothing(uninterrupted, tmp_path):
    stored = _kill_at_random_moments_then_resume(uninterrupted, tmp_path, trials=20)
    assert sum(0 < n < KILLABLE_TOTAL for n in stored) >= 5, f"too few kills landed mid-sweep: {stored}"

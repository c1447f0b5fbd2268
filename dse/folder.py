"""A sweep's report folder: one sweep at a time, one study per folder.

`claim` takes an OS lock on FOLDER/sweep.lock (held until the store is closed,
released by the OS when the process dies), refuses a folder whose store holds
another study unless forced (then that study's files are removed first),
removes the previous run's report files so none is mixed into the new report,
and returns the folder's open Store.
"""
from __future__ import annotations

import os
from pathlib import Path

from dse.store import STORE_FILE, Store, StoreError, cannot_write

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two sweeps there are the user's to avoid
    fcntl = None

LOCK_FILE = "sweep.lock"
# What dse.sweep() writes at the end of every run: always from that one run.
REPORT_FILES = ("points.csv", "results.csv", "sweep.json", "index.html", "verify.csv")
# The store, its log before the database: a log left beside a new database would be replayed into it.
STORE_FILES = (f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", STORE_FILE)
EXPORT_FILES = ("evaluations.csv", "evaluations.parquet")  # `dse export`'s default outputs


def claim(folder, study: str, description: str, force: bool = False) -> Store:
    """The folder's Store, held by this process for `study` until it is closed.
    Raises StoreError (one line: what holds the folder and what to do) before any work."""
    folder = Path(folder)
    lock, store = _lock(folder), None
    try:
        store = Store(folder)
        held, held_description = store.study
        if held != study and (held is not None or len(store)):
            if not force:
                other = held_description or "results of a sweep that recorded no study"
                raise StoreError(f"{folder} holds another study ({other}); this one is {description}: "
                                 "pass --out DIR to keep both, or --force to replace it")
            store.close()
            _remove(folder, STORE_FILES + EXPORT_FILES + REPORT_FILES)
            store = Store(folder)
        elif held is None:  # a new store: anything else here is from a study that is gone
            _remove(folder, EXPORT_FILES)
        _remove(folder, REPORT_FILES)
        store.record_study(study, description)
    except BaseException:
        if store is not None:
            store.close()  # closing twice is harmless
        lock.close()
        raise
    store.lock = lock  # released by store.close()
    return store


def _lock(folder: Path):
    """An exclusive lock on FOLDER/sweep.lock, or StoreError naming the PID that holds it.
    The file stays after the sweep: deleting it would let two processes lock two files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a+")
    except OSError as exc:
        raise cannot_write(folder, exc) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise StoreError(f"{folder} is in use by another dse sweep (PID {holder}); wait for it to "
                                 "finish, or pass --out DIR to sweep into another folder") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    except OSError as exc:
        handle.close()
        raise cannot_write(folder, exc) from None
    except BaseException:
        handle.close()
        raise
    return handle


def _remove(folder: Path, names) -> None:
    for name in names:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise cannot_write(folder, exc) from None

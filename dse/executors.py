"""Where evaluations run: in this process, a local process pool, or a Dask cluster.

Every executor takes chunks of tasks and yields (chunk, records) as chunks
finish, in any order. The sweep commits each chunk's records to the store as
it arrives. A worker that dies loses nothing: the pool is rebuilt and the
unfinished chunks are submitted again (Dask reschedules them itself). A local
worker whose sweep process dies, even by SIGKILL, dies with it.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from compiler.errors import SpecError
from dse.evaluate import run_chunk, warm

MAX_RESTARTS = 3
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent thread exits


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class InProcess:
    """workers=1: no processes, no pickling."""
    description = "in-process"

    def __init__(self, workloads=()):
        warm(workloads)

    def run(self, chunks, stop=lambda: False):
        for chunk in chunks:
            if stop():
                return
            yield chunk, run_chunk(chunk)

    def close(self):
        pass


class LocalPool:
    """A pool of `workers` processes. On Linux they fork from this process after it
    has compiled the Numba kernels and the workloads' Graphs, so each worker
    starts warm; elsewhere each warms itself once in its initializer."""

    def __init__(self, workers: int, workloads=()):
        self.workers, self.workloads = workers, tuple(workloads)
        self.description = f"{workers} local processes"
        methods = multiprocessing.get_all_start_methods()
        self.context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        if self.context.get_start_method() == "fork":
            warm(self.workloads)
        self.pool = self._new_pool()

    def _new_pool(self):
        return ProcessPoolExecutor(self.workers, mp_context=self.context, initializer=_worker_init,
                                   initargs=(self.workloads, os.getpid()))

    def run(self, chunks, stop=lambda: False):
        pending = {self.pool.submit(run_chunk, c): (c, 0) for c in chunks}
        while pending:
            # A timeout, not a blocking wait: the sweep's Ctrl-C handler only sets a flag,
            # and a KeyboardInterrupt raised inside wait() can leave a future's lock held
            # and hang the interpreter at exit.
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            if stop():
                return
            broken = []
            for future in done:
                chunk, tries = pending.pop(future)
                try:
                    records = future.result()
                except BrokenProcessPool:
                    broken.append((chunk, tries))
                    continue
                yield chunk, records
            if broken:  # a worker died: every chunk still in flight is lost with the pool
                broken += [pending[f] for f in pending]
                if any(tries >= MAX_RESTARTS for _, tries in broken):
                    raise RuntimeError(f"worker processes died {MAX_RESTARTS} times on the same tasks")
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                pending = {self.pool.submit(run_chunk, c): (c, tries + 1) for c, tries in broken}

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)  # chunks in flight are short


def _worker_init(workloads, parent: int) -> None:
    """Pool workers leave Ctrl-C to the sweep process, which stops them cleanly, and
    die with it: a SIGKILLed sweep must not leave workers behind, reparented to init."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    warm(workloads)


def _die_with(parent: int) -> None:
    """Linux: the kernel sends SIGKILL when the thread that started this worker exits (the
    sweep's thread; prctl(2)). Elsewhere a daemon thread polls for a new parent each second."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before the prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl in this libc: poll instead

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class DaskCluster:
    """A Dask distributed scheduler at `address`; its workers must have this package installed."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise SpecError("--scheduler needs Dask distributed: pip install 'accel-dse[cluster]'") from None
        try:
            self.client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise SpecError(f"--scheduler {address}: cannot connect ({exc})") from None
        workers = len(self.client.scheduler_info().get("workers", {}))
        self.description = f"Dask scheduler {address} ({workers} workers)"

    def run(self, chunks, stop=lambda: False):
        from distributed import as_completed
        # pure=False: identical chunks are still separate tasks; retries: a task whose
        # worker raised is tried again elsewhere (a worker that dies is rescheduled by Dask).
        futures = {self.client.submit(run_chunk, c, pure=False, retries=2): c for c in chunks}
        for future in as_completed(futures):
            if stop():
                for f in futures:
                    f.cancel()
                return
            yield futures[future], future.result()

    def close(self):
        self.client.close()


def make(workers: int | None = None, scheduler: str | None = None, workloads=()):
    if scheduler:
        return DaskCluster(scheduler)
    workers = workers or default_workers()
    if workers < 1:
        raise SpecError(f"--workers must be >= 1, got {workers}")
    return InProcess(workloads) if workers == 1 else LocalPool(workers, workloads)

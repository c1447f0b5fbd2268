"""compiler/numba_cache.py: a kernel module that compiles in constants from the Program's layout tables
gets its disk cache recompiled when the tables change, where Numba alone (which keys the cache on the
kernel's own file) would run the stale constants. Each step is a fresh process, as a sweep worker is."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A kernel module whose constant stands for a table entry; FAKE_LAYOUT stands for the tables' fingerprint.
KERNELS = '''
import os
from numba import njit
from compiler import numba_cache

LAYOUT = numba_cache.LAYOUT = int(os.environ["FAKE_LAYOUT"])


@njit(cache=True)
def _layout():
    return LAYOUT


@njit(cache=True)
def column():
    return 10 * LAYOUT
'''
RUN = "import fake_kernels, sys; from compiler import numba_cache; " \
      "refreshed = numba_cache.refresh(vars(fake_kernels)) if sys.argv[1] == 'refresh' else None; " \
      "print(refreshed, fake_kernels.column())"


def _run(tmp_path, layout: int, refresh: bool) -> str:
    env = dict(os.environ, FAKE_LAYOUT=str(layout), PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-c", RUN, "refresh" if refresh else "plain"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_cache_compiled_from_other_tables_is_recompiled(tmp_path):
    (tmp_path / "fake_kernels.py").write_text(KERNELS)
    assert _run(tmp_path, 1, refresh=True) == "False 10"       # compiled and cached
    assert _run(tmp_path, 2, refresh=False) == "None 10"       # Numba alone: the stale constant
    assert _run(tmp_path, 2, refresh=True) == "True 20"        # refreshed: recompiled, cached again
    assert _run(tmp_path, 2, refresh=True) == "False 20"       # and now fresh from the cache

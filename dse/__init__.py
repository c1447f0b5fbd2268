"""Explorer: the `dse` command and Python API (run, compile, sweep, load)."""
from dse.api import RunResult, compile, run  # noqa: A004
from dse.sweep import load, sweep

__all__ = ["RunResult", "compile", "run", "sweep", "load"]

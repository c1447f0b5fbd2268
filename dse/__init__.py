"""Explorer: the `dse` command and Python API (run, compile, sweep, load)."""
from dse.api import RunResult, compile, run  # noqa: A004
from dse.sweep import SweepResult, load, sweep

__all__ = ["RunResult", "SweepResult", "compile", "run", "sweep", "load"]

"""Explorer: the `dse` command and Python API (run, compile, sweep, load, reprice).

The API is imported on first use (PEP 562), so `dse --help` does not pay for onnx, Numba and
pandas; `import dse; dse.run(...)` reads as before."""
import importlib

_API = {"RunResult": "dse.api", "compile": "dse.api", "run": "dse.api", "layer_mappings": "dse.api",
        "SweepResult": "dse.sweeper", "load": "dse.sweeper", "sweep": "dse.sweeper", "reprice": "dse.repricer"}
__all__ = ["RunResult", "SweepResult", "compile", "run", "sweep", "load", "layer_mappings", "reprice"]


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dse' has no attribute {name!r}")

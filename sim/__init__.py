"""Simulator: executes a Program on simulated memories (functional mode computes
the model's outputs; timing mode walks the same instructions without the
arithmetic) and reports Stats. Entry point: `simulate` (imported on first use, so
`sim.errors` alone does not load Numba)."""
__all__ = ["SimResult", "simulate"]


def __getattr__(name):
    if name in __all__:
        from sim import run
        return getattr(run, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

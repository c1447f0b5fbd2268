"""Simulator: executes a Program on simulated memories (functional mode computes
the model's outputs; timing mode walks the same instructions without the
arithmetic) and reports Stats. Entry point: `simulate`."""
from sim.run import SimResult, simulate

__all__ = ["SimResult", "simulate"]

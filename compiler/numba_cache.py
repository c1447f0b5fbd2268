"""Keeps Numba's disk cache fresh for kernels that compile in the Program's layout tables.

Numba keys a cached kernel on its own source file, so a kernel that indexes with a constant taken
from compiler/program.py (an operand column OPERAND[...].tk, a descriptor field CONV.kh, a memory
id, an opcode id) would keep the old constants after those tables change. A module with such
kernels defines

    @njit(cache=True)
    def _layout():
        return LAYOUT          # compiler.program.LAYOUT, the tables' fingerprint, as compiled

and calls `refresh(globals())` before its first kernel runs: when the cached code was compiled
from other tables, every kernel of the module is recompiled (and its cache entry rewritten).
"""
from __future__ import annotations

from numba.core.dispatcher import Dispatcher

from compiler.program import LAYOUT


def refresh(namespace: dict) -> bool:
    """Recompile the kernels of the module whose globals are `namespace` if its cached code was
    compiled from other layout tables; whether it was. Call it before the module's kernels run."""
    if namespace["_layout"]() == LAYOUT:
        return False
    module = namespace["__name__"]
    # in definition order, so a kernel is fresh before the kernels that call it are compiled again
    for kernel in list(namespace.values()):
        if isinstance(kernel, Dispatcher) and kernel.py_func.__module__ == module:
            kernel.recompile()         # drops its cache entries; compiles again what this process loaded
    return True

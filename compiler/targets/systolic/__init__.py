"""The systolic-array target (an R x C PE array fed by DMA engines with on-chip im2col, input and
weight scratchpads, an accumulator and a vector unit), registered as "systolic".

  spec.py        its Spec (hwspecs/systolic*.yaml)
  lower.py       Graph -> Program: GEMM layers tiled onto the array, the rest on the vector unit
  tiling.py      tile-shape search against the cost model; tile_loops.py emits the tile loops
  cycles.py      the matrix unit's cycle formula (SCALE-Sim's), shared with the timing model
The simulator side (timing, action counts, prices) is sim/targets/systolic.py.
"""
from compiler.targets import Target, register
from compiler.targets.systolic.spec import SystolicSpec


def _lower(graph, spec):
    from compiler.targets.systolic.lower import lower   # Numba loads with the lowering, not the spec

    return lower(graph, spec)


TARGET = register(Target(name="systolic", spec=SystolicSpec, lower=_lower, sim="sim.targets.systolic"))

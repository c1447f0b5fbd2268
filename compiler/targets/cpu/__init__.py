"""The CPU target: a multicore CPU with SIMD FMA units, private L1 and L2 caches, an L3 shared by groups
of cores, and DRAM channels; registered as "cpu".

  spec.py   its Spec (hwspecs/cpu.yaml, cpu_zen4_like.yaml)
  cost.py   the analytical cost: the BLIS blocking (register block, kc, mc, nc) chosen from the core
            and its caches, the split of a layer over cores, each core's tile time from a tile-level
            cache model (bytes per level from the blocking's reuse, bandwidth and latency per level,
            DRAM shared by the active cores), and vector kernels; used by the lowering and the timing
  lower.py  Graph -> Program: one engine per core; a conv/GEMM layer is one gemm_tile per core, other
            ops vector instructions split over the cores; each layer after its inputs on every core
The simulator side (timing, bytes per level, prices) is sim/targets/cpu.py; dse/probe_cpu.py writes a
spec for the machine it runs on.
"""
from compiler.targets import Target, register
from compiler.targets.cpu.spec import CpuSpec


def _lower(graph, spec):
    from compiler.targets.cpu.lower import lower   # the lowering's imports load with it, not with the spec

    return lower(graph, spec)


TARGET = register(Target(name="cpu", spec=CpuSpec, lower=_lower, sim="sim.targets.cpu"))

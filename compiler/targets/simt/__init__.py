"""The SIMT (GPU-like) target: streaming multiprocessors with warps, shared memory, SIMT lanes and
tensor cores, an L2 shared by all SMs, and HBM; registered as "simt".

  spec.py   its Spec (hwspecs/simt.yaml, gpu_a100_like.yaml, gpu_h100_like.yaml)
  cost.py   the analytical per-kernel cost (occupancy, waves, tensor-core and lane throughput,
            shared-memory, L2 and DRAM traffic, latency hiding, launch overhead), used by the
            lowering's block-tile search and by the timing
  lower.py  Graph -> Program: one instruction per GPU kernel (a conv/GEMM layer = one implicit-GEMM
            kernel, a gemm_tile over the whole output; every other op an elementwise/reduction kernel),
            in stream order on one engine
The simulator side (timing, bytes per level, prices) is sim/targets/simt.py.
"""
from compiler.targets import Target, register
from compiler.targets.simt.spec import SimtSpec


def _lower(graph, spec):
    from compiler.targets.simt.lower import lower   # the lowering's imports load with it, not with the spec

    return lower(graph, spec)


TARGET = register(Target(name="simt", spec=SimtSpec, lower=_lower, sim="sim.targets.simt"))

"""Cycle formulas of the systolic array's matrix unit, in one place: the tiling
cost model (compiler) and the timing model (sim/targets/systolic.py) both use them.

Per SCALE-Sim (Samajdar et al., "A Systematic Methodology for Characterizing
Scalability of DNN Accelerators using SCALE-Sim", ISPASS 2020, eqs. 1-2): an
operand block of S_R x S_C mapped on an R x C array, with T elements streamed
through it, takes ceil(S_R/R) * ceil(S_C/C) folds of (2R + C + T - 2) cycles each
(fill R, stream T, drain R + C - 2). Which GEMM dimension maps where depends on
the dataflow, for a GEMM [M,K] x [K,N] (M = output pixels, K = window size,
N = filters):
    weight_stationary: S_R = K, S_C = N, T = M
    output_stationary: S_R = M, S_C = N, T = K
    input_stationary:  S_R = K, S_C = M, T = N
A PE may complete p = `array.macs_per_pe_cycle` MACs per cycle (sub-word parallelism for narrow
types: Jouppi et al., "In-Datacenter Performance Analysis of a Tensor Processing Unit", ISCA
2017: the matrix unit runs 8x8-bit MACs at full rate, half rate with one 16-bit operand, a
quarter with two): it reduces p consecutive K elements per cycle, so K maps as ceil(K / p) in
the formulas above.
"""
from __future__ import annotations

import numpy as np

DATAFLOW_ID = {"weight_stationary": 0, "output_stationary": 1, "input_stationary": 2}


def spatial_temporal(dataflow: str, m, k, n):
    """(S_R, S_C, T) for a GEMM tile under `dataflow`."""
    if dataflow == "weight_stationary":
        return k, n, m
    if dataflow == "output_stationary":
        return m, n, k
    if dataflow == "input_stationary":
        return k, m, n
    raise ValueError(f"unknown dataflow {dataflow!r}")


def matmul_cycles(dataflow: str, rows: int, cols: int, m, k, n, macs_per_pe_cycle: int = 1):
    """Cycles for acc[m,n] += a[m,k] @ w[k,n] on a rows x cols array (arrays broadcast). A PE doing
    p MACs per cycle reduces p consecutive k at once, so the GEMM maps as one with ceil(k / p)."""
    k = -(-np.asarray(k, np.int64) // macs_per_pe_cycle)
    s_r, s_c, t = spatial_temporal(dataflow, np.asarray(m, np.int64), k, np.asarray(n, np.int64))
    folds = -(-s_r // rows) * -(-s_c // cols)
    return folds * (2 * rows + cols + t - 2)

"""Cycle formulas of the systolic array's matrix unit, in one place: the tiling cost model
(compiler) and the timing model (sim/targets/systolic.py) both use them; docs/timing_model.md
states them with timing diagrams.

Per SCALE-Sim (Samajdar et al., "A Systematic Methodology for Characterizing Scalability of DNN
Accelerators using SCALE-Sim", ISPASS 2020, eqs. 1-2, and SCALE-Sim v3's compute/*.py): an
operand block of S_R x S_C mapped on an R x C array, with T elements streamed through it, takes
ceil(S_R/R) * ceil(S_C/C) folds of fill + T + drain cycles each. Which GEMM dimension maps where
depends on the dataflow, for a GEMM [M,K] x [K,N] (M = output pixels, K = window size, N = filters):
    weight_stationary: S_R = K, S_C = N, T = M    fill R (weights shift in), drain R + C - 2
    input_stationary:  S_R = K, S_C = M, T = N    fill R (inputs shift in),  drain R + C - 2
    output_stationary: S_R = M, S_C = N, T = K    fill 0, drain R + C - 2 ("overlapped": the
        outputs shift out under the next fold's input skew, SCALE-Sim v3) or 2R + C - 2
        ("separate": the array stops R cycles to shift them out, the ISPASS 2020 paper's eq. 2);
        array.output_stationary_drain chooses.
A PE may complete p = `array.macs_per_pe_cycle` MACs per cycle (sub-word parallelism for narrow
types: Jouppi et al., "In-Datacenter Performance Analysis of a Tensor Processing Unit", ISCA
2017: the matrix unit runs 8x8-bit MACs at full rate, half rate with one 16-bit operand, a
quarter with two): it reduces p consecutive K elements per cycle, so K maps as ceil(K / p) in
the formulas above.

Stationary operands across tiles (`resident_saving`): a matmul that finds its stationary tile
still in the PEs (the previous matmul on the array used the same one) walks its folds starting
with the one the previous matmul left there, so that fold needs no fill, and its stream follows
the previous stream while the previous fold drains (for output-stationary, the partial sums
stay in the PEs: nothing drains in between). K folds keep their order (the declared
accumulation order, sim/kernels.py), so a weight or input tile is resident only when it is one
fold deep in K; an output tile always is.
"""
from __future__ import annotations

import numpy as np

DATAFLOW_ID = {"weight_stationary": 0, "output_stationary": 1, "input_stationary": 2}
OUTPUT_DRAINS = ("overlapped", "separate")   # array.output_stationary_drain's choices


def spatial_temporal(dataflow: str, m, k, n):
    """(S_R, S_C, T) for a GEMM tile under `dataflow`."""
    if dataflow == "weight_stationary":
        return k, n, m
    if dataflow == "output_stationary":
        return m, n, k
    if dataflow == "input_stationary":
        return k, m, n
    raise ValueError(f"unknown dataflow {dataflow!r}")


def fold_phases(dataflow: str, rows: int, cols: int, output_drain: str = "overlapped") -> tuple:
    """(fill, drain): the cycles of one fold besides its T streamed elements."""
    skew = rows + cols - 2      # the first element reaches the far corner, the last leaves it
    if dataflow == "output_stationary":
        return 0, skew + (rows if output_drain == "separate" else 0)
    return rows, skew


def matmul_cycles(dataflow: str, rows: int, cols: int, m, k, n, macs_per_pe_cycle: int = 1,
                  output_drain: str = "overlapped"):
    """Cycles for acc[m,n] += a[m,k] @ w[k,n] on a rows x cols array (arrays broadcast). A PE doing
    p MACs per cycle reduces p consecutive k at once, so the GEMM maps as one with ceil(k / p)."""
    k = -(-np.asarray(k, np.int64) // macs_per_pe_cycle)
    s_r, s_c, t = spatial_temporal(dataflow, np.asarray(m, np.int64), k, np.asarray(n, np.int64))
    fill, drain = fold_phases(dataflow, rows, cols, output_drain)
    folds = -(-s_r // rows) * -(-s_c // cols)
    return folds * (fill + t + drain)


def one_fold_deep(dataflow: str, rows: int, tk, macs_per_pe_cycle: int = 1):
    """Whether a tile with tk elements of K can stay resident (see the module docstring): always
    for output-stationary; for weight- and input-stationary, when its K fits one fold of rows."""
    if dataflow == "output_stationary":
        return np.ones_like(np.asarray(tk), bool)
    return -(-np.asarray(tk, np.int64) // macs_per_pe_cycle) <= rows


def resident_saving(dataflow: str, rows: int, cols: int, output_drain: str = "overlapped",
                    drain_hidden=True):
    """Cycles a matmul saves when its stationary tile is resident: the fill of its first fold, and,
    where drain_hidden (its outputs go to another accumulator tile than the previous matmul's, or it
    continues the same one in the PEs), the previous fold's drain, which its stream overlaps."""
    fill, drain = fold_phases(dataflow, rows, cols, output_drain)
    return fill + np.where(drain_hidden, drain, 0)

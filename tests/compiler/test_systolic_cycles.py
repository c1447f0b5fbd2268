"""The matrix unit's tile cycle formulas, pinned against hand-computed values (SCALE-Sim v3:
folds x (fill + T + drain); docs/timing_model.md)."""
import numpy as np
import pytest

from compiler.targets.systolic.cycles import fold_phases, matmul_cycles, one_fold_deep, resident_saving


@pytest.mark.parametrize("dataflow,m,k,n,expected", [
    # WS: K on rows, N on cols, M streamed. 1 fold: 2*4 + 4 + 10 - 2 = 20
    ("weight_stationary", 10, 4, 4, 20),
    # WS: K=9 needs 3 row folds, N=5 needs 2 col folds: 6 * (8 + 4 + 7 - 2) = 102
    ("weight_stationary", 7, 9, 5, 102),
    # OS: M on rows (8 -> 2 folds), N on cols, K streamed, outputs shifted out under the next
    # fold's skew (SCALE-Sim v3): 2 * (4 + 4 + 3 - 2) = 18
    ("output_stationary", 8, 3, 4, 18),
    # IS: K on rows, M on cols (6 -> 2 folds), N streamed: 2 * (8 + 4 + 5 - 2) = 30
    ("input_stationary", 6, 4, 5, 30),
])
def test_tile_cycles_match_hand_values(dataflow, m, k, n, expected):
    assert matmul_cycles(dataflow, 4, 4, m, k, n) == expected


def test_output_stationary_separate_drain_is_the_ispass_formula():
    # the array stops R cycles per fold to shift the outputs out: 2 * (2*4 + 4 + 3 - 2) = 26
    assert matmul_cycles("output_stationary", 4, 4, 8, 3, 4, output_drain="separate") == 26
    # the other dataflows have no output drain to choose
    assert matmul_cycles("weight_stationary", 4, 4, 10, 4, 4, output_drain="separate") == 20


def test_rectangular_array_uses_rows_for_fill_and_cols_for_skew():
    # 2 rows x 8 cols, WS, K=2 N=8 M=1: one fold of 2*2 + 8 + 1 - 2 = 11
    assert matmul_cycles("weight_stationary", 2, 8, 1, 2, 8) == 11
    assert fold_phases("weight_stationary", 2, 8) == (2, 8)
    assert fold_phases("output_stationary", 2, 8) == (0, 8)
    assert fold_phases("output_stationary", 2, 8, "separate") == (0, 10)


def test_resident_tile_saves_fill_and_drain_or_only_the_fill():
    assert resident_saving("weight_stationary", 4, 4) == 4 + 6
    assert resident_saving("input_stationary", 4, 4, drain_hidden=False) == 4
    assert resident_saving("output_stationary", 4, 4) == 6
    assert resident_saving("output_stationary", 4, 4, "separate") == 10


def test_only_tiles_one_fold_deep_in_k_stay_resident():
    assert one_fold_deep("weight_stationary", 4, np.array([4, 5])).tolist() == [True, False]
    assert one_fold_deep("input_stationary", 4, 8, macs_per_pe_cycle=2)
    assert one_fold_deep("output_stationary", 4, 1000)       # K streams: an output tile always can


def test_unknown_dataflow_rejected():
    with pytest.raises(ValueError):
        matmul_cycles("row_stationary", 4, 4, 1, 1, 1)

"""The matrix unit's tile cycle formula, pinned against hand-computed values
(SCALE-Sim, ISPASS 2020: folds x (2R + C + T - 2))."""
import pytest

from compiler.targets.systolic.cycles import matmul_cycles


@pytest.mark.parametrize("dataflow,m,k,n,expected", [
    # WS: K on rows, N on cols, M streamed. 1 fold: 2*4 + 4 + 10 - 2 = 20
    ("weight_stationary", 10, 4, 4, 20),
    # WS: K=9 needs 3 row folds, N=5 needs 2 col folds: 6 * (8 + 4 + 7 - 2) = 102
    ("weight_stationary", 7, 9, 5, 102),
    # OS: M on rows (8 -> 2 folds), N on cols, K streamed: 2 * (8 + 4 + 3 - 2) = 26
    ("output_stationary", 8, 3, 4, 26),
    # IS: K on rows, M on cols (6 -> 2 folds), N streamed: 2 * (8 + 4 + 5 - 2) = 30
    ("input_stationary", 6, 4, 5, 30),
])
def test_tile_cycles_match_hand_values(dataflow, m, k, n, expected):
    assert matmul_cycles(dataflow, 4, 4, m, k, n) == expected


def test_rectangular_array_uses_rows_for_fill_and_cols_for_skew():
    # 2 rows x 8 cols, WS, K=2 N=8 M=1: one fold of 2*2 + 8 + 1 - 2 = 11
    assert matmul_cycles("weight_stationary", 2, 8, 1, 2, 8) == 11


def test_unknown_dataflow_rejected():
    with pytest.raises(ValueError):
        matmul_cycles("row_stationary", 4, 4, 1, 1, 1)

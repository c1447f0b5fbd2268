"""Pareto fronts and hypervolume of design points, all objectives minimised.

In: an [n, d] array of objective values (maximised objectives are negated by
the caller, see Objective.sign). Out: the non-dominated mask, front ranks
(non-dominated sorting, Deb et al., IEEE TEVC 2002) and the hypervolume
dominated by a front up to a reference point (exact, by slicing along the
last objective: "HSO", While et al., IEEE TEVC 2006).
"""
from __future__ import annotations

import numpy as np


def dominated_by(values: np.ndarray) -> np.ndarray:
    """[n, n] bool: [i, j] is True when point j dominates point i (<= everywhere, < somewhere)."""
    le = (values[None, :, :] <= values[:, None, :]).all(axis=2)
    lt = (values[None, :, :] < values[:, None, :]).any(axis=2)
    return le & lt


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (NaN rows are never on the front)."""
    values = np.asarray(values, dtype=float)
    ok = ~np.isnan(values).any(axis=1)
    mask = np.zeros(len(values), dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx):
        mask[idx] = ~dominated_by(values[idx]).any(axis=1)
    return mask


ROW_BLOCK = 512   # rows of the domination matrix built at once: bounds the [rows, n, d] temporaries


def _domination(values: np.ndarray) -> np.ndarray:
    """dominated_by(values), built a block of rows at a time (10,000 points: a 100 MB matrix,
    never a 300 MB temporary)."""
    out = np.empty((len(values), len(values)), dtype=bool)
    for start in range(0, len(values), ROW_BLOCK):
        rows = values[start:start + ROW_BLOCK]
        le = (values[None, :, :] <= rows[:, None, :]).all(axis=2)
        lt = (values[None, :, :] < rows[:, None, :]).any(axis=2)
        out[start:start + ROW_BLOCK] = le & lt
    return out


def ranks(values: np.ndarray) -> np.ndarray:
    """Front index of each point: 0 = Pareto front, 1 = front once rank 0 is removed, ...; -1 for NaN rows.

    Deb et al.'s fast non-dominated sort: the domination matrix is built once, then each front is
    the points no remaining point dominates, and removing it lowers the counts of those it dominated
    (O(n^2 d) once, not per front)."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), -1, dtype=int)
    valid = np.flatnonzero(~np.isnan(values).any(axis=1))
    if not len(valid):
        return out
    dominated = _domination(values[valid])            # [i, j]: j dominates i
    count = dominated.sum(axis=1)
    rank_of = np.full(len(valid), -1, dtype=int)
    front = np.flatnonzero(count == 0)
    rank = 0
    while len(front):
        rank_of[front] = rank
        count -= dominated[:, front].sum(axis=1)
        count[front] = -1                               # placed: never selected again
        front = np.flatnonzero(count == 0)
        rank += 1
    out[valid] = rank_of
    return out


def hypervolume(values: np.ndarray, reference) -> float:
    """Volume of objective space dominated by `values` and bounded by `reference` (minimisation)."""
    values = np.asarray(values, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if values.size == 0:
        return 0.0
    values = values[(values < reference).all(axis=1)]
    if len(values) == 0:
        return 0.0
    return _hso(values[non_dominated(values)], reference)


def _hso(points: np.ndarray, reference: np.ndarray) -> float:
    d = points.shape[1]
    if d == 1:
        return float(reference[0] - points[:, 0].min())
    if d == 2:
        order = np.argsort(points[:, 0], kind="stable")
        xs, ys = points[order, 0], points[order, 1]
        best = np.minimum.accumulate(ys)
        widths = np.diff(np.append(xs, reference[0]))
        return float(np.sum(widths * (reference[1] - best)))
    # Slice along the last objective: between consecutive levels, the dominated
    # region is the (d-1)-dimensional hypervolume of the points at or below the level.
    order = np.argsort(points[:, -1], kind="stable")
    pts = points[order]
    levels = np.append(pts[:, -1], reference[-1])
    total = 0.0
    for i in range(len(pts)):
        depth = levels[i + 1] - levels[i]
        if depth > 0:
            below = pts[: i + 1, :-1]
            total += depth * _hso(below[non_dominated(below)], reference[:-1])
    return total


def reference_point(values: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A reference point just worse than the worst value of each objective (the usual choice
    when none is given: max + margin x range)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values).any(axis=1)]
    hi, lo = values.max(axis=0), values.min(axis=0)
    span = np.where(hi > lo, hi - lo, np.abs(hi) + 1e-12)
    return hi + margin * span

"""Pareto fronts and hypervolume of design points, all objectives minimised.

In: an [n, d] array of objective values (maximised objectives are negated by
the caller, see Objective.sign). Out: the non-dominated mask, front ranks
(non-dominated sorting, Deb et al., IEEE TEVC 2002), the hypervolume dominated
by a front up to a reference point, exact (2-D: one sort; 3-D: the dimension
sweep of Fonseca, Paquete and Lopez-Ibanez, CEC 2006; 4-D and up: slicing
along the last objective, "HSO", While et al., IEEE TEVC 2006, down to 3-D),
and the hypervolume after each point of a sequence (a search's convergence).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

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
    if values.shape[1] > 3:      # the slicing recursion is quadratic in the points it keeps: drop dominated ones
        values = values[non_dominated(values)]
    return _hso(values, reference)


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
    if d == 3:
        return _sweep_3d(points, reference)
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


class _Staircase:
    """The 2-D front of the points added so far (x ascending, y descending) and the area it dominates
    up to (rx, ry), kept up to date as points are added: each add costs a binary search plus the points
    it removes, so n adds cost O(n log n) comparisons (and list moves, which are memmoves)."""

    def __init__(self, rx: float, ry: float):
        self.xs, self.ys, self.rx, self.ry, self.area = [], [], rx, ry, 0.0

    def _area(self, lo: int, hi: int) -> float:
        """Area of the strips of points lo..hi-1 (each from its x to the next point's x, or rx)."""
        xs, ys = self.xs, self.ys
        return sum(((xs[i + 1] if i + 1 < len(xs) else self.rx) - xs[i]) * (self.ry - ys[i]) for i in range(lo, hi))

    def add(self, x: float, y: float) -> bool:
        """Add (x, y); False (nothing changes) when a point already there dominates or equals it."""
        xs, ys = self.xs, self.ys
        before = bisect_right(xs, x)            # points with x' <= x: the last of them has their lowest y
        if before and ys[before - 1] <= y:
            return False
        first = bisect_left(xs, x)              # points it dominates: x' >= x and y' >= y, a run from here
        last = first
        while last < len(xs) and ys[last] >= y:
            last += 1
        lo = max(first - 1, 0)                  # the strip before it narrows to end at x
        self.area -= self._area(lo, last)
        xs[first:last], ys[first:last] = [x], [y]
        self.area += self._area(lo, first + 1)
        return True


def _sweep_3d(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact 3-D hypervolume by a sweep along z (Fonseca, Paquete and Lopez-Ibanez, "An improved
    dimension-sweep algorithm for the hypervolume indicator", CEC 2006): in z order, each point joins the
    2-D staircase of (x, y), and the slab up to the next point's z adds the staircase's area times its
    depth. O(n log n) comparisons; 10,000 points in well under a second."""
    order = np.argsort(points[:, 2], kind="stable")
    pts = points[order].tolist()
    stairs = _Staircase(float(reference[0]), float(reference[1]))
    total = 0.0
    for i, (x, y, _) in enumerate(pts):
        stairs.add(x, y)
        top = pts[i + 1][2] if i + 1 < len(pts) else float(reference[2])
        total += stairs.area * (top - pts[i][2])
    return total


def hypervolume_trace(values: np.ndarray, reference, at=None) -> np.ndarray:
    """The hypervolume of the first k rows, for each k in `at` (ascending counts, 1..n; default every
    one): a search's convergence, exact at each. NaN rows (infeasible points) and rows not below the
    reference add nothing. The front is kept up to date as rows arrive, and its hypervolume computed
    again only at a count in `at` where it has changed."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    reference = np.asarray(reference, dtype=float)
    at = np.arange(1, len(values) + 1) if at is None else np.asarray(at, dtype=int)
    out = np.zeros(len(at))
    front, current, changed, k = values[:0], 0.0, False, 0
    for i, count in enumerate(at):
        for row in values[k:count]:
            if not np.isnan(row).any() and (row < reference).all() and not (front <= row).all(axis=1).any():
                front = np.vstack([front[~(row <= front).all(axis=1)], row])    # it joins; those it dominates go
                changed = True
        k = max(k, count)
        if changed:
            current, changed = _hso(front, reference), False
        out[i] = current
    return out


def reference_point(values: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A reference point just worse than the worst value of each objective (the usual choice
    when none is given: max + margin x range)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values).any(axis=1)]
    hi, lo = values.max(axis=0), values.min(axis=0)
    span = np.where(hi > lo, hi - lo, np.abs(hi) + 1e-12)
    return hi + margin * span

"""Hypervolume of a study and the search's convergence: how much of objective space the feasible designs
found so far dominate, after each design point evaluated, in the order the store committed them, so a
search (tpe, nsga2) can be judged against the grid.

The space it is measured in: each objective in log10 (its values span decades, and halving latency then
adds as much at 1 ms as at 100 ms; linear where some value is not positive), turned so that lower is
better, and scaled to [0, 1] from the best to the worst feasible value over the points shown (a study,
or every study of a comparison, so their curves share one scale). Reference point: 1.1 in each, 10 % of
each range beyond the worst value, so designs at the worst value still add volume; the hypervolume is
then at most 1.1^d. In: points and evaluations frames, objectives. Out: the scale (and its reference
point in the objectives' own units), each study's curve, and the chart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dse.pareto import hypervolume, hypervolume_trace
from dse.report_page import esc, figure_html, shown

MARGIN = 0.1             # the reference point: this fraction of each objective's range beyond its worst value
MAX_CHECKPOINTS = 250    # past this many evaluations the curve is exact at this many evenly spread counts


@dataclass(frozen=True)
class Scale:
    """The normalised space: objective names, their signs (1 minimise, -1 maximise), which are in log10,
    and the best (lo) and worst (hi) feasible value of each in the transformed space."""
    names: tuple
    signs: tuple
    log: tuple
    lo: tuple
    hi: tuple

    @classmethod
    def fit(cls, frames, objectives) -> Scale:
        """Over the feasible rows of `frames`; `objectives`: (name, sign) pairs."""
        names, signs = tuple(n for n, _ in objectives), tuple(float(s) for _, s in objectives)
        values = np.vstack([_feasible(f, names) for f in frames]) if frames else np.empty((0, len(names)))
        log = tuple(bool(len(values) and (values[:, j] > 0).all()) for j in range(len(names)))
        t = _transform(values, signs, log)
        lo = tuple(t.min(axis=0)) if len(t) else (0.0,) * len(names)
        hi = tuple(t.max(axis=0)) if len(t) else (1.0,) * len(names)
        return cls(names, signs, log, lo, hi)

    @property
    def reference(self) -> np.ndarray:
        return np.full(len(self.names), 1.0 + MARGIN)

    def normalised(self, frame: pd.DataFrame) -> np.ndarray:
        """[n, d]: each row's objectives in the normalised space; NaN rows for infeasible points."""
        values = frame[list(self.names)].to_numpy(float, copy=True)
        values[~frame["feasible"].to_numpy(bool)] = np.nan
        span = np.array(self.hi) - np.array(self.lo)
        return (_transform(values, self.signs, self.log) - np.array(self.lo)) / np.where(span > 0, span, 1.0)

    def reference_values(self) -> list:
        """The reference point in each objective's own unit (its worst value, 10 % of the range further)."""
        out = []
        for j, (sign, log) in enumerate(zip(self.signs, self.log)):
            span = self.hi[j] - self.lo[j] if self.hi[j] > self.lo[j] else 1.0
            t = self.lo[j] + (1.0 + MARGIN) * span
            out.append(10.0 ** (sign * t) if log else sign * t)
        return out

    def describe(self) -> str:
        where = ", ".join(f"{name} {shown(name, value)}" for name, value in zip(self.names, self.reference_values()))
        linear = [name for name, log in zip(self.names, self.log) if not log]
        return ("in a normalised space: each objective taken as log10"
                + (f" (linear where some value is not positive: {', '.join(linear)})" if linear else "")
                + ", turned so that lower is better and scaled to [0, 1] from its best to its worst feasible value, "
                f"so objectives spanning decades count evenly; reference point {1 + MARGIN:g} in each, the worst "
                f"value plus {MARGIN:.0%} of the range (here {where}), so designs at the worst value still add "
                f"volume; at most {(1 + MARGIN) ** len(self.names):.4g} (one design best on every objective)")


def _feasible(frame: pd.DataFrame, names) -> np.ndarray:
    if not len(frame):
        return np.empty((0, len(names)))
    values = frame.loc[frame["feasible"].to_numpy(bool), list(names)].to_numpy(float)
    return values[~np.isnan(values).any(axis=1)]


def _transform(values: np.ndarray, signs, log) -> np.ndarray:
    out = np.array(values, dtype=float, copy=True)
    for j, (sign, is_log) in enumerate(zip(signs, log)):
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = sign * (np.log10(out[:, j]) if is_log else out[:, j])
    return out


def evaluated_in_order(points: pd.DataFrame, evaluations: pd.DataFrame) -> pd.DataFrame:
    """The design points that were simulated, in the order their last result was committed to the store
    (store.frame keeps that order); points ruled out before simulating (a parameter constraint) are not
    evaluations and are left out, and a design two value choices both make counts once."""
    if not len(points) or not len(evaluations):
        return points.iloc[:0]
    finished = {key: i for i, key in enumerate(evaluations["point_key"])}   # the last row of each point wins
    done = points[points["point_key"].isin(finished)].drop_duplicates("point_key")
    return done.iloc[np.argsort(done["point_key"].map(finished).to_numpy(), kind="stable")]


def curve(ordered: pd.DataFrame, scale: Scale) -> tuple:
    """(evaluation counts, hypervolume after each): every count up to MAX_CHECKPOINTS evaluations,
    else that many evenly spread (the last included)."""
    n = len(ordered)
    if not n:
        return np.array([0]), np.array([0.0])
    at = np.arange(1, n + 1) if n <= MAX_CHECKPOINTS else \
        np.unique(np.linspace(1, n, MAX_CHECKPOINTS).round().astype(int))
    return np.concatenate([[0], at]), np.concatenate([[0.0], hypervolume_trace(scale.normalised(ordered),
                                                                               scale.reference, at)])


def study_hypervolume(points: pd.DataFrame, scale: Scale) -> float:
    if not len(points):
        return 0.0
    values = scale.normalised(points)
    return hypervolume(values[~np.isnan(values).any(axis=1)], scale.reference)


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Search:
    """Hypervolume and convergence of one or more studies on one scale (fitted over all of them)."""
    scale: Scale
    labels: list
    colours: list
    curves: list          # per study: (evaluation counts, hypervolume after each)
    hypervolumes: list    # per study: the hypervolume of all its feasible points
    joint: float          # of every study's feasible points together

    @classmethod
    def of(cls, studies, objectives, colours=COLOURS) -> Search:
        """`studies`: (label, points frame, evaluations frame) each; `objectives`: (name, sign) pairs."""
        scale = Scale.fit([pts for _, pts, _ in studies], objectives)
        frames = [pts for _, pts, _ in studies if len(pts)]
        return cls(scale, [label for label, _, _ in studies], [colours[i % len(colours)] for i in range(len(studies))],
                   [curve(evaluated_in_order(pts, evs), scale) for _, pts, evs in studies],
                   [study_hypervolume(pts, scale) for _, pts, _ in studies],
                   study_hypervolume(pd.concat(frames, ignore_index=True), scale) if frames else 0.0)

    @property
    def hypervolume(self) -> float:
        """The first study's (the only one's, in a single study's report)."""
        return self.hypervolumes[0]

    def figure(self) -> go.Figure:
        """Each study's curve as steps, on one chart."""
        fig = go.Figure()
        for label, colour, (counts, values) in zip(self.labels, self.colours, self.curves):
            fig.add_trace(go.Scatter(x=counts, y=values, mode="lines",
                                     line={"shape": "hv", "color": colour, "width": 2},
                                     name=f"{esc(label)}: {values[-1]:.4g} after {counts[-1]} evaluations",
                                     hovertemplate=f"{esc(label)}<br>%{{x}} evaluations<br>hypervolume %{{y:.4g}}"
                                                   "<extra></extra>"))
        top = (1 + MARGIN) ** len(self.scale.names)
        fig.update_layout(title="hypervolume against evaluations (higher is better)", template="plotly_white",
                          height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                          legend={"orientation": "h", "y": -0.2},
                          xaxis={"title": {"text": "design points evaluated, in the order the store committed them"},
                                 "rangemode": "tozero"},
                          yaxis={"title": {"text": f"hypervolume (normalised; at most {top:.4g})"},
                                 "rangemode": "tozero"})
        return fig

    def section(self) -> str:
        """The Search section's body: what the chart shows, and the chart."""
        return f'<p class="note">{esc(NOTE)}</p>' + figure_html(self.figure(), "convergence")


NOTE = ("Hypervolume: the share of objective space, between the ideal point and the reference point, that the "
        "feasible designs found so far dominate; it grows as evaluations find better trade-offs. A search "
        "strategy (tpe, nsga2) whose curve rises faster than a grid's reaches the same front in fewer "
        "evaluations; a grid's curve only shows the order it enumerates the space. `dse report GRID_FOLDER "
        "SEARCH_FOLDER --compare --out DIR` draws both on this chart, on one scale.")

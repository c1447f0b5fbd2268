"""Which swept parameter moves which objective, over a study's feasible design points: Spearman's rank
correlation per (numeric parameter, objective), as a heatmap; for a parameter whose values are names (a
dataflow), the Kruskal-Wallis effect size of the objective's ranks across its values, as a second
heatmap; and parallel coordinates from the parameters to the objectives, one line per feasible point.

Rank measures because the objectives are monotone but far from linear in the parameters (latency
halves as the array doubles, then stops). In: the points frame, the space. Out: plotly figures.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from dse.report_fronts import log_axis
from dse.report_page import esc, figure_html, scale, title

ORDINAL_VALUES = 12   # a parameter with at most this many values gets an axis of its values, evenly spaced


def numeric(values: pd.Series) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in values)


def spearman(x: pd.Series, y: pd.Series) -> tuple:
    """(rho, p-value, points); NaN where it is undefined (fewer than 3 points, or a constant)."""
    ok = x.notna() & y.notna()
    x, y = x[ok].astype(float), y[ok].astype(float)
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return math.nan, math.nan, len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, p = stats.spearmanr(x, y)
    return float(rho), float(p), len(x)


def rank_effect(groups: pd.Series, y: pd.Series) -> tuple:
    """(epsilon^2, p-value, points): the Kruskal-Wallis H of y's ranks across the groups, as the effect size
    epsilon^2 = H / (n - 1) (Tomczak and Tomczak, Trends in Sport Sciences 2014): 0 when the group says
    nothing about the rank, 1 when it decides it. NaN with fewer than two groups or a constant y."""
    ok = y.notna()
    parts = [part.astype(float).to_numpy() for _, part in y[ok].groupby(groups[ok].astype(str))]
    n = int(ok.sum())
    if len(parts) < 2 or n < 3 or y[ok].nunique() < 2:
        return math.nan, math.nan, n
    h, p = stats.kruskal(*parts)
    return float(min(h / (n - 1), 1.0)), float(p), n


def _heatmap(cells: dict, params: list, objectives: list, measure: str, zmin: float, colorscale) -> go.Figure:
    """cells: (parameter, objective) -> (value, p, n)."""
    z = [[cells[p, o][0] for o in objectives] for p in params]
    text = [[("n/a" if math.isnan(cells[p, o][0]) else f"{cells[p, o][0]:+.2f}" if zmin < 0 else
              f"{cells[p, o][0]:.2f}") for o in objectives] for p in params]
    hover = [[f"{esc(p)} -> {esc(o)}<br>{measure} {text[i][j]}<br>p-value {cells[p, o][1]:.2g}, {cells[p, o][2]} "
              "points" for j, o in enumerate(objectives)] for i, p in enumerate(params)]
    fig = go.Figure(go.Heatmap(z=[[None if math.isnan(v) else v for v in row] for row in z],
                               x=[esc(o) for o in objectives], y=[esc(p) for p in params], zmin=zmin, zmax=1.0,
                               colorscale=colorscale, text=text, texttemplate="%{text}", customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>", colorbar={"title": {"text": measure}}))
    fig.update_layout(template="plotly_white", height=140 + 46 * len(params),
                      margin={"l": 220, "r": 20, "t": 50, "b": 60},
                      title=f"{measure}: each parameter (row) against each objective (column)",
                      yaxis={"autorange": "reversed"})
    return fig


def sensitivity_figures(points: pd.DataFrame, space) -> list:
    """The heatmaps (Spearman for numeric parameters, epsilon^2 for named ones), each only when it has a row."""
    ok = points[points["feasible"]]
    objectives = [o.name for o in space.objectives if ok[o.name].notna().any()]
    params = [p for p in space.parameters if p in ok and ok[p].nunique() > 1]
    numeric_params = [p for p in params if numeric(ok[p])]
    named = [p for p in params if p not in numeric_params]
    figures = []
    if numeric_params and objectives:
        cells = {(p, o): spearman(ok[p], ok[o]) for p in numeric_params for o in objectives}
        figures.append(_heatmap(cells, numeric_params, objectives, "Spearman rho", -1.0, "RdBu_r"))
    if named and objectives:
        cells = {(p, o): rank_effect(ok[p], ok[o]) for p in named for o in objectives}
        figures.append(_heatmap(cells, named, objectives, "Kruskal-Wallis epsilon^2", 0.0, "Purples"))
    return figures


def _dimension(values: pd.Series, label: str) -> dict:
    """One axis of the parallel coordinates: a parameter with few values evenly spaced by rank (labelled with
    its values), an objective on a log10 scale (labelled in its unit) where its values are positive. Values
    go to the page as float32 or int16 (half the bytes of float64; 10,000 lines ~0.5 MB)."""
    distinct = sorted(values.dropna().unique(), key=lambda v: (isinstance(v, str), v))
    if not numeric(values) or len(distinct) <= ORDINAL_VALUES:
        position = {v: i for i, v in enumerate(distinct)}
        return {"label": label, "values": values.map(position).to_numpy(np.int16),
                "tickvals": list(range(len(distinct))), "ticktext": [esc(v) for v in distinct]}
    axis = log_axis(values.to_numpy(float))
    if axis["type"] != "log":
        return {"label": label, "values": values.to_numpy(np.float32)}
    return {"label": label, "values": np.log10(values.to_numpy(float)).astype(np.float32),
            "tickvals": np.log10(axis["tickvals"]).tolist(),
            "ticktext": axis["ticktext"]}


def parallel_figure(points: pd.DataFrame, space) -> go.Figure | None:
    """Parameters then objectives, one line per feasible point, coloured by the first objective (log10).
    Drag along an axis to keep the lines through a range."""
    ok = points[points["feasible"]]
    objectives = [o.name for o in space.objectives if ok[o.name].notna().all()]
    params = [p for p in space.parameters if p in ok]
    if not len(ok) or not objectives:
        return None
    dims = [_dimension(ok[p], esc(p)) for p in params]
    dims += [_dimension(ok[o] * scale(o), esc(title(o))) for o in objectives]
    first = objectives[0]
    colour = ok[first].to_numpy(float) * scale(first)
    logged = bool((colour > 0).all())
    fig = go.Figure(go.Parcoords(dimensions=dims, line={
        "color": (np.log10(colour) if logged else colour).astype(np.float32), "colorscale": "Viridis",
        "showscale": True, "colorbar": {"title": {"text": ("log10 " if logged else "") + esc(title(first))}}}))
    fig.update_layout(template="plotly_white", height=480, margin={"l": 80, "r": 80, "t": 80, "b": 40},
                      title=f"parameters to objectives, {len(ok)} feasible designs (coloured by {esc(first)})")
    return fig


NOTE = ("Spearman's rho: the rank correlation of a parameter with an objective over the feasible designs, from -1 "
        "(the objective falls as the parameter grows) to +1 (it grows with it), 0 when the ranks are unrelated; "
        "it measures a monotone trend, not its size, and with the other parameters varying at once. Kruskal-Wallis "
        "epsilon^2 (for parameters whose values are names): how much of the objective's rank its value explains, "
        "0 to 1. Hover for the p-value and the number of designs. In the parallel coordinates, drag along an axis "
        "to keep only the designs through that range.")


def sensitivity_section(points: pd.DataFrame, space) -> str:
    """The section's body ('' when there is nothing to show: no feasible point, or no parameter that varies)."""
    heatmaps = [figure_html(fig, f"sensitivity-{i}") for i, fig in enumerate(sensitivity_figures(points, space))]
    parallel = parallel_figure(points, space)
    if not heatmaps and parallel is None:
        return ""
    return (f'<p class="note">{esc(NOTE)}</p><div class="plots">' + "".join(heatmaps) + "</div>"
            + (figure_html(parallel, "parallel") if parallel is not None else ""))

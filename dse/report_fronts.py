"""The report's plots of the fronts: for each pair of objectives, every design point, the 2-D
front of that pair drawn as a staircase, and the front of all objectives marked apart; and the
best latency against array size per workload. Units follow dse.report_page (latency in ms).

In: the points frame (dse.sweeper.points_frame), the evaluations frame, the objectives.
Out: plotly figures; WebGL markers for the point clouds past WEBGL_POINTS.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dse.report_page import esc, scale, title

WEBGL_POINTS = 1000   # past this many markers in a plot, WebGL (Scattergl) keeps panning and hovering smooth
FRONT_TRACE = "front"  # the `meta` of the all-objective front's trace: clicking a point opens its drill-down


def log_axis(values) -> dict:
    """A log axis labelled only where it reads well: powers of ten over more than three decades,
    1-2-5 steps over one to three, then 1..9 steps; every label the full number (no lone '2 3 4 5'
    minor labels around one '0.01'). A linear axis when some value is not positive."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if not len(values) or (values <= 0).any():
        return {"type": "linear"}
    lo, hi = values.min() / 1.15, values.max() * 1.15
    for steps in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in steps if lo <= m * 10.0 ** k <= hi]
        if 3 <= len(ticks) <= 12:
            break
    if len(ticks) < 2:  # less than a step of 1..9 (a narrow range): five points evenly spaced in log
        ticks = [float(f"{v:.2g}") for v in np.geomspace(values.min(), values.max(), 5)]
    ticks = sorted(set(ticks))
    return {"type": "log", "tickvals": ticks, "ticktext": [f"{t:.6g}" for t in ticks]}


def _scatter(count: int):
    return go.Scattergl if count > WEBGL_POINTS else go.Scatter


def _hover(x: str, y: str, params: list, extra: str = "") -> str:
    lines = [f"{esc(x)} %{{x:.4g}}", f"{esc(y)} %{{y:.4g}}"]
    lines += [f"{esc(p)}=%{{customdata[{i}]}}" for i, p in enumerate(params)]
    return "<br>".join(lines + ([extra] if extra else [])) + "<extra></extra>"


def pair_front(points: pd.DataFrame, x: str, y: str, signs: dict) -> pd.DataFrame:
    """The feasible points no other feasible point beats on both x and y, ordered along the
    staircase (best x first)."""
    ok = points[points["feasible"] & points[x].notna() & points[y].notna()]
    sx, sy = ok[x].to_numpy(float) * signs[x], ok[y].to_numpy(float) * signs[y]
    order = np.lexsort((sy, sx))   # one sort instead of all pairs: 10,000 points in milliseconds
    sx, sy = sx[order], sy[order]
    # on it: a point better on y than every point before it (smaller x), or a repeat of the last such point
    new = sy < np.concatenate(([np.inf], np.minimum.accumulate(sy)[:-1]))
    setter = np.maximum.accumulate(np.where(new, np.arange(len(sy)), 0))
    keep = new | ((sx == sx[setter]) & (sy == sy[setter]))
    return ok.iloc[order[keep]]


def front_figure(points: pd.DataFrame, x: str, y: str, params: list, signs: dict, drill: dict,
                 count: int) -> go.Figure:
    """One pair of objectives. `drill`: point_key -> index of its drill-down; `count`: objectives."""
    fig = go.Figure()
    ok = points[points["feasible"]]
    cls = _scatter(len(points))

    def xy(part):
        return part[x].to_numpy(float) * scale(x), part[y].to_numpy(float) * scale(y)

    def custom(part, *extra):
        cols = [part[p].astype(str).map(esc).to_numpy() for p in params] + list(extra)
        return np.column_stack(cols) if cols else None

    px, py = xy(ok)
    fig.add_trace(cls(x=px, y=py, mode="markers", name=f"feasible design ({len(ok)})",
                      marker={"color": "#9aa5b1", "size": 5, "opacity": 0.7}, customdata=custom(ok),
                      hovertemplate=_hover(x, y, params)))
    bad = points[~points["feasible"] & points[x].notna() & points[y].notna()]
    if len(bad):  # measured, then ruled out by a result constraint: shown greyed with the reason
        bx, by = xy(bad)
        fig.add_trace(cls(x=bx, y=by, mode="markers", name=f"infeasible ({len(bad)}; reason on hover)",
                          marker={"color": "#cbd2d9", "size": 6, "symbol": "x"},
                          customdata=custom(bad, bad["reason"].map(esc).to_numpy()),
                          hovertemplate=_hover(x, y, params, f"infeasible: %{{customdata[{len(params)}]}}")))
    stairs = pair_front(points, x, y, signs)
    sx, sy = xy(stairs)
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines+markers", line={"shape": "hv", "color": "#1f77b4"},
                             marker={"size": 7, "symbol": "circle-open", "color": "#1f77b4"},
                             name=f"2-D front of this pair ({len(stairs)}, staircase)", customdata=custom(stairs),
                             hovertemplate=_hover(x, y, params, "on the 2-D front of this pair")))
    front = ok[ok["on_front"]]
    fx, fy = xy(front)
    index = front["point_key"].map(drill).fillna(-1).astype(int).to_numpy()
    fig.add_trace(go.Scatter(x=fx, y=fy, mode="markers", meta=FRONT_TRACE,
                             name=f"front of all {count} objectives ({len(front)}; click for its drill-down)",
                             marker={"size": 9, "symbol": "diamond", "color": "#d62728",
                                     "line": {"width": 1, "color": "#7f1d1d"}},
                             customdata=custom(front, index),
                             hovertemplate=_hover(x, y, params, f"on the front of all {count} objectives")))
    fig.update_layout(title=f"{esc(y)} vs {esc(x)}", template="plotly_white", height=460,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "h", "y": -0.18, "font": {"size": 11}},
                      xaxis={"title": {"text": esc(title(x))}, **log_axis(np.concatenate([px, sx]))},
                      yaxis={"title": {"text": esc(title(y))}, **log_axis(np.concatenate([py, sy]))})
    return fig


def latency_figure(evaluations: pd.DataFrame, workload: str, series_keys: list) -> go.Figure:
    """Best latency (ms) at each array size on one workload, a line per value of `series_keys`."""
    fig = go.Figure()
    data = evaluations[(evaluations["workload"] == workload) & evaluations["feasible"]].copy()
    data["series"] = data.apply(lambda r: ", ".join(f"{k.split('.')[-1]}={r[k]}" for k in series_keys) or "all",
                                axis=1)
    ys = []
    for label, part in data.groupby("series", sort=True):
        part = part.groupby("pe_count", as_index=False)["latency_s"].min()  # best at each array size
        ys.append(part["latency_s"].to_numpy(float) * scale("latency_s"))
        fig.add_trace(go.Scatter(x=part["pe_count"], y=ys[-1], mode="markers+lines", name=esc(label),
                                 hovertemplate="PEs %{x}<br>latency %{y:.4g} ms<extra></extra>"))
    fig.update_layout(title=f"{esc(workload)}: best latency vs array size", template="plotly_white", height=420,
                      xaxis={"title": {"text": "array size (PEs = rows x cols)"},
                             **log_axis(data["pe_count"].to_numpy(float))},
                      yaxis={"title": {"text": esc(title("latency_s"))},
                             **log_axis(np.concatenate(ys) if ys else [])})
    return fig

"""HTML report of a sweep: one self-contained page (plotly.js inlined, works
offline) with the Pareto front of each pair of objectives, latency against array
size per workload, the front as a table, and every figure's unit and definition.

In: the sweep's points frame (one row per design point, dse.sweep.points_frame)
and evaluations frame (one row per point and workload). Out: index.html.
"""
from __future__ import annotations

import html
import itertools
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from dse.space import METRICS
from sim.stats import definitions

MAX_TABLE_ROWS = 2000


def _label(metric: str) -> str:
    return f"{metric} ({METRICS[metric][0]})"


def _hover(params: list) -> str:
    lines = [f"{p}=%{{customdata[{i}]}}" for i, p in enumerate(params)]
    return "<br>".join(lines) + "<extra></extra>"


def _front_figure(points: pd.DataFrame, x: str, y: str, params: list) -> go.Figure:
    fig = go.Figure()
    ok = points[points["feasible"]]
    for name, part, style in (("feasible", ok[~ok["on_front"]], {"color": "#b0b7c3", "size": 6}),
                              ("Pareto front", ok[ok["on_front"]], {"color": "#d62728", "size": 9})):
        fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=name, marker=style,
                                 customdata=part[params].values if params else None,
                                 hovertemplate=f"{x} %{{x:.4g}}<br>{y} %{{y:.4g}}<br>" + _hover(params)))
    fig.update_layout(title=f"{y} vs {x} (red: on the front of all objectives)", xaxis_title=_label(x),
                      yaxis_title=_label(y), xaxis_type="log", yaxis_type="log", template="plotly_white")
    return fig


def _latency_figure(evaluations: pd.DataFrame, workload: str, series_keys: list) -> go.Figure:
    fig = go.Figure()
    data = evaluations[(evaluations["workload"] == workload) & evaluations["feasible"]].copy()
    data["series"] = data.apply(lambda r: ", ".join(f"{k.split('.')[-1]}={r[k]}" for k in series_keys) or "all",
                                axis=1)
    for label, part in data.groupby("series", sort=True):
        part = part.groupby("pe_count", as_index=False)["latency_s"].min()  # best at each array size
        fig.add_trace(go.Scatter(x=part["pe_count"], y=part["latency_s"] * 1e3, mode="markers+lines",
                                 name=label, hovertemplate="PEs %{x}<br>latency %{y:.3f} ms<extra></extra>"))
    fig.update_layout(title=f"{workload}: best latency vs array size", xaxis_title="array size (PEs = rows x cols)",
                      yaxis_title="latency (ms per run)", xaxis_type="log", template="plotly_white")
    return fig


def write_report(points: pd.DataFrame, evaluations: pd.DataFrame, space, workloads, path: Path) -> None:
    params = list(space.parameters)
    objectives = [o.name for o in space.objectives]
    feasible = int(points["feasible"].sum()) if len(points) else 0
    front = int(points["on_front"].sum()) if len(points) else 0
    parts = [f"<h1>Sweep report: {html.escape(space.base.name)}</h1>",
             f"<p>{len(points)} design points ({feasible} feasible, {front} on the Pareto front) x "
             f"{len(workloads)} workloads ({html.escape(', '.join(w.label for w in workloads))}); strategy "
             f"{space.strategy}; timing-only simulation. Objectives: "
             + ", ".join(f"{o.direction}imise {html.escape(_label(o.name))}" for o in space.objectives) + ".</p>"]
    first = True
    if feasible:
        for x, y in itertools.combinations(objectives, 2):
            parts.append(pio.to_html(_front_figure(points, x, y, params), full_html=False, include_plotlyjs=first))
            first = False
    series = [k for k in params if k not in ("array.rows", "array.cols") and k in evaluations.columns][:1]
    for workload in (evaluations["workload"].unique() if len(evaluations) else []):
        parts.append(pio.to_html(_latency_figure(evaluations, workload, series), full_html=False,
                                 include_plotlyjs=first))
        first = False
    if front:
        on_front = points[points["on_front"]].sort_values(objectives[0])
        parts.append("<h2>Pareto front</h2>" + on_front[params + objectives + ["utilisation"]].to_html(
            index=False, float_format=lambda v: f"{v:.4g}"))
    defs = {**{m: f"{unit}: {text}" for m, (unit, _, text) in METRICS.items()}, **definitions()}
    parts.append("<h2>Definitions</h2><ul>" + "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in defs.items()) + "</ul>")
    cols = [*params, "feasible", "pareto_rank", *objectives, "reason"]
    shown = points[[c for c in cols if c in points.columns]].head(MAX_TABLE_ROWS)
    more = f" (first {MAX_TABLE_ROWS} of {len(points)}; all in points.csv)" if len(points) > MAX_TABLE_ROWS else ""
    parts.append(f"<h2>All design points{more}</h2>"
                 + shown.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>dse report</title></head><body>"
                    + "\n".join(parts) + "</body></html>")

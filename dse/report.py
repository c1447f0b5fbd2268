"""HTML report of a sweep: one self-contained page (plotly.js inlined, works
offline) with latency against array size per workload and the results table.
Every plotted figure states its unit."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from sim.stats import DEFINITIONS


def _series_label(row, keys) -> str:
    return ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys) or "all"


def _latency_figure(df: pd.DataFrame, workload: str, series_keys: list) -> go.Figure:
    fig = go.Figure()
    data = df[(df["workload"] == workload) & df["feasible"]].copy()
    data["series"] = data.apply(lambda r: _series_label(r, series_keys), axis=1)
    for label, part in data.groupby("series", sort=True):
        part = part.sort_values("pe_count")
        fig.add_trace(go.Scatter(
            x=part["pe_count"], y=part["latency_s"] * 1e3, mode="markers+lines", name=label,
            customdata=part[["array.rows", "array.cols", "utilisation", "total_cycles"]].values
            if {"array.rows", "array.cols"} <= set(part.columns) else None,
            hovertemplate="PEs %{x}<br>latency %{y:.3f} ms<br>rows %{customdata[0]} cols %{customdata[1]}"
                          "<br>utilisation %{customdata[2]:.2f}<br>cycles %{customdata[3]}<extra></extra>"))
    fig.update_layout(title=f"{workload}: latency vs array size", xaxis_title="array size (PEs = rows x cols)",
                      yaxis_title="latency (ms per inference)", xaxis_type="log", template="plotly_white")
    return fig


def write_report(df: pd.DataFrame, spec, swept: list, path: Path) -> None:
    series_keys = [k for k in swept if k not in ("array.rows", "array.cols")]
    parts = [f"<h1>Sweep report: {html.escape(spec.name)}</h1>",
             f"<p>{len(df)} evaluations, {int(df['feasible'].sum())} feasible; timing-only simulation "
             f"at {spec.clock_ghz} GHz.</p>"]
    first = True
    for workload in df["workload"].unique():
        fig = _latency_figure(df, workload, series_keys)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=first))
        first = False
    defs = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
    parts.append(f"<h2>Definitions</h2><ul>{defs}</ul>")
    cols = ["workload", *swept, "feasible", "latency_s", "total_cycles", "utilisation", "dram_bytes", "reason"]
    table = df[[c for c in cols if c in df.columns]].to_html(index=False, float_format=lambda v: f"{v:.4g}")
    parts.append(f"<h2>All results</h2>{table}")
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>dse report</title></head><body>"
                    + "\n".join(parts) + "</body></html>")

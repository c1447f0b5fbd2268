"""The report page's conventions, shared by its sections: how each metric is shown (one unit
per metric everywhere: latency in ms, energy in mJ), text escaped for HTML, data embedded in a
<script type="application/json"> block that no name can break out of, the stylesheet, and the page
around the sections (plotly.js inlined once, so the page works offline).

In: metric names (dse.space.METRICS), values, names from models, specs and paths, plotly figures.
Out: labels, scaled numbers, escaped strings and HTML fragments, the whole page.
"""
from __future__ import annotations

import html
import json
import math

import plotly.io as pio
from plotly.offline import get_plotlyjs

from dse.space import METRICS

PLOT_CONFIG = {"displaylogo": False, "responsive": True}

# metric -> (unit shown, factor from the stored unit, what one value is). Latency and energy are
# small numbers of seconds and joules; every plot, table and hover shows them in ms and mJ.
DISPLAY = {
    "latency_s": ("ms", 1e3, "per inference"),
    "energy_j": ("mJ", 1e3, "per inference"),
    "edp_j_s": ("mJ*ms", 1e6, "per inference"),
}


def figure_html(fig, div_id: str) -> str:
    """A plotly figure as a <div> and its drawing script; plotly.js itself comes once, in document()."""
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def document(heading: str, parts: list, plots: bool, tail: str = "") -> str:
    """The whole page: `heading` (text, escaped here) as its title, the parts (HTML), then `tail` (scripts
    that run once every plot is drawn). plotly.js is inlined only when some part draws with it."""
    plotly_js = f"<script>{get_plotlyjs()}</script>" if plots else ""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>dse report: {esc(heading)}</title><style>{STYLE}</style>{plotly_js}</head><body>"
            + "\n".join(parts) + tail + "</body></html>")


def unit(metric: str) -> str:
    return DISPLAY[metric][0] if metric in DISPLAY else METRICS.get(metric, ("",))[0]


def scale(metric: str) -> float:
    return DISPLAY[metric][1] if metric in DISPLAY else 1.0


def title(metric: str) -> str:
    """Axis and column title: the metric's name with the unit it is shown in, e.g.
    'latency_s in ms per inference'."""
    if metric in DISPLAY:
        shown, _, per = DISPLAY[metric]
        return f"{metric} in {shown} {per}"
    return f"{metric} ({unit(metric)})" if unit(metric) else metric


def shown(metric: str, value) -> str:
    """One value in its display unit, four significant digits, with the unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value) * scale(metric):.4g} {unit(metric)}".rstrip()


def esc(value) -> str:
    """Any name or value as HTML text (model, layer, workload, spec and path names included)."""
    return html.escape(str(value), quote=True)


def plain(value):
    """A JSON-ready value: NumPy scalars as Python ones, NaN and infinities as None (JSON has neither)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_block(element_id: str, data) -> str:
    """`data` as a <script type="application/json"> block. '<', '>' and '&' are written as \\u escapes,
    so a name holding '</script>' stays inside the block; JSON.parse gives the text back."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def section(element_id: str, heading: str, body: str) -> str:
    return f'<section id="{esc(element_id)}"><h2>{esc(heading)}</h2>\n{body}\n</section>'


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 48px;
color:#1f2933;line-height:1.4}
h1{margin:20px 0 4px}h2{margin-top:32px;border-bottom:1px solid #d9dee5;padding-bottom:4px}
.banner{padding:10px 14px;margin:12px 0;border-radius:4px;font-weight:600}
.banner.error{background:#fde8e8;border:1px solid #e02424;color:#9b1c1c}
.banner.warning{background:#fdf6b2;border:1px solid #c27803;color:#723b13}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d9dee5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f4f8}tbody tr:nth-child(even){background:#f8fafc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;position:sticky;top:0}
.controls{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:8px 0;font-size:14px}
.controls input[type=search]{min-width:260px}
.note{color:#52606d;font-size:13px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:8px}
details>summary{cursor:pointer;font-weight:600;margin:6px 0}
dl.overview{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}
dl.overview dt{font-weight:600}dl.overview dd{margin:0}
"""

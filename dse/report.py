"""HTML report of a sweep: one self-contained page (plotly.js inlined once, works offline) with an
overview (spec, workloads, feasible and infeasible points by reason, strategy, best design per
objective, a banner when something is wrong), the fronts of each pair of objectives, a drill-down
into every front design, latency against array size, and a sortable, paged table of every point.

In: the sweep's points frame (one row per design point, dse.sweeper.points_frame), evaluations frame
(one row per point and workload), space and workloads; the folder's sweep.json and verify.csv when
present. Out: index.html. `dse sweep` writes it at the end; `dse report` rebuilds it from the store.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd

from dse.report_convergence import Search
from dse.report_drilldown import drilldown_section
from dse.report_fronts import front_figure, latency_figure
from dse.report_page import document, esc, figure_html, section, shown, title
from dse.report_sensitivity import sensitivity_section
from dse.report_table import points_table
from dse.space import METRICS
from sim.stats import definitions

NAV = (("overview", "overview"), ("fronts", "fronts"), ("search", "search"), ("sensitivity", "sensitivity"),
       ("drilldown", "drill-down"), ("latency", "latency vs array size"), ("points", "all points"),
       ("definitions", "definitions"))   # (section id, link text), in page order
NO_DRILLDOWN = ("<p>Not built with this page, which was written without simulating anything; "
                "<code>dse report</code> on this folder adds it (the front designs re-run in timing mode, "
                "a few ms each).</p>")


def _reason_counts(points: pd.DataFrame) -> list:
    """(count, an example) per infeasibility reason, reasons that differ only in their numbers
    (array sizes, bytes) counted as one; the most common first."""
    bad = points.loc[~points["feasible"], "reason"].astype(str)
    if not len(bad):
        return []
    shapes = bad.str.replace(r"\d+(\.\d+)?", "#", regex=True)
    return [(int(count), bad[shapes == shape].iloc[0]) for shape, count in shapes.value_counts().items()]


def _folder_files(folder: Path) -> tuple:
    """(sweep.json as a dict or {}, verify.csv as a frame or None) of the report's folder."""
    try:
        meta = json.loads((folder / "sweep.json").read_text())
    except (OSError, ValueError):
        meta = {}
    try:
        checks = pd.read_csv(folder / "verify.csv")
    except (OSError, ValueError):
        checks = None
    return meta, checks


def _banners(points: pd.DataFrame, meta: dict, checks, notes) -> list:
    out = []
    if len(points) and not points["feasible"].any():
        count, reason = _reason_counts(points)[0]
        out.append(("error", f"No feasible design point: all {len(points)} points are infeasible. Most common "
                             f"reason ({count} of {len(points)}): {reason}"))
    if checks is not None and "ok" in checks:
        failed = checks[checks["ok"].astype(str).str.lower() == "false"]
        if len(failed):
            first = failed.iloc[0]
            out.append(("error", f"--verify failed: {len(failed)} of {len(checks)} functional checks differ from "
                                 f"the reference (first: {first.get('workload', '?')}, max |error| "
                                 f"{first.get('max_abs_error', float('nan')):.3g} vs {first.get('reference', '?')}; "
                                 "every check in verify.csv)"))
    if meta.get("interrupted"):
        out.append(("warning", "This sweep was interrupted: the report shows the points that finished. Run the "
                               "same dse sweep command again to finish it."))
    out += [("warning", note) for note in notes]
    return [f'<div class="banner {kind}" role="alert">{esc(text)}</div>' for kind, text in out]


def _overview(points: pd.DataFrame, evaluations: pd.DataFrame, space, workloads, checks, search) -> str:
    feasible = points[points["feasible"]] if len(points) else points
    base = space.base
    items = [("spec", f"{base.name} (target {getattr(base, 'target', '?')}, technology "
                      f"{getattr(base, 'technology', '?')})"),
             ("workloads", "; ".join(f"{w.label} (batch {w.batch}, weight {w.weight:g})" for w in workloads)),
             ("strategy", f"{space.strategy} over {space.size:,} points in the space"
                          + (f", budget {space.budget}" if space.budget is not None else "")
                          + (f", seed {space.seed}" if space.strategy != "grid" else "")),
             ("objectives", ", ".join(f"{o.direction}imise {title(o.name)}" for o in space.objectives)),
             ("points", f"{len(points)} evaluated: {len(feasible)} feasible, {len(points) - len(feasible)} "
                        f"infeasible; {int(points['on_front'].sum()) if len(points) else 0} on the front of "
                        "all objectives")]
    if len(evaluations):
        seconds = evaluations["eval_seconds"].sum() if "eval_seconds" in evaluations else float("nan")
        items.append(("evaluations", f"{len(evaluations)} (design point x workload), timing-only simulation, "
                                     f"{seconds:.1f} s of simulation summed over them"))
    if search is not None:
        items.append(("hypervolume", f"{search.hypervolume:.4g}, {search.scale.describe()}"))
    if checks is not None and "ok" in checks:
        verdicts = checks["ok"].astype(str).str.lower()
        items.append(("--verify", f"{int((verdicts == 'true').sum())} ok, {int((verdicts == 'false').sum())} "
                                  f"failed, {int((~verdicts.isin(['true', 'false'])).sum())} not checked "
                                  "(functional runs of front points against references; verify.csv)"))
    body = '<dl class="overview">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"
    reasons = _reason_counts(points) if len(points) else []
    if reasons:
        body += ("<h3>Infeasible points by reason</h3><table><thead><tr><th>points</th><th>reason (the first "
                 "one's text; reasons differing only in numbers counted together)</th></tr></thead><tbody>"
                 + "".join(f'<tr><td class="num">{n}</td><td>{esc(r)}</td></tr>' for n, r in reasons)
                 + "</tbody></table>")
    if len(feasible):
        body += "<h3>Best design per objective</h3>" + _best_table(feasible, space)
    return body


def _best_table(feasible: pd.DataFrame, space) -> str:
    rows = []
    for o in space.objectives:
        if feasible[o.name].isna().all():
            rows.append((o.name, "not available from this target's stats", ""))
            continue
        best = feasible.loc[feasible[o.name].idxmin() if o.direction == "min" else feasible[o.name].idxmax()]
        design = ", ".join(f"{k}={best[k]}" for k in space.parameters) or "the spec's values"
        rows.append((f"{o.direction} {o.name}", shown(o.name, best[o.name]), design))
    return ("<table><thead><tr><th>objective</th><th>best</th><th>design</th></tr></thead><tbody>"
            + "".join(f"<tr><td>{esc(a)}</td><td class='num'>{esc(b)}</td><td>{esc(c)}</td></tr>" for a, b, c in rows)
            + "</tbody></table>")


def _front_plots(points: pd.DataFrame, space, drill: dict) -> list:
    params = list(space.parameters)
    signs = {o.name: o.sign for o in space.objectives}
    pairs = itertools.combinations([o.name for o in space.objectives], 2)
    return [figure_html(front_figure(points, x, y, params, signs, drill, len(signs)), f"front-{i}")
            for i, (x, y) in enumerate(pairs)]


def _latency_plots(evaluations: pd.DataFrame, space) -> list:
    if not len(evaluations) or "pe_count" not in evaluations:
        return []
    sources = getattr(space.base, "FIGURE_FIELDS", ())     # already on the x axis (the PE count)
    series = [k for k in space.parameters if k not in sources and k in evaluations.columns][:1]
    labels = [w for w in evaluations["workload"].unique() if evaluations.loc[evaluations["workload"] == w,
                                                                             "feasible"].any()]
    return [figure_html(latency_figure(evaluations, w, series), f"latency-{i}") for i, w in enumerate(labels)]


# A click on a red diamond (the all-objective front) opens that design's drill-down.
_CLICK = """<script>document.querySelectorAll('.front-plot .plotly-graph-div').forEach(gd=>{if(gd.on)
gd.on('plotly_click',e=>{const p=e.points[0];if(!p||p.data.meta!=='front'||!window.dseSelectDesign)return;
const i=Number(p.customdata[p.customdata.length-1]);if(i>=0)window.dseSelectDesign(i);});});</script>"""


def write_report(points: pd.DataFrame, evaluations: pd.DataFrame, space, workloads, path: Path,
                 notes=(), drilldown=True) -> dict:
    """Write index.html; `notes` are extra warnings for the banner; `drilldown` False leaves out the
    drill-down, which re-simulates the front designs (dse reprice simulates nothing). Returns what the
    page holds: {"bytes", "front", "drilldown_s"} (its size, front designs, seconds re-simulating them)."""
    path = Path(path)
    meta, checks = _folder_files(path.parent)
    feasible = int(points["feasible"].sum()) if len(points) else 0
    drill_html, drill, drill_s = drilldown_section(points, evaluations, space, workloads) \
        if feasible and drilldown else (NO_DRILLDOWN if feasible else
                                         "<p>No feasible design: nothing to drill into.</p>", {}, 0.0)
    fronts = _front_plots(points, space, drill) if feasible else []
    latency = _latency_plots(evaluations, space)
    search = Search.of([(f"this study ({space.strategy})", points, evaluations)],
                       [(o.name, o.sign) for o in space.objectives]) if feasible else None
    name = esc(space.base.name)
    nav = " · ".join(f'<a href="#{i}">{t}</a>' for i, t in NAV)
    parts = [f"<h1>Sweep report: {name}</h1>", f"<nav>{nav}</nav>", *_banners(points, meta, checks, notes),
             section("overview", "Overview", _overview(points, evaluations, space, workloads, checks, search))]
    if fronts:
        parts.append(section("fronts", "Pareto fronts", (
            '<p class="note">Each plot is one pair of objectives. Blue staircase: the 2-D front of that pair (no '
            "other feasible design is better on both); red diamonds: the front of all objectives (no design is "
            "better on every objective), which need not lie on a pair's staircase. Grey: the other feasible "
            "designs; grey crosses: designs measured then ruled out by a constraint. Log axes; latency in ms.</p>"
            '<div class="plots front-plot">' + "".join(fronts) + "</div>")))
    if search is not None:
        parts.append(section("search", "Search: hypervolume against evaluations", search.section()))
    sensitivity = sensitivity_section(points, space) if feasible else ""
    if sensitivity:
        parts.append(section("sensitivity", "Sensitivity: which parameter moves which objective", sensitivity))
    parts.append(section("drilldown", "Drill-down: where the time and energy go", drill_html))
    if latency:
        parts.append(section("latency", "Latency vs array size", "".join(latency)))
    parts.append(section("points", f"All design points ({len(points)})", points_table(points, space)))
    defs = {**{m: f"{unit}: {text}" for m, (unit, _, text) in METRICS.items()}, **definitions()}
    parts.append(section("definitions", "Definitions", "<details><summary>every metric and statistic, with its "
                         "unit</summary><ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in defs.items())
                         + "</ul></details>"))
    page = document(space.base.name, parts, bool(fronts or latency or drill or search), _CLICK if fronts else "")
    path.write_text(page, encoding="utf-8")
    return {"bytes": len(page.encode()), "front": len(drill), "drilldown_s": drill_s}

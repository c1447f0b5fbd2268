"""`dse report A B ... --compare --out DIR`: one page across studies, and across targets (a systolic
array beside a GPU-like design): every study's points on shared axes (latency in ms, energy in mJ per
inference, area in mm^2), one Pareto front of those three over all the studies with each point's study
marked by colour and symbol, and one table of every study's best designs with a study column.

In: report folders, each read from its store by dse.report_rebuild.load (nothing is simulated), that
share their workloads. Out: DIR/index.html. A folder without a store, or studies whose workloads
differ, are refused in one line (SpecError) before anything is written.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compiler.errors import SpecError
from dse.pareto import non_dominated
from dse.report_convergence import Search
from dse.report_fronts import WEBGL_POINTS, log_axis, pair_front
from dse.report_page import document, esc, figure_html, scale, section, shown, title
from dse.report_rebuild import load
from dse.report_table import cell, paged_table
from dse.space import METRICS

SHARED = ("latency_s", "energy_j", "area_mm2")   # the shared axes, all minimised
TABLE_METRICS = ("latency_s", "throughput_inf_s", "energy_j", "area_mm2", "inferences_per_j", "throughput_per_mm2")
# One colour and symbol per study (the 3-D view takes fewer symbols); a ninth study reuses the first.
STYLES = (("#1f77b4", "circle"), ("#d62728", "square"), ("#2ca02c", "diamond"), ("#9467bd", "triangle-up"),
          ("#ff7f0e", "cross"), ("#8c564b", "star"), ("#e377c2", "hexagon"), ("#17becf", "pentagon"))
SYMBOLS_3D = ("circle", "square", "diamond", "cross", "x", "circle-open", "square-open", "diamond-open")


@dataclass
class Compared:
    path: Path            # the index.html written
    studies: int
    points: int           # design points on the page, all studies together
    front: int            # of them on the joint front of latency, energy and area
    page_bytes: int
    seconds: float


def _workloads(study) -> dict:
    """(model, batch, weight) -> its text, for each of the study's workloads. The model is a zoo name or
    an ONNX file's content hash, so two paths to one file are one workload; how it was evaluated (an int8
    copy, random weights) is the study's datatype, shown in the overview, not another workload."""
    return {(w.identity.split("|")[0], w.batch, w.weight): f"{w.model} (batch {w.batch}, weight {w.weight:g})"
            for w in study.workloads}


def check_shared_workloads(studies) -> None:
    """SpecError naming the first pair of studies whose workloads differ, and how."""
    first = _workloads(studies[0])
    for study in studies[1:]:
        other = _workloads(study)
        if set(other) != set(first):
            only = [", ".join(text for key, text in a.items() if key not in b) or "nothing else"
                    for a, b in ((first, other), (other, first))]
            raise SpecError(f"--compare: {studies[0].folder} and {study.folder} do not share workloads (only "
                            f"{studies[0].folder} has {only[0]}; only {study.folder} has {only[1]}): compare "
                            "studies of the same models, batches and weights")


def _labels(studies) -> list:
    """Each study's name on the page: its folder's name, or its path where two names are the same."""
    names = [s.folder.name or str(s.folder) for s in studies]
    return [str(s.folder) if names.count(n) > 1 else n for s, n in zip(studies, names)]


def joint_points(studies, labels) -> pd.DataFrame:
    """Every study's design points in one frame: study, target, design (its parameters as text),
    feasible, reason, the metrics; study_front (on its own study's front of SHARED) and on_front (on
    the front of SHARED over all the studies)."""
    frames = []
    for i, (study, label) in enumerate(zip(studies, labels)):
        pts, params = study.points, list(study.space.parameters)
        if not len(pts):
            continue
        design = [", ".join(f"{k}={row[k]}" for k in params) or "the spec's values" for _, row in pts.iterrows()]
        frame = pd.DataFrame({"study": label, "study_index": i, "target": study.space.base.target,
                              "design": design, "point_key": pts["point_key"].to_numpy(),
                              "feasible": pts["feasible"].to_numpy(bool), "reason": pts["reason"].to_numpy(),
                              **{m: pts[m].to_numpy(float) for m in METRICS if m in pts}})
        frame["study_front"] = _front(frame)
        frames.append(frame)
    empty = ["study", "study_index", "target", "design", "point_key", "feasible", "reason", *METRICS, "study_front"]
    joint = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=empty)
    joint["on_front"] = _front(joint) if len(joint) else []
    return joint


def _front(frame: pd.DataFrame) -> np.ndarray:
    values = frame[list(SHARED)].to_numpy(float, copy=True)
    values[~frame["feasible"].to_numpy(bool)] = np.nan     # never on a front
    return non_dominated(values)


def _hover(study: str, target: str, x: str, y: str) -> str:
    """The hover of one study's trace: its name and target once in the template, each point's design from
    its customdata (so 10,000 points carry one short string each)."""
    return (f"{esc(study)} ({esc(target)})<br>%{{customdata}}<br>{esc(title(x))} %{{x:.4g}}<br>"
            f"{esc(title(y))} %{{y:.4g}}<extra></extra>")


def _custom(part: pd.DataFrame) -> np.ndarray:
    return part["design"].astype(str).map(esc).to_numpy()


def _target(joint: pd.DataFrame, i: int) -> str:
    rows = joint.loc[joint["study_index"] == i, "target"]
    return str(rows.iloc[0]) if len(rows) else "?"


def pair_figure(joint: pd.DataFrame, x: str, y: str, labels: list) -> go.Figure:
    """One pair of the shared axes: each study's feasible points in its colour and symbol, the pair's
    2-D front over all the studies as a staircase, and the joint front of all three axes enlarged."""
    fig = go.Figure()
    ok = joint[joint["feasible"]]
    cls = go.Scattergl if len(ok) > WEBGL_POINTS else go.Scatter
    for i, label in enumerate(labels):
        part, (color, symbol) = ok[ok["study_index"] == i], STYLES[i % len(STYLES)]
        fig.add_trace(cls(x=part[x] * scale(x), y=part[y] * scale(y), mode="markers", legendgroup=str(i),
                          name=f"{esc(label)} ({len(part)} feasible)", customdata=_custom(part),
                          marker={"color": color, "symbol": symbol, "size": 6, "opacity": 0.5},
                          hovertemplate=_hover(label, _target(joint, i), x, y)))
    stairs = pair_front(joint, x, y, {x: 1.0, y: 1.0})
    fig.add_trace(go.Scatter(x=stairs[x] * scale(x), y=stairs[y] * scale(y), mode="lines", hoverinfo="skip",
                             line={"shape": "hv", "color": "#52606d", "dash": "dot"},
                             name=f"2-D front of this pair over all studies ({len(stairs)}, staircase)"))
    for i, label in enumerate(labels):
        front, (color, symbol) = ok[(ok["study_index"] == i) & ok["on_front"]], STYLES[i % len(STYLES)]
        fig.add_trace(go.Scatter(x=front[x] * scale(x), y=front[y] * scale(y), mode="markers", meta="front",
                                 legendgroup=str(i), name=f"{esc(label)} on the joint front ({len(front)})",
                                 customdata=_custom(front), hovertemplate=_hover(label, _target(joint, i), x, y),
                                 marker={"color": color, "symbol": symbol, "size": 11,
                                         "line": {"width": 1.5, "color": "#111827"}}))
    fig.update_layout(title=f"{esc(title(y))} vs {esc(title(x))}", template="plotly_white", height=480,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      legend={"orientation": "h", "y": -0.2, "font": {"size": 11}},
                      xaxis={"title": {"text": esc(title(x))}, **log_axis(ok[x] * scale(x))},
                      yaxis={"title": {"text": esc(title(y))}, **log_axis(ok[y] * scale(y))})
    return fig


def figure_3d(joint: pd.DataFrame, labels: list) -> go.Figure:
    """The three shared axes at once (log scales): each study's feasible points, its joint-front points
    enlarged."""
    fig = go.Figure()
    ok = joint[joint["feasible"]]
    x, y, z = SHARED
    for i, label in enumerate(labels):
        color, symbol = STYLES[i % len(STYLES)][0], SYMBOLS_3D[i % len(SYMBOLS_3D)]
        mine = ok[ok["study_index"] == i]
        for part, size, name in ((mine[~mine["on_front"]], 3, esc(label)),
                                 (mine[mine["on_front"]], 6, f"{esc(label)} on the joint front")):
            fig.add_trace(go.Scatter3d(
                x=part[x] * scale(x), y=part[y] * scale(y), z=part[z] * scale(z), mode="markers",
                name=f"{name} ({len(part)})", legendgroup=str(i), customdata=_custom(part),
                marker={"color": color, "symbol": symbol, "size": size, "opacity": 0.9 if size > 3 else 0.45},
                hovertemplate=f"{esc(label)} ({esc(_target(joint, i))})<br>%{{customdata}}<br>latency %{{x:.4g}} ms<br>"
                              "energy %{y:.4g} mJ<br>area %{z:.4g} mm^2<extra></extra>"))
    axis = {"type": "log"}
    fig.update_layout(title="latency, energy and area of every study (log axes)", template="plotly_white",
                      height=560, margin={"l": 0, "r": 0, "t": 50, "b": 0}, legend={"font": {"size": 11}},
                      scene={"xaxis": {"title": {"text": esc(title(x))}, **axis},
                             "yaxis": {"title": {"text": esc(title(y))}, **axis},
                             "zaxis": {"title": {"text": esc(title(z))}, **axis}})
    return fig


def _overview(studies, labels, joint: pd.DataFrame, search: Search) -> str:
    workloads = "; ".join(_workloads(studies[0]).values())
    rows = []
    for i, (study, label) in enumerate(zip(studies, labels)):
        base, pts = study.space.base, joint[joint["study_index"] == i]
        strategy = study.space.strategy + (f", budget {study.space.budget}" if study.space.budget is not None else "")
        rows.append([label, str(study.folder), f"{base.name} ({study.spec_path})", base.target,
                     getattr(getattr(base, "datatypes", None), "input", "?"), getattr(base, "technology", "?"),
                     strategy, "; ".join(w.label for w in study.workloads), len(pts), int(pts["feasible"].sum()),
                     int(pts["study_front"].sum()), int(pts["on_front"].sum()), float(f"{search.hypervolumes[i]:.4g}")])
    head = ["study", "folder", "spec", "target", "input datatype", "technology", "strategy",
            "workloads as evaluated", "points", "feasible", "on its own front", "on the joint front", "hypervolume"]
    feasible = int(joint["feasible"].sum()) if len(joint) else 0
    return (f'<dl class="overview"><dt>workloads</dt><dd>{esc(workloads)}, shared by every study</dd>'
            f"<dt>axes</dt><dd>{esc(', '.join(title(m) for m in SHARED))}; all minimised, the same three for "
            "every study whatever objectives it was swept for</dd>"
            f"<dt>joint front</dt><dd>{int(joint['on_front'].sum()) if feasible else 0} of {feasible} feasible "
            "designs: no design of any study is better on all three axes</dd>"
            f"<dt>hypervolume</dt><dd>{search.joint:.4g} over every study together (each study: its row); "
            f"{esc(search.scale.describe())}</dd></dl>" + _study_table(head, rows))


def _study_table(head: list, rows: list) -> str:
    """A small static table whose first column is a study, marked with its colour."""
    def cells(i, row):
        mark = f'<span style="color:{STYLES[i % len(STYLES)][0]}">&#9679;</span> '
        return "".join(f'<td class="num">{esc(v)}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
                       else f"<td>{mark if j == 0 else ''}{esc(v)}</td>" for j, v in enumerate(row))
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(f"<tr>{cells(i, row)}</tr>" for i, row in enumerate(rows)) + "</tbody></table>")


def _best(joint: pd.DataFrame, labels: list) -> str:
    """Per study, the best value of each metric over its feasible designs."""
    rows = []
    for i, label in enumerate(labels):
        ok = joint[(joint["study_index"] == i) & joint["feasible"]]
        best = [(ok[m].min() if METRICS[m][1] == "min" else ok[m].max()) if len(ok) else float("nan")
                for m in TABLE_METRICS]
        rows.append([label, *(shown(m, v) for m, v in zip(TABLE_METRICS, best))])
    head = ["study", *(f"{'lowest' if METRICS[m][1] == 'min' else 'highest'} {title(m)}" for m in TABLE_METRICS)]
    return _study_table(head, rows)


def designs_table(joint: pd.DataFrame) -> str:
    """Each study's best designs (its own front of the shared axes), one row each, with a study column."""
    best = joint[joint["feasible"] & joint["study_front"]].sort_values(["study_index", "latency_s"])
    columns = ["study", "target", "design", *TABLE_METRICS, "on_front"]
    headers = ["study", "target", "design", *(title(m) for m in TABLE_METRICS), "on the joint front"]
    rows = [[cell(row[c], scale(c) if c in TABLE_METRICS else 1.0) for c in columns] for _, row in best.iterrows()]
    return paged_table("cmp", headers, rows, [("front", "on the joint front only", len(columns) - 1)],
                       "Rows: each study's designs on its own front of latency, energy and area.")


def _definitions() -> str:
    return ("<ul>" + "".join(f"<li><b>{esc(m)}</b> ({esc(METRICS[m][0])}): {esc(METRICS[m][2])}</li>"
                             for m in TABLE_METRICS) + "</ul>")


def compare(folders, out) -> Compared:
    """Write OUT/index.html comparing the studies in `folders` (at least two)."""
    t0 = time.perf_counter()
    folders, out = [Path(f) for f in folders], Path(out)
    if len(folders) < 2:
        raise SpecError("--compare: name two or more report folders")
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) < len(resolved):
        raise SpecError("--compare: a folder is named twice")
    if out.resolve() in resolved:
        raise SpecError(f"--out {out} is one of the compared folders (its index.html is that study's report): "
                        "write the comparison to another folder")
    studies = [load(folder) for folder in folders]
    check_shared_workloads(studies)
    labels = _labels(studies)
    joint = joint_points(studies, labels)
    banners = [f"{s.folder}: {s.missing} evaluations are not in its store (the sweep did not finish); its "
               "finished points are shown" for s in studies if s.missing]
    banners += [f"{label}: no feasible design, so nothing of it on the plots" for i, label in enumerate(labels)
                if not (len(joint) and (joint["feasible"] & (joint["study_index"] == i)).any())]
    search = Search.of([(label, s.points, s.evaluations) for label, s in zip(labels, studies)],
                       [(m, 1.0) for m in SHARED], [colour for colour, _ in STYLES])
    parts = [f"<h1>Comparison: {esc(' vs '.join(labels))}</h1>",
             *(f'<div class="banner warning" role="alert">{esc(text)}</div>' for text in banners),
             section("overview", "Overview", _overview(studies, labels, joint, search))]
    plots = bool(len(joint) and joint["feasible"].any())
    if plots:
        pairs = [(SHARED[0], SHARED[1]), (SHARED[0], SHARED[2]), (SHARED[1], SHARED[2])]
        figures = [figure_html(pair_figure(joint, x, y, labels), f"cmp-front-{i}") for i, (x, y) in enumerate(pairs)]
        parts.append(section("fronts", "Shared axes and the joint front", (
            '<p class="note">Every study\'s feasible designs, one colour and symbol per study. Dotted staircase: '
            "the 2-D front of the pair over all studies; enlarged, outlined markers: the joint front of all three "
            "axes (no design of any study is better on latency, energy and area at once). Log axes.</p>"
            '<div class="plots">' + "".join(figures) + "</div>" + figure_html(figure_3d(joint, labels), "cmp-3d"))))
        parts.append(section("search", "Search: hypervolume against evaluations, every study on one scale",
                             search.section()))
    parts.append(section("best", "Best figure per study", _best(joint, labels)))
    parts.append(section("designs", "Each study's best designs", designs_table(joint)))
    parts.append(section("definitions", "Definitions", _definitions()))
    page = document("comparison of " + ", ".join(labels), parts, plots)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{out}: cannot write the comparison ({exc}); pick another --out") from None
    return Compared(out / "index.html", len(studies), len(joint), int(joint["on_front"].sum()) if len(joint) else 0,
                    len(page.encode()), time.perf_counter() - t0)

"""`dse sweep`: expand a spec's `sweep:` grid, evaluate every design point on every
workload in timing mode, and write reports/<spec name>/results.csv and index.html.

Each workload is compiled to a Graph once; each point is lowered and timed. A point
that cannot be mapped is recorded as infeasible with the reason; the sweep goes on.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import pandas as pd

from compiler import spec as specmod
from compiler.errors import CompileError, SpecError
from compiler.pipeline import compile_graph
from compiler.targets import lower
from dse import zoo
from dse.report import write_report
from sim import simulate

def grid(spec) -> list:
    """List of {field path: value} for the cross product of the spec's sweep lists."""
    sweep = spec.sweep or {}
    for path, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"sweep: field '{path}' must be a non-empty list of values, got {values!r}")
        specmod.replace_path(spec, path, values[0])  # validates the path early
    keys = list(sweep)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def apply(spec, point: dict):
    for path, value in point.items():
        spec = specmod.replace_path(spec, path, value)
    return spec


def evaluate(graph, spec) -> dict:
    """Timing-only evaluation of one (workload graph, design point)."""
    program = lower(graph, spec)
    stats = simulate(program, timing_only=True).stats
    row = stats.flat()
    row.update(feasible=True, reason="", pe_count=spec.array.rows * spec.array.cols)
    return row


def sweep(spec_path, out=None, log=None) -> pd.DataFrame:
    """Run the sweep a spec file describes; returns the results table (also written to disk)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec = specmod.load(spec_path)
    out = Path(out) if out else Path("reports") / spec.name
    points = grid(spec)
    rows, t0 = [], time.perf_counter()
    total = len(points) * len(spec.workloads)
    for workload in spec.workloads:
        graph = compile_graph(zoo.resolve(workload))
        for point in points:
            row = {"workload": workload, **point}
            try:
                row.update(evaluate(graph, apply(spec, point)))
            except CompileError as exc:
                row.update(feasible=False, reason=str(exc))
            rows.append(row)
            done = len(rows)
            rate = done / (time.perf_counter() - t0)
            log(f"[{done}/{total}] {workload} {point} -> "
                + (f"{row['latency_s'] * 1e3:.3f} ms" if row["feasible"] else "infeasible")
                + f"  ({rate:.1f} points/s)")
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    write_report(df, spec, list(points[0]) if points else [], out / "index.html")
    log(f"wrote {out / 'results.csv'} and {out / 'index.html'} "
        f"({int(df['feasible'].sum())} feasible of {len(df)} in {time.perf_counter() - t0:.1f} s)")
    return df


def load(path) -> pd.DataFrame:
    """Results of a finished sweep (a report folder or its results.csv) as a DataFrame."""
    path = Path(path)
    return pd.read_csv(path / "results.csv" if path.is_dir() else path)

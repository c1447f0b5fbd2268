"""Explorer speed: ResNet-50 design points per second (timing-only) with 1 and 2
workers, peak memory, and the same workload's time per design point in SCALE-Sim.

Each run is a fresh `dse.sweep` (new store, nothing reused) over a grid of array
shapes, dataflows and scratchpad sizes, timed in parts: the executor's start (pool
start, Numba and Graph warm-up), the evaluation loop (every point's Spec built,
its evaluations run and committed to SQLite: the throughput, in points/s), and the
report build (index.html, whose drill-down re-runs the front designs in timing
mode: a fixed cost per sweep, in s), plus end to end (the loop, the start, the
report and the CSV files). Each figure is the best of --repeat runs, alternating
1 and 2 workers (a shared machine is noisy). SCALE-Sim's time comes from
benchmarks/scalesim_peer.py (it runs a sample of ResNet-50's layers and
extrapolates at its measured seconds per cycle; the line says so).

Run: .venv/bin/python benchmarks/sweep_speed.py [--repeat 3] [--scratchpads "[64, 256, 1024]"]
     [--scalesim-sample 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dse  # noqa: E402
from compiler.pipeline import compile_graph  # noqa: E402
from dse import zoo  # noqa: E402

SPACE = """name: speed
workloads: [zoo:resnet50]
sweep:
  parameters:
    array.rows: {{min: 8, max: 128, factor: 2}}
    array.cols: {{min: 8, max: 128, factor: 2}}
    array.dataflow: [weight_stationary, output_stationary, input_stationary]
    memory.input_scratchpad_kib: {scratchpads}
  derived:
    memory.weight_scratchpad_kib: memory.input_scratchpad_kib
"""


def timed_sweep(spec: Path, workers: int) -> dict:
    """One fresh sweep: points, evaluations computed, and seconds end to end, starting the executor,
    in the evaluation loop (start excluded), writing the outputs, of them the report, of it the drill-down."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
        t0 = time.perf_counter()
        result = dse.sweep(spec, out=out, workers=workers)
        seconds = time.perf_counter() - t0
    parts = result.seconds
    return {"points": len(result.points), "computed": result.computed, "total_s": seconds,
            "start_s": parts["start"], "loop_s": parts["evaluate"] - parts["start"], "outputs_s": parts["outputs"],
            "report_s": parts["report"], "drilldown_s": parts["drilldown"],
            "front": int(result.points["on_front"].sum())}


def best(runs: list) -> dict:
    """Each figure's best (lowest time) over the runs."""
    return {**runs[0], **{k: min(r[k] for r in runs) for k in runs[0] if k.endswith("_s")}}


def speed_rows(runs: dict) -> list:
    """(name, value, note) rows for the best run per worker count."""
    rows, loop_rates = [], {}
    for workers, run in runs.items():
        who = f"{workers} worker{'s' if workers > 1 else ''}"
        points = run["points"]
        loop_rates[workers] = points / run["loop_s"]
        loop = (f"{points} points ({run['computed']} evaluations) in {run['loop_s']:.2f} s; executor start "
                f"{run['start_s']:.2f} s not counted")
        report = (f"index.html, of it the drill-down re-running {run['front']} front designs "
                  f"{run['drilldown_s']:.2f} s; with the CSV files {run['outputs_s']:.2f} s")
        rows += [(f"{who}: evaluation loop (ResNet-50 design points/s)", f"{loop_rates[workers]:.1f}", loop),
                 (f"{who}: report build (s)", f"{run['report_s']:.2f}", report),
                 (f"{who}: end to end (design points/s)", f"{points / run['total_s']:.1f}",
                  f"{run['total_s']:.2f} s: start, loop, outputs")]
    if 1 in loop_rates and 2 in loop_rates:
        rows.append(("2 workers / 1 worker, evaluation loop (ratio)", f"{loop_rates[2] / loop_rates[1]:.2f}x", ""))
    return rows


def peak_mib() -> tuple:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratchpads", default="[64, 256, 1024]", help="input scratchpad KiB values (YAML list)")
    ap.add_argument("--scalesim-sample", type=int, default=2,
                    help="distinct ResNet-50 layers SCALE-Sim runs (0: skip SCALE-Sim)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per worker count (alternating); best of them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "speed.yaml"
        spec.write_text(SPACE.format(scratchpads=args.scratchpads))
        rows = [("machine", f"{os.cpu_count()} cores (os.cpu_count), load {os.getloadavg()[0]:.1f}", "")]
        runs: dict = {1: [], 2: []}
        for _ in range(max(args.repeat, 1)):
            for workers, done in runs.items():
                done.append(timed_sweep(spec, workers))
        bests = {workers: best(r) for workers, r in runs.items()}
        rows += speed_rows(bests)
        own, child = peak_mib()
        rows.append(("peak memory, sweep process (MiB)", f"{own:.0f}", "ru_maxrss"))
        rows.append(("peak memory, largest worker (MiB)", f"{child:.0f}", "ru_maxrss of finished children"))
        if args.scalesim_sample:
            from benchmarks.scalesim_peer import compare
            graph = compile_graph(zoo.resolve("zoo:resnet50"))
            peer = compare(graph, 32, 32, "weight_stationary", sample=args.scalesim_sample)
            per_point = peer["scalesim_wall_s"]
            rows.append(("SCALE-Sim 3.0.0 s per design point (32x32 ws)", f"{per_point:.0f}", peer["how"]))
            rate = bests[2]["points"] / bests[2]["loop_s"]
            rows.append(("SCALE-Sim time / ours at 2 workers (ratio)", f"{per_point * rate:,.0f}x",
                         "per design point, evaluation loop"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()

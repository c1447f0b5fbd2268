"""Explorer speed: ResNet-50 design points per second (timing-only) with 1 and 2
workers, peak memory, and the same workload's time per design point in SCALE-Sim.

Each run is a fresh `dse.sweep` (new store, nothing reused) over a grid of array
shapes, dataflows and scratchpad sizes, timed end to end: pool start, Graph
compile in the parent, every evaluation committed to SQLite, points.csv and the
HTML report. SCALE-Sim's time comes from benchmarks/scalesim_peer.py (it runs a
sample of ResNet-50's layers and extrapolates at its measured seconds per cycle;
the line says so).

Run: .venv/bin/python benchmarks/sweep_speed.py [--points 225] [--scalesim-sample 2]
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


def timed_sweep(spec: Path, workers: int) -> tuple:
    """(points, seconds, evaluations computed) of one fresh sweep."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
        t0 = time.perf_counter()
        result = dse.sweep(spec, out=out, workers=workers)
        seconds = time.perf_counter() - t0
    return len(result.points), seconds, result.computed


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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "speed.yaml"
        spec.write_text(SPACE.format(scratchpads=args.scratchpads))
        rows = [("machine", f"{os.cpu_count()} cores (os.cpu_count), load {os.getloadavg()[0]:.1f}", "")]
        rates = {}
        for workers in (1, 2):
            points, seconds, computed = timed_sweep(spec, workers)
            rates[workers] = points / seconds
            rows.append((f"{workers} worker{'s' if workers > 1 else ''}: ResNet-50 design points/s",
                         f"{rates[workers]:.1f}", f"{points} points ({computed} evaluations) in {seconds:.2f} s"))
        rows.append(("2 workers / 1 worker (ratio)", f"{rates[2] / rates[1]:.2f}x", ""))
        own, child = peak_mib()
        rows.append(("peak memory, sweep process (MiB)", f"{own:.0f}", "ru_maxrss"))
        rows.append(("peak memory, largest worker (MiB)", f"{child:.0f}", "ru_maxrss of finished children"))
        if args.scalesim_sample:
            from benchmarks.scalesim_peer import compare
            graph = compile_graph(zoo.resolve("zoo:resnet50"))
            peer = compare(graph, 32, 32, "weight_stationary", sample=args.scalesim_sample)
            per_point = peer["scalesim_wall_s"]
            rows.append(("SCALE-Sim 3.0.0 s per design point (32x32 ws)", f"{per_point:.0f}", peer["how"]))
            rows.append(("SCALE-Sim time / ours at 2 workers (ratio)", f"{per_point * rates[2]:,.0f}x",
                         "per design point"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()

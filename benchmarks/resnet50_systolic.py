"""Benchmark: ResNet-50 (light model, seeded random weights) on the default systolic spec.

Prints functional simulation wall time vs onnxruntime on the same machine (ratio),
timing-only compile+simulate wall time, simulated cycles and utilisation.
Run: .venv/bin/python benchmarks/resnet50_systolic.py [--spec hwspecs/systolic.yaml]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dse  # noqa: E402
from compiler.pipeline import compile_graph  # noqa: E402
from compiler.targets import lower  # noqa: E402
from dse.api import load_spec  # noqa: E402
from sim import simulate  # noqa: E402
from tests.light_models import light_model_path, reference_input, with_random_weights  # noqa: E402


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "hwspecs" / "systolic.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec = load_spec(args.spec)
    model = with_random_weights(onnx.load(light_model_path("resnet50")), seed=0)
    inputs = reference_input(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run(None, inputs)
    t_ort, ref = best_of(lambda: sess.run(None, inputs), args.repeat)

    t_front, graph = best_of(lambda: compile_graph(model), 1)
    program = lower(graph, spec)
    simulate(program, inputs)  # warm Numba caches
    t_func, result = best_of(lambda: simulate(program, inputs), args.repeat)
    t_timing, res_t = best_of(lambda: simulate(lower(graph, spec), timing_only=True), args.repeat)
    t_lower, _ = best_of(lambda: lower(graph, spec), args.repeat)
    err = float(np.max(np.abs(result.outputs[program.outputs[0]] - ref[0])))
    st = res_t.stats
    print(f"ResNet-50 on {args.spec} ({spec.array.rows}x{spec.array.cols} {spec.array.dataflow})")
    print(f"{'metric':<44}{'value':>16}")
    rows = [
        ("onnxruntime wall time (s)", f"{t_ort:.4f}"),
        ("functional simulation wall time (s)", f"{t_func:.4f}"),
        ("functional / onnxruntime (ratio)", f"{t_func / t_ort:.1f}x"),
        ("front end + passes wall time (s, once per model)", f"{t_front:.4f}"),
        ("lowering wall time (s)", f"{t_lower:.4f}"),
        ("timing-only lower+simulate wall time (s)", f"{t_timing:.4f}"),
        ("max |sim - onnxruntime| on softmax output", f"{err:.2e}"),
        ("instructions", f"{st.instructions:,d}"),
        ("simulated cycles", f"{st.total_cycles:,d}"),
        ("simulated latency (ms)", f"{st.latency_s * 1e3:.3f}"),
        ("utilisation (MACs / (cycles x peak MACs/cycle))", f"{st.utilisation:.3f}"),
    ]
    for name, value in rows:
        print(f"{name:<44}{value:>16}")
    ideal = simulate(program, timing_only=True, ideal_memory=True).stats
    print(f"{'ideal-memory (compute-only) cycles':<44}{ideal.total_cycles:>16,d}")
    _ = dse


if __name__ == "__main__":
    main()

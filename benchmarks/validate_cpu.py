"""Validation: the CPU target's model (compiler/targets/cpu/) against the machine it runs on.

`dse probe-cpu` (dse/probe_cpu.py) writes this machine's spec (or --spec gives one); each case is then
predicted on it with 1 core and with every core, through the whole pipeline (one-node ONNX model ->
compile -> lower -> timing-only simulate), and the same work is measured here:
  GEMM       C = A B at several shapes (fp32, B a constant): NumPy's matmul (its BLAS, threads set by
             OPENBLAS_NUM_THREADS/OMP_NUM_THREADS in a subprocess) and onnxruntime's MatMul
  conv       every distinct conv layer of ResNet-50 (zoo:resnet50, batch 1, with its fused ReLU) as a
             one-node model: onnxruntime
  ResNet-50  zoo:resnet50 with seeded random weights, end to end: onnxruntime
onnxruntime: CPU provider, default graph optimisations, intra_op_num_threads = the cores. Each
measurement is the best of --repeat runs after a warm-up; a one-thread run's time is the lesser of its
wall and CPU time (other processes on a shared machine take time slices, which CPU time does not count),
a parallel run's is its wall time, so on a shared machine the all-core rows measure a slower machine
(the cores this process got and the load average are printed). Error % = (predicted - measured) / measured; the
issue's aim is |error| within 25 % (a row outside is marked `!`).
Run: .venv/bin/python benchmarks/validate_cpu.py [--quick] [--spec FILE] [--repeat N]
     (all: ~45 s on 2 cores; --quick: 2 GEMMs, 2 conv layers, ResNet-50, ~15 s)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler import spec as specmod
from compiler.pipeline import compile_graph, compile_model
from dse import zoo
from dse.probe_cpu import parallel_speedup, probe, to_yaml
from sim import simulate

GEMMS = [(1, 2048, 1000), (196, 4608, 512), (3136, 576, 64), (256, 256, 256), (512, 512, 512),
         (1024, 1024, 1024), (2048, 2048, 2048)]
QUICK_GEMMS = [(1, 2048, 1000), (512, 512, 512)]
AIM = 0.25
NUMPY_CODE = """
import json, os, sys, time
import numpy as np
THREADS = int(os.environ["OPENBLAS_NUM_THREADS"])
out = []
for m, k, n, repeat in json.loads(sys.argv[1]):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        a @ b
        seconds = time.perf_counter() - wall
        best = min(best, seconds, time.process_time() - cpu if THREADS == 1 else seconds)
    out.append(best)
print(json.dumps(out))
"""


@dataclass
class Row:
    kind: str              # gemm | conv | network
    case: str
    cores: int
    predicted_s: float
    numpy_s: float | None
    ort_s: float | None
    bound: str             # what bounds the prediction (the slowest layer's, for a network)


def gemm_model(m: int, k: int, n: int) -> onnx.ModelProto:
    w = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def conv_model(node, graph) -> onnx.ModelProto:
    """One IR conv node (with its fused activation) as an ONNX model with seeded random weights."""
    x_shape, y_shape = graph.tensors[node.inputs[0]].shape, graph.tensors[node.outputs[0]].shape
    w = graph.constants[node.inputs[1]]
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal(w.shape).astype(np.float32) * 0.05, "w"),
             numpy_helper.from_array(np.zeros(w.shape[0], np.float32), "b")]
    a = node.attrs
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c" if a.get("activation") == "relu" else "y"],
                            kernel_shape=list(w.shape[2:]), strides=list(a["strides"]), pads=list(a["pads"]),
                            dilations=list(a["dilations"]), group=a.get("group", 1))
    nodes = [conv] + ([helper.make_node("Relu", ["c"], ["y"])] if a.get("activation") == "relu" else [])
    g = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def conv_cases(quick: bool) -> list:
    """(label, model, count in ResNet-50) of each distinct conv layer of zoo:resnet50."""
    graph = compile_graph(zoo.resolve("zoo:resnet50"))
    cases: dict = {}
    for node in graph.nodes:
        if node.op != "conv":
            continue
        c, h = graph.tensors[node.inputs[0]].shape[1:3]
        w = graph.constants[node.inputs[1]]
        label = f"conv {w.shape[2]}x{w.shape[3]}/{node.attrs['strides'][0]} {c}->{w.shape[0]} @{h}"
        if label not in cases:
            cases[label] = [conv_model(node, graph), 0]
        cases[label][1] += 1
    items = [(label, model, count) for label, (model, count) in cases.items()]
    return [items[0], items[len(items) // 2]] if quick else items


def predict(model, spec_data: dict, cores: int) -> tuple:
    """(seconds, bound of the slowest layer) of `model` on the spec with `cores` cores, timing-only."""
    spec = specmod.from_dict(dict(spec_data, cores=cores))
    stats = simulate(compile_model(model, spec), timing_only=True).stats
    slowest = max(stats.layers, key=lambda layer: layer["cycles"])
    return stats.latency_s, (slowest["mapping"] or {}).get("extras", {}).get("bound", "compute")


def ort_seconds(model, threads: int, repeat: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) and d > 0 else 1
                                                                 for d in i.shape]).astype(np.float32)
              for i in session.get_inputs()}
    session.run(None, inputs)
    return best_seconds(lambda: session.run(None, inputs), threads, repeat)


def best_seconds(run, threads: int, repeat: int) -> float:
    """The best of `repeat` runs: on one thread each the lesser of its wall time and its CPU time (a time
    slice another process took is not counted), on several its wall time (CPU time per thread misleads
    there: a thread that waits without spinning is not counted)."""
    best = float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        seconds = time.perf_counter() - wall
        best = min(best, seconds, time.process_time() - cpu if threads == 1 else seconds)
    return best


def numpy_seconds(shapes: list, threads: int, repeat: int) -> list:
    """Best seconds of NumPy's a @ b per shape, in a subprocess whose BLAS runs `threads` threads."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    args = json.dumps([[m, k, n, repeat] for m, k, n in shapes])
    done = subprocess.run([sys.executable, "-c", NUMPY_CODE, args], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def load_spec_data(path: str | None) -> tuple:
    """(spec fields as a dict, where they came from): --spec's file, or this machine probed now."""
    if path:
        return yaml.safe_load(Path(path).read_text()), path
    text = to_yaml(probe())
    return yaml.safe_load(text), "dse probe-cpu (now)"


def run_cases(spec_data: dict, quick: bool, repeat: int) -> list:
    all_cores = spec_data["cores"]
    core_counts = sorted({1, all_cores})
    shapes = QUICK_GEMMS if quick else GEMMS
    rows = []
    for cores in core_counts:
        measured = numpy_seconds(shapes, cores, repeat)
        for (m, k, n), numpy_s in zip(shapes, measured):
            model = gemm_model(m, k, n)
            seconds, bound = predict(model, spec_data, cores)
            rows.append(Row("gemm", f"gemm {m}x{k}x{n}", cores, seconds, numpy_s, ort_seconds(model, cores, repeat),
                            bound))
        for label, model, count in conv_cases(quick):
            seconds, bound = predict(model, spec_data, cores)
            rows.append(Row("conv", f"{label} (x{count})", cores, seconds, None, ort_seconds(model, cores, repeat),
                            bound))
        net = zoo.with_random_weights(onnx.load(zoo.resolve("zoo:resnet50")), seed=0)
        seconds, bound = predict(net, spec_data, cores)
        rows.append(Row("network", "resnet50 end to end", cores, seconds, None, ort_seconds(net, cores, repeat),
                        bound))
    return rows


def _error(predicted: float, measured: float | None) -> str:
    if measured is None:
        return f"{'-':>8} {'':1}"
    error = predicted / measured - 1
    return f"{error * 100:+7.1f}% {'!' if abs(error) > AIM else ' '}"


def table(rows: list) -> str:
    head = f"{'case':<34} {'cores':>5} {'predicted ms':>12} {'NumPy ms':>9} {'error':>9} {'ORT ms':>9} " \
           f"{'error':>9}  bound"
    lines = [head, "-" * len(head)]
    for r in rows:
        numpy_ms = f"{r.numpy_s * 1e3:9.3f}" if r.numpy_s else f"{'-':>9}"
        ort_ms = f"{r.ort_s * 1e3:9.3f}" if r.ort_s else f"{'-':>9}"
        lines.append(f"{r.case:<34} {r.cores:>5} {r.predicted_s * 1e3:12.3f} {numpy_ms} "
                     f"{_error(r.predicted_s, r.numpy_s)} {ort_ms} {_error(r.predicted_s, r.ort_s)}  {r.bound}")
    return "\n".join(lines)


def summary(rows: list) -> str:
    lines = []
    for kind in ("gemm", "conv", "network"):
        for cores in sorted({r.cores for r in rows}):
            errors = [abs(r.predicted_s / m - 1) for r in rows if r.kind == kind and r.cores == cores
                      for m in (r.numpy_s, r.ort_s) if m]
            if errors:
                inside = sum(e <= AIM for e in errors)
                lines.append(f"{kind:<8} {cores} core(s): mean |error| {np.mean(errors) * 100:5.1f} %, "
                             f"{inside}/{len(errors)} within {AIM:.0%}")
    return "\n".join(lines)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 GEMMs, 2 conv layers, ResNet-50")
    parser.add_argument("--spec", help="a CPU spec of this machine (default: run dse probe-cpu now)")
    parser.add_argument("--repeat", type=int, help="runs per measurement, best taken (default 5, --quick 2)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 5)
    spec_data, source = load_spec_data(args.spec)
    cores = spec_data["cores"]
    print(f"spec: {source}: {cores} cores at {spec_data['clock_ghz']} GHz, {spec_data['core']['simd_bits']}-bit SIMD")
    before = parallel_speedup(cores)
    rows = run_cases(spec_data, args.quick, repeat)
    print(table(rows))
    print(summary(rows))
    print(f"cores this process got: {before:.2f} of {cores} before, {parallel_speedup(cores):.2f} after (a dependent "
          f"chain on {cores} threads at once against one); load average {os.getloadavg()[0]:.2f}. Below {cores}, "
          "other processes shared the cores and the all-core measurements are slower than the machine")
    return rows


if __name__ == "__main__":
    main()

"""Benchmark: int8 ResNet-50 (light model, seeded random weights, quantised by dse.quantize:
QOperator, per-tensor, U8S8) on hwspecs/systolic_int8.yaml against the float model on
hwspecs/systolic.yaml with the same array, memories, vector unit, clock and technology.

Prints, per datapath: functional simulation wall time vs onnxruntime on the same machine
(best of N after a warm-up run; onnxruntime with one intra-op thread and with its default),
simulated cycles, latency, DRAM bytes and energy, the int8/fp32 ratios, and whether the int8
outputs equal onnxruntime's bit for bit.
Run: .venv/bin/python benchmarks/int8_resnet50.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet50_systolic import best_of  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from compiler.pipeline import compile_graph  # noqa: E402
from compiler.targets import lower  # noqa: E402
from dse.api import load_spec  # noqa: E402
from sim import simulate  # noqa: E402
from tests.quant_models import float_model_path, quant_model_path  # noqa: E402


def float_spec_like(int8_spec, float_spec):
    """The float spec's datatypes on the int8 spec's array, memories, vector unit, clock and
    technology, so the two runs differ only in the datapath."""
    return dataclasses.replace(int8_spec, name=float_spec.name, datatypes=float_spec.datatypes)


def onnxruntime_times(path: Path, inputs: dict, repeat: int) -> tuple:
    """(best seconds with 1 thread, best seconds with default threads, outputs) after a warm-up run."""
    times, outputs = [], None
    for threads in (1, 0):                       # 0: onnxruntime's default (one per physical core)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, inputs)
        seconds, outputs = best_of(lambda s=session: s.run(None, inputs), repeat)
        times.append(seconds)
    names = [o.name for o in session.get_outputs()]
    return times[0], times[1], dict(zip(names, outputs))


def measure(path: Path, spec, inputs: dict, repeat: int) -> dict:
    program = lower(compile_graph(path), spec)
    simulate(program, inputs)                    # warm Numba caches
    t_sim, result = best_of(lambda: simulate(program, inputs), repeat)
    t_ort1, t_ort, ref = onnxruntime_times(path, inputs, repeat)
    return {"sim": t_sim, "ort1": t_ort1, "ort": t_ort, "stats": result.stats, "outputs": result.outputs,
            "ref": ref, "program": program}


def fidelity(run: dict) -> str:
    """int8: bit-exact or not, per element; fp32: the largest difference from onnxruntime."""
    got, want = run["outputs"], run["ref"]
    if run["program"].spec.integer_datapath:
        equal = sum(int(np.sum(got[k] == v)) for k, v in want.items())
        total = sum(v.size for v in want.values())
        exact = all(np.array_equal(got[k], v) for k, v in want.items())
        return f"{'yes' if exact else 'NO'} ({equal}/{total} equal)"
    return f"max |diff| {max(float(np.max(np.abs(got[k] - v))) for k, v in want.items()):.1e}"


def rows(i8: dict, f32: dict) -> list:
    """(metric, int8 value, fp32 value, int8/fp32) per table row."""
    s8, s32 = i8["stats"], f32["stats"]

    def row(name, a, b, fmt):
        return (name, format(a, fmt), format(b, fmt), f"{a / b:.3f}" if b else "-")

    out = [row("onnxruntime wall time, 1 thread (s)", i8["ort1"], f32["ort1"], ".4f"),
           row("onnxruntime wall time, default threads (s)", i8["ort"], f32["ort"], ".4f"),
           row("functional simulation wall time (s)", i8["sim"], f32["sim"], ".4f")]
    for label, key in (("1 thread", "ort1"), ("default", "ort")):
        out.append((f"simulation / onnxruntime {label} (ratio)", f"{i8['sim'] / i8[key]:.1f}x",
                    f"{f32['sim'] / f32[key]:.1f}x", ""))
    out += [row("instructions", s8.instructions, s32.instructions, ",d"),
            row("simulated cycles", s8.total_cycles, s32.total_cycles, ",d"),
            row("simulated latency (ms)", s8.latency_s * 1e3, s32.latency_s * 1e3, ".3f"),
            row("utilisation (MACs / (cycles x peak MACs/cycle))", s8.utilisation, s32.utilisation, ".3f"),
            row("DRAM traffic (MB, read + write)", s8.bytes["dram"] / 1e6, s32.bytes["dram"] / 1e6, ".2f"),
            row("energy per inference (mJ)", s8.energy_j * 1e3, s32.energy_j * 1e3, ".3f")]
    for part in ("pe_array", "vector_unit", "requantizer", "dram", "leakage"):
        out.append(row(f"  of which {part} (mJ)", s8.energy_by_component_j[part] * 1e3,
                       s32.energy_by_component_j[part] * 1e3, ".3f"))
    out += [row("area (mm^2)", s8.area_mm2, s32.area_mm2, ".3f"),
            ("outputs vs onnxruntime", fidelity(i8), fidelity(f32), "")]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--int8-spec", default=str(ROOT / "hwspecs" / "systolic_int8.yaml"))
    ap.add_argument("--float-spec", default=str(ROOT / "hwspecs" / "systolic.yaml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="seed of the standard-normal input")
    args = ap.parse_args()
    spec8 = load_spec(args.int8_spec)
    spec32 = float_spec_like(spec8, load_spec(args.float_spec))
    quantised, floating = quant_model_path("resnet50", "qoperator", False), float_model_path("resnet50")
    program = lower(compile_graph(floating), spec32)
    inputs = {n: np.random.default_rng(args.seed).standard_normal(program.regions[n].shape).astype(np.float32)
              for n in program.inputs}
    i8 = measure(quantised, spec8, inputs, args.repeat)
    f32 = measure(floating, spec32, inputs, args.repeat)
    a = spec8.array
    print(f"ResNet-50 int8 ({Path(args.int8_spec).name}) vs fp32 ({Path(args.float_spec).name} datatypes), "
          f"both {a.rows}x{a.cols} {a.dataflow}, {spec8.memory.input_scratchpad_kib:g}/"
          f"{spec8.memory.weight_scratchpad_kib:g}/{spec8.memory.accumulator_kib:g} KiB, "
          f"{spec8.memory.dram_gbps:g} GB/s {spec8.memory.dram_type}, {spec8.technology}; "
          f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), best of {args.repeat}")
    table = rows(i8, f32)
    width = max(len(r[0]) for r in table)
    print(f"{'metric':<{width}}  {'int8':>22}  {'fp32':>22}  {'int8/fp32':>9}")
    for name, v8, v32, r in table:
        print(f"{name:<{width}}  {v8:>22}  {v32:>22}  {r:>9}")


if __name__ == "__main__":
    main()

"""Validation: the SIMT target's cost model (compiler/targets/simt/cost.py) against published GPU figures.

For each GPU preset (hwspecs/gpu_a100_like.yaml, gpu_h100_like.yaml) each published case is predicted with
its shape, datatype and batch, and one table row printed: case, predicted, published, unit, error % =
(predicted - published) / published, what bounds the prediction, source (legend below the table).
  GEMM       cost.choose_tile on the preset with the case's datatypes: the tile the SIMT lowering picks, timed
             by the gemm_kernel the simulator charges for it; TFLOPS = 2 M N K / kernel seconds
  stream     BabelStream's Add (c = a + b) and Mul (b = s c) as one-node ONNX models through the whole
             pipeline (compile, lower, timing-only simulate); GB/s = bytes of the arrays / latency
  ResNet-50  zoo:resnet50 int8 (dse.quantize: QOperator, per-tensor, uint8 x int8; quantised once and kept in
             --cache-dir) at MLPerf's Offline batch (2048), timing-only; samples/s = batch / latency
  BERT       not runnable (transformer ops, issue 16); the MLPerf figure it would meet is cited
An A100 row measured on the 80 GB part runs the preset with memory.dram_gbps 2039 (its HBM2e; the preset is
the 40 GB part), spec `a100@2039`. Aim (the issue): |error| within 20 % for GEMMs and bandwidth, 30 % end to
end; a row outside it is marked `!`, and the cost terms behind it are printed below the table.
zoo:resnet50's Reshape before the classifier has a constant [1, 2048] shape: the model is made batch-agnostic
first, as dse.workloads does for a workload's `batch:` (batch_agnostic_reshapes).
Run: .venv/bin/python benchmarks/validate_simt.py [--quick] [--cache-dir DIR]   (all: ~3 s once the int8 model
is kept, ~15 s the first time; --quick: 6 rows)
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler import spec as specmod
from compiler.pipeline import compile_graph, compile_model
from dse.workloads import batch_agnostic_reshapes
from compiler.program import ELEMENT_BYTES
from compiler.targets import lower
from compiler.targets.simt import cost
from dse import zoo
from sim import simulate

A100, H100 = "gpu_a100_like", "gpu_h100_like"
A100_80GB_DRAM_GBPS = 2039     # hwspecs/gpu_a100_like.yaml: "the 80 GB SXM4 has 2039 GB/s HBM2e"
DATAPATHS = {                  # a case's datatype -> the spec's datatypes (input, weight, accumulator, output)
    "fp16": ("fp16", "fp16", "fp32", "fp16"),
    "bf16": ("bf16", "bf16", "fp32", "bf16"),
    "fp32": ("fp32", "fp32", "fp32", "fp32"),     # GEMMs on TF32 tensor cores where tf32_macs_per_sm_cycle > 0
    "int8": ("uint8", "int8", "int32", "uint8"),  # MLPerf's int8; dse.quantize's U8S8
}
AIM = {"gemm": 0.20, "stream": 0.20, "network": 0.30}
STREAM_ELEMENTS = 2 ** 26      # fp32: 268.4 MB per array, BabelStream's default 2^25 doubles
MLPERF_BATCH = 2048            # NVIDIA's gpu_batch_size for ResNet-50 Offline on A100/H100 SXM (v3.0 configs)

SOURCES = {
    "AZ-A100": "Azure/AI-benchmarking-guide, Azure_Results/ND_A100_v4_results.md: cuBLASLt GEMM, FP16, random "
               "init, 10,000 warm-up iterations; HBM bandwidth by BabelStream (CUDA, its default 2^25 doubles "
               "assumed); NVIDIA A100-SXM4-80GB, CUDA 12.5",
    "AZ-H100": "Azure/AI-benchmarking-guide, Azure_Results/ND_H100_v5_results.md (read from the copy in "
               "samuel-bohman/AI-benchmarking-guide): BabelStream (CUDA); NVIDIA H100 80GB HBM3 (SXM5), CUDA 12.6",
    "BS-PM": "ukri-bench/benchmark-BabelStream, README.md, sample output 'OpenMP-offload on Perlmutter': "
             "BabelStream 4.0, double, 2^25 elements (268.4 MB) per array; Perlmutter's GPU nodes are "
             "A100-SXM4-40GB (1555 GB/s; the README does not name the node type)",
    "MAMF": "S. Bekman, stas00/ml-engineering, compute/accelerator/README.md, 'Maximum Achievable Matmul FLOPS "
            "comparison table' (v2: mean of 100 torch.mm iterations, BF16, shape MxNxK): A100 SXM "
            "torch 2.6.0+cu126; H100 SXM torch 2.7.0+cu126",
    "XLA": "OpenXLA, xla/service/gpu/model/matmul_interpolator_data.h (tensorflow/tensorflow third_party/xla, "
           "commit 372d578b), kDefaultMatmulPTable 'sm_90', b = 1: measured FLOP/s of bf16xbf16->bf16 and "
           "f32xf32->f32 (TF32 tensor cores: 401.6 TFLOPS is 6x H100's FP32 lanes); H100 variant unnamed, "
           "SXM since 783 TFLOPS exceeds the PCIe part's 756 peak",
    "MLPerf": "MLCommons Inference v3.0, closed, submitter NVIDIA (mlcommons/inference_results_v3.0), "
              "closed/NVIDIA/results/<system>/<benchmark>/Offline/performance/run_1/mlperf_log_summary.txt, "
              "'Samples per second'; systems DGX-A100_A100-SXM-80GBx1_TRT ('NVIDIA DGX A100 (1x A100-SXM-80GB, "
              "TensorRT)', TensorRT 8.6.0) and DGX-H100_H100-SXM-80GBx1_TRT: one GPU each, so per GPU as "
              "published; ResNet-50 v1.5 at gpu_batch_size 2048 (closed/NVIDIA/configs/resnet50/Offline)",
    "MLPerf-BERT": "as MLPerf, benchmark bert-99 Offline: BERT-Large (SQuAD v1.1, sequence 384), not BERT-base; "
                   "MLPerf has no BERT-base",
}


@dataclass(frozen=True)
class Gemm:
    m: int
    n: int
    k: int
    datatype: str                       # a key of DATAPATHS

    @property
    def label(self) -> str:
        kind = "fp32 (TF32)" if self.datatype == "fp32" else self.datatype
        return f"GEMM {kind} {self.m}x{self.n}x{self.k}"


@dataclass(frozen=True)
class Stream:
    op: str                             # "add" (c = a + b: 3 arrays) or "mul" (b = s c: 2 arrays)

    @property
    def label(self) -> str:
        return f"BabelStream {self.op.capitalize()} ({self.arrays} x {STREAM_ELEMENTS * 4 / 1e6:.1f} MB)"

    @property
    def arrays(self) -> int:
        return 3 if self.op == "add" else 2


@dataclass(frozen=True)
class Network:
    name: str                           # "resnet50"; anything else is not runnable here
    batch: int
    why_not: str = ""                   # non-empty: not runnable, and why

    @property
    def label(self) -> str:
        return f"{self.name} int8 batch {self.batch}" if not self.why_not else self.name


@dataclass(frozen=True)
class Case:
    preset: str
    workload: Gemm | Stream | Network
    published: float
    unit: str
    source: str                         # a key of SOURCES
    dram_gbps: float | None = None      # a memory.dram_gbps override (the part the figure was measured on)
    quick: bool = False                 # in the --quick subset

    @property
    def kind(self) -> str:
        return {Gemm: "gemm", Stream: "stream", Network: "network"}[type(self.workload)]

    @property
    def spec_label(self) -> str:
        short = self.preset.removeprefix("gpu_").removesuffix("_like")
        return f"{short}@{self.dram_gbps:g}" if self.dram_gbps else short


def cases() -> list:
    """Every published figure with the workload that reproduces it (values as printed by their source)."""
    a80 = {"dram_gbps": A100_80GB_DRAM_GBPS}
    out = [Case(A100, Gemm(m, n, k, "fp16"), tflops, "TFLOPS", "AZ-A100", quick=q, **a80)
           for (m, n, k, tflops, q) in [(1024, 1024, 1024, 119.4, False), (2048, 2048, 2048, 221.8, False),
                                        (4096, 4096, 4096, 228.0, False), (8192, 8192, 8192, 253.7, True),
                                        (16384, 16384, 16384, 256.5, False), (1024, 2145, 1024, 132.8, False),
                                        (6144, 12288, 12288, 250.8, False), (802816, 192, 768, 157.8, False)]]
    out += [Case(A100, Gemm(1024, 10240, 5120, "bf16"), 271.2, "TFLOPS", "MAMF"),
            Case(A100, Stream("add"), 1368.2, "GB/s", "BS-PM", quick=True),
            Case(A100, Stream("mul"), 1298.6, "GB/s", "BS-PM"),
            Case(A100, Stream("add"), 1700.0, "GB/s", "AZ-A100", **a80),
            Case(A100, Stream("mul"), 1610.0, "GB/s", "AZ-A100", **a80),
            Case(A100, Network("resnet50", MLPERF_BATCH), 42379.3, "samples/s", "MLPerf", quick=True),
            Case(A100, Network("resnet50", MLPERF_BATCH), 42379.3, "samples/s", "MLPerf", **a80),
            Case(A100, Network("BERT-base", 0, "transformer ops not supported (issue 16)"), 3590.46,
                 "samples/s", "MLPerf-BERT")]
    out += [Case(H100, Gemm(m, n, k, dt), tflops, "TFLOPS", "XLA", quick=q)
            for (m, n, k, dt, tflops, q) in [(1024, 2048, 2048, "bf16", 524.3, False),
                                             (2048, 2048, 2048, "bf16", 632.0, True),
                                             (4096, 4096, 4096, "bf16", 783.3, False),
                                             (4096, 512, 512, "bf16", 238.8, False),
                                             (256, 2048, 4096, "bf16", 285.9, False),
                                             (2048, 2048, 2048, "fp32", 329.2, False),
                                             (4096, 4096, 4096, "fp32", 401.6, False)]]
    out += [Case(H100, Gemm(2048, 2048, 13312, "bf16"), 794.5, "TFLOPS", "MAMF"),
            Case(H100, Stream("add"), 2970.0, "GB/s", "AZ-H100", quick=True),
            Case(H100, Stream("mul"), 2900.0, "GB/s", "AZ-H100"),
            Case(H100, Network("resnet50", MLPERF_BATCH), 91825.7, "samples/s", "MLPerf", quick=True),
            Case(H100, Network("BERT-base", 0, "transformer ops not supported (issue 16)"), 9369.12,
                 "samples/s", "MLPerf-BERT")]
    return out


def spec_for(preset: str, datatype: str, dram_gbps: float | None = None):
    """The preset with the datapath of `datatype` (and another DRAM bandwidth), validated."""
    names = ("input", "weight", "accumulator", "output")
    spec = dataclasses.replace(specmod.load(preset),
                               datatypes=specmod.DatatypeSpec(**dict(zip(names, DATAPATHS[datatype]))))
    spec.validate(f"{preset} with {datatype} datatypes")
    return specmod.replace_path(spec, "memory.dram_gbps", dram_gbps) if dram_gbps else spec


# ---- predictions: each returns (value in the case's unit, what bounds it, details for a row off the aim) --

def predict_gemm(case: Case) -> tuple:
    g = case.workload
    spec = spec_for(case.preset, g.datatype, case.dram_gbps)
    in_bytes, out_bytes = ELEMENT_BYTES[spec.datatypes.input], ELEMENT_BYTES[spec.datatypes.output]
    kernel = cost.choose_tile(spec, g.m, g.n, g.k, 1, in_bytes, out_bytes, spec.datatypes.input)
    seconds = kernel.cycles / (spec.clock_ghz * 1e9)
    occ = kernel.occupancy
    terms = ", ".join(f"{t} {getattr(kernel, t + '_cycles'):,.0f}" for t in cost.TERMS)
    details = (f"tile {kernel.tile}, {occ.blocks_per_sm} block(s)/SM ({occ.limiter}), {kernel.blocks} blocks in "
               f"{kernel.waves} wave(s); cycles {kernel.cycles:,.0f} = launch {kernel.launch_cycles:,.0f} + per "
               f"wave the largest of (summed over waves) {terms}; L2 hit rate {kernel.l2_hit_rate:.2f}")
    return 2 * g.m * g.n * g.k / seconds / 1e12, kernel.bound, details


def stream_model(op: str) -> onnx.ModelProto:
    """BabelStream's Add (c = a + b) or Mul (b = scalar x c) over STREAM_ELEMENTS fp32 elements, one node."""
    n = STREAM_ELEMENTS
    tensor = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [n])
    if op == "add":
        graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"], name="add")], "stream_add",
                                  [tensor("a"), tensor("b")], [tensor("c")])
    else:
        scalar = numpy_helper.from_array(np.array(0.4, np.float32), "scalar")   # BabelStream's startScalar
        graph = helper.make_graph([helper.make_node("Mul", ["c", "scalar"], ["b"], name="mul")], "stream_mul",
                                  [tensor("c")], [tensor("b")], [scalar])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def predict_stream(case: Case) -> tuple:
    spec = spec_for(case.preset, "fp32", case.dram_gbps)
    stats = simulate(compile_model(stream_model(case.workload.op), spec), timing_only=True).stats
    gbps = case.workload.arrays * STREAM_ELEMENTS * 4 / stats.latency_s / 1e9
    bound = f"{gbps / spec.memory.dram_gbps:.1%} of dram"
    return gbps, bound, (f"{stats.bytes['dram']:,} DRAM bytes in {stats.total_cycles:,} cycles; the model "
                         f"streams at memory.dram_gbps = {spec.memory.dram_gbps:g} GB/s")


def int8_resnet50(cache_dir: Path) -> Path:
    """zoo:resnet50 with seeded random weights (its constant fills would quantise to degenerate scales),
    batch-agnostic (dse.workloads.batch_agnostic_reshapes), quantised by dse.quantize (QOperator, per-tensor, 16 seeded calibration samples); kept in
    `cache_dir` under a hash of the model and the onnx/onnxruntime versions, written then renamed."""
    import onnxruntime

    from dse.quantize import quantize
    source = Path(zoo.resolve("zoo:resnet50"))
    recipe = f"qoperator|per-tensor|weights seed 0|onnx {onnx.__version__}|onnxruntime {onnxruntime.__version__}"
    key = hashlib.sha256(source.read_bytes() + recipe.encode()).hexdigest()[:16]
    path = cache_dir / f"resnet50.int8.qoperator.{key}.onnx"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    model = batch_agnostic_reshapes(zoo.with_random_weights(onnx.load(str(source)), seed=0))
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        quantize(model, partial, format="qoperator")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def predict_network(case: Case, graphs: dict) -> tuple:
    """ResNet-50 int8 on the preset's int8 datapath: samples/s = batch / latency, and the shares of time by
    kernel and bound (a GEMM layer's mapping records the term that bounds it)."""
    spec = spec_for(case.preset, "int8", case.dram_gbps)
    stats = simulate(lower(graphs[case.workload.batch], spec), timing_only=True).stats
    share = collections.Counter()
    for layer in stats.layers:
        extras = (layer["mapping"] or {}).get("extras", {})
        key = f"{layer['op']} {extras['bound']}-bound" if "bound" in extras else f"{layer['op']} (elementwise)"
        share[key] += layer["cycles"] / stats.total_cycles
    top = share.most_common()
    details = (f"{stats.macs / case.workload.batch / 1e9:.2f} GMACs/image, tensor-core utilisation "
               f"{stats.utilisation:.2f}, DRAM {stats.bytes['dram'] / case.workload.batch / 1e6:.1f} MB/image; "
               "time by kernel: " + ", ".join(f"{k} {v:.0%}" for k, v in top if v >= 0.005))
    return case.workload.batch / stats.latency_s, f"{top[0][0]} {top[0][1]:.0%}", details


def network_graphs(all_cases: list, cache_dir: Path) -> dict:
    """batch -> the optimised Graph of int8 ResNet-50 at that batch (compiled once per batch)."""
    batches = {c.workload.batch for c in all_cases if c.kind == "network" and not c.workload.why_not}
    if not batches:
        return {}
    path = int8_resnet50(cache_dir)
    proto = onnx.load(str(path), load_external_data=False)
    initialisers = {t.name for t in proto.graph.initializer}
    (name,) = [v.name for v in proto.graph.input if v.name not in initialisers]
    return {b: compile_graph(path, input_shapes={name: (b, 3, 224, 224)}) for b in batches}


# ---- the table -------------------------------------------------------------------------------------

@dataclass
class Row:
    case: Case
    predicted: float | None
    bound: str
    details: str
    error: float | None = field(init=False)

    def __post_init__(self):
        ok = self.predicted is not None and self.case.published
        self.error = (self.predicted - self.case.published) / self.case.published if ok else None

    @property
    def off_aim(self) -> bool:
        return self.error is not None and abs(self.error) > AIM[self.case.kind]


def evaluate(all_cases: list, cache_dir: Path) -> list:
    graphs = network_graphs(all_cases, cache_dir)
    rows = []
    for case in all_cases:
        if case.kind == "network" and case.workload.why_not:
            rows.append(Row(case, None, f"not runnable: {case.workload.why_not}", ""))
            continue
        predict = {"gemm": predict_gemm, "stream": predict_stream}.get(case.kind)
        value, bound, details = predict(case) if predict else predict_network(case, graphs)
        if not math.isfinite(value):
            raise RuntimeError(f"{case.workload.label} on {case.spec_label}: prediction {value} is not finite")
        rows.append(Row(case, value, bound, details))
    return rows


def print_table(rows: list, quick: bool) -> None:
    heads = ("spec", "case", "predicted", "published", "unit", "error %", "bound (model)", "source")
    cells = []
    for r in rows:
        c = r.case
        predicted = f"{r.predicted:,.1f}" if r.predicted is not None else "-"
        error = f"{100 * r.error:+.1f}{' !' if r.off_aim else ''}" if r.error is not None else "-"
        cells.append((c.spec_label, c.workload.label, predicted, f"{c.published:,.1f}", c.unit, error, r.bound,
                      c.source))
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    right = {2, 3, 5}
    fmt = lambda row: "  ".join(v.rjust(w) if i in right else v.ljust(w)
                                for i, (v, w) in enumerate(zip(row, widths)))
    print(f"SIMT cost model vs published GPU figures{' (--quick subset)' if quick else ''}")
    print(fmt(heads))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(fmt(row))
    print(f"\nerror % = (predicted - published) / published; ! = outside the aim (|error| <= "
          f"{AIM['gemm']:.0%} GEMMs and bandwidth, {AIM['network']:.0%} end to end)")
    judged = [r for r in rows if r.error is not None]
    print(f"within the aim: {sum(not r.off_aim for r in judged)} of {len(judged)} rows")


def print_details(rows: list) -> None:
    off = [r for r in rows if r.details and (r.off_aim or r.case.kind == "network")]
    if off:
        print("\nWhat the model's terms say for rows outside the aim (and every end-to-end row):")
    for r in off:
        print(f"  {r.case.spec_label} {r.case.workload.label}: {r.details}")
    if any(r.predicted is None for r in rows):
        print("\nBERT-base: not runnable: transformer ops not supported (issue 16). Its rows show MLPerf's "
              "BERT-Large figure, the published one it would be compared with; MLPerf has no BERT-base.")
    print("\nSources:")
    for key, text in SOURCES.items():
        print(f"  {key:<12}{text}")
    print("Specs: a100 = hwspecs/gpu_a100_like.yaml (A100 SXM4 40 GB), a100@2039 = the same with memory.dram_gbps "
          "2039 (the 80 GB part the figure was measured on), h100 = hwspecs/gpu_h100_like.yaml (H100 SXM5 80 GB).")


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset (one or two rows per kind and preset)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dse-validate-simt",
                    help="where the int8 ResNet-50 is kept between runs")
    args = ap.parse_args(argv)
    rows = evaluate([c for c in cases() if c.quick or not args.quick], args.cache_dir)
    print_table(rows, args.quick)
    print_details(rows)
    return rows


if __name__ == "__main__":
    main()

"""Peer check: our systolic compute cycles against SCALE-Sim's own, layer by layer.

In: a compiled Graph (its conv and gemm nodes), an array shape and a dataflow. Each layer
becomes a SCALE-Sim v3 topology row, SCALE-Sim runs in-process (`scalesim.scale_sim`,
bandwidth-estimate mode, no traces) and its COMPUTE_REPORT.csv gives cycles per layer; our
simulator gives per-layer compute cycles with ideal memory on a spec whose scratchpads
never split a layer. Out: the table, the wall time of both, and the relationship below.
Run: .venv/bin/python benchmarks/scalesim_peer.py [--sample 6 | --sample 0 | --all-layers]
(default: SCALE-Sim on 6 of ResNet-50's 24 distinct layer shapes per dataflow, about 2-4 min
in all; its whole-network time is extrapolated and labelled so).

What SCALE-Sim 3.0.0 reports, read from its source (per layer, no stalls):
  compute/systolic_compute_{ws,is}.py: each fold is 2R + C + T - 2 demand rows
  compute/systolic_compute_os.py:      each fold is  R + C + T - 2 demand rows (no weight
      preload; the ofmap demand starts T - 1 rows into the fold and drains under the skew)
  memory/double_buffered_scratchpad_mem.py, service_memory_requests: "Total Cycles" =
      max(serviced cycle of each demand row) = the 0-based index of the last row, so
      one less than the rows it walked (SCALE-Sim issue #125 reports the same 1-cycle gap).
So SCALE-Sim = folds * per_fold - 1, and ours (the same folds; output-stationary with
array.output_stationary_drain "overlapped", the default) is SCALE-Sim + 1 per layer and group
(`scalesim_cycles` below); with "separate" (the ISPASS 2020 paper's 2R + C + T - 2), output-
stationary is SCALE-Sim + 1 + folds * R. Our tiler may split the streamed dimension even here:
the stationary tile stays in the PEs across the pieces (docs/timing_model.md), so the cycles do
not change. benchmarks/validate_systolic.py compares with the default scratchpads instead.

Grouped/depthwise convs: SCALE-Sim has no groups (and a layer name containing "DP" makes it
split channels on its own), so one group runs as a layer (Cin/g channels, Cout/g filters)
and its cycles are multiplied by g; rows are named L<i> to keep SCALE-Sim's parser away.
"""
from __future__ import annotations

import argparse
import builtins
import csv
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compiler.ir import Graph
from compiler.pipeline import compile_graph
from compiler.targets import lower
from compiler.targets.systolic import tiling
from compiler.targets.systolic.spec import MemorySpec
from dse import zoo
from dse.api import load_spec
from sim import simulate

SCALESIM_DATAFLOW = {"weight_stationary": "ws", "output_stationary": "os", "input_stationary": "is"}
# SCALE-Sim's SRAMs: our default spec's scratchpad and accumulator sizes (compiler/spec.py).
SCALESIM_SRAM_KIB = (MemorySpec().input_scratchpad_kib, MemorySpec().weight_scratchpad_kib,
                     MemorySpec().accumulator_kib)
# Our spec for the cycle comparison: scratchpads large enough that no ResNet-50 layer needs
# more fills than SCALE-Sim's mapping (conv1 im2col on WS: 12544 x 147 fp32 x 2 buffers
# = 14.1 MiB), and ideal memory, so the tiling search weighs compute alone.
UNSPLIT_MEMORY = {"input_scratchpad_kib": 65536, "weight_scratchpad_kib": 65536,
                  "accumulator_kib": 65536, "ideal": True}


@dataclass(frozen=True)
class GemmLayer:
    """One conv/gemm node as a GEMM [M,K] x [K,N] per group, and as a SCALE-Sim conv row."""
    name: str
    m: int
    k: int
    n: int                  # filters per group
    groups: int
    ifmap_h: int            # SCALE-Sim ifmap height/width *including padding*, chosen so its
    ifmap_w: int            # ofmap = ceil((H - kh + s) / s) equals ours (topology_utils.py)
    filter_h: int
    filter_w: int
    channels: int           # per group
    stride_h: int           # SCALE-Sim's conv row has one stride for both axes; W uses it too

    def topology_row(self, index: int) -> str:
        return (f"L{index}, {self.ifmap_h}, {self.ifmap_w}, {self.filter_h}, {self.filter_w}, "
                f"{self.channels}, {self.n}, {self.stride_h},")


def gemm_layers(graph: Graph) -> list[GemmLayer]:
    """The conv and gemm nodes of `graph`, in order, with their GEMM and SCALE-Sim shapes."""
    layers = []
    for node in graph.nodes:
        if node.op == "gemm":
            m, k = graph.tensors[node.inputs[0]].shape
            n = graph.tensors[node.inputs[1]].shape[1]
            # SCALE-Sim's own GEMM mapping (topology_utils.load_arrays_gemm): an M x K ifmap,
            # one K-wide 1-row filter, one channel, N filters, stride 1.
            layers.append(GemmLayer(node.name, m, k, n, 1, m, k, 1, k, 1, 1))
        elif node.op == "conv":
            nb, _, _, _ = graph.tensors[node.inputs[0]].shape
            cout, cin_g, kh, kw = graph.tensors[node.inputs[1]].shape
            oh, ow = graph.tensors[node.outputs[0]].shape[2:]
            sh = node.attrs["strides"][0]
            g = node.attrs.get("group", 1)
            # SCALE-Sim has no dilation or batch: feed the ifmap size whose valid windows
            # give nb*oh rows x ow columns of outputs; pads and dilation only move addresses.
            rows_out = nb * oh
            h = (rows_out - 1) * sh + kh
            # one stride for both axes: express the width with the height's stride
            w = (ow - 1) * sh + kw
            layers.append(GemmLayer(node.name, rows_out * ow, cin_g * kh * kw, cout // g, g,
                                    h, w, kh, kw, cin_g, sh))
    return layers


def scalesim_cycles(dataflow: str, rows: int, cols: int, layer: GemmLayer) -> int:
    """SCALE-Sim 3.0.0's reported compute cycles for `layer`, as its source computes them."""
    s_r, s_c, t = {"weight_stationary": (layer.k, layer.n, layer.m),
                   "output_stationary": (layer.m, layer.n, layer.k),
                   "input_stationary": (layer.k, layer.m, layer.n)}[dataflow]
    folds = -(-s_r // rows) * -(-s_c // cols)
    fill = 0 if dataflow == "output_stationary" else rows
    return layer.groups * (folds * (fill + rows + cols + t - 2) - 1)


def _patch_numpy_scalar_conversion() -> None:
    """SCALE-Sim 3.0.0 calls int(max(list of 1-element arrays)) (double_buffered_scratchpad_mem
    .py:307, read_buffer.py:423), a TypeError since NumPy 2.4 (its issue #160, PR #162). Give
    those two modules a `max` that reduces with NumPy; every other call keeps builtins.max."""
    try:
        int(np.zeros(1))
        return
    except TypeError:
        pass
    import scalesim.memory.double_buffered_scratchpad_mem as dbsp
    from scalesim.memory import read_buffer

    def numpy_max(*args, **kwargs):
        if len(args) == 1 and not kwargs and not np.isscalar(args[0]):
            return np.max(np.asarray(args[0]))
        return builtins.max(*args, **kwargs)
    dbsp.max = numpy_max
    read_buffer.max = numpy_max


CONFIG = """[general]
run_name = peer

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {ifmap_kib}
FilterSramSzkB = {filter_kib}
OfmapSramSzkB = {ofmap_kib}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
"""
TOPOLOGY_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"


@dataclass
class ScaleSimResult:
    cycles: list            # per layer: COMPUTE_REPORT "Total Cycles" - "Stall Cycles", x groups
    stall_cycles: list      # per layer, x groups (0 in bandwidth-estimate mode with large SRAMs)
    wall_s: float           # SCALE-Sim's run (files written, simulated, report read), all layers


def run_scalesim(layers: list[GemmLayer], rows: int, cols: int, dataflow: str,
                 sram_kib: tuple = SCALESIM_SRAM_KIB) -> ScaleSimResult:
    """Run SCALE-Sim once over `layers` (one topology) and read its per-layer compute report.

    sram_kib: (ifmap, filter, ofmap) SRAM sizes. They do not change its compute cycles (the
    demand matrices do not depend on them; stalls are reported apart), but its bandwidth-
    estimate prefetch pads to their size, so large ones only make it slower."""
    from scalesim.scale_sim import scalesim
    _patch_numpy_scalar_conversion()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scalesim_peer_") as tmp:
        d = Path(tmp)
        ifmap_kib, filter_kib, ofmap_kib = (int(x) for x in sram_kib)
        (d / "peer.cfg").write_text(CONFIG.format(rows=rows, cols=cols, ifmap_kib=ifmap_kib, filter_kib=filter_kib,
                                                  ofmap_kib=ofmap_kib, dataflow=SCALESIM_DATAFLOW[dataflow]))
        (d / "topology.csv").write_text("\n".join(
            [TOPOLOGY_HEADER] + [layer.topology_row(i) for i, layer in enumerate(layers)]) + "\n")
        (d / "layout.csv").write_text("Layer name,\n")   # required file; unused without custom layouts
        sim = scalesim(save_disk_space=True, verbose=False, config=str(d / "peer.cfg"),
                       topology=str(d / "topology.csv"), layout=str(d / "layout.csv"))
        sim.run_scale(top_path=str(d / "out"))
        with open(d / "out" / "peer" / "COMPUTE_REPORT.csv") as f:
            report = [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    wall = time.perf_counter() - t0
    total = [int(r["Total Cycles"]) for r in report]
    stall = [int(r["Stall Cycles"]) for r in report]
    return ScaleSimResult([(t - s) * layer.groups for t, s, layer in zip(total, stall, layers)],
                          [s * layer.groups for s, layer in zip(stall, layers)], wall)


def distinct_rows(layers: list[GemmLayer]) -> tuple:
    """(key per layer, distinct keys in first-seen order): SCALE-Sim's cycles are a function
    of the topology row and group count alone, so equal keys give equal cycles."""
    key = [(lay.topology_row(0), lay.groups) for lay in layers]
    return key, list(dict.fromkeys(key))


def run_scalesim_each(layers: list[GemmLayer], rows: int, cols: int, dataflow: str) -> list:
    """SCALE-Sim run separately on each layer (bounded memory, per-layer wall time):
    a list of (compute cycles, stall cycles, wall seconds)."""
    out = []
    for layer in layers:
        res = run_scalesim([layer], rows, cols, dataflow)
        out.append((res.cycles[0], res.stall_cycles[0], res.wall_s))
    return out


def peer_spec(rows: int, cols: int, dataflow: str, ideal: bool = True) -> dict:
    return {"array": {"rows": rows, "cols": cols, "dataflow": dataflow}, "memory": {**UNSPLIT_MEMORY, "ideal": ideal}}


def our_layers(graph: Graph, spec: dict) -> dict:
    """name -> per-layer stats dict of our ideal-memory timing-only run (lower + simulate)."""
    program = lower(graph, load_spec(spec))
    stats = simulate(program, timing_only=True, ideal_memory=True).stats
    return {layer["name"]: layer for layer in stats.layers if layer["op"] in ("conv", "gemm")}


def streamed_split(layer: dict, dataflow: str) -> bool:
    """True when our tiling split the dataflow's streamed dimension (a fill and drain per piece,
    unless the stationary tile stays resident across them)."""
    mapping = layer["mapping"]                                     # stats.json's Mapping.to_dict()
    streamed = {"weight_stationary": "m", "output_stationary": "k", "input_stationary": "n"}[dataflow]
    return mapping["tile"][streamed] < mapping["dims"][streamed]


def compare(graph: Graph, rows: int, cols: int, dataflow: str, sample: int = 0,
            all_layers: bool = False) -> dict:
    """One design point: per-distinct-layer table rows and SCALE-Sim's wall time.

    SCALE-Sim runs each layer on its own (bounded memory, per-layer time). all_layers: every
    layer, repeats included (measured). Otherwise each distinct shape once, its time counted
    once per repeat; sample > 0 runs only that many distinct shapes, evenly spaced, and
    extrapolates the network's time at SCALE-Sim's measured seconds per simulated cycle, the
    other layers' cycles coming from `scalesim_cycles` (checked exactly on the layers run).
    """
    ours = our_layers(graph, peer_spec(rows, cols, dataflow))   # first: it fails fast
    layers = gemm_layers(graph)
    key, distinct = distinct_rows(layers)
    picked = list(range(len(distinct)))
    if sample and sample < len(distinct) and not all_layers:
        picked = sorted({int(i) for i in np.linspace(0, len(distinct) - 1, sample).round()})
    targets = list(range(len(layers))) if all_layers else [key.index(distinct[i]) for i in picked]
    results = run_scalesim_each([layers[j] for j in targets], rows, cols, dataflow)
    runs = {key[j]: r for j, r in zip(targets, results)}
    if all_layers:
        wall = sum(w for _, _, w in results)
        how = f"measured: all {len(layers)} layers run"
    else:
        wall = sum(w * key.count(k) for k, (_, _, w) in runs.items())
        how = f"{len(runs)} distinct layers run once, time x repeats ({len(layers)} layers)"
    if len(runs) < len(distinct):
        per_cycle = sum(w for _, _, w in runs.values()) / sum(c for c, _, _ in runs.values())
        wall = per_cycle * sum(scalesim_cycles(dataflow, rows, cols, lay) for lay in layers)
        how = (f"EXTRAPOLATED: {len(runs)} of {len(distinct)} distinct layers run, "
               f"{per_cycle * 1e6:.0f} us per cycle x all {len(layers)} layers' cycles")
    table = []
    for k in distinct:
        layer = layers[key.index(k)]
        predicted = scalesim_cycles(dataflow, rows, cols, layer)
        theirs, stall, _ = runs.get(k, (predicted, 0, 0.0))
        table.append({"layer": layer.name, "m": layer.m, "k": layer.k, "n": layer.n, "groups": layer.groups,
                      "count": key.count(k), "ran": k in runs, "scalesim": theirs, "scalesim_stall": stall,
                      "ours": ours[layer.name]["compute_cycles"], "predicted_scalesim": predicted,
                      "split": streamed_split(ours[layer.name], dataflow)})
    return {"table": table, "scalesim_wall_s": wall, "how": how}


def our_wall_s(graph: Graph, spec: dict, repeat: int, ideal_memory: bool) -> float:
    """Median wall seconds of lower + timing-only simulate, after one warm-up run (Numba).

    The tiling search's cache is cleared before each repetition: a new design point in a
    sweep never finds its tilings cached, so neither may the one timed here."""
    sp = load_spec(spec)
    simulate(lower(graph, sp), timing_only=True, ideal_memory=ideal_memory)
    times = []
    clear_tilings = getattr(getattr(tiling, "_search", None), "cache_clear", lambda: None)
    for _ in range(repeat):
        clear_tilings()
        t0 = time.perf_counter()
        simulate(lower(graph, sp), timing_only=True, ideal_memory=ideal_memory)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(rows: list) -> None:
    print(f"  {'layer':<10}{'x':>3}{'M':>7}{'K':>6}{'N':>6}{'g':>3}{'SCALE-Sim':>11}{'ours':>11}"
          f"{'ours/SS':>9}{'ours-SS':>8}  SS source")
    for r in rows:
        source = ("run, = formula" if r["scalesim"] == r["predicted_scalesim"] else "run, != FORMULA") \
            if r["ran"] else "formula (not run)"
        print(f"  {r['layer'][:9]:<10}{r['count']:>3}{r['m']:>7}{r['k']:>6}{r['n']:>6}{r['groups']:>3}"
              f"{r['scalesim']:>11,}{r['ours']:>11,}{r['ours'] / r['scalesim']:>9.4f}"
              f"{r['ours'] - r['scalesim']:>8,}  {source}{'  split (resident)' if r['split'] else ''}")


def summarise(res: dict, ours_s: dict) -> list:
    """(name, value, note) lines for one design point; ours_s: label -> our median seconds."""
    t = res["table"]
    ran = [r for r in t if r["ran"]]
    ss_total = sum(r["scalesim"] * r["count"] for r in t)
    our_total = sum(r["ours"] * r["count"] for r in t)
    wall = res["scalesim_wall_s"]
    lines = [("SCALE-Sim wall time per design point (s)", f"{wall:.1f}", res["how"])]
    for label, seconds in ours_s.items():
        lines += [(f"ours, {label} (s)", f"{seconds:.4f}", "lower + timing-only simulate, median"),
                  (f"  SCALE-Sim / ours, {label}", f"{wall / seconds:,.0f}x", "")]
    lines += [
        ("total compute cycles, SCALE-Sim", f"{ss_total:,}",
         "all layers run" if len(ran) == len(t) else "layers not run: scalesim_cycles()"),
        ("total compute cycles, ours (ideal memory)", f"{our_total:,}", f"ours/SS = {our_total / ss_total:.4f}"),
        ("max per-layer |ours - SS| / SS, layers run", f"{_max_rel(ran):.3%}", f"{len(ran)} distinct layers"),
        ("max per-layer |ours - SS| / SS, all layers", f"{_max_rel(t):.3%}", f"{len(t)} distinct layers"),
        ("SS == scalesim_cycles() on every layer run", "yes" if all(
            r["scalesim"] == r["predicted_scalesim"] for r in ran) else "NO", ""),
        ("layers whose streamed dimension we split", f"{sum(r['split'] for r in t)}",
         "the stationary tile stays resident across the pieces"),
    ]
    return lines


def _max_rel(rows: list) -> float:
    return max(abs(r["ours"] - r["scalesim"]) / r["scalesim"] for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:resnet50")
    ap.add_argument("--array", type=int, nargs=2, default=(32, 32), metavar=("ROWS", "COLS"))
    ap.add_argument("--dataflows", nargs="+", default=["weight_stationary", "output_stationary"],
                    choices=list(SCALESIM_DATAFLOW))
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions of our run (median)")
    ap.add_argument("--sample", type=int, default=6,
                    help="distinct layers SCALE-Sim runs, evenly spaced (0 = all distinct: ~4 min "
                         "per dataflow for ResNet-50 at 32x32); the network's time is extrapolated")
    ap.add_argument("--all-layers", action="store_true",
                    help="SCALE-Sim on every layer, repeats included (~7 min per dataflow)")
    args = ap.parse_args()
    rows, cols = args.array
    graph = compile_graph(zoo.resolve(args.model))
    for dataflow in args.dataflows:
        res = compare(graph, rows, cols, dataflow, args.sample, args.all_layers)
        array = {"rows": rows, "cols": cols, "dataflow": dataflow}
        ours_s = {
            "same spec, ideal memory": our_wall_s(graph, peer_spec(rows, cols, dataflow), args.repeat, True),
            "same spec, memory modelled": our_wall_s(graph, peer_spec(rows, cols, dataflow, False), args.repeat, False),
            "default memory spec, modelled": our_wall_s(graph, {"array": array}, args.repeat, False),
        }
        print(f"\n{args.model} on a {rows}x{cols} array, {dataflow}: compute cycles per distinct layer "
              f"(x = repeats; SS = SCALE-Sim 3.0.0 in-process, bandwidth-estimate mode, no traces)")
        print_table(res["table"])
        for name, value, note in summarise(res, ours_s):
            print(f"  {name:<50}{value:>14}  {note}")


if __name__ == "__main__":
    main()

"""Validation: per-layer compute cycles against SCALE-Sim v3, with our default scratchpads.

In: configurations MODEL:ROWSxCOLS:DATAFLOW (default: issue 17's acceptance set, ResNet-50 on
32x32 weight-stationary and SqueezeNet on 16x16 in all three dataflows). Per layer, three figures:
  SCALE-Sim  its COMPUTE_REPORT cycles (Total - Stall, x groups): SCALE-Sim 3.0.0 runs in-process
             on --sample distinct layers per configuration (benchmarks/scalesim_peer.py), and
             `scalesim_cycles` (its source's formula) gives the others; the summary says whether
             the two agreed on every layer run.
  ours       per-layer compute_cycles of `dse run MODEL --timing-only --ideal-memory` on the default
             spec's memories: the spec with memory.ideal (SystolicSpec.with_ideal_memory), so the
             tiles are chosen for compute alone and transfers are free.
  forced     the same with scratchpads too large to bound any tile (SCALE-Sim's mapping: every
             stationary block loaded once, every streamed element through it); ours = SCALE-Sim + 1
             per layer and group (it reports the last cycle's 0-based index).
Out: a table per configuration (error = ours / SCALE-Sim - 1; where |error| > 2 %, why our
mapping differs), then per configuration the total, median and worst error over every layer
(repeats counted) for ours and forced, and the lowering time of one design point.
Run: .venv/bin/python benchmarks/validate_systolic.py [--sample 3] [--config zoo:resnet50:32x32:ws]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.scalesim_peer import (distinct_rows, gemm_layers, our_layers, peer_spec, run_scalesim_each,
                                      scalesim_cycles)
from compiler.pipeline import compile_graph
from compiler.targets import lower
from compiler.targets.systolic import tiling
from compiler.targets.systolic.spec import MemorySpec
from dse import zoo
from dse.api import load_spec

SHORT = {"ws": "weight_stationary", "os": "output_stationary", "is": "input_stationary"}
ACCEPTANCE = ("zoo:resnet50:32x32:ws", "zoo:squeezenet:16x16:ws", "zoo:squeezenet:16x16:os",
              "zoo:squeezenet:16x16:is")
STREAMED = {"weight_stationary": "m", "output_stationary": "k", "input_stationary": "n"}
TOLERANCE = 0.02          # per-layer error above which the table says why


def parse_config(text: str) -> tuple:
    """'zoo:resnet50:32x32:ws' -> ('zoo:resnet50', 32, 32, 'weight_stationary')."""
    model, array, dataflow = text.rsplit(":", 2)
    rows, cols = (int(v) for v in array.split("x"))
    return model, rows, cols, SHORT.get(dataflow, dataflow)


def default_spec(rows: int, cols: int, dataflow: str) -> dict:
    """The default spec on this array, tiled and timed for ideal memory (`--ideal-memory`)."""
    return {"array": {"rows": rows, "cols": cols, "dataflow": dataflow}, "memory": {"ideal": True}}


def why(mapping: dict, dataflow: str) -> str:
    """Why a layer's mapping takes more fills than SCALE-Sim's, from our tile (stats.json mapping)."""
    tile, dims, buffers = mapping["tile"], mapping["dims"], mapping["extras"]["buffers"]
    d = STREAMED[dataflow]
    if tile[d] >= dims[d]:
        return f"tile m{tile['m']} k{tile['k']} n{tile['n']} x{buffers}"
    kib = MemorySpec().accumulator_kib / buffers
    return (f"{d.upper()} = {dims[d]} streams in {-(-dims[d] // tile[d])} pieces: a {kib:g} KiB accumulator tile "
            f"holds {tile['m']}x{tile['n']} partial sums, so each piece refills every stationary fold; "
            f"SCALE-Sim streams all {dims[d]} through each fold (it bounds no partial sums)")


def compare(model: str, rows: int, cols: int, dataflow: str, sample: int) -> dict:
    graph = compile_graph(zoo.resolve(model))
    ours = our_layers(graph, default_spec(rows, cols, dataflow))
    forced = our_layers(graph, peer_spec(rows, cols, dataflow))
    layers = gemm_layers(graph)
    key, distinct = distinct_rows(layers)
    picked = [] if sample == 0 else list(range(len(distinct))) if sample < 0 else \
        sorted({int(i) for i in np.linspace(0, len(distinct) - 1, min(sample, len(distinct))).round()})
    targets = [key.index(distinct[i]) for i in picked]
    runs = dict(zip((key[j] for j in targets), run_scalesim_each([layers[j] for j in targets], rows, cols, dataflow)))
    table = []
    for lay, k in zip(layers, key):
        formula = scalesim_cycles(dataflow, rows, cols, lay)
        ss = runs[k][0] if k in runs else formula
        mine, pinned = ours[lay.name], forced[lay.name]
        table.append({"layer": lay.name, "key": k, "m": lay.m, "k": lay.k, "n": lay.n, "g": lay.groups,
                      "scalesim": ss, "ran": k in runs, "formula_ok": ss == formula,
                      "ours": mine["compute_cycles"], "forced": pinned["compute_cycles"],
                      "mapping": mine["mapping"]})
    return {"graph": graph, "table": table, "runs": len(runs), "distinct": len(distinct)}


def lowering_s(graph, spec: dict, repeat: int) -> float:
    """Median seconds to lower the model for one design point, tiling caches cleared (a new point)."""
    sp = load_spec(spec)
    lower(graph, sp)                                   # Numba warm-up
    times = []
    for _ in range(repeat):
        tiling._search.cache_clear()
        tiling._priced_candidates.cache_clear()
        t0 = time.perf_counter()
        lower(graph, sp)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def errors(table: list, column: str) -> list:
    return [r[column] / r["scalesim"] - 1 for r in table]


def print_config(name: str, res: dict, dataflow: str) -> None:
    print(f"\n{name}: compute cycles per distinct layer (x = repeats; error = ours / SCALE-Sim - 1)")
    print(f"  {'layer':<8}{'x':>3}{'M':>7}{'K':>6}{'N':>6}{'g':>4}{'SCALE-Sim':>11}{'ours':>11}{'error':>8}"
          f"{'forced':>11}{'error':>8}  our tile, and why where |error| > {TOLERANCE:.0%}")
    seen = set()
    for r in res["table"]:
        if r["key"] in seen:
            continue
        seen.add(r["key"])
        count = sum(x["key"] == r["key"] for x in res["table"])
        err, err_f = r["ours"] / r["scalesim"] - 1, r["forced"] / r["scalesim"] - 1
        t = r["mapping"]["tile"]
        note = why(r["mapping"], dataflow) if abs(err) > TOLERANCE else \
            f"m{t['m']} k{t['k']} n{t['n']} x{r['mapping']['extras']['buffers']}"
        source = "" if r["ran"] else " (SS: formula)"
        print(f"  {r['layer'][:7]:<8}{count:>3}{r['m']:>7}{r['k']:>6}{r['n']:>6}{r['g']:>4}{r['scalesim']:>11,}"
              f"{r['ours']:>11,}{err:>+8.2%}{r['forced']:>11,}{err_f:>+8.2%}  {note}{source}")


def summary(res: dict) -> dict:
    t = res["table"]
    out = {}
    for column in ("ours", "forced"):
        e = errors(t, column)
        total = sum(r[column] for r in t) / sum(r["scalesim"] for r in t) - 1
        out[column] = (total, statistics.median(abs(x) for x in e), max(e, key=abs))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", help="MODEL:ROWSxCOLS:ws|os|is (repeatable; default: issue 17's)")
    ap.add_argument("--sample", type=int, default=3,
                    help="distinct layers SCALE-Sim runs per configuration, evenly spaced (0: none, the "
                         "formula only; -1: every distinct layer, minutes per configuration)")
    ap.add_argument("--repeat", type=int, default=5, help="timed lowerings per design point (median)")
    args = ap.parse_args()
    lines = []
    for text in args.config or ACCEPTANCE:
        model, rows, cols, dataflow = parse_config(text)
        name = f"{model} {rows}x{cols} {dataflow}"
        res = compare(model, rows, cols, dataflow, args.sample)
        print_config(name, res, dataflow)
        s = summary(res)
        ideal_s = lowering_s(res["graph"], default_spec(rows, cols, dataflow), args.repeat)
        real_s = lowering_s(res["graph"], {"array": default_spec(rows, cols, dataflow)["array"]}, args.repeat)
        ran = [r for r in res["table"] if r["ran"]]
        check = (f"SCALE-Sim run on {res['runs']} of {res['distinct']} distinct layers, formula "
                 f"{'exact on all' if all(r['formula_ok'] for r in ran) else 'OFF on some'}") if ran else \
            "SCALE-Sim from its formula only (--sample 0)"
        lines.append((name, s, ideal_s, real_s, check))
    print("\nsummary: errors over every layer (repeats counted); acceptance: median |error| <= 2 %, worst <= 10 %")
    print(f"  {'configuration':<42}{'total':>8}{'median':>8}{'worst':>8}   {'forced: total':>13}{'median':>8}"
          f"{'worst':>8}   {'lowering ms (ideal / modelled)':>31}")
    for name, s, ideal_s, real_s, check in lines:
        (tot, med, worst), (ftot, fmed, fworst) = s["ours"], s["forced"]
        print(f"  {name:<42}{tot:>+8.2%}{med:>8.2%}{worst:>+8.2%}   {ftot:>+13.3%}{fmed:>8.3%}{fworst:>+8.3%}   "
              f"{ideal_s * 1e3:>14.1f} / {real_s * 1e3:.1f}")
        print(f"    {check}")


if __name__ == "__main__":
    main()

"""Evaluating design points: one (Spec, workload) -> one stored record, and a
point's per-workload records -> its point-level metrics (dse.space.METRICS).

`run_chunk` is what executors ship to workers: it is a pure function of its
tasks (the Spec and the workload travel with each task; each worker compiles a
workload's Graph once and keeps it), so a local pool and a Dask cluster give
the same results bit for bit. A record's per-layer mappings come encoded for the
store (dse.store.LayerEncoder), each distinct mapping encoded once per worker.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from compiler.errors import CompileError
from compiler.bundled import DEFAULT_SPEC
from compiler.spec import load as spec_load
from compiler.targets import lower
from dse import space as spacemod
from dse.store import LayerEncoder
from dse.workloads import Workload, graph_of
from sim import simulate


@dataclass(frozen=True)
class Task:
    key: str            # evaluation key (store.evaluation_key)
    point_key: str      # the Spec's content hash
    point: dict         # swept field path -> value (for the record)
    workload: Workload
    spec: object        # the design point's full Spec


def evaluate(graph, spec) -> dict:
    """Timing-only evaluation of one (workload graph, design point): the flat Stats row."""
    return evaluate_with_layers(graph, spec)[0]


def evaluate_with_layers(graph, spec) -> tuple:
    """(the flat Stats row, its layers' names, ops, cycles and mappings (Mapping.to_dict) in the store's
    form, dse.store.EncodedLayers: which mapping gave each layer its cycles)."""
    stats = simulate(lower(graph, spec), timing_only=True).stats
    row = stats.flat()
    row.update(spec.figures)          # the target's design figures (PE count, ...)
    return row, _encode_layers(stats.layers)


# One per process: a worker JSON-encodes each distinct mapping once, however many evaluations share it.
_encode_layers = LayerEncoder()


def run_task(task: Task) -> dict:
    """The store record of one task. A design that cannot be mapped is a record too
    (feasible False, with the compiler's reason); anything else is a bug and raises."""
    t0 = time.perf_counter()
    record = {"key": task.key, "point_key": task.point_key, "point": task.point,
              "workload": task.workload.label}
    try:
        metrics, layers = evaluate_with_layers(graph_of(task.workload), task.spec)
        record.update(feasible=True, reason="", metrics=metrics, layers=layers)
    except CompileError as exc:
        record.update(feasible=False, reason=str(exc), metrics={})
    record["eval_seconds"] = time.perf_counter() - t0
    return record


def run_chunk(tasks: list) -> list:
    return [run_task(t) for t in tasks]


def warm(workloads=()) -> None:
    """Compile the Numba kernels (and the workloads' Graphs) in this process once."""
    evaluate(graph_of(Workload("zoo:mlp")), spec_load(DEFAULT_SPEC))
    for w in workloads:
        try:
            graph_of(w)
        except CompileError:
            pass  # reported when its tasks run


def point_metrics(records: list, workloads: tuple) -> dict:
    """A design point's figures from its per-workload records (all must be feasible).

    Weighted over workloads w_i at batch b_i with run latency L_i and energy E_i:
    latency_s = sum w L / sum w; energy_j = sum w E/b / sum w (per inference);
    throughput = sum w b / sum w L; power = sum w E / sum w L."""
    by_label = {r["workload"]: r["metrics"] for r in records}
    nan = float("nan")
    sw = swl = swb = swe = swepi = swu = 0.0
    for w in workloads:
        m = by_label[w.label]
        lat, energy = m["latency_s"], m.get("energy_j", nan)
        sw += w.weight
        swl += w.weight * lat
        swb += w.weight * w.batch
        swe += w.weight * energy
        swepi += w.weight * energy / w.batch
        swu += w.weight * m["utilisation"]
    first = by_label[workloads[0].label]
    latency, energy = swl / sw, swepi / sw
    area = first.get("area_mm2", nan)
    throughput = swb / swl if swl else nan
    return {
        "latency_s": latency, "throughput_inf_s": throughput, "energy_j": energy,
        "edp_j_s": energy * latency, "area_mm2": area, "power_w": swe / swl if swl else nan,
        "inferences_per_j": 1.0 / energy if energy else nan,
        "throughput_per_mm2": throughput / area if area and not math.isnan(area) else nan,
        "utilisation": swu / sw,
        **{name: first[name] for name in spacemod.FIGURES if name in first},   # the target's design figures
    }

"""Stats of one simulated run: totals, per layer and per engine, with units, and
the energy, area and power that sim/energy.py prices from the action counts.

Every key a user sees is defined in DEFINITIONS (unit and one line). Stats
serialise to JSON (`to_dict`) and flatten to one row (`flat`) for the explorer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler import targets
from compiler.program import OPCODE_UNIT, UNIT_ID, Program
from sim import energy as energy_model
from sim import targets as sim_targets

DEFINITIONS = {
    "total_cycles": "cycles: from the first instruction's start to the last one's finish",
    "latency_s": "seconds: total_cycles / clock",
    "macs": "multiply-accumulates of the conv and gemm layers (one inference)",
    "utilisation": "fraction: macs / (total_cycles x the target's peak MACs per cycle)",
    "achieved_ops_per_s": "ops/s: 2 x macs / latency_s",
    "engine_busy_cycles": "cycles each engine spends executing instructions",
    "bytes": "bytes moved per memory level (DRAM read+write; each on-chip memory written+read)",
    "layer.cycles": "cycles from the layer's first instruction start to its last finish",
    "layer.compute_cycles": "cycles the layer's compute instructions (matrix or vector) keep their engine busy, "
                            "per engine where they run on several",
    "layer.stall_cycles": "layer.cycles - layer.compute_cycles: waiting on memory or dependencies",
    "layer.utilisation": "fraction: layer macs / (layer cycles x peak MACs per cycle); 0 for vector-unit layers",
    "layer.vector_ops": "the layer's vector-unit element-ops",
    "layer.energy_j": "J: the layer's dynamic energy (MACs, vector ops, bytes moved); leakage excluded",
    "layer.mapping": "the layer's mapping (compiler/mapping.py): unit, loop extents and tile sizes in elements, "
                     "tile steps, loop order (outermost first), dataflow, target-specific extras",
    "vector_ops": "element-ops of the vector unit (pooling, eltwise, softmax, ...) per inference",
    "requant_ops": "integer datapath: GEMM outputs requantised (int32 accumulator to 8-bit codes) per inference",
    "layer.requant_ops": "the layer's requantised outputs",
    "technology": "technology table that priced energy and area (hwspecs/tech/<name>.yaml)",
    "energy_j": "J per inference: sum of energy_by_component_j",
    "area_mm2": "mm^2: sum of area_by_component_mm2 (PE array, vector unit, SRAMs; no I/O or wiring)",
    "power_w": "W: energy_j / latency_s (average over the inference)",
    "edp_j_s": "J*s: energy-delay product, energy_j x latency_s",
    "target": "the target that lowered and simulated the design (compiler/targets/)",
    "energy_by_component_j": "J per inference per component (energy_<component>_j in flat rows)",
    "area_by_component_mm2": "mm^2 per component (area_<component>_mm2 in flat rows)",
}


def definitions(target: str | None = None) -> dict:
    """DEFINITIONS plus the target's own (its energy and area components); every built-in
    target's when `target` is None."""
    names = [target] if target else list(targets.BUILTIN)
    out = dict(DEFINITIONS)
    for name in names:
        out.update(getattr(sim_targets.of(name), "DEFINITIONS", {}))
    return out


@dataclass
class Stats:
    total_cycles: int
    latency_s: float
    macs: int
    utilisation: float
    achieved_ops_per_s: float
    engine_busy_cycles: dict
    bytes: dict
    layers: list = field(default_factory=list)
    ideal_memory: bool = False
    instructions: int = 0
    vector_ops: int = 0
    requant_ops: int = 0
    technology: str = ""
    energy_j: float = 0.0
    area_mm2: float = 0.0
    power_w: float = 0.0
    edp_j_s: float = 0.0
    energy_by_component_j: dict = field(default_factory=dict)
    area_by_component_mm2: dict = field(default_factory=dict)
    target: str = ""

    def to_dict(self) -> dict:
        return {"definitions": definitions(self.target), **self.__dict__}

    def flat(self) -> dict:
        row = {k: v for k, v in self.__dict__.items() if not isinstance(v, (dict, list))}
        row.update({f"busy_{k}_cycles": v for k, v in self.engine_busy_cycles.items()})
        row.update({f"{k}_bytes": v for k, v in self.bytes.items()})
        row.update({f"energy_{k}_j": v for k, v in self.energy_by_component_j.items()})
        row.update({f"area_{k}_mm2": v for k, v in self.area_by_component_mm2.items()})
        return row


def collect(program: Program, cycles: np.ndarray, start: np.ndarray, finish: np.ndarray,
            ideal_memory: bool) -> Stats:
    """Totals, per-engine and per-layer figures; every per-layer sum is one bincount
    over the instructions' layer index (this runs once per design point in a sweep)."""
    spec = program.spec
    ins = program.instructions
    n_layers = len(program.layers)
    target = sim_targets.of(program.target)
    pes = spec.peak_macs_per_cycle
    total = int(finish.max() - start.min()) if len(finish) else 0
    latency = total / (spec.clock_ghz * 1e9)
    macs = sum(layer.macs for layer in program.layers)
    busy = np.bincount(ins.engine, weights=cycles, minlength=len(program.engines))   # exact below 2**53
    unit = OPCODE_UNIT[ins.opcode]
    vec = unit == UNIT_ID["vector"]
    per_ins = target.level_bytes(program)

    # Instructions are emitted layer after layer; sort (stably) only if some target does not.
    layer_of = ins.layer
    order = None if np.all(layer_of[1:] >= layer_of[:-1]) else np.argsort(layer_of, kind="stable")
    if order is not None:
        layer_of = layer_of[order]
    bounds = np.searchsorted(layer_of, np.arange(n_layers + 1))
    counts = np.diff(bounds)
    present = np.flatnonzero(counts)

    def per_layer(values):
        """Sum of `values` over each layer's instructions (exact integer prefix sums)."""
        values = np.asarray(values, np.int64) if order is None else np.asarray(values, np.int64)[order]
        prefix = np.concatenate(([0], np.cumsum(values)))
        return prefix[bounds[1:]] - prefix[bounds[:-1]]

    def per_layer_extreme(ufunc, values):
        out = np.zeros(n_layers, np.int64)
        values = values if order is None else values[order]
        if len(present):
            out[present] = ufunc.reduceat(values, bounds[present])
        return out

    layer_first = per_layer_extreme(np.minimum, start)
    layer_last = per_layer_extreme(np.maximum, finish)
    compute_unit = np.array([UNIT_ID["matrix"] if layer.op in ("conv", "gemm") else UNIT_ID["vector"]
                             for layer in program.layers], np.int64)
    on_compute = unit == compute_unit[ins.layer] if n_layers else vec
    # a layer computing on several engines at once (cores, SMs) is busy for its cycles per engine
    pairs = np.unique(ins.layer[on_compute].astype(np.int64) * len(program.engines) + ins.engine[on_compute])
    engines_used = np.maximum(np.bincount(pairs // len(program.engines), minlength=n_layers), 1)
    compute_cycles = -(-per_layer(np.where(on_compute, cycles, 0)) // engines_used)
    vector_ops_by_layer = per_layer(np.where(vec, ins.work, 0))
    requant = target.requant_ops(program)
    requant_ops_by_layer = per_layer(requant)
    bytes_by_layer = {level: per_layer(values) for level, values in per_ins.items()}
    layers = []
    for li, layer in enumerate(program.layers):
        if counts[li] == 0:
            continue
        span = int(layer_last[li] - layer_first[li])
        compute = int(compute_cycles[li])
        layers.append({
            "name": layer.name, "op": layer.op, "macs": layer.macs,
            "vector_ops": int(vector_ops_by_layer[li]), "requant_ops": int(requant_ops_by_layer[li]), "cycles": span,
            "compute_cycles": compute, "stall_cycles": max(span - compute, 0),
            "utilisation": layer.macs / (span * pes) if span and layer.macs else 0.0,
            "start_cycle": int(layer_first[li]), "instructions": int(counts[li]),
            "bytes": {level: int(v[li]) for level, v in bytes_by_layer.items()},
            "mapping": layer.mapping.to_dict() if layer.mapping else None,
        })
    level_bytes = {level: int(values.sum()) for level, values in per_ins.items()}
    vector_ops = int(ins.work[vec].sum())
    requant_ops = int(requant.sum())
    costs = target.unit_costs(spec)
    _price_layers(costs, layers)
    return Stats(total_cycles=total, latency_s=latency, macs=macs,
                 utilisation=macs / (total * pes) if total else 0.0,
                 achieved_ops_per_s=2 * macs / latency if latency else 0.0,
                 engine_busy_cycles={e: int(busy[i]) for i, e in enumerate(program.engines)},
                 bytes=level_bytes, layers=layers,
                 ideal_memory=ideal_memory, instructions=len(ins), vector_ops=vector_ops,
                 requant_ops=requant_ops, target=program.target,
                 **priced(spec, costs, macs, vector_ops, level_bytes, latency, requant_ops))


def priced(spec, costs, macs, vector_ops, level_bytes: dict, latency_s: float, requant_ops) -> dict:
    """The priced fields of Stats (technology, energy_j, area_mm2, power_w, edp_j_s and both
    by-component dicts) from one run's action counts and the spec's unit costs: the one place a run
    is priced, after simulation (collect) or again from a stored row (reprice_flat)."""
    energy = energy_model.energy_j(costs, macs, vector_ops, level_bytes, latency_s, requant_ops)
    total = sum(energy.values())
    return {"technology": spec.technology, "energy_j": total, "area_mm2": sum(costs.area_mm2.values()),
            "power_w": total / latency_s if latency_s else 0.0, "edp_j_s": total * latency_s,
            "energy_by_component_j": energy, "area_by_component_mm2": dict(costs.area_mm2)}


def reprice_flat(row: dict, spec) -> dict:
    """A flat row (Stats.flat) priced again for `spec`, e.g. the spec it was simulated for with another
    technology table: its action counts (macs, vector_ops, requant_ops, <level>_bytes) and latency_s
    times the target's unit_costs(spec), every priced column replaced and every other one kept. Equal
    to the row a simulation of `spec` gives when the counts and cycles are the same (they do not
    depend on the technology table). KeyError if the row lacks a count the target prices."""
    costs = sim_targets.of(spec.target).unit_costs(spec)
    level_bytes = {level: row[f"{level}_bytes"] for level in costs.byte_j}
    fields = priced(spec, costs, row["macs"], row["vector_ops"], level_bytes, row["latency_s"],
                    row.get("requant_ops", 0))
    stale = [k for k in row if k.startswith("energy_") and k.endswith("_j")
             or k.startswith("area_") and k.endswith("_mm2")]
    out = {k: v for k, v in row.items() if k not in stale}
    out.update({k: v for k, v in fields.items() if not isinstance(v, dict)})
    out.update({f"energy_{k}_j": v for k, v in fields["energy_by_component_j"].items()})
    out.update({f"area_{k}_mm2": v for k, v in fields["area_by_component_mm2"].items()})
    return out


def _price_layers(costs, layers: list) -> None:
    """Add each layer's dynamic energy (J), priced for all layers at once."""
    if not layers:
        return
    per_level = {k: np.array([layer["bytes"][k] for layer in layers]) for k in costs.byte_j}
    parts = energy_model.dynamic_energy_j(costs, [layer["macs"] for layer in layers],
                                          [layer["vector_ops"] for layer in layers], per_level,
                                          [layer["requant_ops"] for layer in layers])
    for layer, joules in zip(layers, sum(parts.values())):
        layer["energy_j"] = float(joules)

"""Stats of one simulated run: totals, per layer and per engine, with units.

Every key a user sees is defined in DEFINITIONS (unit and one line). Stats
serialise to JSON (`to_dict`) and flatten to one row (`flat`) for the explorer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.program import ENGINE_ID, ENGINES, OPCODE_ID, Program

DEFINITIONS = {
    "total_cycles": "cycles: from the first instruction's start to the last one's finish",
    "latency_s": "seconds: total_cycles / clock",
    "macs": "multiply-accumulates of the conv and gemm layers (one inference)",
    "utilisation": "fraction: macs / (total_cycles x PE count)",
    "achieved_ops_per_s": "ops/s: 2 x macs / latency_s",
    "engine_busy_cycles": "cycles each engine spends executing instructions",
    "bytes": "bytes moved per memory level (DRAM read+write; scratchpads and accumulator written+read)",
    "layer.cycles": "cycles from the layer's first instruction start to its last finish",
    "layer.compute_cycles": "cycles the layer's compute engine (matrix or vector) is busy",
    "layer.stall_cycles": "layer.cycles - layer.compute_cycles: waiting on memory or dependencies",
    "layer.utilisation": "fraction: layer macs / (layer cycles x PE count); 0 for vector-unit layers",
}
LEVELS = ("dram", "input_scratchpad", "weight_scratchpad", "accumulator")


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

    def to_dict(self) -> dict:
        return {"definitions": DEFINITIONS, **self.__dict__}

    def flat(self) -> dict:
        row = {k: v for k, v in self.__dict__.items() if not isinstance(v, (dict, list))}
        row.update({f"busy_{k}_cycles": v for k, v in self.engine_busy_cycles.items()})
        row.update({f"{k}_bytes": v for k, v in self.bytes.items()})
        return row


def _level_bytes(program: Program, rows) -> dict:
    """Bytes per memory level moved by the instructions `rows` (an index array or slice)."""
    ins = program.instructions
    op, ops = ins.opcode[rows], ins.operands[rows]
    onchip = ins.onchip_bytes[rows]
    mm = op == OPCODE_ID["matmul"]
    tm, tk, tn = ops[mm, 3], ops[mm, 4], ops[mm, 5]
    return {
        "dram": int(ins.dram_bytes[rows].sum()),
        "input_scratchpad": int(onchip[op == OPCODE_ID["load_im2col"]].sum() + 4 * (tm * tk).sum()),
        "weight_scratchpad": int(onchip[op == OPCODE_ID["load_weights"]].sum() + 4 * (tk * tn).sum()),
        "accumulator": int(onchip[(op == OPCODE_ID["load_bias"]) | (op == OPCODE_ID["store_tile"])].sum()
                           + 8 * (tm * tn).sum()),
    }


def collect(program: Program, cycles: np.ndarray, start: np.ndarray, finish: np.ndarray,
            ideal_memory: bool) -> Stats:
    spec = program.spec
    ins = program.instructions
    pes = spec.array.rows * spec.array.cols
    total = int(finish.max() - start.min()) if len(finish) else 0
    latency = total / (spec.clock_ghz * 1e9)
    macs = sum(layer.macs for layer in program.layers)
    busy = {e: int(cycles[ins.engine == i].sum()) for e, i in ENGINE_ID.items()}
    layers = []
    order = np.argsort(ins.layer, kind="stable")
    bounds = np.searchsorted(ins.layer[order], np.arange(len(program.layers) + 1))
    for li, layer in enumerate(program.layers):
        idx = order[bounds[li]:bounds[li + 1]]
        if len(idx) == 0:
            continue
        span = int(finish[idx].max() - start[idx].min())
        engine = ENGINE_ID["matrix"] if layer.op in ("conv", "gemm") else ENGINE_ID["vector"]
        compute = int(cycles[idx][ins.engine[idx] == engine].sum())
        layers.append({
            "name": layer.name, "op": layer.op, "macs": layer.macs, "cycles": span,
            "compute_cycles": compute, "stall_cycles": max(span - compute, 0),
            "utilisation": layer.macs / (span * pes) if span and layer.macs else 0.0,
            "start_cycle": int(start[idx].min()), "instructions": int(len(idx)),
            "bytes": _level_bytes(program, idx), "mapping": layer.mapping,
        })
    return Stats(total_cycles=total, latency_s=latency, macs=macs,
                 utilisation=macs / (total * pes) if total else 0.0,
                 achieved_ops_per_s=2 * macs / latency if latency else 0.0,
                 engine_busy_cycles={e: busy[e] for e in ENGINES},
                 bytes=_level_bytes(program, slice(None)), layers=layers,
                 ideal_memory=ideal_memory, instructions=len(ins))

"""Workloads of a sweep: which model, at what batch size, with what weight in the
point's aggregate figures, and the compiled Graph of each (once per process).

A spec's `workloads:` entries are `zoo:NAME` or a .onnx path, or a mapping
{model: ..., batch: 1, weight: 1.0}. A workload's identity (part of every
result's content hash) is the model's bytes for files and name + onnx version
for the bundled zoo, plus the batch size.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx

from compiler.errors import CompileError, SpecError
from compiler.pipeline import compile_graph
from dse import zoo


@dataclass(frozen=True)
class Workload:
    model: str          # zoo:NAME or a path
    batch: int = 1      # inferences per run; per-inference figures divide by it
    weight: float = 1.0  # share in the point's weighted-mean latency and energy

    @property
    def label(self) -> str:
        return self.model if self.batch == 1 else f"{self.model}@b{self.batch}"

    @functools.cached_property
    def identity(self) -> str:
        if self.model.startswith("zoo:"):
            base = f"{self.model}|onnx {onnx.__version__}"
        else:
            try:
                base = hashlib.sha256(Path(self.model).read_bytes()).hexdigest()
            except OSError as exc:
                raise CompileError(f"{self.model}: cannot read model ({exc.strerror})") from None
        return f"{base}|batch {self.batch}"


def parse(entries, where: str = "workloads") -> tuple:
    """Workloads from a spec's `workloads:` list (strings or mappings)."""
    out = []
    for i, entry in enumerate(entries or ()):
        at = f"{where}[{i}]"
        if isinstance(entry, str):
            out.append(Workload(entry))
            continue
        if not isinstance(entry, dict) or "model" not in entry:
            raise SpecError(f"{at}: give zoo:NAME, a .onnx path, or {{model, batch, weight}}; got {entry!r}")
        unknown = sorted(set(entry) - {"model", "batch", "weight"})
        if unknown:
            raise SpecError(f"{at}: unknown key '{unknown[0]}'; allowed: model, batch, weight")
        batch, weight = entry.get("batch", 1), entry.get("weight", 1.0)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise SpecError(f"{at}.batch: must be an integer >= 1, got {batch!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise SpecError(f"{at}.weight: must be a number > 0, got {weight!r}")
        out.append(Workload(str(entry["model"]), batch, float(weight)))
    if not out:
        raise SpecError(f"{where}: list at least one model to evaluate")
    labels = [w.label for w in out]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{where}: a workload is listed twice")
    return tuple(out)


@functools.lru_cache(maxsize=16)
def graph_of(workload: Workload):
    """The optimised Graph of a workload at its batch size (compiled once per process)."""
    model = zoo.resolve(workload.model)
    shapes = None
    if workload.batch != 1:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        initialisers = {t.name for t in proto.graph.initializer}
        shapes = {}
        for value in proto.graph.input:
            if value.name in initialisers:
                continue
            dims = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
            shapes[value.name] = (workload.batch, *dims[1:])
    return compile_graph(model, input_shapes=shapes)

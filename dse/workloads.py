"""Workloads of a sweep: which model, at what batch size, with what weight in the
point's aggregate figures, optionally quantised to int8, and the compiled Graph of
each (once per process).

A spec's `workloads:` entries are `zoo:NAME` or a .onnx path, or a mapping
{model: ..., batch: 1, weight: 1.0, quantize: ...}. `quantize: qoperator` (or `qdq`, or
{format: qdq|qoperator, per_channel: false}) evaluates an int8 copy of a float model:
dse.quantize (onnxruntime static quantisation, uint8 activations x int8 weights, seeded
calibration), cached on disk (cache_dir) so a sweep quantises once. A light zoo model gets
seeded random weights first (zoo.with_random_weights; it times identically), since its
constant fills would quantise to degenerate scales. A workload's identity (part of every
result's content hash) is the model's bytes for files and name + onnx version for the
bundled zoo, plus the batch size, and the quantisation options with onnxruntime's version.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from compiler.errors import CompileError, SpecError
from compiler.frontend.onnx import read_model
from compiler.pipeline import compile_graph
from compiler.spec import did_you_mean
from dse import zoo
from dse.quantize import FORMATS as QUANT_FORMATS
from dse.quantize import quantize as quantize_model

# How a quantised workload's int8 model is made (part of its identity and cache key).
CALIBRATION_SAMPLES, CALIBRATION_SEED, RANDOM_WEIGHTS_SEED = 16, 0, 0
INSTALL_HINT = "pip install -e '.[quantize]'"
KEYS = ("model", "batch", "weight", "weights", "quantize")   # of a workload mapping
# At most 1024 inferences per run: batch scales every activation tensor, and a functional run
# (dse sweep --verify, dse.run) allocates them all in its DRAM image; ResNet-50 keeps ~86 MiB of
# activations per image there, so batch 1024 already asks for ~86 GiB.
MAX_BATCH = 1024


@dataclass(frozen=True)
class Quantization:
    format: str = "qoperator"   # qoperator (QLinear* ops) or qdq (Quantize/DequantizeLinear pairs)
    per_channel: bool = False   # per-output-channel weight scales, else per-tensor

    @property
    def label(self) -> str:
        return f"int8 {self.format}" + (" per-channel" if self.per_channel else "")

    @property
    def recipe(self) -> str:
        return (f"{self.label}|calibration {CALIBRATION_SAMPLES} normal samples seed {CALIBRATION_SEED}"
                f"|light zoo weights seed {RANDOM_WEIGHTS_SEED}|onnxruntime {_onnxruntime_version(self)}")


@dataclass(frozen=True)
class Workload:
    model: str          # zoo:NAME or a path
    batch: int = 1      # inferences per run; per-inference figures divide by it
    weight: float = 1.0  # share in the point's weighted-mean latency and energy
    quantize: Quantization | None = None  # evaluate an int8 copy of the (float) model
    random_weights: bool = False  # a light zoo model with seeded random weights instead of its fills

    @property
    def label(self) -> str:
        tags = [t for t in (self.quantize.label if self.quantize else "",
                            "random weights" if self.random_weights and not self.quantize else "") if t]
        name = f"{self.model}[{', '.join(tags)}]" if tags else self.model
        return name if self.batch == 1 else f"{name}@b{self.batch}"

    @functools.cached_property
    def identity(self) -> str:
        if self.model.startswith("zoo:"):
            base = f"{self.model}|onnx {onnx.__version__}"
        else:
            base = hashlib.sha256(_read_bytes(self.model)).hexdigest()
        if self.quantize:
            base += f"|{self.quantize.recipe}"
        elif self.random_weights:
            base += f"|light zoo weights seed {RANDOM_WEIGHTS_SEED}"
        return f"{base}|batch {self.batch}"


def parse(entries, where: str = "workloads") -> tuple:
    """Workloads from a spec's `workloads:` list (strings or mappings), each checked before any
    work: a bundled zoo name or a readable ONNX file, and its options in range."""
    out = []
    for i, entry in enumerate(entries or ()):
        at = f"{where}[{i}]"
        workload = Workload(entry) if isinstance(entry, str) else _entry(entry, at)
        _check_model(workload.model, at if isinstance(entry, str) else f"{at}.model")
        out.append(workload)
    if not out:
        raise SpecError(f"{where}: list at least one model to evaluate")
    labels = [w.label for w in out]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{where}: a workload is listed twice")
    return tuple(out)


def _entry(entry, at: str) -> Workload:
    """One {model, batch, weight, weights, quantize} mapping, its values checked."""
    if not isinstance(entry, dict) or "model" not in entry:
        raise SpecError(f"{at}: give zoo:NAME, a .onnx path, or {{{', '.join(KEYS)}}}; got {entry!r}")
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise SpecError(f"{at}: unknown key '{unknown[0]}'; {did_you_mean(unknown[0], KEYS)}"
                        f"allowed: {', '.join(KEYS)}")
    model, batch, weight = entry["model"], entry.get("batch", 1), entry.get("weight", 1.0)
    if not isinstance(model, str):
        raise SpecError(f"{at}.model: give zoo:NAME or a path to a .onnx file, got {model!r}")
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise SpecError(f"{at}.batch: must be an integer >= 1 and <= {MAX_BATCH}, got {batch!r}")
    if not _positive_finite(weight):
        raise SpecError(f"{at}.weight: must be a finite number > 0, got {weight!r}")
    quantize = _quantization(entry["quantize"], f"{at}.quantize") if "quantize" in entry else None
    if quantize:
        _onnxruntime_version(quantize, f"{at}.quantize")
    weights = entry.get("weights", "shipped")
    if weights not in ("shipped", "random"):
        raise SpecError(f"{at}.weights: got {weights!r}; allowed: shipped, random")
    if weights == "random" and model.removeprefix("zoo:") not in zoo.LIGHT:
        raise SpecError(f"{at}.weights: random weights replace the fills of the light zoo models "
                        f"({', '.join('zoo:' + n for n in zoo.LIGHT)}); got {model!r}")
    return Workload(model, batch, float(weight), quantize, weights == "random")


def _positive_finite(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return 0 < float(value) < math.inf
    except OverflowError:  # an integer beyond every float
        return False


def _check_model(model: str, at: str) -> None:
    """A bundled zoo name, or a file that reads as an ONNX model. Read, not compiled: compiling
    every workload up front would cost seconds (VGG-19: ~4 s) the evaluations spend anyway."""
    problem = zoo.unknown_name(model) if model.startswith("zoo:") else ""
    if problem:
        raise SpecError(f"{at}: {problem}")
    if model.startswith("zoo:"):
        return
    if not Path(model).is_file():
        hint = did_you_mean(model, [f"zoo:{n}" for n in zoo.NAMES])
        raise SpecError(f"{at}: no such model file '{model}' (relative paths start at {Path.cwd()}); "
                        f"{hint}give zoo:NAME (see `dse models`) or a path to a .onnx file")
    try:
        read_model(model)
    except CompileError as exc:
        raise SpecError(f"{at}: {exc}") from None


def _quantization(value, at: str) -> Quantization:
    allowed = ", ".join(QUANT_FORMATS)
    if isinstance(value, str):
        if value not in QUANT_FORMATS:
            raise SpecError(f"{at}: got {value!r}; {did_you_mean(value, QUANT_FORMATS)}allowed: {allowed}, "
                            "or {format, per_channel}")
        return Quantization(value)
    if not isinstance(value, dict):
        raise SpecError(f"{at}: give {allowed}, or {{format, per_channel}}; got {value!r}")
    unknown = sorted(set(value) - {"format", "per_channel"})
    if unknown:
        raise SpecError(f"{at}: unknown key '{unknown[0]}'; {did_you_mean(unknown[0], ('format', 'per_channel'))}"
                        "allowed: format, per_channel")
    fmt, per_channel = value.get("format", "qoperator"), value.get("per_channel", False)
    if fmt not in QUANT_FORMATS:
        raise SpecError(f"{at}.format: got {fmt!r}; {did_you_mean(fmt, QUANT_FORMATS)}allowed: {allowed}")
    if not isinstance(per_channel, bool):
        raise SpecError(f"{at}.per_channel: must be true or false, got {per_channel!r}")
    return Quantization(fmt, per_channel)


def model_of(workload: Workload):
    """What graph_of compiles: the model (a path or ModelProto), or for a quantised
    workload the path of its cached int8 copy."""
    if workload.quantize:
        return quantized_path(workload)
    model = zoo.resolve(workload.model)
    if workload.random_weights:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        return zoo.with_random_weights(proto, seed=RANDOM_WEIGHTS_SEED, logits_rms=None)
    return model


@functools.lru_cache(maxsize=16)
def graph_of(workload: Workload):
    """The optimised Graph of a workload at its batch size (compiled once per process)."""
    model = model_of(workload)
    shapes = None
    if workload.batch != 1:
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        initialisers = {t.name for t in proto.graph.initializer}
        shapes = {}
        for value in proto.graph.input:
            if value.name in initialisers:
                continue
            dims = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
            shapes[value.name] = (workload.batch, *dims[1:])
        model = batch_agnostic_reshapes(proto)
    return compile_graph(model, input_shapes=shapes)


def batch_agnostic_reshapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a batch-1 model whose Reshapes to a constant shape leading with 1 (the batch, as
    exporters write a classifier's flatten: [1, 2048]) copy their input's leading dimension instead
    (ONNX Reshape's 0 entry, allowzero unset), so the model runs at another batch; other nodes and
    Reshapes are left as they are."""
    consts = {t.name: t for t in proto.graph.initializer}
    out = onnx.ModelProto.FromString(proto.SerializeToString())
    for node in out.graph.node:
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if node.op_type != "Reshape" or allowzero or len(node.input) < 2 or node.input[1] not in consts:
            continue
        shape = numpy_helper.to_array(consts[node.input[1]])
        if shape.ndim == 1 and len(shape) > 1 and shape[0] == 1:
            name = f"{node.input[1]}::batch_agnostic"
            if name not in {t.name for t in out.graph.initializer}:
                out.graph.initializer.append(numpy_helper.from_array(np.concatenate(([0], shape[1:])).astype(
                    shape.dtype), name))
            node.input[1] = name
    return out


# ---- quantised workloads: the on-disk cache ------------------------------------------------

def cache_dir() -> Path:
    """Where quantised models are kept: $DSE_CACHE_DIR/quantized, else
    $XDG_CACHE_HOME/dse/quantized, else ~/.cache/dse/quantized."""
    root = os.environ.get("DSE_CACHE_DIR")
    if root:
        return Path(root) / "quantized"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dse" / "quantized"


def quantized_path(workload: Workload) -> Path:
    """The cached int8 copy of a quantised workload's model, made on first use. The file is
    keyed by a hash of the float model's bytes and the recipe (options, calibration, onnx and
    onnxruntime versions), and written under a temporary name then renamed, so concurrent
    sweeps never read half a file."""
    q = workload.quantize
    source = zoo.resolve(workload.model)
    data = source.SerializeToString() if isinstance(source, onnx.ModelProto) else _read_bytes(source)
    light = workload.model.startswith("zoo:") and workload.model[4:] in zoo.LIGHT
    key = hashlib.sha256(data + f"|{q.recipe}|onnx {onnx.__version__}".encode()).hexdigest()[:24]
    stem = workload.model[4:] if workload.model.startswith("zoo:") else Path(workload.model).stem
    path = cache_dir() / f"{stem}.{q.format}.{'pc' if q.per_channel else 'pt'}.{key}.onnx"
    if path.is_file():
        return path
    if light:
        source = zoo.with_random_weights(onnx.load_from_string(data), seed=RANDOM_WEIGHTS_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        quantize_model(source, partial, format=q.format, per_channel=q.per_channel,
                       calibration_samples=CALIBRATION_SAMPLES, seed=CALIBRATION_SEED)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _onnxruntime_version(quantization: Quantization, at: str = "workloads") -> str:
    try:
        import onnxruntime  # optional: the `quantize` extra
    except ImportError:
        raise SpecError(f"{at}: quantize ({quantization.label}) needs onnxruntime: "
                        f"{INSTALL_HINT}") from None
    return onnxruntime.__version__


def _read_bytes(model) -> bytes:
    try:
        return Path(model).read_bytes()
    except OSError as exc:
        raise CompileError(f"{model}: cannot read model ({exc.strerror})") from None

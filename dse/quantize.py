"""`dse quantize`: static int8 quantisation of a float ONNX model through onnxruntime.quantization.

In: a model (path, ModelProto or zoo:NAME) and calibration inputs (seeded standard-normal
of the model's input shapes, or an .npz). Out: a QDQ or QOperator model written to `out`.
onnxruntime is imported lazily (the `quantize` extra). A model that cannot be read or
quantised is a CompileError; bad options or calibration data are a SpecError.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from compiler.errors import CompileError, SpecError
from compiler.frontend.onnx import read_model
from dse import zoo

FORMATS = ("qdq", "qoperator", "dynamic")
TYPES = ("uint8", "int8")
# QDQ per-channel needs DequantizeLinear's `axis` (opset 13); older models are converted up
# front so every output uses one version of QuantizeLinear/DequantizeLinear.
MIN_OPSET = 13
INSTALL_HINT = "dse quantize needs onnxruntime: pip install 'accel-dse[quantize]'"


def quantize(model, out, format="qdq", per_channel=False, calibration_samples=16,
             calibration_data=None, activation_type="uint8", weight_type="int8", seed=0) -> Path:
    """Quantise `model` and write it to `out`: statically (MinMax calibration) as QDQ or QOperator,
    or with format "dynamic" as onnxruntime's quantize_dynamic (weights offline, activations
    uint8 with a scale and zero point computed at run time; no calibration).

    Calibration uses `calibration_samples` seeded standard-normal inputs of the model's
    input shapes (symbolic or 0 dims -> 1), or the arrays in `calibration_data` (.npz,
    one key per graph input, optionally with a leading sample axis)."""
    _check_options(format, activation_type, weight_type, calibration_samples)
    q = _onnxruntime_quantization()
    proto, where = read_model(zoo.resolve(model))
    samples = (None if format == "dynamic" else _npz_samples(calibration_data, proto)
               if calibration_data is not None else _random_samples(proto, calibration_samples, seed))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dse-quantize-") as tmp, _quiet():
        normalised, prepared = Path(tmp) / "normalised.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(_normalise(proto, where), normalised)
        try:
            # a path, not a ModelProto: given a proto, quant_pre_process moves tensors out as
            # external data, Reshape's shape input included, and its optimiser then fails
            q.quant_pre_process(str(normalised), str(prepared), skip_symbolic_shape=True)
            if format == "dynamic":
                q.quantize_dynamic(str(prepared), str(out), per_channel=per_channel,
                                   weight_type=_quant_type(q, weight_type))
            else:
                q.quantize_static(str(prepared), str(out), _Reader(samples),
                                  quant_format=q.QuantFormat.QDQ if format == "qdq" else q.QuantFormat.QOperator,
                                  per_channel=per_channel, activation_type=_quant_type(q, activation_type),
                                  weight_type=_quant_type(q, weight_type))
        except (CompileError, SpecError):
            raise
        except Exception as exc:  # onnxruntime raises RuntimeError subclasses, ValueError, AssertionError
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CompileError(f"{where}: onnxruntime could not quantise the model ({reason})") from None
    _prune_opset_imports(out)
    return out


def op_counts(path) -> Counter:
    """Op type (domain-qualified when not ONNX's own) -> number of nodes in the model at `path`."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return Counter(f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                   for n in graph.node)


def summary(model, out, format="qdq", per_channel=False, activation_type="uint8",
            weight_type="int8", calibration="") -> str:
    """The one-screen report `dse quantize` prints after quantising `model` into `out`."""
    model = zoo.resolve(model)
    before = (model.ByteSize() if isinstance(model, onnx.ModelProto) else Path(model).stat().st_size)
    after = Path(out).stat().st_size
    counts = op_counts(out)
    quant = {k: v for k, v in counts.items() if _is_quantisation_op(k)}
    rest = {k: v for k, v in counts.items() if k not in quant}
    layout = {"qdq": "Quantize/DequantizeLinear around float ops", "qoperator": "integer operators (QLinear*)",
              "dynamic": "DynamicQuantizeLinear + MatMulInteger/ConvInteger, float outputs"}[format]
    granularity = "per-channel" if per_channel else "per-tensor"
    symmetry = "symmetric" if weight_type == "int8" else "asymmetric"      # onnxruntime's default
    lines = [f"format        {format} ({layout})",
             f"activations   {activation_type} (asymmetric, " + ("scale and zero point at run time)"
                                                          if format == "dynamic" else "MinMax calibration)"),
             f"weights       {weight_type}, {granularity}, {symmetry}",
             f"calibration   {'none (dynamic)' if format == 'dynamic' else calibration}",
             f"quantisation  {sum(quant.values())} nodes: {_histogram(quant)}",
             f"other nodes   {sum(rest.values())}: {_histogram(rest)}",
             f"size          {before:,d} -> {after:,d} bytes ({after / max(before, 1):.2f}x)",
             f"wrote         {out}"]
    return "\n".join(lines)


def calibration_description(calibration_samples=16, calibration_data=None, seed=0) -> str:
    if calibration_data is not None:
        return f"arrays from {calibration_data}"
    return f"{calibration_samples} seeded standard-normal samples (seed {seed})"


# ---- options and the onnxruntime import ---------------------------------------------------

def _check_options(format, activation_type, weight_type, calibration_samples) -> None:
    for name, value, allowed in (("format", format, FORMATS), ("activation_type", activation_type, TYPES),
                                 ("weight_type", weight_type, TYPES)):
        if value not in allowed:
            raise SpecError(f"quantize: {name} '{value}' is not one of {', '.join(allowed)}")
    if format == "dynamic" and activation_type != "uint8":
        raise SpecError("quantize: format 'dynamic' quantises activations to uint8 (onnxruntime's "
                        "DynamicQuantizeLinear); activation_type must be uint8")
    if not isinstance(calibration_samples, int) or calibration_samples < 1:
        raise SpecError(f"quantize: calibration_samples must be a positive integer, got {calibration_samples!r}")


def _onnxruntime_quantization():
    try:
        import onnxruntime.quantization as q  # optional: the `quantize` extra
    except ImportError:
        raise SpecError(INSTALL_HINT) from None
    return q


def _quant_type(q, name: str):
    return q.QuantType.QUInt8 if name == "uint8" else q.QuantType.QInt8


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantiser logs warnings (opset upgrades, ops left in float) through
    `logging`; they are not the user's to act on, so mute them while it runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _is_quantisation_op(op: str) -> bool:
    return (op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                   "MatMulInteger") or op.startswith(("QLinear", "com.microsoft:")))


def _histogram(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


# ---- the float model, made ready for the quantiser ----------------------------------------

def _runtime_inputs(graph: onnx.GraphProto) -> list:
    constants = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in constants]


def _normalise(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """A copy the quantiser handles cleanly: initializers are not graph inputs (IR v3
    models list them there, which stops Conv+BatchNorm fusion and makes the quantised
    model fail onnx.checker), opset >= 13, and two-input Sum is Add (which quantises)."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inputs = _runtime_inputs(model.graph)
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 7)          # IR 7 goes with opset 13
    for node in model.graph.node:
        if node.op_type == "Sum" and node.domain in ("", "ai.onnx") and len(node.input) == 2:
            node.op_type = "Add"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:                  # onnx raises its C++ checker's errors and others
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise CompileError(f"{where}: cannot convert opset {opset} to {MIN_OPSET} ({reason})") from None
    return model


def _prune_opset_imports(path: Path) -> None:
    """onnxruntime's optimiser adds imports of every domain it knows; keep the used ones."""
    model = onnx.load(str(path))
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" not in used)]
    if len(kept) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(kept)
        onnx.save(model, str(path))


# ---- calibration data ---------------------------------------------------------------------

class _Reader:
    """onnxruntime's CalibrationDataReader protocol (get_next) over a list of input dicts."""

    def __init__(self, samples: list):
        self._samples = iter(samples)

    def get_next(self):
        return next(self._samples, None)


def _declared(value: onnx.ValueInfoProto) -> tuple:
    """(numpy dtype, shape with None for symbolic or 0 dims) of a graph input."""
    tensor = value.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else np.dtype(np.float32)
    return dtype, tuple(d.dim_value if d.dim_value > 0 else None for d in tensor.shape.dim)


def _random_samples(proto: onnx.ModelProto, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    specs = [(v.name, *_declared(v)) for v in _runtime_inputs(proto.graph)]
    for name, dtype, _ in specs:
        if dtype.kind != "f":
            raise SpecError(f"quantize: input '{name}' is {dtype}, not float; seeded random calibration "
                            "needs float inputs, pass --calibration-data x.npz")
    return [{name: rng.standard_normal(tuple(d or 1 for d in shape)).astype(dtype)
             for name, dtype, shape in specs} for _ in range(count)]


def _npz_samples(path, proto: onnx.ModelProto) -> list:
    from dse.npz import read_arrays
    arrays = read_arrays(path, SpecError, "calibration data")
    inputs = {v.name: _declared(v) for v in _runtime_inputs(proto.graph)}
    if set(arrays) != set(inputs):
        raise SpecError(f"{path}: keys {sorted(arrays)} do not match the model's inputs {sorted(inputs)}")
    stacks = {}
    for name, (dtype, shape) in inputs.items():
        array = arrays[name]
        if _fits(array.shape, shape):
            array = array[None]
        elif not (array.ndim == len(shape) + 1 and _fits(array.shape[1:], shape)):
            expected = tuple(d if d else "N" for d in shape)
            raise SpecError(f"{path}: key '{name}' has shape {array.shape}; expected {expected} "
                            f"(one sample) or (S, {', '.join(map(str, expected))}) (S samples)")
        stacks[name] = array.astype(dtype, copy=False)
    counts = {name: len(array) for name, array in stacks.items()}
    if len(set(counts.values())) > 1:
        raise SpecError(f"{path}: the keys hold different numbers of samples {counts}")
    if 0 in counts.values():
        raise SpecError(f"{path}: no calibration samples (a leading sample axis of length 0)")
    return [{name: array[i] for name, array in stacks.items()} for i in range(min(counts.values(), default=1))]


def _fits(actual: tuple, declared: tuple) -> bool:
    return len(actual) == len(declared) and all(d is None or a == d for a, d in zip(actual, declared))

"""Hardware Spec types and their YAML loader (the bottom layer: targets, the
simulator and the explorer all read Specs).

A Spec is a tree of frozen dataclasses. Every field is declared once with its
unit in its name, a default, allowed values or a minimum, and a reason. Loading
validates everything: unknown keys, wrong types, out-of-range values each raise
SpecError naming the file, the field path and what is allowed. The `sweep:` and
`workloads:` sections are kept as raw data for the explorer (dse) to expand.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compiler.bundled import is_path, spec_names, spec_path, technology_names, technology_path
from compiler import targets
from compiler.errors import SpecError

# Every type a spec may name; the order fixes each type's code in a Program (fp32 = 0).
DATATYPES = ("fp32", "fp16", "bf16", "int8", "uint8", "int16", "int32")
DATATYPE_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "uint8": 8, "int16": 16, "int32": 32}
FLOAT_TYPES = ("fp32", "bf16", "fp16")
INTEGER_TYPES = ("int8", "uint8")
# The datapaths this version simulates (sim/kernels.py), as datatypes field -> allowed types.
# Float: fp32, or bf16/fp16 in with fp32 accumulation. Integer: 8-bit codes in DRAM and on
# chip; the matrix unit subtracts each operand's zero point into a 9-bit signed value
# (uint8 - zp and int8 - zp both fit), so either signedness runs and each layer's comes from
# the model's quantisation; products accumulate exactly in int32 and are requantised to 8-bit
# outputs as ONNX specifies (docs/int8_datapath.md). int16 is declared, not simulated.
DATAPATHS = {
    "float": {"input": FLOAT_TYPES, "weight": FLOAT_TYPES, "accumulator": ("fp32",), "output": FLOAT_TYPES},
    "integer": {"input": INTEGER_TYPES, "weight": INTEGER_TYPES, "accumulator": ("int32",),
                "output": INTEGER_TYPES},
}
DATAPATH_TEXT = ("float datapaths: fp32, bf16 or fp16 input, weight and output with an fp32 accumulator; "
                 "integer datapath: int8 or uint8 input, weight and output with an int32 accumulator")
# How the integer datapath requantises (sim/kernels.py store_tile_int, docs/int8_datapath.md)
REQUANTIZERS = ("float", "fixed_point")
# Off-chip memory families the technology tables price (hwspecs/tech/*.yaml, dram_pj_per_bit).
DRAM_TYPES = ("ddr4", "lpddr5", "hbm2")


def check_technology(value: str) -> str | None:
    """A `technology` value names a bundled table or an existing .yaml file (compiler/bundled.py)."""
    path = technology_path(value)
    if path.is_file():
        return None
    missing = f"no table file {path}; " if is_path(value) else ""
    return f"{missing}allowed: {', '.join(technology_names())} (bundled tables) or a path to a .yaml table"


def spec_field(default, doc: str, *, minimum=None, maximum=None, choices=None, check=None):
    """A spec field: default, one-line doc, and its constraint (minimum and/or maximum, choices,
    or a `check(value)` returning None when valid, else the 'allowed: ...' text). A maximum is a
    limit of this version, refused on load before anything is allocated; its declaration says why."""
    return field(default=default, metadata={"doc": doc, "min": minimum, "max": maximum, "choices": choices,
                                            "check": check})


@dataclass(frozen=True)
class DatatypeSpec:
    """One datapath (see DATAPATHS): fp32/bf16/fp16 with an fp32 accumulator, or 8-bit
    integer codes with an int32 accumulator; `input` chooses which."""
    input: str = spec_field("fp32", "element type of the graph inputs in DRAM and of the matrix unit's activation "
                    "operand on chip (integer datapath: its codes; tensors keep the model's types)",
                    choices=DATATYPES)
    weight: str = spec_field("fp32", "element type of the weights in DRAM and on chip",
                     choices=DATATYPES)
    accumulator: str = spec_field("fp32", "element type of the accumulator (and of the GEMM biases in DRAM): "
                          "fp32 for float inputs, int32 for integer", choices=DATATYPES)
    output: str = spec_field("fp32", "element type of every stored layer output (activations in DRAM)",
                     choices=DATATYPES)
    requantize: str = spec_field("float", "integer datapath: how int32 accumulators become 8-bit codes; float = "
                         "an fp32 multiply and round half to even, bit-identical to onnxruntime; "
                         "fixed_point = a Q31 multiplier and rounding right shift (gemmlowp/TFLite), "
                         "which differs from onnxruntime by one code in a few outputs per million",
                         choices=REQUANTIZERS)




def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def did_you_mean(name, allowed, prefix: str = "") -> str:
    """"did you mean 'PREFIX+X'? " for the allowed name X closest to a misspelt `name`, else ''."""
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    return f"did you mean '{prefix}{close[0]}'? " if close else ""


def _as_float(value) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond every float: refused below as not finite
        return math.inf if value > 0 else -math.inf


def bounds_text(meta: dict) -> str:
    """A numeric field's allowed range, e.g. '>= 1 and <= 4096'."""
    parts = [f"{op} {meta[k]}" for op, k in ((">=", "min"), ("<=", "max")) if meta.get(k) is not None]
    return " and ".join(parts)


def _check_scalar(value, tp, path: str, meta: dict, where: str):
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = _as_float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, (str, dict)) for v in value)
        value = tuple(value) if ok else value
    elif tp is dict:
        ok = value is None or isinstance(value, dict)
    else:  # pragma: no cover - a declaration bug, not user input
        raise TypeError(f"unsupported spec field type {tp}")
    if not ok:
        raise SpecError(f"{where}: field '{path}' must be {_type_name(tp)}, got {value!r}")
    choices, minimum, maximum = meta.get("choices"), meta.get("min"), meta.get("max")
    if choices and value not in choices:
        raise SpecError(f"{where}: field '{path}' is {value!r}; {did_you_mean(value, choices)}"
                        f"allowed: {', '.join(choices)}")
    if tp is float and not math.isfinite(value):
        raise SpecError(f"{where}: field '{path}' is {value!r}; must be a finite number "
                        f"{bounds_text(meta) or '(not nan or inf)'}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SpecError(f"{where}: field '{path}' is {value!r}; must be {bounds_text(meta)}")
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise SpecError(f"{where}: field '{path}' is {value!r}; {problem}")
    return value


def build(cls, data: Any, where: str, prefix: str = ""):
    """Build dataclass `cls` from a mapping, validating every key and value."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: '{prefix or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)       # YAML keys may be numbers or null too
    if unknown:
        path = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        hint = did_you_mean(unknown[0], fields, f"{prefix}." if prefix else "")
        raise SpecError(f"{where}: unknown field '{path}'; {hint}allowed here: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, where, path)
        else:
            kwargs[name] = _check_scalar(value, tp, path, fields[name].metadata, where)
    return cls(**kwargs)


def check_datatypes(dt: DatatypeSpec, where: str) -> None:
    """The datatypes must form one simulated datapath; `dt.input` chooses which (a target's
    `validate` calls this for its `datatypes` section)."""
    datapath = DATAPATHS["integer" if dt.input in INTEGER_TYPES else "float"]
    for name in ("input", "weight", "accumulator", "output"):
        allowed = FLOAT_TYPES + INTEGER_TYPES if name == "input" else datapath[name]
        value = getattr(dt, name)
        if value in allowed:
            continue
        note = "" if value in FLOAT_TYPES + INTEGER_TYPES + ("int32",) else " (declared, not simulated)"
        context = "" if name == "input" else f"with {dt.input} input "
        raise SpecError(f"{where}: field 'datatypes.{name}' is {value!r}{note}; {context}this version "
                        f"simulates {', '.join(allowed)} there ({DATAPATH_TEXT})")
    if dt.requantize != "float" and dt.input not in INTEGER_TYPES:
        raise SpecError(f"{where}: field 'datatypes.requantize' is {dt.requantize!r}, which applies to the "
                        f"integer datapath; with {dt.input} input use 'float' (the default)")


def from_dict(data: dict, where: str = "<spec>"):
    """Validate a parsed YAML mapping and return the target's Spec."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec must be a YAML mapping at the top level")
    name = data.get("target", targets.DEFAULT_TARGET)
    try:
        target = targets.get(name)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    spec = build(target.spec, data, where)
    if hasattr(spec, "validate"):
        spec.validate(where)
    return spec


def load(path: str | Path):
    """Load and validate a hardware spec: a YAML file, or a bundled spec by name (compiler/bundled.py)."""
    path = spec_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror}); "
                        f"bundled specs: {', '.join(spec_names())}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:                      # PyYAML composes nested collections recursively
        raise SpecError(f"{path}: YAML nested too deeply to be a spec") from None
    return from_dict(_tables_beside(data, path.parent), str(path))


def _tables_beside(data, folder: Path):
    """The spec mapping with each relative technology table path (`technology`, and the values
    of a swept `technology`) made absolute from the spec file's folder, so a spec finds its own
    table from any working directory, and so do sweep workers wherever they run."""
    def anchored(value):
        if isinstance(value, str) and is_path(value) and not Path(value).is_absolute():
            return os.path.abspath(folder / value)
        return value

    if not isinstance(data, dict):
        return data
    data = dict(data)
    if "technology" in data:
        data["technology"] = anchored(data["technology"])
    sweep = data.get("sweep")
    parameters = sweep.get("parameters") if isinstance(sweep, dict) else None
    if isinstance(parameters, dict) and isinstance(parameters.get("technology"), list):
        parameters = dict(parameters, technology=[anchored(v) for v in parameters["technology"]])
        data["sweep"] = dict(sweep, parameters=parameters)
    return data


def replace_path(spec, path: str, value, _full: str = ""):
    """Return a copy of `spec` with the dotted field `path` set to `value`, validated."""
    full = _full or path
    head, _, rest = path.partition(".")
    names = {f.name for f in dataclasses.fields(spec)}
    if head not in names:
        hint = did_you_mean(head, names, full[:len(full) - len(path)])
        raise SpecError(f"sweep: unknown field '{full}'; {hint}allowed here: {', '.join(sorted(names))}")
    child = getattr(spec, head)
    if rest:
        if not dataclasses.is_dataclass(child):
            raise SpecError(f"sweep: field '{full}': '{head}' has no sub-fields")
        changed = dataclasses.replace(spec, **{head: replace_path(child, rest, value, full)})
        if not _full and hasattr(changed, "validate"):      # checks across a section's fields
            changed.validate("sweep")
        return changed
    if dataclasses.is_dataclass(child):
        raise SpecError(f"sweep: field '{full}' is a section; name one of its fields")
    meta = {f.name: f.metadata for f in dataclasses.fields(spec)}[head]
    tp = typing.get_type_hints(type(spec))[head]
    return dataclasses.replace(spec, **{head: _check_scalar(value, tp, full, meta, "sweep")})


def to_dict(spec) -> dict:
    return dataclasses.asdict(spec)

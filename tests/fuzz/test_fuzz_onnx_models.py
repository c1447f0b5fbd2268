"""Fuzz the ONNX front end with damaged copies of zoo:mlp and zoo:small_cnn, and of int8 copies
of them made by dse.quantize (small_cnn in QDQ and QOperator form, a smaller mlp quantised
dynamically), read from disk by `compile_graph` and, when that succeeds, lowered by
`dse.compile` for the fp32 or int8 spec:
  * bytes: the serialized file truncated, or with bytes flipped, set, inserted, deleted or
    replaced by huge varints (mostly outside the weight blobs, where they change structure);
  * fields: the decoded protobuf with a field set to an odd value (a huge or negative dim,
    another tensor's name, an unknown op type, NaN), a repeated element deleted or duplicated,
    then serialized again, so the file parses and the damage reaches the converters.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import dse
from compiler.pipeline import compile_graph
from dse import zoo
from dse.quantize import quantize
from tests.fuzz.contract import FAST, SLOW, holds, rarely

ROOT = Path(__file__).resolve().parents[2]
FLOAT_MODELS = ("mlp", "small_cnn")
INT8_MODELS = {"small_cnn_qdq": ("small_cnn", "qdq"), "small_cnn_qoperator": ("small_cnn", "qoperator"),
               "mlp_dynamic": ("mlp", "dynamic")}
MODELS = FLOAT_MODELS + tuple(INT8_MODELS)
SPEC = {False: str(ROOT / "hwspecs" / "systolic.yaml"), True: str(ROOT / "hwspecs" / "systolic_int8.yaml")}
# Varints that make a length, a dimension or an enum huge or negative.
VARINTS = (b"\xff\xff\xff\xff\x0f", b"\xff" * 9 + b"\x01", b"\x80" * 9 + b"\x01", b"\xe8\x07")
INTS = (0, 1, -1, 2, 3, 7, 2**31 - 1, 2**31, -2**31, 2**62, -2**63, 10**12)
FLOATS = (0.0, -1.0, 1e30, 1e-30, float("nan"), float("inf"), -float("inf"))
STRINGS = ("", "x", "w0", "fc0", "c0", "probs", "logits", "Conv", "Gemm", "Relu", "Softmax", "Hardmax",
           "QLinearConv", "DequantizeLinear", "Reshape", "com.microsoft", "ai.onnx.ml", "axis", "pads",
           "kernel_shape", "a\nb")


@functools.lru_cache(maxsize=None)
def seed(name: str) -> bytes:
    """The serialized model a fuzzed file starts from."""
    if name in FLOAT_MODELS:
        return zoo.BUILDERS[name]().SerializeToString()
    source, form = INT8_MODELS[name]
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as tmp:
        folder = Path(tmp)
        onnx.save(zoo.small_cnn() if source == "small_cnn" else zoo.mlp(sizes=(16, 8, 4)), folder / "float.onnx")
        return quantize(folder / "float.onnx", folder / "int8.onnx", format=form, calibration_samples=2).read_bytes()


@functools.lru_cache(maxsize=None)
def serialized(name: str) -> tuple:
    """(bytes, offsets outside every initializer's raw_data blob) of a seed model."""
    data = seed(name)
    model = onnx.ModelProto.FromString(data)
    inside = bytearray(len(data))
    for tensor in model.graph.initializer:
        start = data.find(tensor.raw_data)
        inside[start:start + len(tensor.raw_data)] = b"\1" * len(tensor.raw_data)
    return data, tuple(i for i, flag in enumerate(inside) if not flag)


# ---- byte edits ------------------------------------------------------------------------------

@st.composite
def byte_damage(draw) -> tuple:
    """(model name, edits), each edit (kind, offset, argument); ("truncate", n, None) cuts the file."""
    name = draw(st.sampled_from(MODELS))
    data, structure = serialized(name)
    if rarely(draw, 4):
        return name, (("truncate", draw(st.integers(0, len(data) - 1)), None),)
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1)) if rarely(draw, 10) else draw(st.sampled_from(structure))
        kind = draw(st.sampled_from(("flip", "set", "insert", "delete", "varint")))
        argument = {"flip": st.integers(0, 7), "set": st.integers(0, 255), "insert": st.binary(min_size=1, max_size=8),
                    "delete": st.integers(1, 8), "varint": st.sampled_from(VARINTS)}[kind]
        edits.append((kind, at, draw(argument)))
    return name, tuple(edits)


def damaged_bytes(name: str, edits) -> bytes:
    data = bytearray(serialized(name)[0])
    for kind, at, argument in edits:
        at = min(at, len(data) - 1)
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << argument
        elif kind == "set":
            data[at] = argument
        elif kind == "insert":
            data[at:at] = argument
        elif kind == "delete":
            del data[at:at + argument]
        else:
            data[at:at + 1] = argument
    return bytes(data)


# ---- field edits -----------------------------------------------------------------------------

def _locations(message, out: list) -> list:
    """(message, field, index or None) of every field below `message`, weights' bulk data
    excluded (a changed weight value is not damage)."""
    for field, value in message.ListFields():
        if field.name in ("raw_data", "float_data", "doc_string"):
            continue
        single = not hasattr(value, "__len__") or isinstance(value, (str, bytes)) or hasattr(value, "ListFields")
        if field.type == field.TYPE_MESSAGE:
            for item in [value] if single else value:
                _locations(item, out)
        for index in [None] if single else range(len(value)):
            out.append((message, field, index))
    return out


@st.composite
def field_damage(draw) -> tuple:
    """(model name, edits), each edit (location number, action, value) applied in turn."""
    value = st.one_of(st.sampled_from(INTS), st.integers(-5, 300), st.sampled_from(FLOATS),
                      st.sampled_from(STRINGS))
    edits = draw(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(("set", "set", "delete", "copy")), value),
                          min_size=1, max_size=3))
    return draw(st.sampled_from(MODELS)), tuple(edits)


def damaged_fields(name: str, edits) -> bytes:
    model = onnx.ModelProto.FromString(seed(name))
    for number, action, value in edits:
        locations = _locations(model, [])
        message, field, index = locations[number % len(locations)]
        container = getattr(message, field.name)
        try:
            if action == "delete" and index is not None:
                del container[index]
            elif action == "copy" and index is not None:
                container.add().CopyFrom(container[index]) if hasattr(container, "add") else container.append(
                    container[index])
            elif field.type != field.TYPE_MESSAGE and index is None:
                setattr(message, field.name, value)
            elif field.type != field.TYPE_MESSAGE:
                container[index] = value
        except (TypeError, ValueError):
            pass                        # a value of the wrong type for this field: no edit
    return model.SerializeToString()


# ---- the contract ----------------------------------------------------------------------------

def check(tmp_path_factory, case, damage) -> None:
    path = tmp_path_factory.mktemp("model") / "fuzzed.onnx"
    path.write_bytes(damage(*case))
    if holds(compile_graph, str(path)) is not None:
        holds(dse.compile, str(path), SPEC[case[0] in INT8_MODELS])


@FAST
@given(case=byte_damage())
@example(case=("small_cnn", (("set", 300, 255),)))          # op type not UTF-8: bytes, not str
@example(case=("mlp", (("flip", 182, 4), ("flip", 143, 4))))   # elem_type no ONNX type has
@example(case=("small_cnn", (("flip", 9, 2),)))              # a newline inside a tensor name
def test_damaged_model_bytes_are_compiled_or_refused(tmp_path_factory, case):
    check(tmp_path_factory, case, damaged_bytes)


@FAST
@given(case=field_damage())
@example(case=("mlp", ((5226, "delete", 0.0),) * 3))                   # a node left without inputs
@example(case=("mlp", ((1, "set", "logits"), (1, "set", ""))))          # an input renamed ''
@example(case=("small_cnn", ((46, "set", "c0"), (1093, "copy", "Reshape"))))   # Reshape 0 past the rank
def test_damaged_model_fields_are_compiled_or_refused(tmp_path_factory, case):
    check(tmp_path_factory, case, damaged_fields)


@pytest.mark.slow
@SLOW
@given(case=byte_damage())
def test_damaged_model_bytes_many(tmp_path_factory, case):
    check(tmp_path_factory, case, damaged_bytes)


@pytest.mark.slow
@SLOW
@given(case=field_damage())
def test_damaged_model_fields_many(tmp_path_factory, case):
    check(tmp_path_factory, case, damaged_fields)

"""Spec loading: every bundled spec loads; bad specs fail with file, field path and allowed values."""
from pathlib import Path

import pytest

from compiler import spec as specmod
from compiler.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "hwspecs").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_specs_load(path):
    spec = specmod.load(path)
    assert spec.array.rows >= 1 and spec.clock_ghz > 0


def _load_text(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return specmod.load(path), str(path)


def test_unknown_key_names_file_path_and_allowed(tmp_path):
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, "array:\n  rowz: 8\n")
    msg = str(err.value)
    assert "bad.yaml" in msg and "array.rowz" in msg and "rows" in msg and "cols" in msg


def test_unknown_dataflow_lists_choices(tmp_path):
    with pytest.raises(SpecError, match="array.dataflow.*weight_stationary, output_stationary"):
        _load_text(tmp_path, "array:\n  dataflow: diagonal\n")


def test_negative_size_rejected(tmp_path):
    with pytest.raises(SpecError, match="memory.input_scratchpad_kib.*>="):
        _load_text(tmp_path, "memory:\n  input_scratchpad_kib: -4\n")


def test_wrong_type_rejected(tmp_path):
    with pytest.raises(SpecError, match="array.rows.*int"):
        _load_text(tmp_path, "array:\n  rows: eight\n")


def test_unimplemented_datatype_is_clear(tmp_path):
    with pytest.raises(SpecError, match="datatypes.weight.*int8.*fp32 input.*fp32, bf16, fp16"):
        _load_text(tmp_path, "datatypes:\n  weight: int8\n")
    with pytest.raises(SpecError, match="datatypes.accumulator.*bf16.*simulates fp32 there"):
        _load_text(tmp_path, "datatypes:\n  accumulator: bf16\n")
    spec = specmod.from_dict({})
    assert specmod.replace_path(spec, "datatypes.input", "bf16").datatypes.input == "bf16"
    with pytest.raises(SpecError, match="sweep.*datatypes.weight.*int8"):
        specmod.replace_path(spec, "datatypes.weight", "int8")


INT8 = {"input": "uint8", "weight": "int8", "accumulator": "int32", "output": "uint8"}


@pytest.mark.parametrize("datatypes", [
    INT8, {**INT8, "input": "int8"}, {**INT8, "weight": "uint8", "output": "int8"},
    {"input": "bf16", "weight": "fp16", "accumulator": "fp32", "output": "fp32"},
], ids=lambda d: "-".join(d.values()))
def test_float_and_integer_datapaths_load(datatypes):
    spec = specmod.from_dict({"datatypes": datatypes})
    assert spec.integer_datapath == (datatypes["input"] in ("int8", "uint8"))


@pytest.mark.parametrize("datatypes, field, allowed", [
    ({**INT8, "accumulator": "fp32"}, "accumulator", "simulates int32 there"),
    ({**INT8, "weight": "fp32"}, "weight", "simulates int8, uint8 there"),
    ({**INT8, "output": "bf16"}, "output", "simulates int8, uint8 there"),
    ({**INT8, "output": "int32"}, "output", "simulates int8, uint8 there"),
    ({"input": "fp32", "weight": "int8"}, "weight", "simulates fp32, bf16, fp16 there"),
    ({"input": "bf16", "accumulator": "int32"}, "accumulator", "simulates fp32 there"),
    ({"input": "fp32", "output": "uint8"}, "output", "simulates fp32, bf16, fp16 there"),
    ({**INT8, "input": "int16"}, "input", ("(declared, not simulated); this version simulates "
                                           "fp32, bf16, fp16, int8, uint8 there")),
    ({**INT8, "weight": "int16"}, "weight", "(declared, not simulated)"),
])
def test_mixed_datapaths_are_refused_naming_file_field_and_allowed(tmp_path, datatypes, field, allowed):
    text = "datatypes:\n" + "".join(f"  {k}: {v}\n" for k, v in datatypes.items())
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    msg = str(err.value)
    assert "bad.yaml" in msg and f"field 'datatypes.{field}' is '{datatypes[field]}'" in msg
    assert allowed in msg and "integer datapath: int8 or uint8" in msg


def test_sweeping_an_integer_spec_keeps_one_datapath():
    spec = specmod.from_dict({"datatypes": INT8})
    assert specmod.replace_path(spec, "datatypes.output", "int8").datatypes.output == "int8"
    with pytest.raises(SpecError, match="sweep: field 'datatypes.output' is 'fp32'; with uint8 input"):
        specmod.replace_path(spec, "datatypes.output", "fp32")


def test_defaults_and_replace_path():
    spec = specmod.from_dict({})
    assert spec.array.dataflow == "weight_stationary"
    changed = specmod.replace_path(spec, "array.rows", 8)
    assert changed.array.rows == 8 and spec.array.rows == 32
    with pytest.raises(SpecError, match="array.rows"):
        specmod.replace_path(spec, "array.rows", 0)

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
    with pytest.raises(SpecError, match="datatypes.weight.*int8.*fp32, bf16, fp16"):
        _load_text(tmp_path, "datatypes:\n  weight: int8\n")
    with pytest.raises(SpecError, match="datatypes.accumulator.*bf16.*simulates fp32 there"):
        _load_text(tmp_path, "datatypes:\n  accumulator: bf16\n")
    spec = specmod.from_dict({})
    assert specmod.replace_path(spec, "datatypes.input", "bf16").datatypes.input == "bf16"
    with pytest.raises(SpecError, match="sweep.*datatypes.weight.*int8"):
        specmod.replace_path(spec, "datatypes.weight", "int8")


def test_defaults_and_replace_path():
    spec = specmod.from_dict({})
    assert spec.array.dataflow == "weight_stationary"
    changed = specmod.replace_path(spec, "array.rows", 8)
    assert changed.array.rows == 8 and spec.array.rows == 32
    with pytest.raises(SpecError, match="array.rows"):
        specmod.replace_path(spec, "array.rows", 0)

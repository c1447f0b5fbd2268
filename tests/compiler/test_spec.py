"""Spec loading: every bundled spec loads; bad specs fail with file, field path and allowed values."""
from pathlib import Path

import pytest

from compiler import bundled
from compiler import spec as specmod
from compiler.targets.systolic import spec as systolic_spec
from compiler.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "hwspecs").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_specs_load(path):
    spec = specmod.load(path)
    assert spec.peak_macs_per_cycle >= 1 and spec.clock_ghz > 0


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


# ---- bundled specs and technology tables: found by name from any folder --------------------

def test_bundled_spec_loads_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "systolic" in bundled.spec_names() and bundled.DEFAULT_SPEC in bundled.spec_names()
    assert specmod.load("systolic_int8") == specmod.load(ROOT / "hwspecs" / "systolic_int8.yaml")
    assert bundled.technology_path("45nm").is_file() and set(bundled.technology_names()) >= {"45nm", "7nm"}


def test_unknown_spec_name_lists_the_bundled_ones():
    with pytest.raises(SpecError, match="'systolc' is neither a bundled spec .*gpu_a100_like, .*systolic, systolic_bf16.*path"):
        specmod.load("systolc")
    with pytest.raises(SpecError, match="nope.yaml: cannot read spec file.*bundled specs: .*gpu_a100_like, .*systolic"):
        specmod.load("nope.yaml")


def test_relative_technology_path_is_relative_to_the_spec_file(tmp_path, monkeypatch):
    (tmp_path / "specs" / "tables").mkdir(parents=True)
    (tmp_path / "specs" / "tables" / "mine.yaml").write_bytes(bundled.technology_path("7nm").read_bytes())
    (tmp_path / "specs" / "s.yaml").write_text(
        "technology: tables/mine.yaml\nsweep:\n  parameters:\n    technology: [45nm, tables/mine.yaml]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = specmod.load("../specs/s.yaml")
    table = str(tmp_path / "specs" / "tables" / "mine.yaml")
    assert spec.technology == table and spec.sweep["parameters"]["technology"] == ["45nm", table]


def test_unknown_technology_lists_the_bundled_tables(tmp_path):
    with pytest.raises(SpecError, match=r"'technology' is '3nm'; allowed: 45nm, 7nm \(bundled tables\)"):
        _load_text(tmp_path, "technology: 3nm\n")
    with pytest.raises(SpecError, match=r"'technology' is '.*gone.yaml'; no table file .*gone.yaml; allowed: 45nm"):
        _load_text(tmp_path, "technology: gone.yaml\n")


@pytest.mark.parametrize("text, path, allowed", [
    ("clock_ghz: .nan\n", "clock_ghz", "must be a finite number >= 0.001"),
    ("clock_ghz: -.inf\n", "clock_ghz", "must be a finite number >= 0.001"),
    ("memory:\n  dram_gbps: .inf\n", "memory.dram_gbps", "must be a finite number >= 0.001"),
    ("memory:\n  accumulator_kib: .NaN\n", "memory.accumulator_kib", "finite number >= 0.001 and <= 1048576"),
])
def test_non_finite_numbers_are_refused_with_file_field_and_range(tmp_path, text, path, allowed):
    """A NaN clock used to load and give `latency nan ms` with exit 0."""
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    msg = str(err.value)
    assert "bad.yaml" in msg and f"field '{path}'" in msg and allowed in msg
    with pytest.raises(SpecError, match="finite"):
        specmod.replace_path(specmod.from_dict({}), path, float("nan"))


@pytest.mark.parametrize("text, message", [
    ("array:\n  rows: 100000\n", "field 'array.rows' is 100000; must be >= 1 and <= 4096"),
    ("array:\n  cols: 4097\n", "field 'array.cols' is 4097; must be >= 1 and <= 4096"),
    ("memory:\n  input_scratchpad_kib: 1.0e+9\n", "must be >= 0.001 and <= 1048576"),
])
def test_sizes_beyond_their_declared_limit_are_refused_on_load(tmp_path, text, message):
    """An extra zero in a scratchpad size used to reach the simulator's allocation (95 GiB)."""
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    assert "bad.yaml" in str(err.value) and message in str(err.value)


def test_every_declared_maximum_sits_beside_a_minimum():
    import dataclasses

    for cls in (systolic_spec.ArraySpec, systolic_spec.MemorySpec, systolic_spec.VectorSpec, systolic_spec.SystolicSpec):
        for f in dataclasses.fields(cls):
            if f.metadata.get("max") is not None:
                assert f.metadata["min"] is not None and f.metadata["min"] <= f.default <= f.metadata["max"]


@pytest.mark.parametrize("text, hint", [
    ("clokc_ghz: 1\n", "unknown field 'clokc_ghz'; did you mean 'clock_ghz'? allowed here: name,"),
    ("array:\n  rowz: 8\n", "unknown field 'array.rowz'; did you mean 'array.rows'? allowed here: rows, cols"),
    ("array:\n  dataflow: weight_stationry\n", "did you mean 'weight_stationary'? allowed: weight_stationary,"),
    ("memory:\n  dram_type: hbm\n", "did you mean 'hbm2'? allowed: ddr4, lpddr5, hbm2"),
])
def test_misspelt_names_suggest_the_closest_and_list_the_allowed(tmp_path, text, hint):
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    assert "bad.yaml" in str(err.value) and hint in str(err.value)

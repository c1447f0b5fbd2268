"""Energy/area model: the technology tables' figures are pinned to their sources, the
model scales with capacity, width, datatype and node as documented in sim/energy.py,
power = energy / latency on a real run, and bad tables or fields are SpecErrors."""
import math
from pathlib import Path

import numpy as np
import pytest

import dse
from compiler import spec as specmod
from compiler.errors import SpecError
from sim import energy
from sim.targets import systolic as systolic_sim
from sim.stats import definitions

ROOT = Path(__file__).resolve().parents[2]
T45 = energy.load_technology(str(ROOT / "hwspecs/tech/45nm.yaml"))
T7 = energy.load_technology(str(ROOT / "hwspecs/tech/7nm.yaml"))
ENERGY_45_TO_7 = 0.06842   # Stillmaker & Baas 2017, as derived in hwspecs/tech/7nm.yaml
AREA_45_TO_7 = 0.059


@pytest.mark.parametrize("path", sorted((ROOT / "hwspecs/tech").glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_tables_load(path):
    tech = energy.load_technology(str(path))
    assert set(tech.multiply_pj) == set(specmod.DATATYPES)
    assert set(tech.dram_pj_per_bit) == set(specmod.DRAM_TYPES)


def test_45nm_pins_horowitz_figures():
    assert energy.mac_pj(T45, "fp32", "fp32", "fp32") == pytest.approx(3.7 + 0.9)
    assert energy.mac_pj(T45, "int8", "int8", "int32") == pytest.approx(0.2 + 0.1)
    assert energy.mac_pj(T45, "fp16", "fp16", "fp32") == pytest.approx(1.1 + 0.9)
    assert (T45.multiply_pj["int32"], T45.add_pj["int8"], T45.add_pj["fp16"]) == (3.1, 0.03, 0.4)
    assert (T45.multiply_um2["int8"], T45.multiply_um2["int32"], T45.multiply_um2["fp16"],
            T45.multiply_um2["fp32"]) == (282, 3495, 1640, 7700)
    assert (T45.add_um2["int8"], T45.add_um2["int32"], T45.add_um2["fp16"],
            T45.add_um2["fp32"]) == (36, 137, 1360, 4184)
    assert energy.sram_64bit_pj(T45, [8, 32, 1024]) == pytest.approx([10, 20, 100])
    assert T45.dram_pj_per_bit["ddr4"] == pytest.approx(1300 / 64, rel=1e-3)  # 1.3 nJ per 64 bits
    assert T45.dram_pj_per_bit["hbm2"] == 3.97                              # O'Connor et al. 2017


def test_bf16_derived_from_fp16_by_significand_width():
    assert T45.multiply_pj["bf16"] == pytest.approx(1.1 * (8 / 11) ** 2, rel=1e-3)
    assert T45.add_pj["bf16"] == pytest.approx(0.4 * 8 / 11, rel=1e-3)


@pytest.mark.parametrize("tech", [T45, T7], ids=["45nm", "7nm"])
def test_mac_energy_and_pe_area_order_by_datatype(tech):
    int8 = ("int8", "int8", "int32")
    bf16 = ("bf16", "bf16", "fp32")
    fp32 = ("fp32", "fp32", "fp32")
    assert energy.mac_pj(tech, *int8) < energy.mac_pj(tech, *bf16) < energy.mac_pj(tech, *fp32)
    assert energy.pe_area_um2(tech, *int8) < energy.pe_area_um2(tech, *bf16) < energy.pe_area_um2(tech, *fp32)
    # the multiplier follows the wider operand
    assert energy.mac_pj(tech, "int8", "fp32", "fp32") == energy.mac_pj(tech, *fp32)


def test_7nm_is_45nm_scaled_by_the_cited_factors():
    for table, factor in (("multiply_pj", ENERGY_45_TO_7), ("add_pj", ENERGY_45_TO_7),
                          ("multiply_um2", AREA_45_TO_7), ("add_um2", AREA_45_TO_7)):
        for dtype in specmod.DATATYPES:
            seven, base = getattr(T7, table)[dtype], getattr(T45, table)[dtype]
            assert seven == pytest.approx(base * factor, rel=5e-3), (table, dtype)
    assert np.allclose(T7.sram_read_64bit_pj, np.array(T45.sram_read_64bit_pj) * ENERGY_45_TO_7, rtol=5e-3)
    # Stillmaker & Baas energy polynomials: HP45 at 0.9 V, HP7 at 0.7 V
    e45 = 1.018 * 0.9 ** 2 - 0.3107 * 0.9 + 0.1539
    e7 = 0.1776 * 0.7 ** 2 - 0.09097 * 0.7 + 0.02447
    assert e7 / e45 == pytest.approx(ENERGY_45_TO_7, rel=1e-3)


def test_7nm_cheaper_and_smaller_than_45nm():
    for args in (("int8", "int8", "int32"), ("bf16", "bf16", "fp32"), ("fp32", "fp32", "fp32")):
        assert energy.mac_pj(T7, *args) < energy.mac_pj(T45, *args)
        assert energy.pe_area_um2(T7, *args) < energy.pe_area_um2(T45, *args)
    assert energy.sram_pj_per_byte(T7, 256, 4, 64) < energy.sram_pj_per_byte(T45, 256, 4, 64)
    assert energy.sram_area_mm2(T7, 256) < energy.sram_area_mm2(T45, 256)


def test_sram_energy_grows_with_capacity_as_a_power_law_through_the_points():
    caps = np.geomspace(0.5, 8192, 40)
    e = energy.sram_64bit_pj(T45, caps)
    assert np.all(np.diff(e) > 0)
    assert float(energy.sram_64bit_pj(T45, 16)) == pytest.approx(10 * math.sqrt(2))  # on the sqrt segment
    assert float(energy.sram_64bit_pj(T45, 2)) == pytest.approx(5)                  # extended below 8 KiB
    slope = math.log(100 / 20) / math.log(1024 / 32)
    assert float(energy.sram_64bit_pj(T45, 4096)) == pytest.approx(100 * 4 ** slope)  # extended above 1 MiB


def test_sram_energy_scales_with_access_width():
    # a 128-bit word is two 64-bit slices of half the capacity each
    assert float(energy.sram_access_pj(T45, 16, 128)) == pytest.approx(2 * 10)
    assert float(energy.sram_access_pj(T45, 32, 64)) == pytest.approx(20)
    widths = np.array([64, 128, 256, 512, 1024])
    per_access = energy.sram_access_pj(T45, 256, widths)
    assert np.all(np.diff(per_access) > 0)                       # wider access costs more ...
    assert np.all(np.diff(per_access / (widths / 8)) < 0)        # ... but less per byte
    # banking: each access touches one bank of capacity / banks
    assert energy.sram_pj_per_byte(T45, 256, 4, 64) == pytest.approx(energy.sram_pj_per_byte(T45, 64, 1, 64))


def test_sram_area_linear_in_capacity():
    assert energy.sram_area_mm2(T45, 1) == pytest.approx(8192 * 0.346 / 0.7 / 1e6)
    assert energy.sram_area_mm2(T7, 1) == pytest.approx(8192 * 0.027 / 0.7 / 1e6)
    assert energy.sram_area_mm2(T45, 512) == pytest.approx(2 * energy.sram_area_mm2(T45, 256))


@pytest.mark.parametrize("tech", [T45, T7], ids=["45nm", "7nm"])
def test_dram_types_ordered_as_sources_say(tech):
    d = tech.dram_pj_per_bit
    assert d["hbm2"] < d["lpddr5"] < d["ddr4"]


def _spec(**fields):
    spec = specmod.from_dict({})
    for path, value in fields.items():
        spec = specmod.replace_path(spec, path.replace("__", "."), value)
    return spec


def test_pe_array_area_scales_with_pe_count():
    big = systolic_sim.unit_costs(_spec(array__rows=64, array__cols=64)).area_mm2["pe_array"]
    small = systolic_sim.unit_costs(_spec(array__rows=32, array__cols=32)).area_mm2["pe_array"]
    assert big == pytest.approx(4 * small)
    assert small == pytest.approx(1024 * (7700 + 4184 + 96 * 4.522) / 1e6)


def test_unit_costs_follow_dram_type_and_technology():
    ddr4, hbm2 = systolic_sim.unit_costs(_spec()), systolic_sim.unit_costs(_spec(memory__dram_type="hbm2"))
    assert hbm2.byte_j["dram"] / ddr4.byte_j["dram"] == pytest.approx(3.97 / 20.31)
    assert ddr4.byte_j["dram"] == pytest.approx(8 * 20.31e-12)
    seven = systolic_sim.unit_costs(_spec(technology="7nm"))
    assert seven.mac_j < ddr4.mac_j and sum(seven.area_mm2.values()) < sum(ddr4.area_mm2.values())


@pytest.fixture(scope="module")
def mlp_stats():
    return dse.run("zoo:mlp", hw="hwspecs/systolic.yaml", timing_only=True).stats


def test_power_is_energy_over_latency_on_a_real_run(mlp_stats):
    s = mlp_stats
    assert s.energy_j > 0 and s.latency_s > 0
    assert s.power_w == pytest.approx(s.energy_j / s.latency_s)
    assert s.edp_j_s == pytest.approx(s.energy_j * s.latency_s)
    assert s.energy_j == pytest.approx(sum(s.energy_by_component_j.values()))
    assert s.area_mm2 == pytest.approx(sum(s.area_by_component_mm2.values()))
    costs = systolic_sim.unit_costs(specmod.load(ROOT / "hwspecs/systolic.yaml"))
    assert s.energy_by_component_j["pe_array"] == pytest.approx(s.macs * costs.mac_j)
    assert s.energy_by_component_j["dram"] == pytest.approx(s.bytes["dram"] * costs.byte_j["dram"])
    assert s.energy_by_component_j["leakage"] == pytest.approx(costs.leakage_w * s.latency_s)
    dynamic = s.energy_j - s.energy_by_component_j["leakage"]
    assert sum(layer["energy_j"] for layer in s.layers) == pytest.approx(dynamic)


def test_flat_row_has_energy_columns_each_defined(mlp_stats):
    row = mlp_stats.flat()
    wanted = ["energy_j", "area_mm2", "power_w", "edp_j_s"]
    wanted += [f"energy_{c}_j" for c in (*systolic_sim.COMPONENTS, *systolic_sim.LEVELS, "leakage")]
    wanted += [f"area_{c}_mm2" for c in (*systolic_sim.COMPONENTS, *systolic_sim.LEVELS[1:])]
    for key in wanted:
        assert key in row and key in definitions("systolic"), key
        assert row[key] >= 0


def test_unknown_technology_names_field_and_choices(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("technology: 3nm\n")
    with pytest.raises(SpecError, match=r"spec\.yaml.*'technology'.*45nm, 7nm"):
        specmod.load(path)
    with pytest.raises(SpecError, match="technology.*45nm, 7nm"):
        specmod.replace_path(specmod.from_dict({}), "technology", "3nm")


def test_bad_dram_type_names_field_and_choices():
    with pytest.raises(SpecError, match="memory.dram_type.*ddr4, lpddr5, hbm2"):
        specmod.from_dict({"memory": {"dram_type": "gddr6"}})


def _table_with(tmp_path, name, edit):
    text = (ROOT / "hwspecs/tech/45nm.yaml").read_text()
    path = tmp_path / f"{name}.yaml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize("name, edit, field", [
    ("no_bf16", lambda t: t.replace("  bf16: 0.5818", ""), "multiply_pj.bf16"),
    ("negative", lambda t: t.replace("leakage_w_per_mm2: 0.0123", "leakage_w_per_mm2: -1"), "leakage_w_per_mm2"),
    ("no_hbm", lambda t: t.replace("  hbm2: 3.97", ""), "dram_pj_per_bit.hbm2"),
    ("extra", lambda t: t + "\nbogus_pj: 1\n", "bogus_pj"),
    ("one_point", lambda t: t.replace("  8: 10 ", "").replace("  32: 20 ", ""), "sram_read_64bit_pj"),
    ("efficiency", lambda t: t.replace("sram_array_efficiency: 0.7", "sram_array_efficiency: 1.5"),
     "sram_array_efficiency"),
])
def test_bad_tech_table_names_file_and_field(tmp_path, name, edit, field):
    path = _table_with(tmp_path, name, edit)
    spec = specmod.from_dict({"technology": str(path)})
    with pytest.raises(SpecError) as err:
        systolic_sim.unit_costs(spec)
    assert f"{name}.yaml" in str(err.value) and field in str(err.value)


def test_malformed_tech_table_is_a_spec_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("multiply_pj: [1, 2\n")
    with pytest.raises(SpecError, match="broken.yaml.*YAML"):
        energy.load_technology(str(path))
    with pytest.raises(SpecError, match="missing.yaml.*technology"):
        energy.load_technology(str(tmp_path / "missing.yaml"))


def test_pricing_is_cheap(mlp_stats):
    """Well under 1 ms per design point (the explorer evaluates many per second)."""
    import time
    spec = specmod.from_dict({})
    s = mlp_stats
    t0 = time.perf_counter()
    for _ in range(50):
        costs = systolic_sim.unit_costs(spec)
        energy.energy_j(costs, s.macs, s.vector_ops, s.bytes, s.latency_s)
    assert (time.perf_counter() - t0) / 50 < 1e-3

"""CPU spec: the bundled CPU specs load and give the part's published peak; the datatype rates follow
the core's dot-product instructions; the default sweep expands into valid points; a malformed CPU spec
fails in one line naming the field."""
import itertools
from pathlib import Path

import pytest

from compiler import spec as specmod
from compiler.errors import SpecError
from compiler.targets.cpu.spec import CpuSpec
from dse import space as spacemod

HWSPECS = Path(__file__).resolve().parents[2] / "hwspecs"
INT8 = {"input": "uint8", "weight": "int8", "accumulator": "int32", "output": "uint8"}
BF16 = {"input": "bf16", "weight": "bf16", "accumulator": "fp32", "output": "bf16"}


@pytest.mark.parametrize("name", ["cpu", "cpu_zen4_like"])
def test_bundled_cpu_specs_load(name):
    spec = specmod.load(HWSPECS / f"{name}.yaml")
    assert isinstance(spec, CpuSpec) and spec.name == name
    assert spec.figures == {"core_count": spec.cores}


def test_epyc_9654_gives_its_published_fp32_peak_and_memory_bandwidth():
    # 96 cores x 2 FMA pipes x 8 fp32 lanes x 2 FLOP x 3.55 GHz = 10.9 TFLOPS; 12 x DDR5-4800 = 460.8 GB/s
    spec = specmod.load(HWSPECS / "cpu_zen4_like.yaml")
    assert spec.peak_macs_per_cycle == 96 * 16
    assert spec.peak_macs_per_cycle * 2 * spec.clock_ghz / 1e3 == pytest.approx(10.9, rel=0.001)
    assert spec.dram_gbps == pytest.approx(460.8)


def test_target_alone_is_an_epyc_9654_in_fp32():
    spec = specmod.from_dict({"target": "cpu"})
    assert spec == CpuSpec() and spec.cores == 96 and spec.datatypes.input == "fp32"


@pytest.mark.parametrize("core, datatypes, per_core", [
    ({}, BF16, 32),                                  # VDPBF16PS: 2 bf16 pairs per 32-bit lane
    ({"bf16_dot_product": False}, BF16, 16),         # widened to fp32
    ({}, INT8, 64),                                  # VPDPBUSD: 4 u8 x s8 per lane
    ({"int8_dot_product": False}, INT8, 32),         # VPMADDWD on sign-extended int16 pairs
    ({"fma_unit_bits": 512}, INT8, 128),             # full-width pipes (Zen 5, Sapphire Rapids)
    ({"simd_bits": 256}, {}, 16),                    # AVX2 on the same pipes: the same fp32 rate
])
def test_macs_per_cycle_follow_the_dot_product_instructions(core, datatypes, per_core):
    spec = specmod.from_dict({"target": "cpu", "cores": 2, "core": core, "datatypes": datatypes})
    assert spec.peak_macs_per_cycle == 2 * per_core


def test_default_sweep_expands_into_valid_points():
    base = specmod.load(HWSPECS / "cpu.yaml")
    space = spacemod.parse(base, base.sweep)
    assert space.size == 8
    peaks = set()
    for indices in itertools.product(*(range(len(v)) for v in space.parameters.values())):
        peaks.add(space.spec_of(space.point(indices)).peak_macs_per_cycle)
    assert peaks == {cores * 16 * width for cores in (4, 8) for width in (1, 2)}


def _error(tmp_path, text) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("target: cpu\n" + text)
    with pytest.raises(SpecError) as err:
        specmod.load(path)
    message = str(err.value)
    assert "\n" not in message and "bad.yaml" in message
    return message


@pytest.mark.parametrize("text, expected", [
    ("cores: 0\n", "field 'cores' is 0; must be >= 1"),
    ("core:\n  simd_bits: 384\n", "field 'core.simd_bits' is 384; allowed: 128, 256, 512"),
    ("core:\n  fma_units: 2.5\n", "field 'core.fma_units' must be int, got 2.5"),
    ("core:\n  avx512: true\n", "unknown field 'core.avx512'; allowed here: simd_bits"),
    ("core:\n  simd_bits: 256\n  fma_unit_bits: 512\n",
     "field 'core.fma_unit_bits' is 512; an instruction's operands are core.simd_bits (256) wide"),
    ("cache:\n  l1d_kib: 0.25\n  l1d_ways: 2\n", ("field 'cache.l1d_kib' is 0.25; the 6x64 register block's A and "
                                                 "B micro-panels need 280 bytes per K step in 1 of its 2 ways")),
    ("cache:\n  l1d_kib: 0.25\n  l1d_ways: 8\n", "field 'cache.l1d_ways' is 8; 0.25 KiB holds only 4 lines"),
    ("cache:\n  l2_kib: 16\n", "field 'cache.l2_kib' is 16; must be > cache.l1d_kib (32)"),
    ("memory:\n  dram_type: ddr5\n", "field 'memory.dram_type' is 'ddr5'; did you mean 'lpddr5'? allowed: ddr4"),
    ("datatypes:\n  input: int8\n  weight: int8\n", "field 'datatypes.accumulator' is 'fp32'"),
])
def test_malformed_cpu_spec_is_one_line_naming_the_field(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


def test_a_swept_value_that_leaves_no_cache_block_is_refused_naming_the_field():
    base = specmod.load(HWSPECS / "cpu.yaml")
    small = specmod.replace_path(base, "cache.l1d_ways", 2)
    with pytest.raises(SpecError, match="sweep: field 'cache.l1d_kib' is 0.25; the 6x64 register block"):
        specmod.replace_path(small, "cache.l1d_kib", 0.25)

"""SIMT spec: the bundled SIMT specs load and their figures give the vendors' published peaks; the
default sweep expands into valid design points; a malformed SIMT spec fails in one line naming the field."""
import dataclasses
import itertools
from pathlib import Path

import pytest

from compiler import spec as specmod
from compiler.errors import SpecError
from compiler.targets.simt import cost
from compiler.targets.simt.spec import SimtSpec
from dse import space as spacemod

HWSPECS = Path(__file__).resolve().parents[2] / "hwspecs"


@pytest.mark.parametrize("name", ["simt", "gpu_a100_like", "gpu_h100_like"])
def test_bundled_simt_specs_load(name):
    spec = specmod.load(HWSPECS / f"{name}.yaml")
    assert isinstance(spec, SimtSpec) and spec.name == name
    assert spec.figures == {"sm_count": spec.sm.count}


def _tflops(spec, datatype):
    """Dense TFLOPS of all SMs at the spec's clock (2 FLOPs per MAC)."""
    return spec.sm.count * spec.macs_per_sm_cycle(datatype)[0] * 2 * spec.clock_ghz / 1e3


@pytest.mark.parametrize("name, published", [
    # (datatype, published dense TFLOPS or TOPS): A100 whitepaper 2020; H100 SXM datasheet 2022
    ("gpu_a100_like", {"fp16": 312, "bf16": 312, "fp32": 156, "int8": 624}),
    ("gpu_h100_like", {"fp16": 989.4, "bf16": 989.4, "fp32": 494.7, "int8": 1978.9}),
])
def test_bundled_simt_specs_give_the_published_peaks(name, published):
    spec = specmod.load(HWSPECS / f"{name}.yaml")
    for datatype, tflops in published.items():
        assert _tflops(spec, datatype) == pytest.approx(tflops, rel=0.002), datatype
    assert spec.peak_macs_per_cycle == spec.sm.count * spec.tensor_core.fp16_macs_per_sm_cycle


def test_fp32_lanes_give_the_published_vector_peak():
    a100 = specmod.load(HWSPECS / "gpu_a100_like.yaml")
    assert a100.sm.count * a100.sm.fp32_lanes * 2 * a100.clock_ghz / 1e3 == pytest.approx(19.5, rel=0.002)
    # H100's 66.9 TFLOPS FP32 is quoted at 1.98 GHz, above the 1.83 GHz of its tensor-core peaks
    h100 = specmod.load(HWSPECS / "gpu_h100_like.yaml")
    assert h100.sm.count * h100.sm.fp32_lanes * 2 * 1.98 / 1e3 == pytest.approx(66.9, rel=0.002)


def test_target_alone_is_an_a100_in_fp16():
    spec = specmod.from_dict({"target": "simt"})
    assert spec == SimtSpec() and spec.datatypes.input == "fp16"
    assert spec.peak_macs_per_cycle == 108 * 1024


def test_int8_datapath_runs_on_the_int8_tensor_cores():
    spec = specmod.from_dict({"target": "simt", "datatypes": {"input": "uint8", "weight": "int8",
                                                              "accumulator": "int32", "output": "uint8"}})
    assert spec.integer_datapath and spec.peak_macs_per_cycle == 108 * 2048


def test_default_sweep_expands_into_valid_points_quickly():
    base = specmod.load(HWSPECS / "simt.yaml")
    space = spacemod.parse(base, base.sweep)
    assert space.size <= 48 and set(space.parameters) == {
        "sm.count", "tensor_core.fp16_macs_per_sm_cycle", "sm.shared_memory_kib", "memory.l2_mib",
        "memory.dram_gbps"}
    peaks = set()
    for indices in itertools.product(*(range(len(v)) for v in space.parameters.values())):
        spec = space.spec_of(space.point(indices))
        assert spec.tensor_core.int8_macs_per_sm_cycle == 2 * spec.tensor_core.fp16_macs_per_sm_cycle
        peaks.add(spec.peak_macs_per_cycle)
        cost.choose_tile(spec, 3136, 64, 576, 1, 2, 2, "fp16")       # a ResNet-50 3x3 conv as a GEMM
    assert peaks == {sms * width for sms in (54, 108, 132) for width in (1024, 2048)}


def _load_text(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text("target: simt\n" + text)
    return specmod.load(path)


def _error(tmp_path, text) -> str:
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message and "bad.yaml" in message
    return message


def test_zero_sms(tmp_path):
    assert "field 'sm.count' is 0; must be >= 1" in _error(tmp_path, "sm:\n  count: 0\n")


def test_unknown_tensor_core_generation_lists_the_known(tmp_path):
    message = _error(tmp_path, "tensor_core:\n  generation: blackwell\n")
    assert "field 'tensor_core.generation' is 'blackwell'" in message
    assert "allowed: none, volta, turing, ampere, hopper" in message


def test_unknown_tensor_core_datatype_lists_the_known(tmp_path):
    message = _error(tmp_path, "tensor_core:\n  fp8_macs_per_sm_cycle: 4096\n")
    assert "unknown field 'tensor_core.fp8_macs_per_sm_cycle'" in message
    assert "fp16_macs_per_sm_cycle, bf16_macs_per_sm_cycle, tf32_macs_per_sm_cycle, int8_macs_per_sm_cycle" \
        in message


def test_a_rate_for_a_type_the_generation_lacks(tmp_path):
    message = _error(tmp_path, "tensor_core:\n  generation: volta\n  bf16_macs_per_sm_cycle: 1024\n")
    assert "field 'tensor_core.bf16_macs_per_sm_cycle' is 1024; volta tensor cores take fp16, not bf16" \
        in message


def test_an_input_type_the_tensor_cores_do_not_run(tmp_path):
    text = "tensor_core:\n  bf16_macs_per_sm_cycle: 0\ndatatypes:\n  input: bf16\n  weight: bf16\n  output: bf16\n"
    assert "field 'datatypes.input' is 'bf16', but tensor_core.bf16_macs_per_sm_cycle is 0" \
        in _error(tmp_path, text)


def test_mixed_mma_operands(tmp_path):
    text = "datatypes:\n  input: bf16\n  weight: fp16\n"
    assert "field 'datatypes.weight' is 'fp16'; a tensor-core MMA takes two operands of one type" \
        in _error(tmp_path, text)


def test_a_tile_that_cannot_fit_shared_memory(tmp_path):
    message = _error(tmp_path, "sm:\n  max_shared_memory_per_block_kib: 8\n")
    assert "field 'tiles' (min_block_m 64, min_block_n 64, min_block_k 32 (16-bit elements), stages 2)" in message
    assert "needs 16 KiB of fp16 A and B tiles in shared memory" in message
    assert "sm.max_shared_memory_per_block_kib" in message


def test_no_tile_within_the_register_limit(tmp_path):
    message = _error(tmp_path, "sm:\n  max_registers_per_thread: 64\n")
    assert "field 'tiles' admits no block tile" in message and "sm.max_registers_per_thread is 64" in message


@pytest.mark.parametrize("text, field", [
    ("sm:\n  shared_memory_kib: 200\n", "field 'sm.shared_memory_kib' is 200; shared memory is carved out"),
    ("tiles:\n  min_block_m: 512\n", "field 'tiles.max_block_m' is 256; must be >= tiles.min_block_m (512)"),
    ("sm:\n  max_threads_per_block: 4096\n", "field 'sm.max_threads_per_block' is 4096"),
    ("memory:\n  dram_type: hbm3\n", "field 'memory.dram_type' is 'hbm3'"),
])
def test_cross_field_errors_name_the_field(tmp_path, text, field):
    assert field in _error(tmp_path, text)


def test_a_swept_value_is_validated_with_its_field():
    with pytest.raises(SpecError, match="sweep: field 'sm.count' is 0; must be >= 1"):
        specmod.replace_path(SimtSpec(), "sm.count", 0)
    smaller = specmod.replace_path(SimtSpec(), "sm.shared_memory_kib", 100)
    assert dataclasses.replace(SimtSpec(), sm=dataclasses.replace(SimtSpec().sm, shared_memory_kib=100)) == smaller

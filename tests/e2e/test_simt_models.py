"""End to end on the SIMT target (hwspecs/simt.yaml, gpu_*_like.yaml): the light models' outputs from
executing its Programs (one gemm_tile per GEMM kernel, the vector kernels) against onnxruntime, and
against the systolic target's bits where both run the same datapath; the mapping printout; the
README's GPU command."""
from pathlib import Path

import numpy as np
import onnx
import pytest

import dse
from dse.cli import main as dse_main
from dse.api import load_spec
from tests.e2e.test_int8_models import check_bit_exact
from tests.e2e.test_low_precision_models import UNIT_ROUNDOFF, light
from tests.e2e.test_models import DEFAULT_RUN, SLOW, check_against_ort
from tests.light_models import light_model_path, logits_name, with_random_weights
from tests.quant_models import quant_model_path

ROOT = Path(__file__).resolve().parents[2]
FP32 = {"target": "simt", "datatypes": {"input": "fp32", "weight": "fp32", "accumulator": "fp32", "output": "fp32"}}


@pytest.mark.parametrize("name", DEFAULT_RUN)
def test_light_models_on_an_fp32_simt_match_onnxruntime(name):
    model = with_random_weights(onnx.load(light_model_path(name)), seed=0)
    program, _ = check_against_ort(model, hw=FP32)
    assert program.target == "simt" and program.engines == ("stream",)


@pytest.mark.parametrize("name", DEFAULT_RUN + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_the_nine_light_models_on_simt_yaml_match_onnxruntime_within_fp16_tolerance(name):
    """hwspecs/simt.yaml (fp16 in and out, fp32 accumulation): the logits' relative L2 error against
    onnxruntime's fp32 within u sqrt(L), the estimate tests/e2e/test_low_precision_models.py states."""
    model, inputs, want = light(name)
    program = dse.compile(model, str(ROOT / "hwspecs" / "simt.yaml"))
    got = dse.api.simulate(program, inputs).outputs[logits_name(model)]
    depth = sum(layer.op in ("conv", "gemm") for layer in program.layers)
    error = float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))
    assert program.target == "simt" and error <= UNIT_ROUNDOFF["fp16"] * np.sqrt(depth), error


@pytest.mark.parametrize("model, simt, systolic", [
    ("squeezenet", "hwspecs/simt.yaml", "systolic_fp16"),
    ("qdq", {"target": "simt", "datatypes": {"input": "uint8", "weight": "int8", "accumulator": "int32",
                                             "output": "uint8"}}, "systolic_int8"),
])
def test_simt_gives_the_systolic_bits_on_fp16_and_int8(model, simt, systolic):
    """Both accumulate each output over k in increasing order from its bias and requantise alike, so
    the fp16 and int8 datapaths (checked against onnxruntime on the systolic target) agree bit for bit."""
    if model == "qdq":
        model = quant_model_path("squeezenet", format="qdq")
    else:
        model = with_random_weights(onnx.load(light_model_path(model)), seed=0)
    simt = str(ROOT / simt) if isinstance(simt, str) else simt
    got = dse.run(model, hw=simt, seed=2)
    want = dse.run(model, hw=systolic, seed=2)
    assert got.program.target == "simt"
    for name, value in want.outputs.items():
        np.testing.assert_array_equal(got.outputs[name], value)
    assert got.stats.requant_ops == (want.stats.requant_ops if model != "squeezenet" else 0)


INT8_TENSOR_CORES = {"target": "simt", "datatypes": {"input": "uint8", "weight": "int8", "accumulator": "int32",
                                                     "output": "uint8"}}


@pytest.mark.parametrize("name, fmt, per_channel", [
    ("mlp", "qdq", False), ("squeezenet", "qoperator", True),
    *(pytest.param(n, f, c, marks=pytest.mark.slow) for n, f, c in
      [("resnet50", "qdq", False), ("shufflenet", "qdq", True), ("squeezenet", "qdq", False)])])
def test_quantised_zoo_on_int8_tensor_cores_is_bit_exact(name, fmt, per_channel):
    """The quantised models on the SIMT target's int8 tensor cores: onnxruntime's outputs bit for bit,
    and every intermediate the IR reference's (tests/e2e/test_int8_models.py's check)."""
    check_bit_exact(quant_model_path(name, fmt, per_channel), load_spec(INT8_TENSOR_CORES))


def test_mapping_printout_shows_grid_block_tile_and_occupancy(capsys):
    assert dse_main(["compile", "zoo:squeezenet", "--hw", str(ROOT / "hwspecs" / "gpu_a100_like.yaml"),
                     "--mapping"]) == 0
    out = capsys.readouterr().out
    for word in ("grid_blocks=", "block_threads=", "blocks_per_sm=", "occupancy_limiter=", "waves=", " m64 k"):
        assert word in out, word


def test_readme_gpu_command_runs(capsys):
    """README: dse run zoo:resnet50 --hw hwspecs/gpu_h100_like.yaml --timing-only"""
    assert dse_main(["run", "zoo:resnet50", "--hw", str(ROOT / "hwspecs" / "gpu_h100_like.yaml"),
                     "--timing-only"]) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "busy stream" in out


def test_a_kernel_on_the_same_design_is_timed_the_same_twice():
    first = dse.run("zoo:resnet50", hw="gpu_a100_like", timing_only=True).stats.to_dict()
    assert dse.run("zoo:resnet50", hw="gpu_a100_like", timing_only=True).stats.to_dict() == first

"""The fixed-point requantiser a spec may ask for (`datatypes.requantize: fixed_point`): a Q31
multiplier and a power-of-two exponent per channel, gemmlowp's SaturatingRoundingDoublingHighMul
and RoundingDivideByPOT (TFLite's MultiplyByQuantizedMultiplier), checked against a plain
Python-integer model written from those definitions, and against onnxruntime's float
requantiser, which it matches within one code.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from compiler.errors import SpecError
from compiler.pipeline import compile_graph
from compiler.spec import from_dict, load
from compiler.targets import lower
from compiler.targets.gemm_layer import fixed_point_multipliers
from sim import kernels, simulate
from tests import quant_golden as golden
from tests.quant_models import quant_model_path

INT8 = load("hwspecs/systolic_int8.yaml")
FIXED = dataclasses.replace(INT8, datatypes=dataclasses.replace(INT8.datatypes, requantize="fixed_point"))


def reference_requantize(acc: int, multiplier: int, exponent: int, zero_point: int, lo: int, hi: int) -> int:
    """TFLite's reference, in Python integers: x * 2^max(e,0) in int32, the doubled high product
    rounded half away from zero, then a right shift by max(-e,0) rounded half away from zero."""
    x = (acc << max(exponent, 0)) & 0xFFFFFFFF
    x = x - 2 ** 32 if x >= 2 ** 31 else x
    if x == multiplier == -2 ** 31:
        high = 2 ** 31 - 1
    else:
        product = x * multiplier
        nudge = 2 ** 30 if product >= 0 else 1 - 2 ** 30
        high = int((product + nudge) / 2 ** 31) if abs(product) < 2 ** 52 else \
            (product + nudge) // 2 ** 31 if product + nudge >= 0 else -((-(product + nudge)) // 2 ** 31)
    right = max(-exponent, 0)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    q = (high >> right) + (1 if (high & mask) > threshold else 0)
    return min(max(q + zero_point, lo), hi)


@settings(max_examples=300, deadline=None)
@given(acc=st.integers(-2 ** 31, 2 ** 31 - 1), scale=st.floats(2.0 ** -31, 2.0 ** 29, allow_subnormal=False),
       zero_point=st.integers(-128, 255), signed=st.booleans())
def test_kernel_requantiser_equals_the_integer_reference(acc, scale, zero_point, signed):
    scale = float(np.float32(scale))
    (multiplier, exponent), = fixed_point_multipliers(np.array([scale], np.float32)).tolist()
    assert 2 ** 30 <= multiplier < 2 ** 31 and multiplier * 2.0 ** (exponent - 31) == scale  # exact for fp32
    code = kernels.INT8 if signed else kernels.UINT8
    lo, hi = (-128, 127) if signed else (0, 255)
    zero_point = min(max(zero_point, lo), hi)
    got = kernels._requantize_fixed_point(np.int32(acc), np.int32(multiplier), np.int32(exponent), zero_point, code)
    assert got == reference_requantize(acc, multiplier, exponent, zero_point, lo, hi)


def test_ties_round_as_gemmlowp_not_half_to_even():
    """acc = +-5 at scale 1/2 (exact ties): gemmlowp's doubling high multiply rounds +2.5 up to 3 and
    -2.5 to -2 (its nudge is asymmetric); onnxruntime's float requantiser rounds half to even: 2, -2.
    At scale 1/4 both steps round (the multiplier is 2^30 with exponent -1): 1.25 -> 2.5 -> 3 -> 2 (the known
    double rounding), -1.25 -> -2.5 -> -2 -> -1, and +-1.5 -> +-2."""
    def fixed(acc, scale):
        (multiplier, exponent), = fixed_point_multipliers(np.array([scale], np.float32)).tolist()
        return [int(kernels._requantize_fixed_point(np.int32(a), np.int32(multiplier), np.int32(exponent), 0,
                                                    kernels.INT8)) for a in acc]
    assert fixed((5, -5), 0.5) == [3, -2]
    assert golden.requantize(np.array([5, -5]), np.float32(0.5), 0, np.int8).tolist() == [2, -2]
    assert fixed((5, -5, 6, -6), 0.25) == [2, -1, 2, -2]


def test_quantised_mlp_on_a_fixed_point_design():
    """Every gemm layer's codes equal the integer reference applied to the layer's simulated input,
    and stay within one code of the float requantiser (onnxruntime's) on the same accumulators."""
    path = quant_model_path("mlp", "qoperator", True)
    graph = compile_graph(str(path))
    x = {"x": np.random.default_rng(5).standard_normal((1, 784)).astype(np.float32)}
    fixed = simulate(lower(graph, FIXED), x, all_tensors=True).outputs
    layers = [n for n in graph.nodes if n.op == "gemm"]
    for node in layers:
        tx, tw, ty = (graph.tensors[t] for t in (node.inputs[0], node.inputs[1], node.outputs[0]))
        acc = golden.matmul_integer(fixed[node.inputs[0]], tx.quant.zero_point[0], graph.constants[node.inputs[1]],
                                    tw.quant.zero_point_array()).astype(np.int64)
        acc = golden.wrap_i32(acc + graph.constants[node.inputs[2]])
        scale = golden.output_scale(tx.quant.scale[0], tw.quant.scale_array(), ty.quant.scale[0])
        pairs = fixed_point_multipliers(np.broadcast_to(scale, (acc.shape[1],)))
        lo, hi = golden.qrange(np.uint8)
        zp = ty.quant.zero_point[0]
        want = np.array([[reference_requantize(int(a), int(pairs[j, 0]), int(pairs[j, 1]), zp, lo, hi)
                          for j, a in enumerate(row)] for row in acc])
        if node.attrs.get("activation") == "relu":
            want = np.maximum(want, zp)
        assert np.array_equal(fixed[node.outputs[0]], want), node.name
        float_codes = golden.requantize(acc, scale, zp, np.uint8)
        if node.attrs.get("activation") == "relu":
            float_codes = np.maximum(float_codes, zp)
        # same inputs, two requantisers: within one code (the layer's input may differ from the float run's)
        assert np.max(np.abs(want.astype(int) - float_codes.astype(int))) <= 1
    assert np.isfinite(fixed["probs"]).all()


def test_fixed_point_needs_the_integer_datapath():
    with pytest.raises(SpecError, match="datatypes.requantize"):
        from_dict({"datatypes": {"requantize": "fixed_point"}}, "x.yaml")
    with pytest.raises(SpecError, match="allowed"):
        from_dict({"datatypes": {"input": "uint8", "weight": "int8", "accumulator": "int32", "output": "uint8",
                                 "requantize": "q15"}}, "x.yaml")

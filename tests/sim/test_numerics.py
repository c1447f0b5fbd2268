"""bf16/fp16 conversions (compiler/numerics.py in NumPy, sim/kernels.py in Numba) against
independent references: fp16 is NumPy's float16 cast (IEEE binary16, round to nearest even);
bf16 is the integer rounding written out below. Every 16-bit pattern decodes; encoding is
checked on special values, ties, subnormals, overflow edges and random fp32 bit patterns."""
import numpy as np
from hypothesis import given, settings, strategies as st
from numba import njit

from compiler import numerics
from compiler.program import DTYPE_CODE
from sim import kernels


@njit
def _kernel_encode(x, bf16):
    out = np.empty(len(x), np.uint16)
    for i in range(len(x)):
        out[i] = kernels.f32_to_bf16(x[i]) if bf16 else kernels.f32_to_fp16(x[i])
    return out


@njit
def _kernel_decode(h, bf16):
    out = np.empty(len(h), np.float32)
    for i in range(len(h)):
        out[i] = kernels.bf16_to_f32(h[i]) if bf16 else kernels.fp16_to_f32(h[i])
    return out


def bf16_reference(x: np.ndarray) -> np.ndarray:
    """Round fp32 to bf16 with Python integers: keep the upper 16 bits, round the lower 16
    to nearest, ties to an even upper half; a NaN keeps sign and upper payload, made quiet."""
    out = []
    for bits in x.astype(np.float32).view(np.uint32).tolist():
        upper, lower = bits >> 16, bits & 0xFFFF
        if (bits & 0x7FFFFFFF) > 0x7F800000:
            out.append(upper | 0x40)
            continue
        if lower > 0x8000 or (lower == 0x8000 and upper % 2 == 1):
            upper += 1                      # a carry into the exponent is the right answer (up to Inf)
        out.append(upper)
    return np.array(out, np.uint16)


def fp16_reference(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x.astype(np.float32).astype(np.float16).view(np.uint16)


def _check_encode(x: np.ndarray) -> None:
    x = np.asarray(x, np.float32)
    nan = np.isnan(x)
    want_bf16 = bf16_reference(x)
    for got in (numerics.encode(x, "bf16"), _kernel_encode(x, True)):
        np.testing.assert_array_equal(got, want_bf16)
    want_fp16 = fp16_reference(x)
    for got in (numerics.encode(x, "fp16"), _kernel_encode(x, False)):
        np.testing.assert_array_equal(got[~nan], want_fp16[~nan])
        # a NaN stays a NaN with its sign, made quiet (NumPy's cast keeps a signalling one as is)
        assert np.all((got[nan] & 0x7C00) == 0x7C00) and np.all(got[nan] & 0x0200)
        np.testing.assert_array_equal(got[nan] >> 15, x[nan].view(np.uint32) >> 31)


def test_type_codes_match_the_program_table():
    assert (kernels.FP32, kernels.FP16, kernels.BF16) == (DTYPE_CODE["fp32"], DTYPE_CODE["fp16"],
                                                          DTYPE_CODE["bf16"])


def test_every_16_bit_pattern_decodes_exactly():
    h = np.arange(1 << 16, dtype=np.uint16)
    want16 = h.view(np.float16).astype(np.float32)
    want_bf = (h.astype(np.uint32) << 16).view(np.float32)
    for got, want in ((numerics.decode(h, "fp16"), want16), (_kernel_decode(h, False), want16),
                      (numerics.decode(h, "bf16"), want_bf), (_kernel_decode(h, True), want_bf)):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))   # NaN payloads too


def test_round_trip_of_every_narrow_value_is_exact():
    h = np.arange(1 << 16, dtype=np.uint16)
    for dtype, bf16 in (("bf16", True), ("fp16", False)):
        values = numerics.decode(h, dtype)
        keep = ~np.isnan(values) | (h & (0x40 if bf16 else 0x200)).astype(bool)  # quiet NaNs survive as is
        np.testing.assert_array_equal(numerics.encode(values, dtype)[keep], h[keep])
        np.testing.assert_array_equal(_kernel_encode(values, bf16)[keep], h[keep])


def test_special_values_ties_subnormals_and_overflow():
    f32 = lambda bits: np.array(bits, np.uint32).view(np.float32)  # noqa: E731
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0,
                65504.0, 65519.996, 65520.0, 65536.0, -65520.0,   # fp16: max, just under the tie, tie -> Inf
                2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 3 * 2.0 ** -26,
                np.finfo(np.float32).max, -np.finfo(np.float32).max, np.finfo(np.float32).tiny]
    ties = [1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,          # bf16 ties: to even (down, then up)
            1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11,        # fp16 ties
            2049.0, 2051.0, 1 + 2.0 ** -8 + 2.0 ** -20]
    patterns = f32([0x7F800001, 0xFF800001, 0x7FC00000, 0x7FFFFFFF, 0x00000001, 0x807FFFFF, 0x3F808000,
                    0x3F818000, 0x3F80FFFF, 0x7F7F8000, 0x7F7FFFFF, 0x477FF000, 0x477FEFFF, 0x33000000,
                    0x33000001, 0x387FC000, 0x38800000])
    _check_encode(np.concatenate([np.array(specials + ties, np.float32), patterns]))


def test_random_fp32_patterns():
    bits = np.random.default_rng(0).integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    _check_encode(bits.view(np.float32))
    # values in fp16's range, where rounding (not overflow) decides
    _check_encode(np.random.default_rng(1).standard_normal(100_000).astype(np.float32) * 1000)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(0, (1 << 32) - 1))
def test_hypothesis_fp32_pattern(bits):
    _check_encode(np.array([bits], np.uint32).view(np.float32))

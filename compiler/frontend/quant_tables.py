"""Compile-time tables of the quantised ops, in onnxruntime's float32 arithmetic
(docs/int8_datapath.md section 3): the 256-entry code -> code tables of lookup nodes
(QLinearSigmoid, QLinearLeakyRelu, QLinearConcat requantisation; `QlinearBuildLookupTable`,
contrib_ops/cpu/quantization/qlinear_lookup_table.cc) and QLinearSoftmax's 256 float32
exp values (contrib_ops/cpu/quantization/qlinear_softmax.cc). In: Quant and dtypes; out: arrays.
"""
from __future__ import annotations

import numpy as np

from compiler.ir import DTYPES, Quant

F32 = np.float32

# MlasLogisticConstants (core/mlas/lib/logistic.cpp), as float literals
LOGISTIC = {name: F32(v) for name, v in {
    "lower": -18.0, "upper": 18.0,
    "a9": 4.37031012579801e-11, "a7": 1.15627324459942e-07, "a5": 6.08574864600143e-05,
    "a3": 8.51377133304701e-03, "a1": 2.48287947061529e-01,
    "b10": 6.10247389755681e-13, "b8": 5.76102136993427e-09, "b6": 6.29106785017040e-06,
    "b4": 1.70198817374094e-03, "b2": 1.16817656904453e-01, "b0": 9.93151921023180e-01}.items()}


def fma_f32(a, b, c) -> np.ndarray:
    """float32 fused multiply-add (one rounding), as vfmadd*ps computes it.

    a*b is exact in float64; the float64 sum is exact unless it lands on a float32 rounding
    tie, where the TwoSum error term decides the direction (no double-rounding error)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    t = s - p
    err = (p - (s - t)) + (c - t)
    s32 = s.astype(np.float32)
    neighbour = np.nextafter(s32, np.where(s > s32, F32(np.inf), F32(-np.inf)))
    tie = (s32.astype(np.float64) != s) & ((s32.astype(np.float64) + neighbour.astype(np.float64)) * 0.5 == s)
    nudged = np.where(tie & (err != 0), np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return nudged.astype(np.float32)


def mlas_logistic(x) -> np.ndarray:
    """MlasLogisticKernelFma3: clamp to [-18, 18], rational polynomial with FMAs, p/q + 0.5, max 0."""
    c = LOGISTIC
    v = np.minimum(np.maximum(np.asarray(x, np.float32), c["lower"]), c["upper"])
    v2 = v * v
    p = fma_f32(v2, c["a9"], c["a7"])
    for k in ("a5", "a3", "a1"):
        p = fma_f32(v2, p, c[k])
    q = fma_f32(v2, c["b10"], c["b8"])
    for k in ("b6", "b4", "b2", "b0"):
        q = fma_f32(v2, q, c[k])
    return np.maximum((v * p) / q + F32(0.5), F32(0))


def leaky_relu(alpha: float):
    return lambda v: np.where(v >= 0, v, F32(alpha) * v)


def identity(v):
    return v


def _dequantize(codes: np.ndarray, quant: Quant) -> np.ndarray:
    """DequantizeLinear, per tensor: F(float(int32(q) - zp) * scale)."""
    return (codes.astype(np.int32) - quant.zero_point[0]).astype(np.float32) * F32(quant.scale[0])


def _quantize(x: np.ndarray, quant: Quant, dtype: str) -> np.ndarray:
    """QuantizeLinear, per tensor: a float32 division, clamp to [qmin-zp, qmax-zp] (NaN -> qmin),
    round half to even, add zp (MlasQuantizeLinear, core/mlas/lib/quantize.cpp)."""
    info = np.iinfo(DTYPES[dtype])
    zp = quant.zero_point[0]
    f = np.asarray(x, np.float32) / F32(quant.scale[0])
    f = np.where(np.isnan(f), F32(info.min - zp), f)
    f = np.minimum(np.maximum(f, F32(info.min - zp)), F32(info.max - zp))
    return (np.rint(f).astype(np.int32) + zp).astype(DTYPES[dtype])


def lookup_table(x_dtype: str, x_quant: Quant, y_dtype: str, y_quant: Quant, fn) -> np.ndarray:
    """table[i] = Q(fn(DQ(code))) for the code whose bit pattern is i (uint8 view)."""
    codes = np.arange(256, dtype=np.uint8).view(DTYPES[x_dtype])
    return _quantize(fn(_dequantize(codes, x_quant)), y_quant, y_dtype)


def softmax_exp_table(x_scale: float, reduce_len: int, signed: bool) -> np.ndarray:
    """QLinearSoftmax's float32 table (QlinearBuildLookupTableUint32, float variant).

    bit_shift = logf(FLT_MAX / float(D)) is float arithmetic in the C++ (float / size_t, then
    std::log(float)); the rest is double: max(0, bit_shift - 5) / x_scale, then
    float(exp((i - 255 + shift) * x_scale)) at index i (int8: at uint8(i - 128)). logf is
    taken as the float64 log rounded to float32 (glibc's logf is correctly rounded in practice)."""
    quotient = np.float64(F32(np.finfo(np.float32).max) / F32(reduce_len))
    bit_shift = np.float64(F32(np.log(quotient)))
    scale = np.float64(F32(x_scale))
    shift = max(0.0, bit_shift - 5.0) / scale
    i = np.arange(256, dtype=np.float64)
    values = np.exp((i - 255 + shift) * scale).astype(np.float32)
    table = np.empty(256, np.float32)
    index = (np.arange(256) - 128) & 0xFF if signed else np.arange(256)
    table[index] = values
    return table

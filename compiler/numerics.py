"""Element encodings of the memory model, in NumPy: model values <-> the bits a
DRAM region or on-chip buffer of a given element type holds.

In: values (any float array; model data is fp32, wider data is first rounded to fp32);
out: storage arrays (fp32 as float32, bf16 and fp16 as uint16 bit patterns) and back.
The conversions (DESIGN principle 4, the defined datapath):
  fp32 -> bf16  the upper 16 bits of the fp32 pattern after round-to-nearest-even on the
                lower 16 (overflow rounds to Inf); NaN stays NaN with its sign and upper
                payload, made quiet (bit 6 set).
  fp32 -> fp16  IEEE 754 binary16 round-to-nearest-even: overflow to Inf, gradual
                underflow to subnormals; NaN stays NaN with its sign and upper payload, quiet.
  bf16/fp16 -> fp32  exact (every narrow value is an fp32 value).
Integer types (uint8, int8 codes of quantised tensors; int32 biases and accumulators)
are stored as themselves: encoding requires integer values in the type's range (a
quantised model's data already is), and decoding returns them unchanged.
The simulator's Numba kernels (sim/kernels.py) implement the same scalar conversions;
tests/sim/test_numerics.py checks both against independent references.
"""
from __future__ import annotations

import numpy as np

FLOAT_TYPES = ("fp32", "bf16", "fp16")
INT_TYPES = ("uint8", "int8", "int32")
# NumPy type of a stored element
STORAGE = {"fp32": np.float32, "bf16": np.uint16, "fp16": np.uint16, "uint8": np.uint8, "int8": np.int8,
           "int32": np.int32}


def _check(dtype: str) -> None:
    if dtype not in STORAGE:
        raise ValueError(f"no encoding for element type {dtype!r}; implemented: {', '.join(STORAGE)}")


def _encode_int(values, dtype: str) -> np.ndarray:
    x = np.asarray(values)
    info = np.iinfo(STORAGE[dtype])
    if x.size and not (np.array_equal(x, np.round(x)) and x.min() >= info.min and x.max() <= info.max):
        raise ValueError(f"values are not {dtype} integers in {info.min}..{info.max} (a quantised tensor "
                         f"holds codes; quantise float data first)")
    return x.astype(STORAGE[dtype])


def encode(values, dtype: str) -> np.ndarray:
    """The stored elements of `values` in element type `dtype` (same shape)."""
    _check(dtype)
    if dtype in INT_TYPES:
        return _encode_int(values, dtype)
    x = np.asarray(values, np.float32)
    if dtype == "fp32":
        return x
    if dtype == "fp16":
        with np.errstate(over="ignore"):            # overflow to Inf is the defined result
            bits = x.astype(np.float16).view(np.uint16)
        return np.where(np.isnan(x), bits | np.uint16(0x0200), bits)   # NumPy would keep a NaN signalling
    b = x.view(np.uint32)
    rounded = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet_nan = (b >> np.uint32(16)) | np.uint32(0x0040)
    return np.where(np.isnan(x), quiet_nan, rounded).astype(np.uint16)


def decode(stored, dtype: str) -> np.ndarray:
    """fp32 values (float32, same shape) of elements stored in element type `dtype` (integer
    types: the stored integers)."""
    _check(dtype)
    s = np.asarray(stored, STORAGE[dtype])
    if dtype == "fp32" or dtype in INT_TYPES:
        return s
    if dtype == "fp16":
        return s.view(np.float16).astype(np.float32)
    return (s.astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_to(values, dtype: str) -> np.ndarray:
    """`values` rounded to element type `dtype`, as float32 (what a store then a load yields)."""
    return decode(encode(values, dtype), dtype)

"""NumPy golden model of onnxruntime's com.microsoft QLinearSoftmax (x86-64, ORT 1.32), the
companion of tests/quant_golden.py for the one quantised op it lacks. Bit-identical to
onnxruntime in tests/compiler/test_quant_frontend.py. For tests only.

What onnxruntime computes (contrib_ops/cpu/quantization/qlinear_softmax.cc, float table variant),
established against the running library where the source is ambiguous:
  table[i] = F(exp((i - 255 + B) * x_scale))  (double exp), B = max(0, logf(FLT_MAX / F(D)) - 5)
             / x_scale with D the reduced length; logf is float arithmetic (float / size_t, then
             std::log(float)) -- computing it in double mismatches ~1 output in 100,000.
  int8 codes index the table at uint8(i - 128), and a row reads it at x - max + 127 (wrapped).
  per row: sum = sequential float32 sum of e = table[x - max(x) + 255]; c = floor(F(1 / y_scale))
  (float32); y = clamp(rne(double(e) * c / sum) + y_zp, qmin, qmax) -- the quotient is double:
  float32 products overflow (e reaches FLT_MAX / (D e^5)) and float32 quotients round differently
  a few times per million, both of which onnxruntime does not show.
  x_zero_point plays no part (softmax is shift-invariant). Note c = floor(1/y_scale): with the
  usual y_scale = 1/255 (0.003921569f), c = 254, so probability 1 maps to code 254.
  opset attribute < 13: rows are the coerced 2-D [prod(shape[:axis]), prod(shape[axis:])];
  >= 13: rows run along one axis (onnxruntime transposes it last).
"""
import numpy as np

F32 = np.float32


def softmax_table(x_scale, reduce_len: int, signed: bool) -> np.ndarray:
    bit_shift = np.float64(F32(np.log(np.float64(F32(np.finfo(np.float32).max) / F32(reduce_len)))))
    shift = max(0.0, bit_shift - 5.0) / np.float64(F32(x_scale))
    values = np.exp((np.arange(256, dtype=np.float64) - 255 + shift) * np.float64(F32(x_scale)))
    table = np.empty(256, np.float32)
    table[(np.arange(256) - 128) & 0xFF if signed else np.arange(256)] = values.astype(np.float32)
    return table


def softmax_rows(x2: np.ndarray, table: np.ndarray, y_scale, y_zero_point) -> np.ndarray:
    """QlinearSoftmaxCPU over the rows of a 2-D code array with a prepared table."""
    signed = x2.dtype == np.int8
    lo, hi = (-128, 127) if signed else (0, 255)
    c = F32(np.floor(F32(1.0) / F32(y_scale)))
    out = np.empty_like(x2)
    for r in range(x2.shape[0]):
        row = x2[r].astype(np.int64)
        index = (row - row.max() + 127) & 0xFF if signed else row - row.max() + 255
        e = table[index]
        total = F32(0)
        for v in e:                       # sequential float32 adds, as the C++ loop
            total = F32(total + v)
        f = np.rint(e.astype(np.float64) * np.float64(c) / np.float64(total))
        out[r] = np.clip(np.minimum(f, 2.0 ** 40).astype(np.int64) + int(y_zero_point), lo, hi).astype(x2.dtype)
    return out


def qlinear_softmax(x, x_scale, x_zero_point, y_scale, y_zero_point, *, axis=-1, opset=13):
    """com.microsoft QLinearSoftmax as onnxruntime computes it (see the module docstring)."""
    x = np.asarray(x)
    axis %= x.ndim
    if opset < 13:
        length = int(np.prod(x.shape[axis:]))
        flat = x.reshape(-1, length)
        table = softmax_table(x_scale, length, x.dtype == np.int8)
        return softmax_rows(flat, table, y_scale, y_zero_point).reshape(x.shape)
    moved = np.moveaxis(x, axis, -1)
    length = moved.shape[-1]
    table = softmax_table(x_scale, length, x.dtype == np.int8)
    out = softmax_rows(np.ascontiguousarray(moved).reshape(-1, length), table, y_scale, y_zero_point)
    return np.moveaxis(out.reshape(moved.shape), -1, axis)

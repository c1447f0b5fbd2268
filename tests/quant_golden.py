"""NumPy golden model of onnxruntime's int8/uint8 CPU datapaths (x86-64 MLAS, ORT 1.32).

Each function takes the quantised tensors and their scales/zero points as ONNX passes them and
returns exactly what onnxruntime's CPUExecutionProvider returns. Integer steps run in int32/int64,
float steps in float32 in the order onnxruntime runs them; docs/int8_datapath.md cites the
kernels each function mirrors and says which parts are specific to the CPU's instruction set.
"""
import numpy as np

F32 = np.float32


# ---------------------------------------------------------------- primitives

def qrange(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def fma_f32(a, b, c):
    """float32 fused multiply-add (one rounding), as vfmadd*ps computes it.

    a*b is exact in float64; the float64 sum is rounded once more, so where it lands exactly on a
    float32 rounding tie the exact TwoSum error decides the direction (no double-rounding error)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    t = s - p
    err = (p - (s - t)) + (c - t)  # TwoSum: p + c == s + err exactly
    s32 = s.astype(np.float32)
    neighbour = np.nextafter(s32, np.where(s > s32, np.float32(np.inf), np.float32(-np.inf)))
    tie = (s32.astype(np.float64) != s) & ((s32.astype(np.float64) + neighbour.astype(np.float64)) * 0.5 == s)
    nudged = np.where(tie & (err != 0), np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return nudged.astype(np.float32)


def cvt_rne_i32(x):
    """cvtps2dq: float32 -> int32 round-half-even; out-of-range and NaN give INT32_MIN."""
    x = np.asarray(x, np.float32)
    bad = ~(np.abs(x) < F32(2.0 ** 31))
    return np.where(bad, np.int32(-2 ** 31), np.rint(np.where(bad, 0, x))).astype(np.int32)


def pack_saturate(i32, dtype):
    """packssdw then packuswb/packsswb: int32 -> int16 -> 8 bit, both saturating."""
    lo, hi = qrange(dtype)
    return np.clip(np.clip(i32, -32768, 32767), lo, hi).astype(dtype)


def requantize(acc, scale, zero_point, dtype):
    """MlasRequantizeOutput: int32 accumulator (bias already added) -> 8-bit output.

    float32(acc) * float32 scale, clamp to [qmin - zp, qmax - zp] in float, round half to even,
    add zp. `scale` broadcasts against acc (scalar, or one value per output channel/column)."""
    lo, hi = qrange(dtype)
    f = np.asarray(acc, np.int32).astype(np.float32) * np.asarray(scale, np.float32)
    f = np.minimum(np.maximum(f, F32(lo - zero_point)), F32(hi - zero_point))
    return (np.rint(f).astype(np.int32) + zero_point).astype(dtype)


def wrap_i32(values):
    """Two's-complement int32 wrap of an int64 result (the accumulator register width)."""
    return np.asarray(values, np.int64).astype(np.int32)


def output_scale(x_scale, w_scale, y_scale):
    """QLinearConv/QLinearMatMul: float32((x_scale * w_scale) / y_scale), per weight channel."""
    return (F32(x_scale) * np.asarray(w_scale, np.float32)) / F32(y_scale)


# ---------------------------------------------------------------- Quantize / Dequantize

def quantize_linear(x, scale, zero_point, dtype, axis=1):
    """QuantizeLinear: clamp(x / scale) to [qmin - zp, qmax - zp], round half even, add zp.

    Division (not a reciprocal multiply) in float32; NaN maps to qmin (maxps returns its second
    operand). Per-axis scale/zero point broadcast along `axis`."""
    x = np.asarray(x, np.float32)
    scale, zp = _along_axis(scale, x.ndim, axis), _along_axis(zero_point, x.ndim, axis).astype(np.int32)
    lo, hi = qrange(dtype)
    f = x / scale.astype(np.float32)
    f = np.where(np.isnan(f), (lo - zp).astype(np.float32), f)
    f = np.minimum(np.maximum(f, (lo - zp).astype(np.float32)), (hi - zp).astype(np.float32))
    return (np.rint(f).astype(np.int32) + zp).astype(dtype)


def dequantize_linear(q, scale, zero_point, axis=1):
    """DequantizeLinear: float32(int32(q) - zp) * scale."""
    q = np.asarray(q)
    scale, zp = _along_axis(scale, q.ndim, axis), _along_axis(zero_point, q.ndim, axis).astype(np.int32)
    return (q.astype(np.int32) - zp).astype(np.float32) * scale.astype(np.float32)


def _along_axis(param, ndim, axis):
    param = np.asarray(param)
    if param.size == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = param.size
    return param.reshape(shape)


# ---------------------------------------------------------------- integer GEMM and convolution

def matmul_integer(a, a_zero_point, b, b_zero_point):
    """MatMulInteger: int32 sum over K of (a - za) * (b - zb); b_zero_point scalar or per column."""
    a = np.asarray(a).astype(np.int64) - np.int64(np.asarray(a_zero_point).reshape(()))
    b = np.asarray(b).astype(np.int64) - np.asarray(b_zero_point).astype(np.int64)
    return wrap_i32(np.matmul(a, b))


def conv_integer(x, x_zero_point, w, w_zero_point, *, group=1, strides=None, pads=None, dilations=None):
    """ConvInteger: int32 convolution of (x - zx) and (w - zw); padding contributes zero.

    x is (N, C, *spatial), w is (M, C/group, *kernel); pads are ONNX [begin..., end...]."""
    x = np.asarray(x).astype(np.int64) - np.int64(np.asarray(x_zero_point).reshape(()))
    w = np.asarray(w).astype(np.int64)
    w = w - _along_axis(w_zero_point, w.ndim, 0).astype(np.int64)
    rank = w.ndim - 2
    strides = strides or [1] * rank
    dilations = dilations or [1] * rank
    pads = pads or [0] * (2 * rank)
    x = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)])
    windows = x
    for d in range(rank):
        span = (w.shape[2 + d] - 1) * dilations[d] + 1
        windows = np.lib.stride_tricks.sliding_window_view(windows, span, axis=2 + d)
    # windows: (N, C, *out_full, *span) -> keep every stride-th output and dilation-th tap
    out_index = tuple(slice(None, None, s) for s in strides)
    tap_index = tuple(slice(None, None, d) for d in dilations)
    windows = windows[(slice(None), slice(None)) + out_index + tap_index]
    m, cg = w.shape[0], w.shape[1]
    mg = m // group
    outs = []
    for g in range(group):
        patch = windows[:, g * cg:(g + 1) * cg]
        patch = np.moveaxis(patch, 1, 1 + rank)  # (N, *out, Cg, *k)
        patch = patch.reshape(patch.shape[:1 + rank] + (-1,))
        outs.append(np.moveaxis(patch @ w[g * mg:(g + 1) * mg].reshape(mg, -1).T, -1, 1))
    return wrap_i32(np.concatenate(outs, axis=1))


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, bias=None,
                 **conv_attrs):
    """QLinearConv: int32 conv accumulator + int32 bias, requantised per output channel.

    onnxruntime requires every per-channel weight zero point to be equal (ORT_ENFORCE)."""
    acc = conv_integer(x, x_zero_point, w, w_zero_point, **conv_attrs)
    if bias is not None:
        acc = wrap_i32(acc.astype(np.int64) + np.asarray(bias, np.int64).reshape(1, -1, *[1] * (acc.ndim - 2)))
    scale = output_scale(x_scale, w_scale, y_scale).reshape(1, -1, *[1] * (acc.ndim - 2))
    return requantize(acc, scale, int(np.asarray(y_zero_point).reshape(())), np.asarray(y_zero_point).dtype)


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """QLinearMatMul: int32 matmul accumulator requantised per column (b scale scalar or per column)."""
    acc = matmul_integer(a, a_zero_point, b, b_zero_point)
    return requantize(acc, output_scale(a_scale, b_scale, y_scale), int(np.asarray(y_zero_point).reshape(())),
                      np.asarray(y_zero_point).dtype)


def qgemm(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c=None, y_scale=None, y_zero_point=None, *,
          alpha=1.0, trans_a=0, trans_b=0):
    """com.microsoft QGemm: acc = C(int32, broadcast) + sum (a - za)(b - zb); scale =
    float32(float32(alpha * a_scale) * b_scale) [/ y_scale]. Without y_scale the output is float32
    acc * scale; with it, requantised like QLinearMatMul."""
    a = np.asarray(a).T if trans_a else np.asarray(a)
    b = np.asarray(b).T if trans_b else np.asarray(b)
    acc = matmul_integer(a, a_zero_point, b, b_zero_point).astype(np.int64)
    if c is not None:
        acc = acc + np.broadcast_to(np.asarray(c, np.int64), acc.shape)
    acc = wrap_i32(acc)
    scale = (F32(alpha) * F32(a_scale)) * np.asarray(b_scale, np.float32)
    if y_scale is None:
        return acc.astype(np.float32) * scale
    scale = scale / F32(y_scale)
    return requantize(acc, scale, int(np.asarray(y_zero_point).reshape(())), np.asarray(y_zero_point).dtype)


# ---------------------------------------------------------------- element-wise (com.microsoft)

def _a_is_span_scalar(shape_a, shape_b):
    """Whether onnxruntime's BroadcastLooper hands `a` to MLAS as a per-span scalar.

    True when a has one element, or when the innermost output axis longer than 1 is
    broadcast from size 1 in a (so a is constant along each contiguous span)."""
    if int(np.prod(shape_a)) == 1:
        return True
    if int(np.prod(shape_b)) == 1:
        return False
    out = np.broadcast_shapes(tuple(shape_a), tuple(shape_b))
    axis = max(i for i, n in enumerate(out) if n > 1)
    return ((1,) * (len(out) - len(shape_a)) + tuple(shape_a))[axis] == 1


def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """QLinearAdd as MlasQLinearAddKernelAvx2Helper computes it on AVX2/FMA3 hosts.

    The kernel sees a span input X and a second input Y (X = a, Y = b, except that onnxruntime
    swaps them when a is constant over the span). With r = s/sc per input, all float32:
    fixed = zc - fma(rX, zX, rY * zY)   (GCC contracts the C++ expression into one FMA)
    out   = fma(x, rX, fma(y, rY, fixed)), cvtps2dq (half even), saturating packs."""
    a, b = np.asarray(a), np.asarray(b)
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    x, y = (a, a_scale, a_zero_point), (b, b_scale, b_zero_point)
    if _a_is_span_scalar(a.shape, b.shape):
        x, y = y, x
    (xv, xs, xz), (yv, ys, yz) = x, y
    rx, ry = F32(xs) / F32(c_scale), F32(ys) / F32(c_scale)
    zx, zy = (F32(int(np.asarray(z).reshape(()))) for z in (xz, yz))
    fixed = F32(int(np.asarray(c_zero_point).reshape(()))) - fma_f32(rx, zx, ry * zy)
    fx = np.broadcast_to(xv, out_shape).astype(np.float32)
    fy = np.broadcast_to(yv, out_shape).astype(np.float32)
    return pack_saturate(cvt_rne_i32(fma_f32(fx, rx, fma_f32(fy, ry, fixed))), a.dtype)


def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """QLinearMul, MlasQLinearMulKernel (SSE2): int32 (a-za)(b-zb) * float32(sa*sb/sc) + zc in
    float32 (zc added before rounding), cvtps2dq, saturating packs."""
    a, b = np.asarray(a), np.asarray(b)
    za, zb, zc = (int(np.asarray(z).reshape(())) for z in (a_zero_point, b_zero_point, c_zero_point))
    ratio = (F32(a_scale) * F32(b_scale)) / F32(c_scale)
    prod = (a.astype(np.int32) - za) * (b.astype(np.int32) - zb)
    return pack_saturate(cvt_rne_i32(prod.astype(np.float32) * ratio + F32(zc)), a.dtype)


def _lookup_table(x_scale, x_zero_point, y_scale, y_zero_point, dtype, fn):
    """QlinearBuildLookupTable: 256 entries, dequantize -> fn (float32) -> MlasQuantizeLinear."""
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    return quantize_linear(fn(dequantize_linear(codes, x_scale, x_zero_point)), y_scale, y_zero_point, dtype)


def _apply_table(x, table):
    x = np.asarray(x)
    return table[x.view(np.uint8).astype(np.intp)]


LOGISTIC = {name: F32(v) for name, v in {  # MlasLogisticConstants (logistic.cpp), as float literals
    "lower": -18.0, "upper": 18.0,
    "a9": 4.37031012579801e-11, "a7": 1.15627324459942e-07, "a5": 6.08574864600143e-05,
    "a3": 8.51377133304701e-03, "a1": 2.48287947061529e-01,
    "b10": 6.10247389755681e-13, "b8": 5.76102136993427e-09, "b6": 6.29106785017040e-06,
    "b4": 1.70198817374094e-03, "b2": 1.16817656904453e-01, "b0": 9.93151921023180e-01}.items()}


def mlas_logistic(x):
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


def qlinear_sigmoid(x, x_scale, x_zero_point, y_scale, y_zero_point):
    x = np.asarray(x)
    return _apply_table(x, _lookup_table(x_scale, x_zero_point, y_scale, y_zero_point, x.dtype, mlas_logistic))


def qlinear_leaky_relu(x, x_scale, x_zero_point, y_scale, y_zero_point, alpha=0.01):
    x = np.asarray(x)
    table = _lookup_table(x_scale, x_zero_point, y_scale, y_zero_point, x.dtype,
                          lambda v: np.where(v >= 0, v, F32(alpha) * v))
    return _apply_table(x, table)


def qlinear_concat(y_scale, y_zero_point, inputs, axis):
    """QLinearConcat: each (x, scale, zp) is copied when scale and zp equal the output's, else
    mapped through a 256-entry requantisation table (dequantize then MlasQuantizeLinear)."""
    dtype = np.asarray(y_zero_point).dtype
    parts = []
    for x, scale, zp in inputs:
        x = np.asarray(x)
        if F32(scale) == F32(y_scale) and int(np.asarray(zp)) == int(np.asarray(y_zero_point)):
            parts.append(x)
        else:
            parts.append(_apply_table(x, _lookup_table(scale, zp, y_scale, y_zero_point, dtype, lambda v: v)))
    return np.concatenate(parts, axis=axis)


# ---------------------------------------------------------------- pooling (com.microsoft)

def qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point):
    """QLinearGlobalAveragePool (NCHW): integer sum - zx * count, requantised with
    scale = float32(x_scale / float32(y_scale * float32(count))); MLAS refuses scales outside
    [2**-32, 256) and images of 2**24 pixels or more."""
    x = np.asarray(x)
    count = int(np.prod(x.shape[2:]))
    zx = int(np.asarray(x_zero_point))
    acc = wrap_i32(x.reshape(x.shape[0], x.shape[1], -1).astype(np.int64).sum(-1) - zx * count)
    scale = F32(x_scale) / (F32(y_scale) * F32(count))
    if not (F32(2.0 ** -32) <= scale < F32(256)) or count >= 2 ** 24:
        raise ValueError("QLinearGlobalAveragePool parameter out of computation range")  # as MLAS throws
    out = requantize(acc, scale, int(np.asarray(y_zero_point)), x.dtype)
    return out.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def qlinear_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, kernel_shape, strides=None,
                         pads=None, count_include_pad=0):
    """QLinearAveragePool: dequantised float32 window sum (row-major window order), / count,
    then int32(nearbyint(sum / y_scale + zp)) with zp added in float32 before rounding, clamped.

    A kernel covering the whole image without padding takes the global-average-pool path."""
    x = np.asarray(x)
    rank = len(kernel_shape)
    strides = strides or [1] * rank
    pads = pads or [0] * (2 * rank)
    if list(kernel_shape) == list(x.shape[2:]) and not any(pads):
        return qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point)
    fx = dequantize_linear(x, x_scale, x_zero_point)
    spatial = x.shape[2:]
    out_shape = [(spatial[d] + pads[d] + pads[d + rank] - kernel_shape[d]) // strides[d] + 1 for d in range(rank)]
    out = np.empty(x.shape[:2] + tuple(out_shape), np.float32)
    for index in np.ndindex(*out_shape):
        lo = [index[d] * strides[d] - pads[d] for d in range(rank)]
        hi = [min(lo[d] + kernel_shape[d], spatial[d]) for d in range(rank)]
        lo = [max(v, 0) for v in lo]
        window = fx[(slice(None), slice(None)) + tuple(slice(lo[d], hi[d]) for d in range(rank))]
        total = np.zeros(x.shape[:2], np.float32)
        for tap in window.reshape(x.shape[0], x.shape[1], -1).transpose(2, 0, 1):
            total = total + tap  # sequential float32 adds, as PoolType::Process does
        count = int(np.prod(kernel_shape)) if count_include_pad else int(np.prod([h - l for l, h in zip(lo, hi)]))
        out[(slice(None), slice(None)) + index] = total / F32(count)
    lo_q, hi_q = qrange(x.dtype)
    # nearbyintf then static_cast<int32_t>: beyond int32 the cast gives INT32_MIN, so qmin
    q = cvt_rne_i32(out / F32(y_scale) + F32(int(np.asarray(y_zero_point))))
    return np.clip(q, lo_q, hi_q).astype(x.dtype)


def max_pool(x, *, kernel_shape, strides=None, pads=None):
    """MaxPool on the 8-bit codes themselves (what a Q/DQ-wrapped MaxPool becomes); pads never win."""
    x = np.asarray(x)
    rank = len(kernel_shape)
    strides = strides or [1] * rank
    pads = pads or [0] * (2 * rank)
    lo_q = qrange(x.dtype)[0]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)], constant_values=lo_q)
    windows = xp
    for d in range(rank):
        windows = np.lib.stride_tricks.sliding_window_view(windows, kernel_shape[d], axis=2 + d)
    windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    return windows.reshape(windows.shape[:2 + rank] + (-1,)).max(-1)

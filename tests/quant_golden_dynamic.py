"""NumPy golden model of onnxruntime's dynamic-quantisation datapath (x86-64 MLAS, ORT 1.32), the
companion of tests/quant_golden.py for models made by onnxruntime.quantization.quantize_dynamic.

A dynamically quantised layer quantises its float activation at run time: one min/max reduction
over the whole tensor gives a per-tensor uint8 scale and zero point (DynamicQuantizeLinear), the
codes go through an exact integer GEMM/convolution against weights quantised offline, and the
int32 accumulator comes back to float32 as F(F(float(acc) * F(a_scale * w_scale)) + bias). With
default session options onnxruntime fuses MatMul layers into com.microsoft DynamicQuantizeMatMul
(or MatMulIntegerToFloat where one DynamicQuantizeLinear feeds several MatMulIntegers); Conv
layers stay DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul -> Add. Fused and unfused give the
same bits. docs/int8_datapath.md section 9 cites the kernels; tests/sim/test_quant_golden_dynamic.py
pins every function here against onnxruntime. For tests only.
"""
import numpy as np
from onnx import helper, numpy_helper

from tests.quant_golden import F32, conv_integer, matmul_integer, quantize_linear

FLT_MAX = F32(np.finfo(np.float32).max)
U8_MIN, U8_MAX = 0, 255  # DynamicQuantizeLinear only produces uint8


# ---------------------------------------------------------------- min/max reduction

def _maxps(a, b):
    """maxps/vmaxps: a > b ? a : b, so a NaN in either operand returns the second operand."""
    return np.where(a > b, a, b)


def _minps(a, b):
    return np.where(a < b, a, b)


def _std_max(a, b):
    """std::max(a, b) = (a < b) ? b : a: a NaN b is ignored, a NaN a sticks."""
    return b if a < b else a  # noqa: FURB136 (spelled out: the NaN behaviour is the point)


def _std_min(a, b):
    """std::min(a, b) = (b < a) ? b : a."""
    return b if b < a else a  # noqa: FURB136


def _reduce4(v, op):
    """MlasReduceMaximumFloat32x4 / MlasReduceMinimumFloat32x4: op(v, v[2,3,2,3]), op(., .[1,1,1,1]), lane 0."""
    v = op(v, v[[2, 3, 2, 3]])
    return F32(op(v, v[[1, 1, 1, 1]])[0])


def mlas_find_min_max(x):
    """One MlasFindMinMaxElement call on an AVX host (MlasReduceMinimumMaximumF32KernelAvx).

    For data without NaN this is the plain minimum and maximum (FLT_MAX and -FLT_MAX for no
    elements). A NaN is modelled lane by lane: 4 x 8-lane accumulators over blocks of 32, then one
    8-lane accumulator over blocks of 8, folded with vmaxps/vminps (NaN -> second operand, so a lane
    forgets what it saw before a NaN and a NaN is replaced by the next value), then a scalar
    std::max/std::min tail that skips NaN elements."""
    x = np.asarray(x, np.float32).reshape(-1)
    if not np.isnan(x).any():
        if x.size == 0:
            return FLT_MAX, -FLT_MAX
        return F32(x.min()), F32(x.max())
    lo, hi, n, i = FLT_MAX, -FLT_MAX, x.size, 0
    if n >= 8:
        vmax, vmin = np.full(8, -FLT_MAX, np.float32), np.full(8, FLT_MAX, np.float32)
        if n >= 32:
            amax, amin = np.full((4, 8), -FLT_MAX, np.float32), np.full((4, 8), FLT_MAX, np.float32)
            while n - i >= 32:
                block = x[i:i + 32].reshape(4, 8)
                amax, amin = _maxps(amax, block), _minps(amin, block)
                i += 32
            vmax = _maxps(_maxps(amax[0], amax[1]), _maxps(amax[2], amax[3]))
            vmin = _minps(_minps(amin[0], amin[1]), _minps(amin[2], amin[3]))
        while n - i >= 8:
            vmax, vmin = _maxps(vmax, x[i:i + 8]), _minps(vmin, x[i:i + 8])
            i += 8
        hi = _reduce4(_maxps(vmax[:4], vmax[4:]), _maxps)
        lo = _reduce4(_minps(vmin[:4], vmin[4:]), _minps)
    for v in x[i:]:
        hi, lo = _std_max(hi, v), _std_min(lo, v)
    return F32(lo), F32(hi)


# ---------------------------------------------------------------- DynamicQuantizeLinear

def dynamic_quantization_parameters(x):
    """GetQuantizationParameter<uint8_t> (core/util/qmath.h): scale and zero point of a tensor.

    lo = min(min(x), 0), hi = max(max(x), 0)           (std::min/std::max with 0.0f)
    scale = 1.0f if hi == lo else F(F(hi - lo) / 255.0f)
    zp = rne(clamp(F(0.0f - F(lo / scale)), 0, 255))   (a NaN initial zero point clamps to 255)
    A NaN anywhere in x is modelled for one MlasFindMinMaxElement call (see mlas_find_min_max);
    onnxruntime splits tensors of more than 128 elements into blocks when its thread pool has more
    than one thread, and then a NaN's effect depends on that partition (finite data never does)."""
    lo, hi = mlas_find_min_max(x)
    lo, hi = _std_min(lo, F32(0)), _std_max(hi, F32(0))
    with np.errstate(all="ignore"):
        scale = F32(1) if hi == lo else F32(F32(hi - lo) / F32(U8_MAX - U8_MIN))
        initial = F32(F32(U8_MIN) - F32(lo / scale))
    clamped = _std_max(F32(U8_MIN), _std_min(F32(U8_MAX), initial))  # std::min(255, NaN) = 255
    return F32(scale), np.uint8(np.rint(clamped))


def dynamic_quantize_linear(x):
    """DynamicQuantizeLinear: (y, y_scale, y_zero_point); y = MlasQuantizeLinear(x, scale, zp),
    i.e. rne(clamp(F(x / scale), -zp, 255 - zp)) + zp with NaN -> 0 (quant_golden.quantize_linear)."""
    x = np.asarray(x, np.float32)
    scale, zp = dynamic_quantization_parameters(x)
    with np.errstate(all="ignore"):
        return quantize_linear(x, scale, zp, np.uint8), scale, zp


# ---------------------------------------------------------------- integer GEMM back to float

def scale_bias_output(acc, multiplier, bias=None):
    """MLAS_QGEMM_SCALE_BIAS_OUTPUT_PROCESSOR (ZeroMode): F(F(float(acc) * multiplier) [+ bias]).

    Separate mulps and addps (qpostprocessor.cpp is built without FMA), so two roundings.
    `multiplier` is a scalar or one value per output column; `bias` one value per column."""
    with np.errstate(all="ignore"):
        out = np.asarray(acc, np.int32).astype(np.float32) * np.asarray(multiplier, np.float32)
        if bias is not None:
            out = out + np.asarray(bias, np.float32)
    return out.astype(np.float32)


def gemm_multiplier(a_scale, b_scale):
    """MatMulIntegerToFloatBase::ComputeCommon: F(a_scale * b_scale), per column if b_scale is."""
    with np.errstate(all="ignore"):
        return (F32(a_scale) * np.asarray(b_scale, np.float32)).astype(np.float32)


def matmul_integer_to_float(a, a_scale, b, b_scale, a_zero_point=0, b_zero_point=0, bias=None):
    """com.microsoft MatMulIntegerToFloat: exact int32 sum over K of (a - za)(b - zb), then
    scale_bias_output with the multiplier F(a_scale * b_scale[n]). b scale/zero point per tensor
    or per column; a per tensor; batched a broadcasts over a 2-D b."""
    acc = matmul_integer(a, a_zero_point, b, b_zero_point)
    return scale_bias_output(acc, gemm_multiplier(a_scale, b_scale), bias)


def dynamic_quantize_matmul(a, b, b_scale, b_zero_point=0, bias=None):
    """com.microsoft DynamicQuantizeMatMul: DynamicQuantizeLinear of the float a over the whole
    tensor, then MatMulIntegerToFloat with that uint8 scale and zero point."""
    a_q, a_scale, a_zp = dynamic_quantize_linear(a)
    return matmul_integer_to_float(a_q, a_scale, b, b_scale, a_zp, b_zero_point, bias)


def dynamic_conv(x, w, w_scale, w_zero_point, bias=None, **conv_attrs):
    """What quantize_dynamic makes of a Conv, unfused at run time: DynamicQuantizeLinear(x) ->
    ConvInteger -> Cast (float32(acc)) -> Mul by F(x_scale * w_scale) -> Add bias (shape (1,M,1..)).
    Identical to scale_bias_output of the ConvInteger accumulator; w_scale is per tensor."""
    x_q, x_scale, x_zp = dynamic_quantize_linear(x)
    acc = conv_integer(x_q, x_zp, w, w_zero_point, **conv_attrs)
    out = scale_bias_output(acc, gemm_multiplier(x_scale, w_scale))
    if bias is not None:
        out = (out + np.asarray(bias, np.float32).reshape(1, -1, *[1] * (out.ndim - 2))).astype(np.float32)
    return out


# ---------------------------------------------------------------- whole models

def _max_pool_float(x, kernel_shape, strides=None, pads=None, **_):
    rank = len(kernel_shape)
    strides = strides or [1] * rank
    pads = pads or [0] * (2 * rank)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + rank]) for i in range(rank)], constant_values=-np.inf)
    windows = xp
    for d in range(rank):
        windows = np.lib.stride_tricks.sliding_window_view(windows, kernel_shape[d], axis=2 + d)
    windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    return windows.reshape(windows.shape[:2 + rank] + (-1,)).max(-1).astype(x.dtype)


def evaluate_dynamic_model(model, feeds, stop_before=("Softmax",)):
    """Runs a quantize_dynamic model (as written, unfused) node by node with the golden ops above.

    Handles the ops quantize_dynamic emits around MatMul/Gemm/Conv (DynamicQuantizeLinear,
    MatMulInteger, ConvInteger, Cast, Mul, Add, Reshape) and the float ops between layers that are
    exact in float32 (Relu, MaxPool, Flatten, Identity, Transpose), plus the fused com.microsoft
    DynamicQuantizeMatMul / MatMulIntegerToFloat. Evaluation stops at the first op in
    `stop_before` (float ops such as Softmax whose MLAS kernels are not modelled here).
    Returns every tensor computed (name -> array)."""
    env = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    env.update({k: np.asarray(v) for k, v in feeds.items()})
    for node in model.graph.node:
        if node.op_type in stop_before:
            break
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ins = [env[name] if name else None for name in node.input]
        op = node.op_type
        if op == "DynamicQuantizeLinear":
            outs = dynamic_quantize_linear(ins[0])
        elif op == "MatMulInteger":
            outs = [matmul_integer(ins[0], _opt(ins, 2, 0), ins[1], _opt(ins, 3, 0))]
        elif op == "ConvInteger":
            conv = {k: attrs[k] for k in ("group", "strides", "pads", "dilations") if k in attrs}
            outs = [conv_integer(ins[0], _opt(ins, 2, 0), ins[1], _opt(ins, 3, 0), **conv)]
        elif op == "DynamicQuantizeMatMul":
            outs = [dynamic_quantize_matmul(ins[0], ins[1], ins[2], _opt(ins, 3, 0), _opt(ins, 4, None))]
        elif op == "MatMulIntegerToFloat":
            outs = [matmul_integer_to_float(ins[0], ins[2], ins[1], ins[3], _opt(ins, 4, 0), _opt(ins, 5, 0),
                                            _opt(ins, 6, None))]
        elif op == "Cast":
            if attrs["to"] != 1:
                raise NotImplementedError(f"Cast to type {attrs['to']}")
            outs = [ins[0].astype(np.float32)]  # cvtdq2ps: round half to even beyond 2**24
        elif op in ("Mul", "Add"):
            with np.errstate(all="ignore"):
                outs = [(ins[0] * ins[1] if op == "Mul" else ins[0] + ins[1]).astype(np.float32)]
        elif op == "Relu":
            outs = [np.maximum(ins[0], F32(0)).astype(ins[0].dtype)]
        elif op == "MaxPool":
            outs = [_max_pool_float(ins[0], **attrs)]
        elif op == "Reshape":
            outs = [ins[0].reshape(_onnx_shape(ins[0].shape, ins[1]))]
        elif op == "Flatten":
            axis = attrs.get("axis", 1)
            axis += ins[0].ndim if axis < 0 else 0
            outs = [ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1)]
        elif op == "Transpose":
            outs = [np.transpose(ins[0], attrs.get("perm"))]
        elif op == "Identity":
            outs = [ins[0]]
        else:
            raise NotImplementedError(f"op {op} is not in the dynamic-quantisation golden model")
        for name, value in zip(node.output, outs):
            env[name] = np.asarray(value)
    return env


def _opt(ins, index, default):
    return ins[index] if len(ins) > index and ins[index] is not None else default


def _onnx_shape(in_shape, shape):
    shape = [int(s) for s in shape]
    return tuple(in_shape[i] if s == 0 else s for i, s in enumerate(shape))

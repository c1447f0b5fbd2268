"""Quantised ONNX front end: the int8 zoo/light models (QDQ and QOperator, per-tensor and
per-channel) load, and the IR reference executes them bit-identically to onnxruntime, every
intermediate code tensor included; single quantised ops and QDQ fusion decisions against
onnxruntime; QLinearSoftmax's golden model; compile-time tables; one-line CompileErrors for
bad quantisation parameters; Graph.verify's dtype/quant rules.
"""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import CompileError
from compiler.frontend import quant_tables
from compiler.frontend.onnx import load_model
from compiler.ir import Quant, TensorType
from compiler.passes import optimize
from dse.ort_oracle import fused_model
from tests import quant_golden as golden
from tests.ir_reference import evaluate
from tests.quant_golden_softmax import qlinear_softmax, softmax_table
from tests.quant_models import ort_outputs, quant_model_path

pytest.importorskip("onnxruntime.quantization")
slow = pytest.mark.slow
ELEM = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8, "fp32": TensorProto.FLOAT,
        "int32": TensorProto.INT32}


def _ort(model: onnx.ModelProto, feeds: dict) -> dict:
    """onnxruntime's outputs for an in-memory model (default session options, CPU provider),
    exact on every CPU (tests/quant_models.py)."""
    return ort_outputs(model, feeds)


def _feeds(graph, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(graph.tensors[name].shape).astype(np.float32) for name in graph.inputs}


# ---- the quantised models, bit for bit ----------------------------------------------------

def _model_cases():
    for name in ("mlp", "squeezenet", "shufflenet", "resnet50"):
        for fmt in ("qoperator", "qdq"):
            for per_channel in (False, True):
                marks = slow if name == "resnet50" else ()
                yield pytest.param(name, fmt, per_channel, marks=marks,
                                   id=f"{name}-{fmt}-{'pc' if per_channel else 'pt'}")


@pytest.mark.parametrize("name,fmt,per_channel", list(_model_cases()))
def test_quantised_model_is_bit_identical_to_onnxruntime(name, fmt, per_channel):
    path = quant_model_path(name, fmt, per_channel)
    graph = optimize(load_model(path))
    assert {n.op for n in graph.nodes} >= {"quantize", "dequantize", "softmax"}
    assert sum(n.op in ("conv", "gemm") for n in graph.nodes) >= 3
    # every conv/gemm runs on 8-bit codes: onnxruntime fuses all of these groups
    assert all(graph.tensors[n.inputs[0]].quantised for n in graph.nodes if n.op in ("conv", "gemm"))
    feeds = _feeds(graph, 1)
    got, want = evaluate(graph, feeds), ort_outputs(path, feeds)
    for output, expected in want.items():
        assert np.array_equal(got[output], expected), (output, np.sum(got[output] != expected))


@pytest.mark.parametrize("name", ["mlp", "squeezenet", "shufflenet"])
def test_every_intermediate_code_tensor_matches(name, tmp_path):
    """All node outputs of the QOperator model become graph outputs, so onnxruntime shows each."""
    path = quant_model_path(name, "qoperator", True)
    typed = load_model(path)
    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out in typed.tensors and out not in known:
                model.graph.output.append(helper.make_tensor_value_info(out, ELEM[typed.tensors[out].dtype], None))
    exposed = tmp_path / "exposed.onnx"
    onnx.save(model, exposed)
    graph = load_model(exposed)
    feeds = _feeds(graph, 3)
    got, want = evaluate(graph, feeds), ort_outputs(exposed, feeds)
    assert len(want) > 5
    mismatched = [k for k, v in want.items() if not np.array_equal(got[k], v)]
    assert not mismatched


def test_int8_activations_run_s8s8_on_integer_convs_within_one_step_of_the_x86_float_path():
    """S8S8 QDQ Conv is fused into integer convs (docs/int8_datapath.md section 4), equal to
    onnxruntime's integer kernels on the fused graph, and within one code step of onnxruntime's
    own run of the QDQ model, which keeps those groups float on x86."""
    path = quant_model_path("squeezenet", "qdq", False, activation_type="int8", weight_type="int8")
    graph = optimize(load_model(path))
    integer_convs = [n for n in graph.nodes if n.op == "conv" and graph.tensors[n.inputs[0]].dtype == "int8"]
    assert len(integer_convs) == 26
    feeds = _feeds(graph, 1)
    got = evaluate(graph, feeds)
    for output, expected in ort_outputs(fused_model(onnx.load(str(path))), feeds).items():
        assert np.array_equal(got[output], expected), output
    for output, expected in ort_outputs(path, feeds, exact=False).items():
        steps = np.abs(got[output] - expected) / np.float32(1 / 255)
        assert steps.max() <= 1.001


# ---- single ops and QDQ groups against onnxruntime ----------------------------------------

def _init(name, value, dtype=None):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _wrapped(body, inits, shape, x=(0.05, 128), y=(0.05, 128), dtype=np.uint8, opset=13, out_shape=None):
    """x (float) -> QuantizeLinear -> body (reads 'xq', writes 'yq') -> DequantizeLinear -> y."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), *body,
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    inits = [_init("xs", x[0], np.float32), _init("xz", x[1], dtype), _init("ys", y[0], np.float32),
             _init("yz", y[1], dtype), *inits]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("com.microsoft", 1)])


def _check(model, seed=0, scale=3.0):
    graph = optimize(load_model(model))
    feeds = {"x": (np.random.default_rng(seed).standard_normal(graph.tensors["x"].shape) * scale)
             .astype(np.float32)}
    got, want = evaluate(graph, feeds)["y"], _ort(model, feeds)["y"]
    assert np.array_equal(got, want), np.sum(got != want)
    return graph


def _ms(op, inputs, **attrs):
    return helper.make_node(op, inputs, ["yq"], domain="com.microsoft", **attrs)


X_Y = ["xq", "xs", "xz", "ys", "yz"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("node", [
    _ms("QLinearSigmoid", X_Y), _ms("QLinearLeakyRelu", X_Y, alpha=0.2),
    _ms("QLinearAveragePool", X_Y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    _ms("QLinearAveragePool", X_Y, kernel_shape=[2, 2], count_include_pad=1, pads=[1, 0, 0, 1]),
    _ms("QLinearGlobalAveragePool", X_Y),
    _ms("QLinearMul", ["xq", "xs", "xz", "xq", "xs", "xz", "ys", "yz"]),
    _ms("QLinearConcat", ["ys", "yz", "xq", "xs", "xz", "xq2", "ys", "yz"], axis=1),
], ids=lambda v: getattr(v, "op_type", None))
def test_single_quantised_ops_match_onnxruntime(node, dtype):
    zp = 128 if dtype == np.uint8 else 3
    second = helper.make_node("QuantizeLinear", ["x", "ys", "yz"], ["xq2"])   # other parameters
    _check(_wrapped([second, node], [], [1, 3, 7, 6], x=(0.041, zp), y=(0.023, zp - 5), dtype=dtype))


@pytest.mark.parametrize("trans_b,alpha,float_out", [(0, 1.0, False), (1, 0.7, False), (0, 1.3, True)])
def test_qgemm_transb_alpha_and_float_output(trans_b, alpha, float_out):
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, (5, 6) if trans_b else (6, 5)).astype(np.int8)
    inits = [_init("w", w), _init("ws", rng.uniform(0.01, 0.02, 5), np.float32), _init("wz", np.zeros(5, np.int8)),
             _init("c", rng.integers(-500, 500, 5), np.int32)]
    outs = [] if float_out else ["ys", "yz"]
    gemm = helper.make_node("QGemm", ["xq", "xs", "xz", "w", "ws", "wz", "c", *outs],
                            ["f" if float_out else "yq"], domain="com.microsoft", transB=trans_b, alpha=alpha)
    body = [gemm] + ([helper.make_node("QuantizeLinear", ["f", "ys", "yz"], ["yq"])] if float_out else [])
    graph = _check(_wrapped(body, inits, [4, 6], y=(0.2, 120)))
    assert [n.op for n in graph.nodes].count("gemm") == 1


def test_qlinear_matmul_with_batched_a_and_uint8_weights():
    rng = np.random.default_rng(5)
    inits = [_init("w", rng.integers(0, 256, (6, 4)), np.uint8), _init("ws", 0.013, np.float32),
             _init("wz", 121, np.uint8)]
    node = helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"])
    graph = _check(_wrapped([node], inits, [2, 3, 6], y=(0.4, 100)))
    assert [n.op for n in graph.nodes] == ["quantize", "reshape", "gemm", "reshape", "dequantize"]


def _qdq(op_nodes, inits, shape, dtype=np.uint8, y_zp=None, **kw):
    """DQ(xq) -> ops (read 'd', write 'f') -> Q -> 'yq' inside _wrapped."""
    zp = 128 if dtype == np.uint8 else 0
    body = [helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["d"]), *op_nodes,
            helper.make_node("QuantizeLinear", ["f", "ys", "yz"], ["yq"])]
    return _wrapped(body, inits, shape, x=(0.05, zp), y=(0.04, zp if y_zp is None else y_zp), dtype=dtype, **kw)


def _conv_inits(dtype=np.int8):
    rng = np.random.default_rng(6)
    return [_init("w", rng.integers(-100, 100, (4, 3, 3, 3)), dtype), _init("ws", 0.02, np.float32),
            _init("wz", 0, dtype), _init("b", rng.integers(-300, 300, 4), np.int32),
            _init("bs", np.float32(0.05) * np.float32(0.02), np.float32), _init("bz", 0, np.int32)]


def _conv_group(relu=False):
    nodes = [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["dw"]),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["db"]),
             helper.make_node("Conv", ["d", "dw", "db"], ["c" if relu else "f"], pads=[1, 1, 1, 1])]
    return nodes + ([helper.make_node("Relu", ["c"], ["f"])] if relu else [])


def test_qdq_uint8_conv_relu_with_zero_point_at_qmin_fuses():
    graph = _check(_qdq(_conv_group(relu=True), _conv_inits(), [1, 3, 6, 6], y_zp=0))
    assert [n.op for n in graph.nodes] == ["quantize", "conv", "dequantize"]


def test_qdq_relu_with_other_zero_point_stays_float():
    graph = _check(_qdq(_conv_group(relu=True), _conv_inits(), [1, 3, 6, 6], y_zp=9))
    assert [n.op for n in graph.nodes] == ["quantize", "dequantize", "conv", "quantize", "dequantize"]


def test_qdq_int8_activations_fuse_with_int8_weights_only():
    """S8S8 groups are fused (as onnxruntime fuses them on ARM); int8 activations with uint8
    weights have no integer kernel in onnxruntime and stay float."""
    for weights, fused in ((np.int8, True), (np.uint8, False)):
        inits = _conv_inits(weights)
        if weights == np.uint8:
            inits = [_init("w", np.random.default_rng(6).integers(0, 200, (4, 3, 3, 3)), np.uint8)] + inits[1:]
        graph = optimize(load_model(_qdq(_conv_group(), inits, [1, 3, 6, 6], dtype=np.int8)))
        conv = next(n for n in graph.nodes if n.op == "conv")
        assert (graph.tensors[conv.inputs[0]].dtype == "int8") == fused and conv.inputs[1] in graph.constants


@pytest.mark.parametrize("same_params", [True, False])
def test_qdq_maxpool_runs_on_codes_only_with_equal_parameters(same_params):
    nodes = [helper.make_node("MaxPool", ["d"], ["f"], kernel_shape=[2, 2])]
    model = _qdq(nodes, [], [1, 2, 6, 6], y_zp=128 if same_params else 100)
    if same_params:                     # the Q's scale must equal the DQ's too
        model.graph.initializer[2].CopyFrom(_init("ys", 0.05, np.float32))
    graph = _check(model)
    ops = [n.op for n in graph.nodes]
    assert ops == (["quantize", "maxpool", "dequantize"] if same_params
                   else ["quantize", "dequantize", "maxpool", "quantize", "dequantize"])


@pytest.mark.parametrize("opset,axis", [(13, 1), (13, -1), (11, 1), (11, 2)])
def test_qdq_softmax_becomes_qlinear_softmax(opset, axis):
    graph = _check(_qdq([helper.make_node("Softmax", ["d"], ["f"], axis=axis)], [], [2, 3, 4], opset=opset,
                        y_zp=0), scale=1.0)
    assert "softmax" in [n.op for n in graph.nodes]


# ---- QLinearSoftmax golden model and compile-time tables ----------------------------------

def _softmax_model(shape, dtype, xs, xz, ys, yz, axis, opset):
    elem = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    node = helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                            axis=axis, opset=opset)
    graph = helper.make_graph([node], "s", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, shape)],
                              [_init("xs", xs, np.float32), _init("xz", xz, dtype), _init("ys", ys, np.float32),
                               _init("yz", yz, dtype)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])


def test_qlinear_softmax_golden_model_is_bit_identical():
    rng = np.random.default_rng(0)
    for trial in range(40):
        dtype = np.int8 if trial % 2 else np.uint8
        lo, hi = (-128, 127) if dtype == np.int8 else (0, 255)
        if trial < 20:      # random shapes, axes, opsets and output scales
            shape = [int(v) for v in rng.integers(1, 6, size=rng.integers(2, 4))]
            axis, opset = int(rng.integers(-len(shape), len(shape))), int(rng.choice([12, 13]))
            x = rng.integers(lo, hi + 1, size=shape).astype(dtype)
            ys = np.float32(rng.choice([1 / 256, 1 / 255, np.exp(rng.uniform(-7, -2))]))
        else:               # rows near their maximum with large outputs: sum and logf sensitive
            length = int(rng.integers(2, 400))
            base = rng.integers(lo + 10, hi, size=(200, 1))
            x = np.clip(base - rng.integers(0, 6, size=(200, length)), lo, hi).astype(dtype)
            shape, axis, opset, ys = list(x.shape), -1, 13, np.float32(np.exp(rng.uniform(-9, -6)))
        xs, yz = np.float32(np.exp(rng.uniform(-5, 0.5))), dtype(lo if trial % 3 else rng.integers(lo, hi))
        model = _softmax_model(shape, dtype, xs, dtype(7), ys, yz, axis, opset)
        want = _ort(model, {"x": x})["y"]
        assert np.array_equal(qlinear_softmax(x, xs, 7, ys, yz, axis=axis, opset=opset), want), trial


def test_compile_time_tables_equal_the_golden_models():
    rng = np.random.default_rng(1)
    for dtype in ("uint8", "int8"):
        lo = 0 if dtype == "uint8" else -128
        for _ in range(5):
            xq = Quant((float(np.float32(rng.uniform(0.01, 0.2))),), (int(rng.integers(lo, lo + 256)),))
            yq = Quant((float(np.float32(rng.uniform(0.001, 0.05))),), (int(rng.integers(lo, lo + 256)),))
            for fn in (quant_tables.mlas_logistic, quant_tables.leaky_relu(0.1), quant_tables.identity):
                ours = quant_tables.lookup_table(dtype, xq, dtype, yq, fn)
                theirs = golden._lookup_table(xq.scale[0], xq.zero_point[0], yq.scale[0], yq.zero_point[0],
                                              np.dtype(dtype), {quant_tables.mlas_logistic: golden.mlas_logistic}
                                              .get(fn, fn))
                assert np.array_equal(ours, theirs)
            length = int(rng.integers(1, 2000))
            assert np.array_equal(quant_tables.softmax_exp_table(xq.scale[0], length, dtype == "int8"),
                                  softmax_table(xq.scale[0], length, dtype == "int8"))


# ---- bad input: one-line CompileErrors naming node, input and rule -------------------------

def _one_line_error(model, *needles):
    with pytest.raises(CompileError) as err:
        load_model(model)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def _qconv(inputs=None, inits=None, name="qc", w_zp=None):
    rng = np.random.default_rng(7)
    base = {"w": np.asarray(rng.integers(-100, 100, (2, 3, 1, 1)), np.int8), "ws": np.float32(0.02),
            "wz": np.int8(0) if w_zp is None else w_zp}
    base.update(inits or {})
    node = helper.make_node("QLinearConv", inputs or ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"],
                            name=name)
    return _wrapped([node], [_init(k, v) for k, v in base.items()], [1, 3, 4, 4])


@pytest.mark.parametrize("make,needles", [
    (lambda: _qconv(inits={"ws": np.float32(0.0)}), ["'qc'", "'ws'", "w_scale", "finite and > 0"]),
    (lambda: _qconv(inits={"ws": np.float32(np.nan)}), ["'qc'", "'ws'", "nan", "finite and > 0"]),
    (lambda: _qconv(inits={"ws": np.float32(-0.5)}), ["'qc'", "-0.5", "finite and > 0"]),
    (lambda: _qconv(inputs=["xq", "xs", "xz", "w", "", "wz", "ys", "yz"]), ["'qc'", "w_scale", "missing"]),
    (lambda: _qconv(inits={"wz": np.int32(300)}), ["'qc'", "'wz'", "300", "out of range", "-128..127"]),
    (lambda: _qconv(inits={"wz": np.uint8(0)}), ["'qc'", "'wz'", "uint8", "int8"]),
    (lambda: _qconv(w_zp=np.array([0, 1], np.int8), inits={"ws": np.array([0.02, 0.03], np.float32)}),
     ["'qc'", "zero points differ"]),
    (lambda: _qconv(inputs=["xq", "x", "xz", "w", "ws", "wz", "ys", "yz"]), ["'qc'", "'x'", "constant"]),
    (lambda: _wrapped([helper.make_node("Relu", ["xq"], ["yq"], name="r")], [], [2, 3]),
     ["'r'", "Relu", "uint8 codes", "float32"]),
    (lambda: _wrapped([helper.make_node("QuantizeLinear", ["x", "ys", "big"], ["yq"], name="q")],
                      [_init("big", 256, np.int64)], [2, 3]), ["'q'", "'big'", "256", "out of range", "0..255"]),
    (lambda: _wrapped([_ms("QLinearWhere", X_Y, name="w")], [], [2, 3]), ["QLinearWhere", "QLinearSoftmax"]),
    (lambda: _wrapped([_ms("QLinearGlobalAveragePool", X_Y, name="g")], [], [1, 2, 3, 3], y=(1e-5, 0)),
     ["'g'", "[2**-32, 256)"]),
])
def test_bad_quantisation_parameters_are_clear_errors(make, needles):
    _one_line_error(make(), *needles)


def test_zero_scale_in_a_folded_dequantize_is_an_error():
    model = _qdq(_conv_group(), _conv_inits(np.int8), [1, 3, 6, 6], dtype=np.int8)
    for init in model.graph.initializer:
        if init.name == "ws":
            init.CopyFrom(_init("ws", 0.0, np.float32))
    _one_line_error(model, "'ws'", "w_scale", "finite and > 0")


# ---- Graph.verify: dtype and quantisation rules -----------------------------------------------

def _loaded_conv():
    return optimize(load_model(_qconv()))


def _retype(graph, name, **changes):
    graph.tensors[name] = dataclasses.replace(graph.tensors[name], **changes)
    return graph


def test_verify_checks_per_channel_scale_length():
    graph = _loaded_conv()
    conv = next(n for n in graph.nodes if n.op == "conv")
    _retype(graph, conv.inputs[1], quant=Quant((0.1, 0.2, 0.3), (0, 0, 0), 0))
    with pytest.raises(CompileError, match="axis 0 needs 2"):
        graph.verify()


def test_verify_refuses_float_ops_on_codes_and_mixed_parameters():
    graph = _loaded_conv()
    conv = next(n for n in graph.nodes if n.op == "conv")
    relu = conv.replace(op="relu", inputs=conv.inputs[:1], attrs={})
    with pytest.raises(CompileError, match="relu takes float32 only"):
        graph.replace(nodes=[graph.nodes[0], relu, *graph.nodes[2:]]).verify()
    other = Quant((0.5,), (3,))
    with pytest.raises(CompileError, match="moves 8-bit codes"):
        graph.replace(nodes=[graph.nodes[0], conv.replace(op="identity", inputs=conv.inputs[:1], attrs={}),
                             *graph.nodes[2:]],
                      tensors={**graph.tensors, conv.outputs[0]: TensorType(graph.tensors[conv.outputs[0]].shape,
                                                                             "uint8", other)}).verify()


def test_verify_checks_constant_dtypes_and_weight_types():
    graph = _loaded_conv()
    conv = next(n for n in graph.nodes if n.op == "conv")
    graph.constants[conv.inputs[1]] = graph.constants[conv.inputs[1]].astype(np.float32)
    with pytest.raises(CompileError, match="its type says int8"):
        graph.verify()

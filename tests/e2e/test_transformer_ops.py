"""The non-GEMM ops transformers and MobileNets need (docs/ops.md), each on small graphs against
onnxruntime's CPU kernels: fp32 within the tolerance docs/ops.md states per op; bf16 and fp16 within one
rounding of the narrow type of onnxruntime's fp32 result on the same rounded inputs and constants; the SIMT
target's bits equal to the systolic target's; the decomposed LayerNormalization fused into the native op with
the unfused graph's bits; and the element-ops the vector unit's timing charges for a transcendental."""
import math

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import dse
from compiler import passes
from compiler.numerics import round_to
from compiler.program import OPCODE_ID
from compiler.targets.vector import UNARY_ELEMENT_OPS
from sim.targets import systolic as systolic_timing
from tests.e2e.test_models import ort_run

FP32 = {"array": {"rows": 4, "cols": 4}}
SIMT_FP32 = {"target": "simt",
             "datatypes": {"input": "fp32", "weight": "fp32", "accumulator": "fp32", "output": "fp32"}}
U32 = 2.0 ** -24                                     # fp32 unit roundoff
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)   # below it onnxruntime's tanh/erf may differ by denormal ulps


def narrow(dtype: str) -> dict:
    return {"array": {"rows": 4, "cols": 4}, "datatypes": {"input": dtype, "weight": dtype, "output": dtype}}


def model(nodes, inputs: dict, initializers: dict | None = None, opset: int = 20, outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
                                             for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def single(op, attrs=None, shape=(64,), initializers=None, opset=20, extra=()):
    """A one-node model y = op(x, *extra inputs, *initializers)."""
    names = ["x", *extra, *(initializers or {})]
    return model([helper.make_node(op, names, ["y"], **(attrs or {}))], {"x": shape, **{n: shape for n in extra}},
                 initializers, opset)


def simulate(onnx_model, inputs, hw=FP32):
    return dse.run(onnx_model, hw=hw, inputs=inputs).outputs


def ulps(a, b) -> np.ndarray:
    """Distance in fp32 ulps (adjacent fp32 values are 1 apart; +0 and -0 are 0 apart)."""
    def ordered(v):
        bits = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


def values(domain: str) -> np.ndarray:
    """Test inputs: magnitudes from 1e-3 to 30 and the special values (NaN, +-Inf, +-0, tiny, huge)."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(500) * s for s in (1e-3, 1.0, 4.0, 30.0)] + [rng.uniform(-20, 20, 500)])
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-40, 3e38, -3e38]
    if domain == "exp":           # inside fp32's exp range (onnxruntime's kernel clamps outside it)
        x, specials = np.clip(x, -87, 88), [np.nan, np.inf, -np.inf, 0.0, -0.0]
    if domain == "positive":
        x = np.abs(x) + 1e-6
    return np.concatenate([x, specials]).astype(np.float32)


def check(got, want, tolerance, x=None):
    """`got` within `tolerance` of onnxruntime's `want`: "exact" (bits, NaN included); ("ulp", k): k fp32 ulps
    (or both below the smallest normal); ("abs", a): |d| <= a; ("abs_x", a): |d| <= a (|x| + 1)."""
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)])
    finite = np.isfinite(want)
    g, w = got[finite], want[finite]
    kind, bound = (tolerance, 0) if tolerance == "exact" else tolerance
    d = np.abs(g.astype(np.float64) - w)
    if kind == "exact":
        ok = (g == w) & (np.signbit(g) == np.signbit(w))
    elif kind == "ulp":
        ok = (ulps(g, w) <= bound) | (d < SMALLEST_NORMAL)
    elif kind == "abs":
        ok = d <= bound
    else:
        ok = d <= bound * (np.abs(x[finite]) + 1)
    assert ok.all(), f"{tolerance}: worst at x={None if x is None else x[finite][~ok][:3]}, " \
                     f"sim {g[~ok][:3]}, onnxruntime {w[~ok][:3]}"


# (ONNX op, attributes, input domain, fp32 tolerance against onnxruntime 1.32's CPU kernels: docs/ops.md gives the
# measured figure, the test allows twice it)
UNARY_CASES = [
    ("Erf", {}, "all", ("ulp", 2)),
    ("Tanh", {}, "all", ("ulp", 8)),
    ("Sigmoid", {}, "all", ("abs", 2.5e-7)),
    ("Exp", {}, "exp", ("ulp", 2)),
    ("Log", {}, "positive", ("ulp", 6)),
    ("Sqrt", {}, "positive", "exact"),
    ("Reciprocal", {}, "all", "exact"),
    ("Neg", {}, "all", "exact"),
    ("Abs", {}, "all", "exact"),
    ("Gelu", {}, "all", ("abs_x", 2e-7)),
    ("Gelu", {"approximate": "tanh"}, "all", ("abs_x", 4e-7)),
    ("HardSigmoid", {}, "all", "exact"),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "all", "exact"),
    ("HardSwish", {}, "all", "exact"),
]


@pytest.mark.parametrize("op, attrs, domain, tolerance", UNARY_CASES, ids=lambda v: str(v) if v else "")
def test_unary_op_matches_onnxruntime(op, attrs, domain, tolerance):
    x = values(domain)
    m = single(op, attrs, x.shape)
    check(simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"], tolerance, x)


@pytest.mark.parametrize("form", ["opset7_attributes", "inputs", "min_only", "max_only", "none"])
def test_clip_is_exact(form):
    """Clip (ReLU6 in MobileNets) with its bounds as attributes (opset < 11) or constant inputs."""
    x = values("all") * np.float32(0.5)
    if form == "opset7_attributes":
        m = single("Clip", {"min": 0.0, "max": 6.0}, x.shape, opset=7)
    else:
        bounds = {"inputs": (0.0, 6.0), "min_only": (-1.5, None), "max_only": (None, 2.5), "none": (None, None)}[form]
        names = [f"b{i}" if b is not None else "" for i, b in enumerate(bounds)]
        m = model([helper.make_node("Clip", ["x", *names], ["y"])], {"x": x.shape},
                  {n: np.float32(b) for n, b in zip(names, bounds) if n}, opset=13)
    check(simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"], "exact")


@pytest.mark.parametrize("exponent, tolerance", [(2.0, "exact"), (0.5, ("ulp", 2)), (3.0, ("ulp", 2)),
                                                 (-1.0, ("ulp", 2)), (1.7, ("ulp", 2)),
                                                 (np.array([0.5, 2, 3]), ("ulp", 2))])
def test_pow_with_a_constant_exponent(exponent, tolerance):
    """onnxruntime squares exactly as we do; other powers: its powf against the correctly rounded value (1 ulp)."""
    x = np.abs(np.random.default_rng(0).standard_normal((4, 3)) * 3).astype(np.float32)
    m = single("Pow", shape=x.shape, initializers={"e": np.asarray(exponent, np.float32)})
    check(simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"], tolerance)


@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                              ((5,), ())])
@pytest.mark.parametrize("op", ["Pow", "Min", "Max"])
def test_binary_ops_broadcast_like_onnxruntime(op, a_shape, b_shape):
    """Run-time operands with NumPy broadcasting; Pow's special cases (negative bases, 0 to negative powers)
    are C99's, Min/Max propagate NaN: onnxruntime's too."""
    rng = np.random.default_rng(1)
    a = np.asarray(rng.standard_normal(a_shape) * 2, np.float32)
    b = np.asarray(rng.standard_normal(b_shape) * 2, np.float32)
    if op == "Pow":                 # integer exponents make negative bases meaningful
        b = np.where(rng.random(b_shape) < 0.5, np.round(b), b).astype(np.float32)
    a.flat[0], b.flat[0] = (0.0, -1.0) if op == "Pow" else (np.nan, 1.0)
    m = model([helper.make_node(op, ["a", "b"], ["y"])], {"a": a_shape, "b": b_shape}, opset=13)
    feeds = {"a": a, "b": b}
    check(simulate(m, feeds)["y"], ort_run(m, feeds)["y"], ("ulp", 2) if op == "Pow" else "exact")


def test_min_max_take_many_inputs():
    rng = np.random.default_rng(2)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in (("a", (3, 4)), ("b", (4,)), ("c", (3, 1)))}
    m = model([helper.make_node("Min", ["a", "b", "c"], ["lo"]), helper.make_node("Max", ["a", "b", "c"], ["hi"]),
               helper.make_node("Max", ["a"], ["y"])], {n: v.shape for n, v in feeds.items()},
              outputs=("lo", "hi", "y"), opset=13)
    got, want = simulate(m, feeds), ort_run(m, feeds)
    for name in want:
        check(got[name], want[name], "exact")


@st.composite
def reduction(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank)))
    axes = draw(st.lists(st.integers(-rank, rank - 1), unique_by=lambda a: a % rank, max_size=rank))
    op = draw(st.sampled_from(["ReduceMean", "ReduceSum", "ReduceMax"]))
    return shape, axes, draw(st.sampled_from([0, 1])), op, draw(st.sampled_from([13, 18])), draw(st.integers(0, 99))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=reduction())
def test_reductions_match_onnxruntime(case):
    """Any axes (none: all), keepdims either way, axes as an attribute or an input by opset. Sums differ from
    onnxruntime's only in order: within 2 gamma_n sum|x| (each order is within gamma_n of the exact sum);
    a mean adds a rounding of the division; a max is exact."""
    shape, axes, keepdims, op, opset, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    as_input = opset >= (13 if op == "ReduceSum" else 18)
    attrs = {"keepdims": keepdims, **({} if as_input or not axes else {"axes": axes})}
    inits = {"axes": np.array(axes, np.int64)} if as_input and axes else {}
    m = model([helper.make_node(op, ["x", *inits], ["y"], **attrs)], {"x": shape}, inits, opset)
    got, want = simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"]
    assert got.shape == want.shape
    if op == "ReduceMax":
        check(got, want, "exact")
        return
    reduced = [a % len(shape) for a in axes] or list(range(len(shape)))
    n = math.prod(shape[a] for a in reduced)
    total_abs = np.sum(np.abs(x.astype(np.float64)), axis=tuple(reduced), keepdims=bool(keepdims))
    gamma = n * U32 / (1 - n * U32)
    bound = 2 * gamma * total_abs / (n if op == "ReduceMean" else 1) + 2 * U32 * np.abs(want)
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


@pytest.mark.parametrize("axis, opset", [(0, 13), (1, 13), (2, 13), (-1, 13), (1, 11)])
def test_softmax_on_any_axis(axis, opset):
    """Softmax along one axis (opset 13), or before opset 13 over the axes from `axis` on; onnxruntime's exp is a
    polynomial within ~1 ulp: measured 1.8e-7 apart on outputs in [0, 1]."""
    x = (np.random.default_rng(3).standard_normal((3, 4, 10)) * 3).astype(np.float32)
    m = single("Softmax", {"axis": axis}, x.shape, opset=opset)
    check(simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"], ("abs", 5e-7))


def decomposed_layer_norm(x, y, axes, bias=True, squared_by="Pow", opset=13) -> list:
    """PyTorch's export of nn.LayerNorm before opset 17, from tensor x to y over `axes` (constants two, eps, scale,
    bias and, from opset 18 where the reductions take them as an input, axes)."""
    def mean(source, output):
        if opset >= 18:
            return helper.make_node("ReduceMean", [source, "axes"], [output])
        return helper.make_node("ReduceMean", [source], [output], axes=axes)
    square = helper.make_node("Pow", ["d", "two"], ["sq"]) if squared_by == "Pow" else \
        helper.make_node("Mul", ["d", "d"], ["sq"])
    nodes = [mean(x, "mean"), helper.make_node("Sub", [x, "mean"], ["d"]), square, mean("sq", "var"),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["std"]),
             helper.make_node("Div", ["d", "std"], ["n"]),
             helper.make_node("Mul", ["n", "scale"], ["s" if bias else y])]
    return nodes + ([helper.make_node("Add", ["s", "bias"], [y])] if bias else [])


def layer_norm_model(shape, axis, bias=True, decomposed=False, squared_by="Pow", seed=4):
    """LayerNormalization over axes axis.. as the ONNX op (opset 17), or decomposed (opset 13)."""
    rng = np.random.default_rng(seed)
    normalised = shape[axis:]
    inits = {"scale": rng.standard_normal(normalised).astype(np.float32)}
    if bias:
        inits["bias"] = rng.standard_normal(normalised).astype(np.float32)
    if not decomposed:
        nodes = [helper.make_node("LayerNormalization", ["x", *inits], ["y"], axis=axis, epsilon=1e-5)]
        return model(nodes, {"x": shape}, inits, 17)
    inits.update(two=np.float32(2), eps=np.float32(1e-5))
    nodes = decomposed_layer_norm("x", "y", list(range(axis % len(shape), len(shape))), bias, squared_by)
    return model(nodes, {"x": shape}, inits, 13)


@pytest.mark.parametrize("shape, axis, bias", [((16, 8), -1, True), ((4, 64), -1, False), ((2, 768), 1, True),
                                               ((2, 4, 16), 1, True), ((2, 3, 4, 5), -2, True)])
def test_layer_normalization_matches_onnxruntime(shape, axis, bias):
    """On inputs of mean 0 and variance 1: |sim - ort| <= 4 sqrt(D) u (|scale| + |bias|) for D normalised elements
    (measured <= 1.0 sqrt(D) u; onnxruntime's variance is E[x^2] - mean^2, ours the mean squared deviation)."""
    m = layer_norm_model(shape, axis, bias)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    got, want = simulate(m, {"x": x})["y"], ort_run(m, {"x": x})["y"]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    size = math.prod(shape[axis:])
    weight = np.abs(inits["scale"]) + (np.abs(inits["bias"]) if bias else 0)
    assert np.all(np.abs(got - want) <= 4 * math.sqrt(size) * U32 * weight)


def _exact_layer_norm(x, scale, bias, epsilon=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + epsilon) * scale + bias


@pytest.mark.parametrize("mean", [0.0, 30.0, 300.0])
def test_layer_normalization_within_its_declared_error(mean):
    """Against float64 arithmetic (first order, the fp32 sums sequential): |y - exact| <= |scale| u ((D + 2) mean|x|
    / std + (D/2 + 6) |x - mean| / std) + u |y| + |bias| u. onnxruntime 1.32 accumulates its statistics in float64,
    so off-centre rows (mean >> std) are where we differ from it most: within the same bound plus 2 ulps."""
    shape = (8, 256)
    m = layer_norm_model(shape, -1)
    x = (np.random.default_rng(6).standard_normal(shape) + mean).astype(np.float32)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    exact = _exact_layer_norm(x, inits["scale"], inits["bias"])
    x64, size = x.astype(np.float64), shape[1]
    std = x64.std(-1, keepdims=True)
    bound = (np.abs(inits["scale"]) * U32 * ((size + 2) * np.abs(x64).mean(-1, keepdims=True) / std
                                             + (size / 2 + 6) * np.abs(x64 - x64.mean(-1, keepdims=True)) / std)
             + U32 * np.abs(exact) + np.abs(inits["bias"]) * U32)
    got = simulate(m, {"x": x})["y"]
    assert np.all(np.abs(got - exact) <= bound)
    want = ort_run(m, {"x": x})["y"]
    assert np.all(np.abs(got - want) <= bound + 2 * np.spacing(np.abs(want)))


@pytest.mark.parametrize("squared_by, bias", [("Pow", True), ("Mul", True), ("Pow", False)])
def test_decomposed_layer_norm_fuses_with_the_unfused_bits(squared_by, bias, monkeypatch):
    """PyTorch's pre-opset-17 LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) becomes one
    vec_layernorm whose outputs are the unfused graph's bits on fp32 (the same sums in the same order, the same
    division) and the native LayerNormalization's, and match onnxruntime as the native op does."""
    shape = (6, 32)
    decomposed = layer_norm_model(shape, -1, bias, decomposed=True, squared_by=squared_by)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    fused = dse.compile(decomposed, FP32)
    assert [layer.op for layer in fused.layers] == ["layer_norm"]
    got = dse.api.simulate(fused, {"x": x}).outputs["y"]
    assert np.array_equal(got, simulate(layer_norm_model(shape, -1, bias), {"x": x})["y"])
    monkeypatch.setattr(passes, "PASSES", [p for p in passes.PASSES if p[0] != "fuse_layernorm"])
    unfused = dse.compile(decomposed, FP32)
    assert len(unfused.layers) == 7 + 1 + bias
    assert np.array_equal(got, dse.api.simulate(unfused, {"x": x}).outputs["y"])
    weight = np.abs(numpy_helper.to_array(decomposed.graph.initializer[0])) + 1
    assert np.all(np.abs(got - ort_run(decomposed, {"x": x})["y"]) <= 4 * math.sqrt(32) * U32 * weight)


@pytest.mark.parametrize("to, dtype", [(TensorProto.FLOAT16, "fp16"), (TensorProto.BFLOAT16, "bf16")])
def test_cast_between_float_types_rounds_as_onnxruntime(to, dtype):
    x = np.concatenate([np.random.default_rng(8).standard_normal(300) * 100, [np.nan, np.inf, 1e6, 1e-6]]).astype(
        np.float32)
    m = model([helper.make_node("Cast", ["x"], ["h"], to=to), helper.make_node("Cast", ["h"], ["y"], to=1)],
              {"x": x.shape}, opset=13)
    got = simulate(m, {"x": x})["y"]
    check(got, ort_run(m, {"x": x})["y"], "exact")
    check(got, round_to(x, dtype), "exact")


# ---- bf16 and fp16 (hwspecs/systolic_bf16.yaml's datapath) -------------------------------------------------------

def _rounded(onnx_model: onnx.ModelProto, dtype: str) -> onnx.ModelProto:
    """The model with its float constants rounded to `dtype` (as the narrow datapath stores weights)."""
    out = onnx.ModelProto()
    out.CopyFrom(onnx_model)
    for tensor in out.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32:
            tensor.CopyFrom(numpy_helper.from_array(round_to(value, dtype).reshape(value.shape), tensor.name))
    return out


NARROW_CASES = [(op, attrs, tolerance) for op, attrs, _, tolerance in UNARY_CASES] + [
    ("Pow", {}, ("ulp", 2)), ("Max", {}, "exact"), ("ReduceMax", {"axes": [0]}, "exact"),
    ("ReduceMean", {"axes": [-1]}, ("abs", 5e-6)),       # 2 gamma_16 mean|x| for 16 values of mean |x| < 2.5
    ("Softmax", {}, ("abs", 5e-7)),
    ("LayerNormalization", {}, ("abs", 1e-5)),           # 4 sqrt(16) u (|scale| + |bias|) for |scale| + |bias| < 10
]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("op, attrs, tolerance", NARROW_CASES, ids=lambda v: str(v) if v else "")
def test_narrow_types_within_one_rounding(op, attrs, tolerance, dtype):
    """With bf16/fp16 inputs, constants and outputs (fp32 arithmetic inside): the output is onnxruntime's fp32
    result on the rounded inputs and constants, within the fp32 tolerance plus one rounding to the narrow type,
    u |y| (u = 2^-8 bf16, 2^-11 fp16; plus fp16's subnormal spacing, 2^-24)."""
    rng = np.random.default_rng(9)
    x = np.clip(rng.standard_normal((6, 16)) * 2, -8, 8).astype(np.float32)
    inits, extra = {}, ()
    if op in ("Log", "Sqrt", "Pow"):
        x = np.abs(x) + np.float32(0.01)
    if op == "Pow":
        inits = {"e": np.float32(1.7)}
    if op == "Max":
        extra = ("x2",)
    if op == "LayerNormalization":
        inits = {name: rng.standard_normal(16).astype(np.float32) for name in ("scale", "bias")}
    if op.startswith("Reduce"):
        attrs = dict(attrs, keepdims=1)
    m = single(op, attrs, x.shape, inits, 13 if op.startswith("Reduce") else 20, extra)
    feeds = {"x": x, **{n: rng.standard_normal(x.shape).astype(np.float32) for n in extra}}
    got = simulate(m, feeds, narrow(dtype))["y"]
    want = ort_run(_rounded(m, dtype), {n: round_to(v, dtype).reshape(v.shape) for n, v in feeds.items()})["y"]
    d = np.abs(got.astype(np.float64) - want)
    allowed = UNIT_ROUNDOFF[dtype] * np.abs(want) + _fp32_allowance(tolerance, want) + (U32 if dtype == "fp16" else 0)
    assert np.all(d <= allowed), (d - allowed).max()


def _fp32_allowance(tolerance, want):
    """An fp32 tolerance (check's) as an absolute allowance per element."""
    if tolerance == "exact":
        return 0.0
    kind, bound = tolerance
    if kind == "ulp":
        return bound * np.spacing(np.abs(want).astype(np.float32)).astype(np.float64) + SMALLEST_NORMAL
    return bound if kind == "abs" else bound * 9          # abs_x with |x| <= 8


# ---- every target, and the timing ----------------------------------------------------------------------------

def mixed_model() -> tuple:
    """One graph of every new op (a transformer block's non-GEMM ops and a MobileNet's activations)."""
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["ln"], epsilon=1e-5),
             helper.make_node("Gelu", ["ln"], ["g"]), helper.make_node("Gelu", ["ln"], ["gt"], approximate="tanh"),
             helper.make_node("Erf", ["g"], ["e"]), helper.make_node("Tanh", ["gt"], ["t"]),
             helper.make_node("Sigmoid", ["e"], ["s"]), helper.make_node("Max", ["t", "s"], ["mx"]),
             helper.make_node("Pow", ["mx", "two"], ["p"]), helper.make_node("Sqrt", ["p"], ["r"]),
             helper.make_node("Exp", ["r"], ["ex"]), helper.make_node("Log", ["ex"], ["lg"]),
             helper.make_node("Reciprocal", ["lg"], ["rc"]), helper.make_node("Neg", ["rc"], ["ng"]),
             helper.make_node("Abs", ["ng"], ["ab"]), helper.make_node("Clip", ["ab", "zero", "six"], ["c"]),
             helper.make_node("HardSwish", ["c"], ["hs"]), helper.make_node("HardSigmoid", ["hs"], ["hg"]),
             helper.make_node("Min", ["hg", "x"], ["mn"]), helper.make_node("Softmax", ["mn"], ["sm"], axis=1),
             helper.make_node("ReduceMean", ["sm", "axis2"], ["rm"]),
             helper.make_node("ReduceSum", ["sm", "axis2"], ["rs"], keepdims=0),
             helper.make_node("ReduceMax", ["sm", "axis0"], ["y"], keepdims=0),
             helper.make_node("Cast", ["rm"], ["h"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["h"], ["cast"], to=TensorProto.FLOAT)]
    inits = {"scale": rng.standard_normal(12).astype(np.float32), "bias": rng.standard_normal(12).astype(np.float32),
             "two": np.float32(2), "zero": np.float32(0), "six": np.float32(6),
             "axis2": np.array([2], np.int64), "axis0": np.array([0], np.int64)}
    m = model(nodes, {"x": (2, 5, 12)}, inits, opset=20, outputs=("y", "rs", "cast"))
    return m, {"x": rng.standard_normal((2, 5, 12)).astype(np.float32)}


def test_every_op_together_matches_onnxruntime_and_simt_gives_the_systolic_bits():
    m, feeds = mixed_model()
    got, want = simulate(m, feeds), ort_run(m, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    simt = dse.run(m, hw=SIMT_FP32, inputs=feeds)
    assert simt.program.target == "simt" and simt.program.engines == ("stream",)
    for name in want:
        assert np.array_equal(simt.outputs[name], got[name], equal_nan=True), name
    fp16 = {"datatypes": {"input": "fp16", "weight": "fp16", "accumulator": "fp32", "output": "fp16"}}
    on_simt = dse.run(m, hw={"target": "simt", **fp16}, inputs=feeds).outputs
    on_systolic = simulate(m, feeds, {**FP32, **fp16})
    for name in want:
        assert np.array_equal(on_simt[name], on_systolic[name], equal_nan=True), name


def test_a_transcendental_costs_several_element_ops():
    """work = elements x UNARY_ELEMENT_OPS (docs/ops.md), which every target's vector timing divides by its lanes:
    on the systolic target (compute-bound with ideal memory) an erf takes longer than a negation, a Gelu longer
    still."""
    n = 4096
    nodes = [helper.make_node("Neg", ["x"], ["a"]), helper.make_node("Erf", ["a"], ["b"]),
             helper.make_node("Gelu", ["b"], ["y"])]
    program = dse.compile(model(nodes, {"x": (n,)}), FP32)
    rows = np.flatnonzero(program.instructions.opcode == OPCODE_ID["vec_unary"])
    assert list(program.instructions.work[rows]) == [n * UNARY_ELEMENT_OPS[f] for f in ("neg", "erf", "gelu")]
    neg, erf, gelu = systolic_timing.instruction_cycles(program, ideal_memory=True)[rows]
    assert neg < erf < gelu and erf >= 20 * neg


def test_a_transformer_mlp_block_and_a_mobilenet_block_match_onnxruntime():
    """The ops in their models' company: x + W2 Gelu(W1 LayerNorm(x)), then PyTorch's decomposed LayerNorm (fused)
    and a Softmax (constant-weight MatMuls: run-time x run-time is not in this slice); and a MobileNetV3-style Conv,
    Clip (ReLU6), depthwise Conv, HardSwish, pooled, Gemm."""
    rng = np.random.default_rng(11)
    d, hidden = 16, 32
    nodes = [helper.make_node("LayerNormalization", ["x", "g1", "b1"], ["h0"]),
             helper.make_node("MatMul", ["h0", "w1"], ["h1"]), helper.make_node("Gelu", ["h1"], ["h2"]),
             helper.make_node("MatMul", ["h2", "w2"], ["h3"]), helper.make_node("Add", ["x", "h3"], ["r"]),
             *decomposed_layer_norm("r", "ln", [1], opset=20), helper.make_node("Softmax", ["ln"], ["y"], axis=-1)]
    inits = {"g1": rng.standard_normal(d), "b1": rng.standard_normal(d), "w1": rng.standard_normal((d, hidden)) / 4,
             "w2": rng.standard_normal((hidden, d)) / 6, "scale": rng.standard_normal(d),
             "bias": rng.standard_normal(d), "two": 2, "eps": 1e-5}
    inits = {k: np.asarray(v, np.float32) for k, v in inits.items()} | {"axes": np.array([1], np.int64)}
    block = model(nodes, {"x": (4, d)}, inits, 20)
    assert [layer.op for layer in dse.compile(block, FP32).layers].count("layer_norm") == 2
    x = rng.standard_normal((4, d)).astype(np.float32)
    np.testing.assert_allclose(simulate(block, {"x": x})["y"], ort_run(block, {"x": x})["y"], rtol=1e-5, atol=1e-6)

    c = 8
    mobile = [helper.make_node("Conv", ["x", "wc", "bc"], ["c1"], pads=[1, 1, 1, 1]),
              helper.make_node("Clip", ["c1", "zero", "six"], ["c2"]),
              helper.make_node("Conv", ["c2", "wd"], ["c3"], group=c, pads=[1, 1, 1, 1]),
              helper.make_node("HardSwish", ["c3"], ["c4"]), helper.make_node("GlobalAveragePool", ["c4"], ["c5"]),
              helper.make_node("Flatten", ["c5"], ["c6"]), helper.make_node("Gemm", ["c6", "wf"], ["y"])]
    inits = {"wc": rng.standard_normal((c, 3, 3, 3)) / 3, "bc": rng.standard_normal(c), "zero": 0, "six": 6,
             "wd": rng.standard_normal((c, 1, 3, 3)) / 2, "wf": rng.standard_normal((c, 5))}
    net = model(mobile, {"x": (1, 3, 8, 8)}, {k: np.asarray(v, np.float32) for k, v in inits.items()}, 14)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(simulate(net, {"x": x})["y"], ort_run(net, {"x": x})["y"], rtol=1e-5, atol=1e-5)

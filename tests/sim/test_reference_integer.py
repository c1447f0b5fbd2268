"""The integer datapath: the Numba kernels (sim/kernels.py) equal the NumPy reference executor
(sim/reference.py) bit for bit at every tensor the Program keeps in DRAM. Quantised models (static
QDQ and QOperator, per tensor and per channel, uint8 and int8 codes, per-column weight zero points;
dynamic quantisation), under the float and the fixed-point requantiser; single quantised layers and
vector ops under hypothesis on small design points (QLinearConv, QLinearMatMul, QDQ groups,
ConvInteger, MatMulInteger, QGemm with code or float output; every code pair of QLinearAdd and
QLinearMul, lookup tables, QLinearConcat, both average pools, QLinearSoftmax, Quantize and
Dequantize); gemm_tile (integer and bf16). The reference's arithmetic (the FMA, both requantisers)
against exact models.
"""
import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from onnx import helper

from compiler.errors import CompileError
from compiler.pipeline import compile_graph
from compiler.program import ACTIVATION_ID, CONV, OPCODE_ID, OPCODE_NAMES, OPERAND, REQUANT_ID
from compiler.spec import load
from compiler.targets import lower
from sim import kernels, reference, simulate
from sim.errors import SimError
from tests.compiler.test_integer_ops import (conv_integer_cases, conv_integer_model, matmul_integer_cases,
                                             matmul_integer_model)
from tests.quant_models import quant_model_path
from tests.sim.test_int8_layers import (_spec, conv_cases, design_points, floats_for_codes, matmul_cases,
                                        qdq_cases, qlinear_conv_model, qlinear_matmul_model)
from tests.sim.test_quant_golden import (_layout, _node, binary_cases, codes, concat_cases, gemm_cases, pool_cases,
                                         quantize_cases, scales, single_op_model, unary_cases, zero_points)
from tests.sim.test_quant_golden_dynamic import MODELS as DYNAMIC_MODELS
from tests.sim.test_quant_golden_dynamic import OPTIONS as DYNAMIC_OPTIONS
from tests.sim.test_quant_golden_dynamic import _quantized

F32 = np.float32
INT8 = load("hwspecs/systolic_int8.yaml")


def with_requantizer(spec, requantize: str):
    return dataclasses.replace(spec, datatypes=dataclasses.replace(spec.datatypes, requantize=requantize))


def assert_kernels_equal_reference(program, inputs) -> dict:
    """Every region (inputs, intermediates, outputs, constants) the same bits from both executors."""
    got = simulate(program, inputs, all_tensors=True).outputs
    want = reference.execute(program, inputs, all_tensors=True)
    assert set(got) == set(want)
    for name, expected in want.items():
        actual = got[name]
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
        bits = f"u{expected.dtype.itemsize}"
        differ = np.flatnonzero(np.atleast_1d(actual).view(bits) != np.atleast_1d(expected).view(bits))
        if differ.size:
            i = differ[0]
            raise AssertionError(f"tensor {name}: {differ.size} of {expected.size} elements differ; first at flat "
                                 f"index {i}: kernels {actual.ravel()[i]}, reference {expected.ravel()[i]}")
    return got


def _inputs(graph, seed=1, spread=1.0):
    rng = np.random.default_rng(seed)
    return {n: (rng.standard_normal(graph.tensors[n].shape) * spread).astype(F32) for n in graph.inputs}


def _requants(program) -> set:
    """The REQUANT_ID names of the program's stores."""
    ins = program.instructions
    descs = ins.operands[ins.opcode == OPCODE_ID["store_tile"], OPERAND["store_tile"].desc]
    names = {v: k for k, v in REQUANT_ID.items()}
    return {names[int(program.desc_int[d, CONV.requant])] for d in descs}


# ---------------------------------------------------------------- whole models

STATIC = [  # (model, format, per channel, activations, weights, requantiser); the first four: the default tier
    ("mlp", "qdq", False, "uint8", "int8", "float"),
    ("mlp", "qdq", True, "uint8", "int8", "fixed_point"),
    ("mlp", "qoperator", True, "uint8", "uint8", "float"),      # weight zero points differ per column
    ("squeezenet", "qoperator", False, "int8", "int8", "float"),  # int8 codes: tables, concat, both pools, softmax
    ("squeezenet", "qdq", True, "uint8", "int8", "fixed_point"),
    ("shufflenet", "qdq", True, "uint8", "int8", "float"),
    ("shufflenet", "qoperator", False, "int8", "int8", "fixed_point"),
    ("resnet50", "qoperator", False, "uint8", "int8", "float"),
    ("resnet50", "qdq", True, "int8", "int8", "fixed_point"),
]


@pytest.mark.parametrize("name,fmt,per_channel,activations,weights,requantize", [
    pytest.param(*v, marks=() if i < 4 else pytest.mark.slow) for i, v in enumerate(STATIC)])
def test_quantised_models_equal_the_reference(name, fmt, per_channel, activations, weights, requantize):
    graph = compile_graph(str(quant_model_path(name, fmt, per_channel, activations, weights)))
    program = lower(graph, with_requantizer(INT8, requantize))
    assert _requants(program) == {"codes" if requantize == "float" else requantize}
    assert_kernels_equal_reference(program, _inputs(graph))


QUICK_DYNAMIC = {("mlp", "s8"), ("tiny_cnn", "u8"), ("shared_input", "s8_per_channel")}


@pytest.mark.parametrize("name,option", [pytest.param(n, o, marks=() if (n, o) in QUICK_DYNAMIC else pytest.mark.slow)
                                         for n in sorted(DYNAMIC_MODELS) for o in sorted(DYNAMIC_OPTIONS)])
def test_dynamically_quantised_models_equal_the_reference(name, option):
    """vec_dynamic_quantize's run-time scale and zero point, the array subtracting that zero point (and im2col
    padding with it), int32 stores and the float Cast."""
    graph = compile_graph(_quantized(name, option))
    program = lower(graph, INT8)
    assert _requants(program) == {"int32"}
    assert_kernels_equal_reference(program, _inputs(graph, spread=1.5))


def _with_relu(program):
    """The program with every conv/gemm's activation set to ReLU (the front end fuses none into integer layers)."""
    ins = program.instructions
    desc = program.desc_int.copy()
    desc[np.unique(ins.operands[ins.opcode == OPCODE_ID["store_tile"], OPERAND["store_tile"].desc]),
         CONV.activation] = ACTIVATION_ID["relu"]
    return dataclasses.replace(program, desc_int=desc)


@pytest.mark.parametrize("requantize", ["float", "fixed_point"])
def test_a_relu_clamps_requantised_codes_at_the_zero_point_in_both(requantize):
    graph = compile_graph(str(quant_model_path("mlp", "qdq", False)))
    program = _with_relu(lower(graph, with_requantizer(INT8, requantize)))
    got = assert_kernels_equal_reference(program, _inputs(graph))
    plain = simulate(lower(graph, with_requantizer(INT8, requantize)), _inputs(graph)).outputs
    assert not all(np.array_equal(got[k], plain[k]) for k in plain)        # the ReLU changed something


def test_a_relu_on_an_int32_store():
    """A fused ReLU clamps the int32 accumulator (and the scaled fp32) too (no front end path fuses one there
    today: fuse_activation takes float inputs only; the descriptor allows it)."""
    graph = compile_graph(_quantized("tiny_cnn", "u8"))
    assert_kernels_equal_reference(_with_relu(lower(graph, INT8)), _inputs(graph, spread=1.5))


def test_the_reference_refuses_a_float_only_opcode_on_codes():
    graph = compile_graph(str(quant_model_path("mlp", "qdq", False)))
    program = lower(graph, INT8)
    ins = program.instructions
    row = int(np.flatnonzero(ins.opcode == OPCODE_ID["vec_dequantize"])[0])
    opcode = ins.opcode.copy()
    opcode[row] = OPCODE_ID["vec_relu"]         # the same operand columns: desc, src_dtype (uint8), dst_dtype
    bad = dataclasses.replace(program, instructions=dataclasses.replace(ins, opcode=opcode))
    with pytest.raises(SimError, match=f"^row {row} vec_relu: vec_relu on 8-bit codes \\(uint8, fp32\\) has no "
                                       "defined meaning"):
        reference.execute(bad, _inputs(graph))


# ---------------------------------------------------------------- single layers on small design points

def _qlinear_conv(case):
    x, xs, xz, w, ws, wz, ys, yz, bias, attrs = case
    return qlinear_conv_model(x.shape, xs, xz, w, ws, wz, ys, yz, bias, attrs), {"x": floats_for_codes(x, xs, xz)}


def _qlinear_matmul(case):
    a, as_, az, b, bs, bz, ys, yz = case
    return qlinear_matmul_model(a.shape, as_, az, b, bs, bz, ys, yz), {"x": floats_for_codes(a, as_, az)}


def _qgemm(case):
    """QGemm on an 8-bit input: codes out, or (no y_scale) F(F(acc) * scale) as fp32; a per-column C."""
    a, as_, az, b, bs, bz, c, ys, yz, alpha, trans_a, trans_b = case
    names, consts = ["a", "as_", "az", "b", "bs", "bz", ""], {"as_": as_, "az": az, "b": b, "bs": bs, "bz": bz}
    if c is not None:
        names[-1], consts["c"] = "c", c.reshape(-1, c.shape[-1])[:1] if c.ndim == 2 else c    # not varying along M
    if ys is not None:
        names, consts = names + ["ys", "yz"], {**consts, "ys": ys, "yz": yz}
    node = _node("QGemm", names, alpha=alpha, transA=trans_a, transB=trans_b)
    return single_op_model([node], {"a": a}, consts, a.dtype if ys is not None else F32), {"a": a}


LAYERS = {"qlinear_conv": conv_cases().map(_qlinear_conv), "qlinear_matmul": matmul_cases().map(_qlinear_matmul),
          "qdq": qdq_cases().map(lambda c: (c[0], {"x": c[1]})),
          "conv_integer": conv_integer_cases().map(lambda c: (conv_integer_model(*c), {"x": c[0]})),
          "matmul_integer": matmul_integer_cases().map(lambda c: (matmul_integer_model(*c), {"x": c[0]})),
          "qgemm": gemm_cases().map(_qgemm)}


def _lowered(model, point, requantize):
    """The model on the design point with this requantiser, its scratchpads doubled until every tile fits."""
    graph, grow = compile_graph(model), 1
    while True:
        try:
            return lower(graph, with_requantizer(_spec(point, grow), requantize))
        except CompileError as exc:
            if "no tile fits" not in str(exc) or grow > 2 ** 12:
                raise
            grow *= 2


def _layer_test(examples: int):
    @pytest.mark.parametrize("kind", list(LAYERS))
    @settings(max_examples=examples, deadline=None)
    @given(data=st.data(), point=design_points(), requantize=st.sampled_from(["float", "fixed_point"]))
    def test(kind, data, point, requantize):
        model, feeds = data.draw(LAYERS[kind], label=kind)
        assert_kernels_equal_reference(_lowered(model, point, requantize), feeds)
    return test


# the default tier, and a 10x sweep under @pytest.mark.slow
test_layers_equal_the_reference = _layer_test(6)
test_layers_equal_the_reference_sweep = pytest.mark.slow(_layer_test(60))


# ---------------------------------------------------------------- vector ops on codes

def _binary(case):
    op, dtype, layout, scalar, as_, az, bs, bz, cs, cz = case
    a, b = _layout(layout, dtype, scalar)
    node = _node(op, ["a", "as_", "az", "b", "bs", "bz", "cs", "cz"])
    return single_op_model([node], {"a": a, "b": b}, {"as_": as_, "az": az, "bs": bs, "bz": bz, "cs": cs, "cz": cz},
                           dtype), {"a": a, "b": b}


def _table(case):
    op, dtype, xs, xz, ys, yz, alpha = case
    x = np.arange(256, dtype=np.uint8).view(dtype).reshape(1, 4, 8, 8)       # every code
    node = _node(op, ["x", "xs", "xz", "ys", "yz"], **({"alpha": alpha} if op == "QLinearLeakyRelu" else {}))
    return single_op_model([node], {"x": x}, {"xs": xs, "xz": xz, "ys": ys, "yz": yz}, dtype), {"x": x}


def _concat(case):
    y_scale, y_zp, inputs = case
    names, feeds, consts = ["ys", "yz"], {}, {"ys": y_scale, "yz": y_zp}
    for i, (x, s, z) in enumerate(inputs):
        names += [f"x{i}", f"s{i}", f"z{i}"]
        feeds[f"x{i}"], consts[f"s{i}"], consts[f"z{i}"] = x, s, z
    return single_op_model([_node("QLinearConcat", names, axis=1)], feeds, consts, y_zp.dtype), feeds


def _pool(case, op):
    x, xs, xz, ys, yz, attrs = case
    node = _node(op, ["x", "xs", "xz", "ys", "yz"], **(attrs if op == "QLinearAveragePool" else {}))
    return single_op_model([node], {"x": x}, {"xs": xs, "xz": xz, "ys": ys, "yz": yz}, x.dtype), {"x": x}


def _quantize(case):
    """x -> QuantizeLinear -> DequantizeLinear, per tensor or along axis 1 (NaN, infinities and ties in x)."""
    _, x, _, scale, zp = case
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    return single_op_model(nodes, {"x": x}, {"s": scale, "z": zp}, F32), {"x": x}


@st.composite
def softmax_cases(draw):
    dtype = draw(st.sampled_from([np.uint8, np.int8]))
    shape = [draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 3)))]
    if draw(st.booleans()):
        shape[-1] = draw(st.integers(100, 300))        # long rows: many float32 terms in each sum
    x = draw(codes(dtype, tuple(shape)))
    axis, opset = draw(st.integers(-len(shape), len(shape) - 1)), draw(st.sampled_from([12, 13]))
    y_scale = draw(st.sampled_from([F32(1 / 256), F32(1 / 255)])) if draw(st.booleans()) else draw(scales(1e-4, 0.1))
    node = _node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], axis=axis, opset=opset)
    consts = {"xs": draw(scales(1e-3, 1.0)), "xz": draw(zero_points(dtype)), "ys": y_scale,
              "yz": draw(zero_points(dtype))}
    return single_op_model([node], {"x": x}, consts, dtype), {"x": x}


POOLS = pool_cases().filter(lambda c: c[0].ndim == 4)       # the front end pools 2-D images
VECTOR_OPS = {"add_mul": binary_cases().map(_binary), "table": unary_cases().map(_table),
              "concat": concat_cases().map(_concat), "avgpool": POOLS.map(lambda c: _pool(c, "QLinearAveragePool")),
              "global_avgpool": POOLS.map(lambda c: _pool(c, "QLinearGlobalAveragePool")),
              "quantize": quantize_cases().map(_quantize), "softmax": softmax_cases()}


def _vector_test(examples: int):
    @pytest.mark.parametrize("kind", list(VECTOR_OPS))
    @settings(max_examples=examples, deadline=None)
    @given(data=st.data())
    def test(kind, data):
        model, feeds = data.draw(VECTOR_OPS[kind], label=kind)
        try:
            program = lower(compile_graph(model), INT8)
        except CompileError as exc:    # a global pool's scale outside MLAS's range: refused, as onnxruntime does
            assume("outside [2^-32, 256)" not in str(exc))
            raise
        assert_kernels_equal_reference(program, feeds)
    return test


test_vector_ops_equal_the_reference = _vector_test(8)
test_vector_ops_equal_the_reference_sweep = pytest.mark.slow(_vector_test(80))


# ---------------------------------------------------------------- the reference's arithmetic

def _round_to_f32(exact: Fraction) -> F32:
    """The float32 nearest to a rational, ties to an even significand."""
    guess = F32(float(exact))
    near = [np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))]
    return min(near, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.atleast_1d(v).view(np.uint32)[0]) & 1))


FINITE = st.floats(width=32, allow_nan=False, allow_infinity=False, min_value=-2.0 ** 60, max_value=2.0 ** 60)


@settings(max_examples=300, deadline=None)
@given(a=FINITE, b=FINITE, c=FINITE, cancel=st.booleans())
def test_fma_rounds_once(a, b, c, cancel):
    """_fma32 against exact rational arithmetic; with `cancel`, c is -F(a*b) plus a little, so the result is
    the product's rounding error."""
    a, b = F32(a), F32(b)
    if cancel:
        c = F32(-(a * b)) + F32(c) * F32(2.0 ** -30)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(F32(c)))
    assert reference._fma32(a, b, F32(c)) == _round_to_f32(exact)


def test_fma_avoids_double_rounding():
    """1774001 x 38737 = 2^36 + 1, so a*b = 2^-24 + 2^-60: a*b + 1 lies just above the float32 midpoint between 1
    and 1 + 2^-23. One rounding gives 1 + 2^-23; the float64 sum (1 + 2^-24, a tie) then float32 gives 1."""
    a, b, c = F32(1774001 * 2.0 ** -30), F32(38737 * 2.0 ** -30), F32(1.0)
    assert F32(np.float64(a) * np.float64(b) + np.float64(c)) == F32(1.0)
    assert reference._fma32(a, b, c) == F32(1 + 2.0 ** -23)


@settings(max_examples=300, deadline=None)
@example(acc=1272210377, scale=float(F32(1.969014e-07)), zero_point=0, signed=False)   # F(F(acc) * s): 251, not 250
@given(acc=st.one_of(st.integers(-2 ** 31, 2 ** 31 - 1), st.integers(-3000, 3000)),
       scale=st.one_of(st.floats(2.0 ** -31, 2.0 ** 29, allow_subnormal=False),
                       st.integers(-31, 20).map(lambda e: 2.0 ** e)),          # powers of two: exact ties
       zero_point=st.integers(-128, 255), signed=st.booleans())
def test_requantisers_equal_the_kernels(acc, scale, zero_point, signed):
    """Both store_tile requantisers, scalar by scalar, on accumulators of the whole int32 range (ties included)."""
    scale = F32(scale)
    code, dtype = (kernels.INT8, "int8") if signed else (kernels.UINT8, "uint8")
    zero_point = int(np.clip(zero_point, *reference.QRANGE[dtype]))
    acc_array = np.array([acc], np.int64)
    assert reference._requantize(acc_array, scale, zero_point, dtype)[0] == \
        kernels._requantize(np.int32(acc), scale, zero_point, code)
    mantissa, exponent = math.frexp(float(scale))       # scale = M 2^(e - 31), M in [2^30, 2^31): exact for fp32
    multiplier = int(mantissa * 2 ** 31)
    assert reference._fixed_point(acc_array, np.array([multiplier]), np.array([exponent]), zero_point, dtype)[0] == \
        kernels._requantize_fixed_point(np.int32(acc), np.int32(multiplier), np.int32(exponent), zero_point, code)


@pytest.mark.parametrize("model,requantize", [("mlp", "float"), ("squeezenet", "fixed_point"), ("dynamic", "float"),
                                              ("small_cnn", "bf16")])
def test_gemm_tiles_equal_the_reference(model, requantize):
    """gemm_tile (a conv/GEMM output tile over the whole K, DRAM to DRAM) on the toy target of
    tests/compiler/test_toy_target.py, which lowers every layer to it: the integer datapath, and bf16."""
    from compiler import targets
    from compiler.spec import DatatypeSpec
    from dse import zoo
    toy = pytest.importorskip("tests.compiler.test_toy_target")
    if model == "small_cnn":
        graph, datatypes = compile_graph(zoo.small_cnn()), DatatypeSpec(input="bf16", weight="bf16", output="bf16")
    else:
        graph = compile_graph(_quantized("tiny_cnn", "u8") if model == "dynamic" else    # the models above
                              str(quant_model_path(*STATIC[0 if model == "mlp" else 3][:5])))
        datatypes = DatatypeSpec(input="uint8", weight="int8", accumulator="int32", output="uint8",
                                 requantize=requantize)
    program = toy.lower(graph, toy.ToySpec(datatypes=datatypes))
    assert "gemm_tile" in {OPCODE_NAMES[c] for c in program.instructions.opcode}
    targets.register(targets.Target(name=toy.NAME, spec=toy.ToySpec, lower=toy.lower, sim=toy.SIM))
    try:
        assert_kernels_equal_reference(program, _inputs(graph))
    finally:
        targets._REGISTRY.pop(toy.NAME, None)

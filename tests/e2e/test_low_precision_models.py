"""bf16/fp16 datapaths against onnxruntime's fp32 outputs, within stated tolerances.

Unit roundoff u (the largest relative error of one round-to-nearest-even, 2^-p for p
significand bits counting the implicit one): bf16 has p = 8 (7 stored), u = 2^-8; fp16 has
p = 11, u = 2^-11; fp32 data is exact in fp32 (u = 0). (Half an ulp is 2^-p relative to the
bottom of a binade: 0.12573 rounds to bf16 0.12598, a relative error of 1.96e-3 > 2^-9.)

One layer (rigorous): the simulator rounds each input (u_x) and weight (u_w), multiplies
exactly, accumulates in fp32 and rounds the result once (u_y). With A = sum |x||w| over
the K terms of an output, y the exact result and gamma_K = K 2^-24 / (1 - K 2^-24) the fp32
summation bound (for the simulator's order and for onnxruntime's, whatever it is),
  |sim - ort| <= (u_x + u_w + u_x u_w) A (1 + u_y) + 2 gamma_K (|b| + 1.01 A) + u_y |ort|
               + e_x sum|w| + e_w sum|x|,
where e_x, e_w cover values that fall into fp16's subnormal range (absolute error 2^-25)
and 1.01 covers A's own rounding. ReLU is 1-Lipschitz, so it keeps the bound.

Whole networks (stated, not proved): each conv/gemm layer adds roughly independent,
zero-mean rounding errors of about u relative (input, weight and output roundings adding in
quadrature), and He-scaled layers pass an error on with gain about 1, so errors add in
quadrature along depth: the logits' relative L2 error is about u sqrt(L) for L layers in
series. We test that estimate, <= u sqrt(L) (L = conv/gemm layers of the program). Measured
on the nine light models with seeded random weights: 0.18 to 0.54 u sqrt(L) for bf16 and
0.19 to 0.60 for fp16 (VGG-19 the largest), so the estimate holds with a margin of 1.7 or
more. We also require the error to exceed fp32's by far (the run really was narrow).
"""
import functools
import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import helper, numpy_helper

import dse
from dse.cli import main
from tests.e2e.test_models import ort_run, with_pre_softmax_output
from tests.light_models import light_model_path, logits_name, reference_input, with_random_weights

UNIT_ROUNDOFF = {"fp32": 0.0, "bf16": 2.0 ** -8, "fp16": 2.0 ** -11}
SUBNORMAL_ERROR = {"fp32": 0.0, "bf16": 0.0, "fp16": 2.0 ** -25}   # bf16 shares fp32's exponent range
DEFAULT_RUN = ["resnet50", "squeezenet"]
SLOW = ["alexnet", "densenet121", "inception_v1", "inception_v2", "shufflenet", "vgg19", "zfnet512"]


def hw(dtype: str, **array) -> dict:
    return {"array": array or {"rows": 32, "cols": 32},
            "datatypes": {"input": dtype, "weight": dtype, "output": dtype}}


@functools.lru_cache(maxsize=2)
def light(name: str):
    model = with_pre_softmax_output(with_random_weights(onnx.load(light_model_path(name)), seed=0))
    inputs = reference_input(model)
    return model, inputs, ort_run(model, inputs)[logits_name(model)]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("name", DEFAULT_RUN + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW])
def test_light_model_within_stated_tolerance(name, dtype):
    model, inputs, want = light(name)
    program = dse.compile(model, hw(dtype))
    got = dse.api.simulate(program, inputs).outputs[logits_name(model)]
    depth = sum(layer.op in ("conv", "gemm") for layer in program.layers)
    error = float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))
    u = UNIT_ROUNDOFF[dtype]
    assert error <= u * np.sqrt(depth), f"{name} {dtype}: relative error {error:.3g} = " \
        f"{error / (u * np.sqrt(depth)):.2f} u sqrt(L), L = {depth}"
    assert error > u / 32          # fp32 lands near 1e-6: the narrow datapath really ran


def _layer(x_shape, w, b, conv: dict | None, relu: bool) -> onnx.ModelProto:
    op = helper.make_node("Conv", ["x", "w", "b"], ["c"], **conv) if conv else helper.make_node(
        "Gemm", ["x", "w", "b"], ["c"])
    nodes = [op, helper.make_node("Relu" if relu else "Identity", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", 1, list(x_shape))],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(w.astype(np.float32), "w"),
                               numpy_helper.from_array(b.astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@st.composite
def layer_case(draw):
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    if draw(st.booleans()):
        groups = draw(st.sampled_from([1, 2]))
        cin, cout, k = groups * draw(st.integers(1, 6)), groups * draw(st.integers(1, 6)), draw(st.integers(1, 3))
        x_shape = (1, cin, draw(st.integers(k, 9)), draw(st.integers(k, 9)))
        conv = dict(group=groups, strides=[draw(st.integers(1, 2))] * 2, pads=[draw(st.integers(0, 1))] * 4)
        w, terms = rng.standard_normal((cout, cin // groups, k, k)), cin // groups * k * k
    else:
        m, terms, n = draw(st.integers(1, 16)), draw(st.integers(1, 300)), draw(st.integers(1, 40))
        x_shape, conv, w = (m, terms), None, rng.standard_normal((terms, n))
    scale = 10.0 ** draw(st.integers(-3, 3))        # magnitudes across the types' ranges
    x = (rng.standard_normal(x_shape) * scale).astype(np.float32)
    return x, w, rng.standard_normal(w.shape[0] if conv else w.shape[1]), conv, terms, draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=layer_case(), types=st.tuples(*[st.sampled_from(["fp32", "bf16", "fp16"])] * 3),
       rows=st.sampled_from([2, 8]), cols=st.sampled_from([4, 16]))
def test_one_layer_within_the_rigorous_bound(case, types, rows, cols):
    x, w, b, conv, terms, relu = case
    x_type, w_type, y_type = types
    spec = {"array": {"rows": rows, "cols": cols}, "datatypes": {"input": x_type, "weight": w_type, "output": y_type}}
    got = dse.run(_layer(x.shape, w, b, conv, relu), hw=spec, inputs={"x": x}).outputs["y"].astype(np.float64)

    def ort(xv, wv, bv, relu_=False):
        return ort_run(_layer(x.shape, wv, bv, conv, relu_), {"x": xv.astype(np.float32)})["y"].astype(np.float64)
    want = ort(x, w, b, relu)
    zero = np.zeros_like(b)
    a = ort(np.abs(x), np.abs(w), zero)                                   # sum |x||w|
    w1, x1 = ort(np.ones_like(x), np.abs(w), zero), ort(np.abs(x), np.ones_like(w), zero)
    ux, uw, uy = (UNIT_ROUNDOFF[t] for t in types)
    gamma = terms * 2.0 ** -24 / (1 - terms * 2.0 ** -24)
    b_abs = np.abs(b.astype(np.float32)).astype(np.float64)
    b_abs = b_abs.reshape(1, -1, 1, 1) if conv else b_abs
    bound = ((ux + uw + ux * uw) * a * (1 + uy) + 2 * gamma * (b_abs + 1.01 * a) + uy * np.abs(want)
             + SUBNORMAL_ERROR[x_type] * w1 + SUBNORMAL_ERROR[w_type] * x1 + SUBNORMAL_ERROR[y_type])
    excess = np.abs(got - want) - bound
    assert np.all(excess <= 0), f"worst excess {excess.max():.3g} at {np.unravel_index(excess.argmax(), excess.shape)}"


def test_cli_runs_the_bundled_bf16_spec(capsys, tmp_path):
    """`dse run model --hw hwspecs/systolic_bf16.yaml`: functional and timing-only."""
    code = main(["run", "zoo:mlp", "--hw", "hwspecs/systolic_bf16.yaml", "--out", str(tmp_path / "f")])
    assert code == 0 and "total_cycles" in capsys.readouterr().out
    with np.load(tmp_path / "f" / "outputs.npz") as data:
        probs = data["probs"]
    assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1) < 0.01
    runs = {}
    for spec in ("systolic", "systolic_bf16"):
        out = tmp_path / spec
        assert main(["run", "zoo:resnet50", "--hw", f"hwspecs/{spec}.yaml", "--timing-only", "--out", str(out)]) == 0
        runs[spec] = json.loads((out / "stats.json").read_text())
    assert runs["systolic_bf16"]["bytes"]["dram"] < 0.55 * runs["systolic"]["bytes"]["dram"]
    assert main(["compile", "zoo:mlp", "--hw", "hwspecs/systolic_bf16.yaml"]) == 0
    assert "src_dtype=bf16" in capsys.readouterr().out


def test_unimplemented_types_are_one_clear_error(capsys, tmp_path):
    for field, value in (("weight", "int8"), ("accumulator", "bf16")):
        (tmp_path / "bad.yaml").write_text(f"datatypes:\n  {field}: {value}\n")
        assert main(["run", "zoo:mlp", "--hw", str(tmp_path / "bad.yaml"), "--timing-only"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"datatypes.{field}" in err and "fp32" in err and len(err.splitlines()) == 1

"""Property tests: random Conv/Gemm layers on random array shapes, dataflows and
buffer sizes, simulated from the Program and compared with onnxruntime."""
import numpy as np
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import helper, numpy_helper

import dse

HW = st.fixed_dictionaries({
    "array": st.fixed_dictionaries({
        "rows": st.sampled_from([1, 2, 4, 8, 16]), "cols": st.sampled_from([1, 3, 4, 8, 16]),
        "dataflow": st.sampled_from(["weight_stationary", "output_stationary", "input_stationary"])}),
    "memory": st.fixed_dictionaries({"input_scratchpad_kib": st.sampled_from([2, 16, 256]),
                                     "weight_scratchpad_kib": st.sampled_from([2, 16, 256]),
                                     "accumulator_kib": st.sampled_from([2, 16, 256]),
                                     "double_buffer": st.booleans()}),
})


def _check(model, inputs, hw):
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    got = dse.run(model, hw=hw, inputs=inputs).outputs["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 4))
    cout = groups * draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers((kh - 1) * dh + 1, 12))
    w = draw(st.integers((kw - 1) * dw + 1, 12))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    strides = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    batch = draw(st.integers(1, 2))
    return dict(groups=groups, cin=cin, cout=cout, k=(kh, kw), dil=[dh, dw], hw=(h, w), pads=pads,
                strides=strides, batch=batch, relu=draw(st.booleans()), seed=draw(st.integers(0, 99)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_case(), hw=HW)
def test_random_conv_matches_onnxruntime(case, hw):
    rng = np.random.default_rng(case["seed"])
    wshape = (case["cout"], case["cin"] // case["groups"], *case["k"])
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(case["cout"]).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if case["relu"] else "y"], group=case["groups"],
                              pads=case["pads"], strides=case["strides"], dilations=case["dil"])]
    if case["relu"]:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    xshape = [case["batch"], case["cin"], *case["hw"]]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", 1, xshape)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    _check(model, {"x": rng.standard_normal(xshape).astype(np.float32)}, hw)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 70), trans_b=st.booleans(),
       alpha=st.sampled_from([1.0, 0.5]), beta=st.sampled_from([1.0, 2.0]), seed=st.integers(0, 99), hw=HW)
def test_random_gemm_matches_onnxruntime(m, k, n, trans_b, alpha, beta, seed, hw):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=int(trans_b), alpha=alpha, beta=beta)
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("x", 1, [m, k])],
                              [helper.make_tensor_value_info("y", 1, [m, n])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    _check(model, {"x": rng.standard_normal((m, k)).astype(np.float32)}, hw)

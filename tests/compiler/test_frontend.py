"""ONNX front end: the nine light models load, verify and (front end + passes +
IR reference evaluator) match onnxruntime, logits included; opset-dependent
attributes; conv/pool shapes under hypothesis; one-line CompileErrors for bad input.
"""
import numpy as np
import onnx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import CompileError
from compiler.frontend.onnx import load_model
from compiler.passes import optimize
from tests.compiler.onnx_builders import check_against_onnxruntime, make_model
from tests.ir_reference import evaluate
from tests.light_models import (
    LIGHT_MODELS,
    light_model_path,
    load_reference_output,
    logits_name,
    reference_input,
    run_onnxruntime,
    with_random_weights,
)

FAST = ("resnet50", "squeezenet", "shufflenet", "densenet121", "inception_v1", "inception_v2")
slow = pytest.mark.slow


def _models(fast=FAST):
    return [pytest.param(n, marks=() if n in fast else slow) for n in LIGHT_MODELS]


# ---- the light models ----------------------------------------------------------

@pytest.mark.parametrize("name", _models(fast=FAST + ("bvlc_alexnet", "zfnet512")))
def test_light_model_loads_and_verifies(name):
    model = onnx.load(str(light_model_path(name)))
    graph = load_model(light_model_path(name))
    assert graph.outputs == [o.name for o in model.graph.output]
    inits = {t.name for t in model.graph.initializer}
    assert graph.inputs == [v.name for v in model.graph.input if v.name not in inits]
    optimize(graph)                    # verifies after every pass
    assert graph.macs() > 0


def _ir_logits(graph, values):
    softmaxes = [node for node in graph.nodes if node.op == "softmax"]
    return values[softmaxes[-1].inputs[0]] if softmaxes else values[graph.outputs[0]]


@pytest.mark.parametrize("name", _models())
def test_light_model_random_weights_match_onnxruntime(name):
    model = with_random_weights(onnx.load(str(light_model_path(name))), seed=0)
    feeds = reference_input(model)
    expected = run_onnxruntime(model, feeds, [logits_name(model)])
    graph = optimize(load_model(model))
    values = evaluate(graph, feeds, keep_all=True)
    np.testing.assert_allclose(values[graph.outputs[0]], expected[0], rtol=1e-4, atol=1e-5)
    logits = _ir_logits(graph, values)
    assert np.std(expected[-1]) > 0.1                 # not a saturated / constant output
    np.testing.assert_allclose(logits.ravel(), expected[-1].ravel(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", _models())
def test_light_model_original_weights_match_shipped_output(name):
    model = onnx.load(str(light_model_path(name)))
    feeds = reference_input(model)
    got = evaluate(optimize(load_model(model)), feeds)
    (output,) = got.values()
    np.testing.assert_allclose(output, load_reference_output(name), rtol=1e-4, atol=1e-5)


# ---- opset-dependent attributes, against onnxruntime -----------------------------

def _x(shape):
    return {"x": list(shape)}


@pytest.mark.parametrize("opset,axis", [(11, None), (11, 2), (11, 3), (13, None), (13, 1)])
def test_softmax_axis_semantics_follow_the_opset(opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], **attrs)], _x((2, 3, 4, 5)),
                       {"y": None}, opset=opset)
    check_against_onnxruntime(model)


@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze_squeeze_axes_attribute_or_input(opset):
    if opset >= 13:
        nodes = [helper.make_node("Unsqueeze", ["x", "a"], ["u"]),
                 helper.make_node("Squeeze", ["u", "b"], ["y"])]
        inits = {"a": np.array([0, -1]), "b": np.array([0])}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, 4]),
                 helper.make_node("Squeeze", ["u"], ["y"], axes=[0])]
        inits = {}
    model = make_model(nodes + [helper.make_node("Relu", ["y"], ["z"])], _x((2, 3, 4)),
                       {"z": None}, inits, opset=opset)
    graph = check_against_onnxruntime(model)
    assert graph.tensors["z"].shape == (2, 3, 4, 1)


@pytest.mark.parametrize("opset", [7, 9, 12, 15])
def test_batchnorm_and_dropout_across_opsets(opset):
    rng = np.random.default_rng(1)
    inits = {"s": rng.uniform(0.5, 1.5, 3), "b": rng.normal(size=3), "m": rng.normal(size=3),
             "v": rng.uniform(0.5, 1.5, 3)}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    dropout_inputs = ["bn"]
    if opset >= 12:
        inits.update(ratio=np.array(0.3, np.float32), train=np.array(False))
        dropout_inputs += ["ratio", "train"]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"],
                              epsilon=1e-3),
             helper.make_node("Dropout", dropout_inputs, ["y"])]
    model = make_model(nodes, _x((2, 3, 4, 4)), {"y": None}, inits, opset=opset)
    graph = check_against_onnxruntime(model, passes=False)
    assert [n.op for n in graph.nodes] == ["affine", "identity"]


@pytest.mark.parametrize("target,allowzero", [([0, -1], 0), ([-1, 4], 0), ([2, 0, 4], 0),
                                              ([6, 4], 1)])
def test_reshape_zero_and_minus_one(target, allowzero):
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=allowzero)],
                       _x((2, 3, 4)), {"y": None}, {"shape": np.array(target)}, opset=14)
    check_against_onnxruntime(model)


@pytest.mark.parametrize("attrs,c_shape", [
    ({}, (5,)), ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (1, 5)), ({"transA": 1}, (3, 5)),
    ({"beta": 0.5}, ()), ({"transA": 1, "transB": 1}, None)])
def test_gemm_attributes(attrs, c_shape):
    rng = np.random.default_rng(2)
    b = rng.normal(size=(5, 4) if attrs.get("transB") else (4, 5)).astype(np.float32)
    inits, inputs = {"B": b}, ["x", "B"]
    if c_shape is not None:
        inits["C"] = rng.normal(size=c_shape).astype(np.float32)
        inputs.append("C")
    shape = (4, 3) if attrs.get("transA") else (3, 4)
    model = make_model([helper.make_node("Gemm", inputs, ["y"], **attrs)], _x(shape),
                       {"y": None}, inits, opset=13)
    graph = check_against_onnxruntime(model)
    assert "gemm" in [n.op for n in graph.nodes]


def test_matmul_rank3_activation_becomes_reshape_gemm_reshape():
    w = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], _x((2, 3, 4)),
                       {"y": None}, {"w": w})
    graph = check_against_onnxruntime(model)
    assert [n.op for n in graph.nodes] == ["reshape", "gemm", "reshape"]


def test_pytorch_style_shape_subgraph_folds_to_one_reshape():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = {"zero": np.array(0), "axes": np.array([0]), "minus1": np.array([-1])}
    model = make_model(nodes, _x((2, 3, 4, 4)), {"y": None}, inits)
    graph = check_against_onnxruntime(model)
    assert [n.op for n in graph.nodes] == ["reshape"]


def test_sum_flatten_transpose_concat_with_constant_operand():
    const = np.random.default_rng(4).normal(size=(2, 1, 4, 4)).astype(np.float32)
    nodes = [helper.make_node("Sum", ["x", "x", "k"], ["s"]),
             helper.make_node("Concat", ["s", "k"], ["c"], axis=1),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["t"], ["y"], axis=2)]
    model = make_model(nodes, _x((2, 3, 4, 4)), {"y": None}, {"k": const})
    check_against_onnxruntime(model)


def test_symbolic_batch_becomes_one_and_input_shapes_override():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 3, 8, 8]},
                       {"y": None})
    assert load_model(model).tensors["x"].shape == (1, 3, 8, 8)
    assert load_model(model, input_shapes={"x": (4, 3, 8, 8)}).tensors["y"].shape == (4, 3, 8, 8)
    with pytest.raises(CompileError, match="unknown input"):
        load_model(model, input_shapes={"image": (1, 3, 8, 8)})


# ---- conv and pooling shapes under hypothesis ------------------------------------

@st.composite
def conv_cases(draw):
    group = draw(st.sampled_from([1, 2, 3]))
    cin, cout = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    auto_pad = draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    dilations = (1, 1) if auto_pad.startswith("SAME") else (draw(st.integers(1, 2)),
                                                              draw(st.integers(1, 2)))
    attrs = {"kernel_shape": kernel, "strides": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
             "dilations": dilations, "group": group}
    if auto_pad == "NOTSET":
        attrs["pads"] = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    else:
        attrs["auto_pad"] = auto_pad
    return cin, cout, attrs, (draw(st.integers(5, 9)), draw(st.integers(5, 9)))


@settings(max_examples=150, deadline=None)
@given(conv_cases(), st.booleans())
def test_conv_matches_onnxruntime(case, with_bias):
    cin, cout, attrs, (h, w) = case
    rng = np.random.default_rng(0)
    inits = {"w": rng.normal(size=(cout, cin // attrs["group"], *attrs["kernel_shape"]))
             .astype(np.float32)}
    if with_bias:
        inits["b"] = rng.normal(size=cout).astype(np.float32)
    node = helper.make_node("Conv", ["x", *inits], ["y"], **attrs)
    check_against_onnxruntime(make_model([node], _x((1, cin, h, w)), {"y": None}, inits))


@st.composite
def pool_cases(draw):
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    attrs = {"kernel_shape": kernel, "strides": (draw(st.integers(1, 3)), draw(st.integers(1, 3)))}
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4)]
        attrs["ceil_mode"] = draw(st.integers(0, 1))
    else:
        attrs["auto_pad"] = auto_pad
        # onnxruntime refuses the negative SAME pads that stride > kernel gives
        assume(not auto_pad.startswith("SAME")
               or all(s <= k for s, k in zip(attrs["strides"], kernel)))
    if op == "AveragePool":
        attrs["count_include_pad"] = draw(st.integers(0, 1))
    return op, attrs, (draw(st.integers(4, 9)), draw(st.integers(4, 9)))


@settings(max_examples=200, deadline=None)
@given(pool_cases())
def test_pooling_matches_onnxruntime(case):
    op, attrs, (h, w) = case
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], _x((1, 2, h, w)),
                       {"y": None}, opset=13)
    check_against_onnxruntime(model)


def test_global_pools_and_lrn():
    nodes = [helper.make_node("LRN", ["x"], ["l"], size=3, alpha=0.01, beta=0.6, bias=1.5),
             helper.make_node("GlobalAveragePool", ["l"], ["a"]),
             helper.make_node("GlobalMaxPool", ["l"], ["m"])]
    check_against_onnxruntime(make_model(nodes, _x((1, 5, 6, 7)), {"a": None, "m": None}))


# ---- user errors: one line naming what, where and what is allowed ----------------

def _one_line_error(call, *needles):
    with pytest.raises(CompileError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_truncated_missing_and_non_onnx_files(tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(light_model_path("squeezenet").read_bytes()[:100])
    _one_line_error(lambda: load_model(truncated), str(truncated))
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    _one_line_error(lambda: load_model(text), str(text))
    _one_line_error(lambda: load_model(tmp_path / "missing.onnx"), "missing.onnx")


def test_unsupported_op_names_op_node_and_supported_list():
    model = make_model([helper.make_node("Hardmax", ["x"], ["y"], name="hm")], _x((2, 3)),
                       {"y": None})
    _one_line_error(lambda: load_model(model), "Hardmax", "'hm'", "Conv", "MaxPool", "Softmax")


def test_unnamed_node_is_named_by_op_and_index():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Hardmax", ["r"], ["y"])]
    _one_line_error(lambda: load_model(make_model(nodes, _x((2, 3)), {"y": None})), "Hardmax_1")


@pytest.mark.parametrize("opset", [6, 22])
def test_opset_outside_7_to_21_is_refused(opset):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], _x((2, 3)), {"y": None},
                       opset=opset, ir_version=8)
    _one_line_error(lambda: load_model(model), f"opset {opset}", "7..21")


@pytest.mark.parametrize("node,needle", [
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], storage_order=1, name="mp"),
     "storage_order"),
    (helper.make_node("MaxPool", ["x"], ["y", "y"], kernel_shape=[2, 2], name="mp"), "Indices"),
    (helper.make_node("LRN", ["x"], ["y"], size=3, name="mp"), "4-D"),
    (helper.make_node("MatMul", ["x", "x"], ["y"], name="mp"), "constant"),
    (helper.make_node("Conv", ["x", "x"], ["y"], name="mp"), "constant"),
    (helper.make_node("Gemm", ["x", "x"], ["y"], transB=1, name="mp"), "constant"),
    (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 0, 0, 0],
                      name="mp"), "pads"),
])
def test_unsupported_attribute_values_name_node_and_attribute(node, needle):
    shape = (2, 4) if node.op_type in ("LRN", "Gemm") else (1, 2, 4, 4)
    if node.op_type == "MaxPool" and len(node.output) == 2:
        node.output[1] = "idx"
        outputs = {"y": None, "idx": None}
    else:
        outputs = {"y": None}
    model = make_model([node], _x(shape), outputs, opset=11)
    _one_line_error(lambda: load_model(model), "'mp'", needle)


def _external_model(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], _x((1, 2)), {"y": None},
                       {"w": w})
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.bin",
              size_threshold=0)
    return path, w


def test_external_data_loads_from_the_model_folder(tmp_path):
    path, w = _external_model(tmp_path)
    graph = load_model(path)
    gemm = graph.nodes[0]
    np.testing.assert_array_equal(graph.constants[gemm.inputs[1]], w)


@pytest.mark.parametrize("location", ["../ext.bin", "/etc/passwd", "sub/../../ext.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    path, _ = _external_model(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    (tmp_path / "inner").mkdir()
    bad = tmp_path / "inner" / "bad.onnx"
    onnx.save(model, str(bad))
    _one_line_error(lambda: load_model(bad), str(bad), location, "inside")


def test_graph_output_folded_to_a_constant_is_still_produced():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT)]
    graph = load_model(make_model(nodes, _x((2, 3)), {"y": None}))
    np.testing.assert_array_equal(evaluate(graph, {"x": np.zeros((2, 3))})["y"], [2, 3])


def test_constant_node_and_numpy_helper_values_fold():
    value = numpy_helper.from_array(np.full((1, 3), 2.0, np.float32))
    nodes = [helper.make_node("Constant", [], ["k"], value=value),
             helper.make_node("Mul", ["x", "k"], ["y"])]
    check_against_onnxruntime(make_model(nodes, _x((2, 3)), {"y": None}))


@pytest.mark.parametrize("opset", [9, 13])
def test_constant_subgraph_folds_like_onnxruntime(opset):
    """Range/Reshape/Transpose/Expand/Where/Cast/Div/Slice/Concat on constants."""
    if opset >= 13:
        slice_node = helper.make_node("Slice", ["w", "s0", "s1", "s_ax"], ["sl"])
        inits = {"s0": np.array([0]), "s1": np.array([-1]), "s_ax": np.array([1])}
    else:
        slice_node = helper.make_node("Slice", ["w"], ["sl"], starts=[0], ends=[-1], axes=[1])
        inits = {}
    inits.update(start=np.array(0.0, np.float32), limit=np.array(6.0, np.float32),
                 delta=np.array(1.0, np.float32), shape=np.array([2, 3]),
                 row=np.array([[7.0, 8.0, 9.0]], np.float32), two=np.array(2.0, np.float32))
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["a"]),
             helper.make_node("Transpose", ["a"], ["at"]),
             helper.make_node("Transpose", ["at"], ["b"]),
             helper.make_node("Expand", ["row", "shape"], ["e"]),
             helper.make_node("Greater", ["b", "two"], ["mask"]),
             helper.make_node("Where", ["mask", "b", "e"], ["w"]),
             slice_node,
             helper.make_node("Cast", ["sl"], ["si"], to=TensorProto.INT64),
             helper.make_node("Cast", ["si"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["sf", "two"], ["half"]),
             helper.make_node("Concat", ["half", "two_col"], ["k"], axis=1),
             helper.make_node("Add", ["x", "k"], ["y"])]
    inits["two_col"] = np.ones((2, 1), np.float32)
    if opset < 11:                                  # Range is opset 11+
        nodes[0] = helper.make_node("Constant", [], ["r"], value=numpy_helper.from_array(
            np.arange(6, dtype=np.float32)))
        for key in ("start", "limit", "delta"):
            inits.pop(key)
    graph = check_against_onnxruntime(make_model(nodes, _x((2, 3)), {"y": None}, inits,
                                                 opset=opset))
    assert [n.op for n in graph.nodes] == ["add"]

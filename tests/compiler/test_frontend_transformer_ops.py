"""The front end's math, activation, reduction, LayerNormalization and float Cast conversions (the IR they
give, the attribute values they refuse with an error naming the node and op), the unsupported-op error's list
of supported ops, and the fuse_layernorm pass on printed IR (compiler/passes/fuse_layernorm.py)."""
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import CompileError
from compiler.frontend.onnx import load_model
from compiler.ir import Graph, Node, TensorType
from compiler.passes import optimize
from compiler.passes.fuse_layernorm import fuse_layernorm


def onnx_model(nodes, inputs: dict, initializers: dict | None = None, opset: int = 20, outputs=("y",)):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
                                           for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def node(op, inputs, output="y", **attrs):
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def lines(graph: Graph) -> list:
    return str(graph).splitlines()[1:]


def test_conversions_give_the_ir_ops():
    nodes = [node("Clip", ["x", "zero", "six"], "relu6"), node("HardSigmoid", ["relu6"], "hs", alpha=0.25),
             node("Gelu", ["hs"], "g", approximate="tanh"), node("ReduceMean", ["g", "axes"], "m", keepdims=1),
             node("Pow", ["m", "half"], "p"), node("Max", ["p", "x", "p"], "y")]
    inits = {"zero": np.float32(0), "six": np.float32(6), "axes": np.array([-1]), "half": np.float32(0.5)}
    assert lines(load_model(onnx_model(nodes, {"x": (2, 3)}, inits))) == [
        "  input  x: fp32[2x3]",
        "  relu6: fp32[2x3] = clip(x) max=6.0 min=0.0",
        "  hs: fp32[2x3] = hard_sigmoid(relu6) alpha=0.25 beta=0.5",
        "  g: fp32[2x3] = gelu(hs) approximate=tanh",
        "  m: fp32[2x1] = reduce_mean(g) axes=(1,) keepdims=1",
        "  p: fp32[2x1] = pow(m, half)",
        "  y/max: fp32[2x3] = max(p, x)",
        "  y: fp32[2x3] = max(y/max, p)",
        "  output y"]


def test_clip_bounds_from_inputs_default_to_the_float32_range():
    graph = load_model(onnx_model([node("Clip", ["x", "", "hi"])], {"x": (4,)}, {"hi": np.float32(6)}, opset=13))
    assert graph.nodes[0].attrs == {"min": -float(np.finfo(np.float32).max), "max": 6.0}


def test_layer_normalization_takes_its_scale_over_the_normalised_axes():
    scale = np.arange(20, dtype=np.float32).reshape(4, 5)
    graph = load_model(onnx_model([node("LayerNormalization", ["x", "s"], axis=1, epsilon=1e-3)], {"x": (2, 4, 5)},
                                  {"s": scale}, opset=17))
    (ln,) = graph.nodes
    assert ln.op == "layer_norm" and ln.attrs == {"axis": 1, "epsilon": float(np.float32(1e-3))}
    assert np.array_equal(graph.constants[ln.inputs[1]], scale.ravel()) and len(ln.inputs) == 2


@pytest.mark.parametrize("to, kept", [(TensorProto.FLOAT16, "fp16"), (TensorProto.BFLOAT16, "bf16")])
def test_cast_between_float_types_rounds(to, kept):
    graph = load_model(onnx_model([node("Cast", ["x"], "h", to=to), node("Cast", ["h"], to=TensorProto.FLOAT)],
                                  {"x": (3,)}, opset=13))
    assert [(n.op, n.attrs) for n in graph.nodes] == [("cast", {"to": kept}), ("identity", {})]


def _scaled_ln(**attrs):
    return node("LayerNormalization", ["x", "s"], **attrs)


BAD = [
    ([node("Gelu", ["x"], approximate="exact")], {}, 20,
     r"node 'y' \(Gelu\): attribute approximate='exact'; allowed: none, tanh"),
    ([node("Gelu", ["x"])], {}, 17, r"node 'y' \(Gelu\): ONNX has Gelu from opset 20; the model imports opset 17"),
    ([node("Relu", ["x"], "lo"), node("Clip", ["x", "lo"])], {}, 13,
     r"node 'y' \(Clip\): input 'lo' \(min\) is computed at run time; Clip's min and max must be constants"),
    ([node("Clip", ["x", "lo"])], {"lo": np.zeros(2, np.float32)}, 13,
     r"node 'y' \(Clip\): input 'lo' \(min\) is float32\[2\]; allowed: one number"),
    ([_scaled_ln(stash_type=11)], {"s": np.ones(3, np.float32)}, 17,
     r"node 'y' \(LayerNormalization\): attribute stash_type=11; allowed: 1"),
    ([helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], name="y"), node("Relu", ["mean"], "r")],
     {"s": np.ones(3, np.float32)}, 17, r"node 'y' \(LayerNormalization\): output Mean or InvStdDev is used"),
    ([_scaled_ln()], {"s": np.ones(4, np.float32)}, 17,
     r"node 'y' \(LayerNormalization\): Scale of shape \[4\] does not broadcast to the normalised shape \[3\]"),
    ([_scaled_ln(axis=2)], {"s": np.ones(3, np.float32)}, 17,
     r"node 'y' \(LayerNormalization\): attribute axis=2 for input rank 2"),
    ([node("Relu", ["x"], "s"), node("LayerNormalization", ["x", "s"])], {}, 17,
     r"node 'y' \(LayerNormalization\): input 's' \(Scale\) is computed at run time; it must be a constant"),
    ([node("ReduceSum", ["x", "axes"])], {"axes": np.array([3], np.int64)}, 13,
     r"node 'y' \(ReduceSum\): axes \[3\] are out of range or repeated for input rank 2"),
    ([node("ReduceMean", ["x"], axes=[1], keepdims=2)], {}, 13,
     r"node 'y' \(ReduceMean\): attribute keepdims=2; allowed: 0, 1"),
    ([node("ReduceMax", ["x", "axes"])], {"axes": np.array([0.5], np.float32)}, 18,
     r"node 'y' \(ReduceMax\): input 'axes' \(axes\) is float32; allowed: int64"),
    ([node("Cast", ["x"], to=TensorProto.DOUBLE)], {}, 13,
     r"node 'y' \(Cast\): attribute to=11 \(DOUBLE\) on run-time fp32 input 'x'; allowed: .* to=10 \(FLOAT16\) or 16 "
     r"\(BFLOAT16\) of a float32 one"),
    ([node("Pow", ["x", "e"])], {"e": np.ones(5, np.float32)}, 13,
     r"node 'y' \(Pow\): input shapes \(2, 3\) and \(5,\) do not broadcast"),
]


@pytest.mark.parametrize("nodes, initializers, opset, message", BAD, ids=[m[:40] for *_, m in BAD])
def test_refused_forms_name_the_node_and_op(nodes, initializers, opset, message):
    with pytest.raises(CompileError, match=message):
        load_model(onnx_model(nodes, {"x": (2, 3)}, initializers, opset,
                              outputs=["y"] + (["r"] if any(n.output[0] == "r" for n in nodes) else [])))


def test_unsupported_op_error_lists_the_supported_ops():
    with pytest.raises(CompileError) as info:
        load_model(onnx_model([node("Hardmax", ["x"])], {"x": (2, 3)}, opset=13))
    text = str(info.value)
    assert "node 'y': op Hardmax is not supported; supported ops: " in text
    supported = text.split("supported ops: ")[1].split(";")[0].split(", ")
    for op in ("Erf", "Gelu", "LayerNormalization", "ReduceMean", "ReduceSum", "ReduceMax", "Clip", "Pow", "Min",
               "Max", "HardSwish", "Softmax", "Conv", "MatMul"):
        assert op in supported
    assert "on compile-time constants only: " in text and "Shape" in text.split("constants only: ")[1]
    assert text.endswith("(docs/ops.md)")


# ---- fuse_layernorm on printed IR ----------------------------------------------------------------------------

def decomposed(mean_is_output=False, axes=(1,), eps_const=True, squared="pow") -> Graph:
    """x[2x4] -> PyTorch's LayerNorm decomposition over `axes`, times s[4], plus b[4]."""
    shape, kept = (2, 4), tuple(1 if i in axes else d for i, d in enumerate((2, 4)))
    tensors = {name: TensorType(shape) for name in ("x", "d", "sq", "n", "ys", "y")}
    tensors.update({name: TensorType(kept) for name in ("mean", "var", "ve", "std")})
    constants = {"two": np.float32(2), "eps": np.float32(1e-5), "s": np.arange(4, dtype=np.float32),
                 "b": np.ones(4, np.float32)}
    constants = {k: np.asarray(v, np.float32) for k, v in constants.items()}
    tensors.update({k: TensorType(v.shape) for k, v in constants.items()})
    reduce = {"axes": axes, "keepdims": 1}
    nodes = [Node("reduce_mean", "mean", ("x",), ("mean",), reduce), Node("sub", "d", ("x", "mean"), ("d",)),
             Node("pow", "sq", ("d", "two"), ("sq",)) if squared == "pow" else Node("mul", "sq", ("d", "d"), ("sq",)),
             Node("reduce_mean", "var", ("sq",), ("var",), reduce),
             Node("add", "ve", ("eps" if eps_const else "x", "var"), ("ve",)),
             Node("sqrt", "std", ("ve",), ("std",)), Node("div", "n", ("d", "std"), ("n",)),
             Node("mul", "ys", ("s", "n"), ("ys",)), Node("add", "y", ("ys", "b"), ("y",))]
    if not eps_const:
        tensors["ve"] = TensorType(shape)
        tensors["std"] = TensorType(shape)
    outputs = ["y"] + (["mean"] if mean_is_output else [])
    return Graph("g", ["x"], outputs, tensors, constants, nodes, opset=13).verify()


def test_fuse_layernorm_makes_one_node_with_the_last_output_name():
    after = optimize(decomposed())
    assert str(after) == textwrap.dedent("""\
        graph g (opset 13)
          input  x: fp32[2x4]
          y: fp32[2x4] = layer_norm(x, y/ln_scale, y/ln_bias) axis=1 epsilon=9.999999747378752e-06
          output y""")
    assert np.array_equal(after.constants["y/ln_scale"], np.arange(4)) and np.all(after.constants["y/ln_bias"] == 1)


def test_fuse_layernorm_takes_d_times_d_as_the_square():
    assert [n.op for n in fuse_layernorm(decomposed(squared="mul")).nodes] == ["layer_norm"]


@pytest.mark.parametrize("graph", [decomposed(mean_is_output=True), decomposed(axes=(0,)), decomposed(eps_const=False)],
                         ids=["an intermediate is a graph output", "axes not trailing", "eps computed"])
def test_fuse_layernorm_leaves_other_graphs_alone(graph):
    assert str(fuse_layernorm(graph)) == str(graph)

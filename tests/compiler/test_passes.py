"""Graph passes on tiny hand-built graphs: the printed graph after a pass must equal
the printed expectation, and the IR reference must compute the same outputs
before and after (hypothesis over conv/BN/per-channel chains)."""
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.ir import Graph, Node, TensorType
from compiler.passes import PASSES, optimize
from compiler.passes.dead_code import dead_code
from compiler.passes.fold_batchnorm import fold_batchnorm
from compiler.passes.fuse_activation import fuse_activation
from compiler.passes.remove_identity import remove_identity
from tests.ir_reference import evaluate

CONV = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1, activation="none")


def build(inputs: dict, constants: dict, nodes: list, outputs: list) -> Graph:
    """nodes: (op, [inputs], output, shape, attrs) with the node named after its output."""
    tensors = {n: TensorType(tuple(s)) for n, s in inputs.items()}
    consts = {n: np.asarray(v, dtype=np.float32) for n, v in constants.items()}
    tensors.update({n: TensorType(v.shape) for n, v in consts.items()})
    ir_nodes = []
    for op, ins, out, shape, attrs in nodes:
        tensors[out] = TensorType(tuple(shape))
        ir_nodes.append(Node(op, out, tuple(ins), (out,), dict(attrs)))
    return Graph("g", list(inputs), list(outputs), tensors, consts, ir_nodes, opset=13).verify()


def expect(graph: Graph, text: str) -> None:
    assert str(graph) == textwrap.dedent(text).strip("\n")


def same_outputs(before: Graph, after: Graph, seed=0) -> None:
    rng = np.random.default_rng(seed)
    feeds = {n: rng.normal(size=before.tensors[n].shape).astype(np.float32) for n in before.inputs}
    want, got = evaluate(before, feeds), evaluate(after, feeds)
    for name in before.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def _rand(*shape, seed=0, low=None):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, 1.5, shape) if low is not None else rng.normal(size=shape)


def conv_bn_relu() -> Graph:
    return build({"x": (1, 2, 4, 4)},
                 {"w": _rand(3, 2, 3, 3), "b": _rand(3, seed=1), "s": _rand(3, seed=2, low=0.5),
                  "t": _rand(3, seed=3)},
                 [("conv", ["x", "w", "b"], "c", (1, 3, 4, 4), CONV),
                  ("affine", ["c", "s", "t"], "bn", (1, 3, 4, 4), {}),
                  ("relu", ["bn"], "y", (1, 3, 4, 4), {})], ["y"])


CONV_ATTRS = "dilations=(1, 1) group=1 pads=(1, 1, 1, 1) strides=(1, 1)"


def test_conv_batchnorm_relu_fold_into_one_conv():
    before = conv_bn_relu()
    expect(before, f"""
        graph g (opset 13)
          input  x: fp32[1x2x4x4]
          c: fp32[1x3x4x4] = conv(x, w, b) activation=none {CONV_ATTRS}
          bn: fp32[1x3x4x4] = affine(c, s, t)
          y: fp32[1x3x4x4] = relu(bn)
          output y""")
    after = optimize(before)
    expect(after, f"""
        graph g (opset 13)
          input  x: fp32[1x2x4x4]
          y: fp32[1x3x4x4] = conv(x, c/w_folded, c/b_folded) activation=relu {CONV_ATTRS}
          output y""")
    assert set(after.constants) == {"c/w_folded", "c/b_folded"}
    same_outputs(before, after)


def test_affine_mul_add_chain_becomes_one_affine():
    """DenseNet: Concat -> BN -> Mul(per-channel) -> Add(per-channel) -> Relu."""
    before = build({"x": (1, 2, 3, 3), "z": (1, 1, 3, 3)},
                   {"s": _rand(3, low=0.5), "t": _rand(3, seed=1),
                    "m": _rand(3, 1, 1, seed=2, low=0.5), "a": _rand(1, 3, 1, 1, seed=3)},
                   [("concat", ["x", "z"], "c", (1, 3, 3, 3), {"axis": 1}),
                    ("affine", ["c", "s", "t"], "bn", (1, 3, 3, 3), {}),
                    ("mul", ["m", "bn"], "scaled", (1, 3, 3, 3), {}),
                    ("add", ["scaled", "a"], "shifted", (1, 3, 3, 3), {}),
                    ("relu", ["shifted"], "y", (1, 3, 3, 3), {})], ["y"])
    after = optimize(before)
    expect(after, """
        graph g (opset 13)
          input  x: fp32[1x2x3x3]
          input  z: fp32[1x1x3x3]
          c: fp32[1x3x3x3] = concat(x, z) axis=1
          shifted: fp32[1x3x3x3] = affine(c, bn/scale_folded_1, bn/shift_folded_1)
          y: fp32[1x3x3x3] = relu(shifted)
          output y""")
    same_outputs(before, after)


@pytest.mark.parametrize("op,const_first", [("mul", False), ("add", True), ("sub", False),
                                            ("sub", True), ("div", False)])
def test_per_channel_constant_after_conv_folds_into_conv(op, const_first):
    k = _rand(3, 1, 1, seed=5, low=0.5)
    ins = ["k", "c"] if const_first else ["c", "k"]
    before = build({"x": (1, 2, 4, 4)}, {"w": _rand(3, 2, 3, 3), "k": k},
                   [("conv", ["x", "w"], "c", (1, 3, 4, 4), CONV),
                    (op, ins, "y", (1, 3, 4, 4), {})], ["y"])
    after = fold_batchnorm(before).verify()
    assert [(n.op, n.outputs) for n in after.nodes] == [("conv", ("y",))]
    same_outputs(before, after)


def test_gemm_followed_by_affine_folds_per_output_column():
    before = build({"x": (2, 4)}, {"w": _rand(4, 3), "s": _rand(3, seed=1, low=0.5),
                                   "t": _rand(3, seed=2)},
                   [("gemm", ["x", "w"], "g", (2, 3), {"activation": "none"}),
                    ("affine", ["g", "s", "t"], "y", (2, 3), {})], ["y"])
    after = optimize(before)
    expect(after, """
        graph g (opset 13)
          input  x: fp32[2x4]
          y: fp32[2x3] = gemm(x, g/w_folded, g/b_folded) activation=none
          output y""")
    same_outputs(before, after)


@pytest.mark.parametrize("case", ["two_consumers", "graph_output", "not_per_channel"])
def test_fold_is_refused_when_not_legal(case):
    k = _rand(1, 1, 1, 4) if case == "not_per_channel" else _rand(3, 1, 1)
    outputs = ["y", "c"] if case == "graph_output" else ["y"]
    nodes = [("conv", ["x", "w"], "c", (1, 3, 4, 4), CONV),
             ("mul", ["c", "k"], "y", (1, 3, 4, 4), {})]
    if case == "two_consumers":
        nodes += [("relu", ["c"], "r", (1, 3, 4, 4), {})]
        outputs = ["y", "r"]
    before = build({"x": (1, 2, 4, 4)}, {"w": _rand(3, 2, 3, 3), "k": k}, nodes, outputs)
    assert str(fold_batchnorm(before)) == str(before)


def test_relu_not_fused_when_conv_output_has_another_consumer():
    before = build({"x": (1, 2, 4, 4)}, {"w": _rand(3, 2, 3, 3)},
                   [("conv", ["x", "w"], "c", (1, 3, 4, 4), CONV),
                    ("relu", ["c"], "r", (1, 3, 4, 4), {}),
                    ("add", ["c", "r"], "y", (1, 3, 4, 4), {})], ["y"])
    assert str(fuse_activation(before)) == str(before)


def test_identity_removed_and_graph_output_names_kept():
    before = build({"x": (1, 2, 4, 4)}, {"w": _rand(3, 2, 3, 3)},
                   [("conv", ["x", "w"], "c", (1, 3, 4, 4), CONV),
                    ("identity", ["c"], "i", (1, 3, 4, 4), {}),
                    ("relu", ["i"], "r", (1, 3, 4, 4), {}),
                    ("identity", ["r"], "y", (1, 3, 4, 4), {}),
                    ("identity", ["x"], "x_copy", (1, 2, 4, 4), {})], ["y", "x_copy"])
    after = remove_identity(before).verify()
    expect(after, f"""
        graph g (opset 13)
          input  x: fp32[1x2x4x4]
          c: fp32[1x3x4x4] = conv(x, w) activation=none {CONV_ATTRS}
          y: fp32[1x3x4x4] = relu(c)
          x_copy: fp32[1x2x4x4] = identity(x)
          output y, x_copy""")
    same_outputs(before, after)


def test_identity_between_two_graph_outputs_stays():
    before = build({"x": (2, 3)}, {},
                   [("relu", ["x"], "r", (2, 3), {}),
                    ("identity", ["r"], "y1", (2, 3), {}),
                    ("identity", ["r"], "y2", (2, 3), {})], ["y1", "y2"])
    after = remove_identity(before).verify()
    expect(after, """
        graph g (opset 13)
          input  x: fp32[2x3]
          y1: fp32[2x3] = relu(x)
          y2: fp32[2x3] = identity(y1)
          output y1, y2""")
    same_outputs(before, after)


def test_dead_code_drops_unused_nodes_constants_and_types():
    before = build({"x": (2, 3), "unused": (1,)}, {"k": np.ones(3), "dead_k": np.ones(3)},
                   [("add", ["x", "k"], "y", (2, 3), {}),
                    ("mul", ["x", "dead_k"], "dead", (2, 3), {}),
                    ("relu", ["dead"], "dead2", (2, 3), {})], ["y"])
    after = dead_code(before).verify()
    expect(after, """
        graph g (opset 13)
          input  x: fp32[2x3]
          input  unused: fp32[1]
          y: fp32[2x3] = add(x, k)
          output y""")
    assert set(after.constants) == {"k"} and set(after.tensors) == {"x", "unused", "k", "y"}


def test_passes_do_not_modify_their_input():
    before = conv_bn_relu()
    text, constants = str(before), dict(before.constants)
    optimize(before)
    assert str(before) == text and before.constants.keys() == constants.keys()


def test_optimize_reports_each_pass_in_order():
    seen = []
    optimize(conv_bn_relu(), after_pass=lambda name, graph: seen.append(name))
    assert seen == [name for name, _ in PASSES] == [
        "fuse_layernorm", "fold_batchnorm", "fuse_activation", "remove_identity", "dead_code"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from(["affine", "mul", "add", "none"]),
       st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_optimize_preserves_outputs(groups, cout_per_group, after_op, with_bias, relu, seed):
    cout, cin = groups * cout_per_group, groups * 2
    consts = {"w": _rand(cout, 2, 3, 3, seed=seed), "s": _rand(cout, seed=seed + 1, low=0.5),
              "t": _rand(cout, seed=seed + 2), "k": _rand(cout, 1, 1, seed=seed + 3, low=0.5)}
    if with_bias:
        consts["b"] = _rand(cout, seed=seed + 4)
    shape = (1, cout, 5, 5)
    nodes = [("conv", ["x", "w"] + (["b"] if with_bias else []), "c", shape,
              {**CONV, "group": groups}),
             ("affine", ["c", "s", "t"], "bn", shape, {})]
    last = "bn"
    if after_op != "none":
        ins = ["bn", "s", "t"] if after_op == "affine" else ["bn", "k"]
        nodes.append((after_op, ins, "post", shape, {}))
        last = "post"
    if relu:
        nodes.append(("relu", [last], "y", shape, {}))
        last = "y"
    before = build({"x": (1, cin, 5, 5)}, consts, nodes, [last])
    after = optimize(before)
    assert [n.op for n in after.nodes] == ["conv"]
    assert after.nodes[0].attrs["activation"] == ("relu" if relu else "none")
    same_outputs(before, after, seed)

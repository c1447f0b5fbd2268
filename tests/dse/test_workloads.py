"""Workloads with batch sizes, weights and int8 quantisation, and how a point's figures
aggregate them."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import dse
from compiler.errors import SpecError
from compiler.spec import load
from dse import workloads, zoo
from dse.evaluate import point_metrics
from dse.workloads import Quantization, Workload, graph_of, parse

ROOT = Path(__file__).resolve().parents[2]


def test_entries_parse_with_defaults_and_batch_reaches_the_graph():
    a, b = parse(["zoo:mlp", {"model": "zoo:small_cnn", "batch": 4, "weight": 3}])
    assert a == Workload("zoo:mlp") and (b.batch, b.weight, b.label) == (4, 3.0, "zoo:small_cnn@b4")
    assert a.identity != Workload("zoo:mlp", batch=2).identity
    graph = graph_of(b)
    assert graph.tensors[graph.inputs[0]].shape[0] == 4
    assert graph.macs() == 4 * graph_of(Workload("zoo:small_cnn")).macs()


@pytest.mark.parametrize("entries, expected", [
    ([], "at least one model"),
    ([{"batch": 2}], "{model, batch, weight, weights, quantize}"),
    ([{"model": "zoo:mlp", "batches": 2}], "unknown key 'batches'"),
    ([{"model": "zoo:mlp", "batch": 0}], "workloads[0].batch"),
    ([{"model": "zoo:mlp", "weight": -1}], "workloads[0].weight"),
    (["zoo:mlp", "zoo:mlp"], "listed twice"),
    ([{"model": "zoo:mlp", "batchs": 2}], "unknown key 'batchs'; did you mean 'batch'? allowed: model, batch,"),
    ([{"model": "zoo:mlp", "weight": float("nan")}], "workloads[0].weight: must be a finite number > 0, got nan"),
    ([{"model": "zoo:mlp", "weight": float("inf")}], "workloads[0].weight: must be a finite number > 0, got inf"),
    ([{"model": "zoo:mlp", "weight": 10 ** 400}], "workloads[0].weight: must be a finite number > 0"),
    ([{"model": "zoo:mlp", "batch": 100_000}], "workloads[0].batch: must be an integer >= 1 and <= 1024"),
    ([{"model": "zoo:mlp", "quantize": "qdqq"}], "got 'qdqq'; did you mean 'qdq'? allowed: qdq, qoperator"),
    ([{"model": 3}], "workloads[0].model: give zoo:NAME or a path to a .onnx file, got 3"),
])
def test_bad_entries_name_the_field(entries, expected):
    with pytest.raises(SpecError) as info:
        parse(entries)
    assert expected in str(info.value)


def test_point_figures_are_weighted_per_inference():
    workloads = (Workload("a"), Workload("b", batch=4, weight=3.0))
    records = [{"workload": "a", "metrics": {"latency_s": 1.0, "energy_j": 2.0, "area_mm2": 5.0,
                                             "utilisation": 0.5, "pe_count": 64}},
               {"workload": "b@b4", "metrics": {"latency_s": 2.0, "energy_j": 8.0, "area_mm2": 5.0,
                                                "utilisation": 0.9, "pe_count": 64}}]
    m = point_metrics(records, workloads)
    assert m["latency_s"] == pytest.approx((1 * 1.0 + 3 * 2.0) / 4)
    assert m["energy_j"] == pytest.approx((1 * 2.0 + 3 * 8.0 / 4) / 4)
    assert m["throughput_inf_s"] == pytest.approx((1 + 3 * 4) / (1 * 1.0 + 3 * 2.0))
    assert m["power_w"] == pytest.approx((1 * 2.0 + 3 * 8.0) / (1 * 1.0 + 3 * 2.0))
    assert m["edp_j_s"] == pytest.approx(m["energy_j"] * m["latency_s"])
    assert m["throughput_per_mm2"] == pytest.approx(m["throughput_inf_s"] / 5.0)


def test_a_spec_with_batched_weighted_workloads_sweeps(tmp_path):
    (tmp_path / "s.yaml").write_text("name: wl\nworkloads:\n  - zoo:mlp\n  - {model: zoo:small_cnn, batch: 2}\n"
                                     "sweep:\n  parameters:\n    array.rows: [8, 16]\n")
    result = dse.sweep(tmp_path / "s.yaml", out=tmp_path / "r", workers=1)
    assert sorted(result.evaluations["workload"].unique()) == ["zoo:mlp", "zoo:small_cnn@b2"]
    assert len(result.points) == 2 and result.points["feasible"].all()


# ---- quantised workloads -------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty quantised-model cache, and a count of the models quantised into it."""
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "cache"))
    made = []

    def counting(*args, **kwargs):
        made.append(args[1])
        return real(*args, **kwargs)
    real = workloads.quantize_model
    monkeypatch.setattr(workloads, "quantize_model", counting)
    return made


def test_quantize_entries_parse_with_defaults_and_labels():
    a, b, c = parse([{"model": "zoo:mlp", "quantize": "qoperator"},
                     {"model": "zoo:mlp", "quantize": {"format": "qdq", "per_channel": True}, "batch": 2},
                     {"model": "zoo:mlp", "quantize": {}, "batch": 3}])
    assert a.quantize == c.quantize == Quantization("qoperator", per_channel=False)
    assert (a.label, b.label) == ("zoo:mlp[int8 qoperator]", "zoo:mlp[int8 qdq per-channel]@b2")
    assert Workload("zoo:mlp").label == "zoo:mlp" and Workload("zoo:mlp").quantize is None


def test_int8_spec_loads_and_its_workloads_parse():
    spec = load(ROOT / "hwspecs" / "systolic_int8.yaml")
    assert spec.integer_datapath
    found = parse(spec.workloads)
    assert [w.label for w in found] == ["zoo:resnet50[int8 qoperator]", "zoo:squeezenet[int8 qoperator]"]
    assert all(w.quantize == Quantization("qoperator", per_channel=False) for w in found)


@pytest.mark.parametrize("quantize, expected", [
    ("int4", "workloads[0].quantize: got 'int4'; allowed: qdq, qoperator, dynamic"),
    ({"format": "qlinear"}, "workloads[0].quantize.format: got 'qlinear'; allowed: qdq, qoperator, dynamic"),
    ({"per_channel": "yes"}, "workloads[0].quantize.per_channel: must be true or false"),
    ({"formats": "qdq"}, ("workloads[0].quantize: unknown key 'formats'; did you mean 'format'? "
                          "allowed: format, per_channel")),
    (True, "workloads[0].quantize: give qdq, qoperator, dynamic, or {format, per_channel}"),
])
def test_bad_quantize_options_name_the_path(quantize, expected):
    with pytest.raises(SpecError) as info:
        parse([{"model": "zoo:mlp", "quantize": quantize}])
    assert expected in str(info.value)


def test_identity_and_label_carry_the_quantisation():
    import onnxruntime

    plain, qop, qdq, per_channel = (Workload("zoo:mlp"), Workload("zoo:mlp", quantize=Quantization()),
                                    Workload("zoo:mlp", quantize=Quantization("qdq")),
                                    Workload("zoo:mlp", quantize=Quantization(per_channel=True)))
    identities = {w.identity for w in (plain, qop, qdq, per_channel)}
    assert len(identities) == 4 and f"onnxruntime {onnxruntime.__version__}" in qop.identity
    assert "onnxruntime" not in plain.identity
    assert len({plain.label, qop.label, qdq.label, per_channel.label}) == 4
    parse(["zoo:mlp", {"model": "zoo:mlp", "quantize": "qdq"}])     # float and int8 are not duplicates


def test_quantised_workload_is_made_once_and_cached_on_disk(cache, tmp_path):
    workload = Workload("zoo:mlp", quantize=Quantization())
    path = workloads.quantized_path(workload)
    assert path.parent == tmp_path / "cache" / "quantized" and path.is_file() and len(cache) == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]   # no partial files left
    mtime = path.stat().st_mtime_ns
    assert workloads.quantized_path(Workload("zoo:mlp", quantize=Quantization())) == path
    assert len(cache) == 1 and path.stat().st_mtime_ns == mtime
    other = workloads.quantized_path(Workload("zoo:mlp", quantize=Quantization(per_channel=True)))
    assert other != path and len(cache) == 2
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "QLinearMatMul" in ops or "QGemm" in ops


def test_light_zoo_model_is_quantised_with_seeded_random_weights(cache):
    workload = Workload("zoo:squeezenet", quantize=Quantization())
    path = workloads.quantized_path(workload)
    float_model = onnx.load(str(zoo.resolve("zoo:squeezenet")))
    assert any(n.op_type == "ConstantOfShape" for n in float_model.graph.node)
    quantised = onnx.load(str(path))
    constants = {t.name: numpy_helper.to_array(t) for t in quantised.graph.initializer}
    convs = [n for n in quantised.graph.node if n.op_type == "QLinearConv"]
    # constant fills would quantise every weight to one code (127); seeded random weights use the range
    assert len(convs) == 26 and all(len(np.unique(constants[n.input[3]])) > 100 for n in convs)
    graph = graph_of(workload)
    assert graph.macs() == graph_of(Workload("zoo:squeezenet")).macs()


def test_quantize_without_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SpecError, match=r"needs onnxruntime: pip install -e '\.\[quantize\]'"):
        _ = Workload("zoo:mlp", quantize=Quantization()).identity
    with pytest.raises(SpecError, match=r"workloads\[0\]\.quantize: quantize \(int8 qdq\) needs onnxruntime"):
        parse([{"model": "zoo:mlp", "quantize": "qdq"}])          # when the spec is read, before any work


def test_random_weights_option_replaces_the_light_models_fills():
    """`weights: random` (for narrow floats, whose range the constant fills overflow): seeded
    He-scaled weights, its own identity and label, the same MACs; only light zoo models take it."""
    shipped, random = parse([{"model": "zoo:squeezenet"}, {"model": "zoo:squeezenet", "weights": "random"}])
    assert random.label == "zoo:squeezenet[random weights]" and random.identity != shipped.identity
    g_shipped, g_random = graph_of(shipped), graph_of(random)
    assert g_shipped.macs() == g_random.macs()
    w = next(n.inputs[1] for n in g_random.nodes if n.op == "conv")
    assert len(np.unique(g_random.constants[w])) > 100 and len(np.unique(g_shipped.constants[w])) == 1
    assert np.array_equal(workloads.model_of(random).graph.initializer[0].raw_data,
                          workloads.model_of(random).graph.initializer[0].raw_data)     # seeded
    for entry, expected in (({"model": "zoo:mlp", "weights": "random"}, "light zoo models"),
                            ({"model": "zoo:resnet50", "weights": "normal"}, "allowed: shipped, random")):
        with pytest.raises(SpecError, match=expected):
            parse([entry])


@pytest.mark.parametrize("entry, expected", [
    ("zoo:squeezent", ("workloads[0]: unknown zoo model 'squeezent'; did you mean 'zoo:squeezenet'? available: "
                       "zoo:alexnet, zoo:densenet121")),
    ({"model": "zoo:resnt50", "batch": 2}, ("workloads[0].model: unknown zoo model 'resnt50'; did you mean "
                                            "'zoo:resnet50'?")),
    ("squeezenet", "workloads[0]: no such model file 'squeezenet'"),
    ("squeezenet", "did you mean 'zoo:squeezenet'? give zoo:NAME"),
    ("models/absent.onnx", "workloads[0]: no such model file 'models/absent.onnx'"),
])
def test_unknown_models_are_refused_when_the_spec_is_parsed(entry, expected):
    """A misspelt zoo name used to pass here and make every evaluation of a sweep infeasible."""
    with pytest.raises(SpecError) as info:
        parse([entry])
    assert expected in str(info.value)


def test_a_model_file_that_does_not_read_as_onnx_is_refused_when_parsed(tmp_path):
    data = (zoo.light_dir() / "light_squeezenet.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:200])
    with pytest.raises(SpecError, match=r"workloads\[1\]\.model: .*cut\.onnx: not a readable ONNX model"):
        parse(["zoo:mlp", {"model": str(tmp_path / "cut.onnx")}])
    onnx.save(zoo.mlp(), tmp_path / "mlp.onnx")
    assert parse([str(tmp_path / "mlp.onnx")])[0].model == str(tmp_path / "mlp.onnx")


def test_a_batch_1_models_constant_reshape_follows_the_batch(tmp_path):
    """Exporters write a classifier's flatten as Reshape to [1, C]: at batch 3 it reshapes [3, C, 1, 1]
    to [3, C] (graph_of makes such Reshapes copy the batch), each sample's output the batch-1 one."""
    from onnx import helper

    from compiler.targets import lower
    from sim import simulate

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "flatten", [helper.make_tensor_value_info("x", 1, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", 1, [1, 5])], inits)
    path = tmp_path / "flatten.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    spec = load("systolic")
    batched = simulate(lower(graph_of(Workload(str(path), batch=3)), spec), {"x": x}).outputs["y"]
    single = [simulate(lower(graph_of(Workload(str(path))), spec), {"x": x[i:i + 1]}).outputs["y"][0]
              for i in range(3)]
    assert batched.shape == (3, 5)
    np.testing.assert_array_equal(batched, np.stack(single))

"""Workloads with batch sizes and weights, and how a point's figures aggregate them."""
import pytest

import dse
from compiler.errors import SpecError
from dse.evaluate import point_metrics
from dse.workloads import Workload, graph_of, parse


def test_entries_parse_with_defaults_and_batch_reaches_the_graph():
    a, b = parse(["zoo:mlp", {"model": "zoo:small_cnn", "batch": 4, "weight": 3}])
    assert a == Workload("zoo:mlp") and (b.batch, b.weight, b.label) == (4, 3.0, "zoo:small_cnn@b4")
    assert a.identity != Workload("zoo:mlp", batch=2).identity
    graph = graph_of(b)
    assert graph.tensors[graph.inputs[0]].shape[0] == 4
    assert graph.macs() == 4 * graph_of(Workload("zoo:small_cnn")).macs()


@pytest.mark.parametrize("entries, expected", [
    ([], "at least one model"),
    ([{"batch": 2}], "{model, batch, weight}"),
    ([{"model": "zoo:mlp", "batches": 2}], "unknown key 'batches'"),
    ([{"model": "zoo:mlp", "batch": 0}], "workloads[0].batch"),
    ([{"model": "zoo:mlp", "weight": -1}], "workloads[0].weight"),
    (["zoo:mlp", "zoo:mlp"], "listed twice"),
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

"""The drill-down's roofline: each target's roofs read from its spec (compute: 2 x peak MACs per cycle x
clock; bandwidth: DRAM GB/s), every conv/GEMM layer of a front design under both roofs, and the page's
script drawing what the drill-down data holds."""
import json
import re
import shutil
import subprocess

import pytest

import dse
from compiler import spec as specmod
from compiler.bundled import spec_path
from dse.report_roofline import SCRIPT, dram_gbps, roofs

SIMT = """name: gpu
target: simt
workloads: [zoo:small_cnn]
sweep:
  parameters:
    sm.count: [4, 16]
    memory.dram_gbps: [200, 1555]
"""
SYSTOLIC = """name: npu
workloads: [zoo:small_cnn]
sweep:
  parameters:
    array.rows: [8, 32]
    memory.dram_gbps: [6.4, 25.6]
"""


def _json_block(page: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_each_targets_roofs_come_from_its_spec():
    systolic = specmod.load(spec_path("systolic"))
    want = 2 * systolic.array.rows * systolic.array.cols * systolic.array.macs_per_pe_cycle * systolic.clock_ghz * 1e9
    assert roofs(systolic)["peak_ops_s"] == pytest.approx(want)
    assert dram_gbps(systolic) == systolic.memory.dram_gbps == 25.6
    a100 = specmod.load(spec_path("gpu_a100_like"))
    assert roofs(a100)["peak_ops_s"] == pytest.approx(312e12, rel=0.01)   # A100 dense fp16: 312 TFLOPS
    assert dram_gbps(a100) == a100.memory.dram_gbps
    cpu = specmod.load(spec_path("cpu"))
    assert dram_gbps(cpu) == pytest.approx(cpu.memory.dram_channels * cpu.memory.dram_channel_gbps)
    assert roofs(cpu)["peak_ops_s"] == pytest.approx(2 * cpu.peak_macs_per_cycle * cpu.clock_ghz * 1e9)


@pytest.fixture(scope="module", params=["systolic", "simt"])
def page(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    (folder / "s.yaml").write_text(SYSTOLIC if request.param == "systolic" else SIMT)
    dse.sweep(folder / "s.yaml", out=folder / "r", workers=1)
    return (folder / "r" / "index.html").read_text()


def test_every_layer_of_every_front_design_sits_under_both_roofs(page):
    data = _json_block(page, "drill-data")
    layers_seen = 0
    for design in data["designs"]:
        roof = design["roof"]
        for run in design["runs"]:
            layers = run["layers"]
            hz = run["clock_ghz"] * 1e9
            assert hz == roof["clock_ghz"] * 1e9
            for macs, dram, compute, stall in zip(layers["macs"], layers["dram"], layers["compute"], layers["stall"]):
                if not macs or not dram or not compute + stall:
                    continue
                intensity, achieved = 2 * macs / dram, 2 * macs * hz / (compute + stall)
                assert achieved <= roof["peak_ops_s"] * (1 + 1e-9)
                assert achieved <= roof["dram_gbps"] * 1e9 * intensity * (1 + 1e-9)
                layers_seen += 1
    assert layers_seen >= 2 * len(data["designs"])


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's scripts")
def test_the_script_draws_the_layers_and_both_roofs(page, tmp_path):
    data = _json_block(page, "drill-data")
    design = data["designs"][0]
    run = design["runs"][0]
    names = [data["strings"][i] for i in run["layers"]["name"]]
    harness = tmp_path / "run.js"
    harness.write_text("const out={};global.window=global;global.Plotly={react(id,t,l){out.traces=t;out.layout=l;}};"
                       + f"eval({json.dumps(SCRIPT)});window.dseRoofline('r',{json.dumps(design['roof'])},"
                       + f"{json.dumps(run)},{json.dumps(names)});console.log(JSON.stringify(out));")
    result = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    drawn = json.loads(result.stdout)
    bandwidth, compute, layers = drawn["traces"]
    roof = design["roof"]
    ridge = roof["peak_ops_s"] / (roof["dram_gbps"] * 1e9)
    assert bandwidth["x"][1] == pytest.approx(ridge) and compute["y"] == [roof["peak_ops_s"]] * 2
    assert "GB/s" in bandwidth["name"] and "MACs/cycle" in compute["name"]
    L = run["layers"]
    shown = [i for i, m in enumerate(L["macs"]) if m and L["dram"][i] and L["compute"][i] + L["stall"][i]]
    assert layers["x"] == pytest.approx([2 * L["macs"][i] / L["dram"][i] for i in shown])
    assert [c[0] for c in layers["customdata"]] == [names[i] for i in shown]
    xaxis = drawn["layout"]["xaxis"]
    assert xaxis["type"] == "log" and "ops per DRAM byte" in xaxis["title"]["text"]
    assert "ops/s" in drawn["layout"]["yaxis"]["title"]["text"]
    if len(shown) < len(L["macs"]):
        assert "not shown" in drawn["layout"]["title"]["text"]

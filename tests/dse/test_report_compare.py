"""`dse report A B --compare --out DIR` on two small real sweeps of different targets (a systolic array
and a GPU-like SIMT design on zoo:mlp): shared axes in one unit each, one front across both studies
equal to the front of the stores' rows, a table with a study column, nothing simulated, and a clear
one-line refusal when the folders cannot be compared."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import dse
from dse.cli import main
from dse.pareto import non_dominated
from dse.report_compare import SHARED, joint_points, pair_figure

SYSTOLIC = """name: npu
workloads: [zoo:mlp]
sweep:
  parameters:
    array.rows: [8, 16]
    array.cols: [8, 16]
"""
SIMT = """name: gpu
target: simt
workloads: [zoo:mlp]
sweep:
  parameters:
    sm.count: [2, 8, 32]
"""


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Two sweeps of zoo:mlp (4 systolic points, 3 SIMT points) and their comparison page."""
    root = tmp_path_factory.mktemp("compare")
    for name, text in (("npu", SYSTOLIC), ("gpu", SIMT)):
        (root / f"{name}.yaml").write_text(text)
        dse.sweep(root / f"{name}.yaml", out=root / name, workers=1)
    assert main(["report", str(root / "npu"), str(root / "gpu"), "--compare", "--out", str(root / "both")]) == 0
    return root, (root / "both" / "index.html").read_text()


def _json_block(page: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def _stored_rows(root):
    """Every stored evaluation of both folders (one workload: one row per design point), with its study."""
    rows = [dse.load(root / name).assign(study=name) for name in ("npu", "gpu")]
    return [r[r["feasible"]] for r in rows]


def test_one_front_across_both_targets_equals_the_front_of_the_stores_rows(studies):
    root, page = studies
    npu, gpu = _stored_rows(root)
    values = np.vstack([npu[list(SHARED)].to_numpy(float), gpu[list(SHARED)].to_numpy(float)])
    front = non_dominated(values)
    assert 0 < front.sum() < len(values)
    assert f"{int(front.sum())} of {len(values)} feasible designs" in page
    table = _json_block(page, "cmp-data")
    assert table["headers"][:3] == ["study", "target", "design"]
    latency = table["headers"].index("latency_s in ms per inference")
    on_front = sorted((row[0], row[latency]) for row in table["rows"] if row[-1] is True)
    studies = np.concatenate([npu["study"], gpu["study"]])
    want = sorted(zip(studies[front], values[front, 0] * 1e3))
    assert [s for s, _ in on_front] == [s for s, _ in want] and {s for s, _ in want} == {"npu", "gpu"}
    assert [v for _, v in on_front] == pytest.approx([v for _, v in want], rel=1e-5)
    assert {row[1] for row in table["rows"]} == {"systolic", "simt"}


def test_every_studys_points_share_axes_in_ms_mj_and_mm2(studies):
    root, page = studies
    from dse.report_rebuild import load
    loaded = [load(root / "npu"), load(root / "gpu")]
    joint = joint_points(loaded, ["npu", "gpu"])
    assert len(joint) == 7 and set(joint["target"]) == {"systolic", "simt"}
    fig = pair_figure(joint, "latency_s", "energy_j", ["npu", "gpu"])
    clouds = [t for t in fig.data if t.mode == "markers" and t.meta != "front"]
    assert [len(t.x) for t in clouds] == [4, 3]
    assert clouds[0].marker.symbol != clouds[1].marker.symbol and clouds[0].marker.color != clouds[1].marker.color
    npu = joint[joint["study"] == "npu"]
    assert np.allclose(clouds[0].x, npu["latency_s"] * 1e3) and np.allclose(clouds[0].y, npu["energy_j"] * 1e3)
    assert fig.layout.xaxis.title.text == "latency_s in ms per inference"
    assert fig.layout.yaxis.title.text == "energy_j in mJ per inference"
    fronts = [t for t in fig.data if t.meta == "front"]
    assert sum(len(t.x) for t in fronts) == int(joint["on_front"].sum())
    for text in ("latency_s in ms per inference", "energy_j in mJ per inference", "area_mm2 (mm^2)",
                 "throughput_inf_s (inferences/s)", "inferences_per_j (inferences/J)",
                 "throughput_per_mm2 (inferences/s/mm^2)"):
        assert text in _json_block(page, "cmp-data")["headers"]
    assert page.count('class="plotly-graph-div"') == 5       # 3 pairs, a 3-D view and the convergence
    assert '"type":"scatter3d"' in page
    assert "https://" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)


def test_compare_reads_the_stores_and_simulates_nothing(studies, tmp_path, monkeypatch):
    root, page = studies
    from dse import evaluate, executors, report_drilldown

    def no_simulation(*args, **kwargs):
        raise AssertionError("dse report --compare simulated a design point")
    for module, name in ((evaluate, "run_task"), (evaluate, "run_chunk"), (evaluate, "evaluate"),
                         (executors, "make"), (report_drilldown, "simulate")):
        monkeypatch.setattr(module, name, no_simulation)
    assert main(["report", str(root / "npu"), str(root / "gpu"), "--compare", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "index.html").read_text() == page


def test_folders_that_cannot_be_compared_are_refused_in_one_line(studies, tmp_path, capsys):
    root, _ = studies
    (tmp_path / "cnn.yaml").write_text(SYSTOLIC.replace("zoo:mlp", "zoo:small_cnn").replace("[8, 16]\n", "[8]\n"))
    dse.sweep(tmp_path / "cnn.yaml", out=tmp_path / "cnn", workers=1)
    capsys.readouterr()
    cases = [
        ([root / "npu", tmp_path / "cnn", "--compare", "--out", tmp_path / "x"],
         rf"do not share workloads \(only {root / 'npu'} has zoo:mlp \(batch 1, weight 1\); only "
         rf"{tmp_path / 'cnn'} has zoo:small_cnn \(batch 1, weight 1\)\)"),
        ([root / "npu", tmp_path / "nowhere", "--compare", "--out", tmp_path / "x"],
         rf"{tmp_path / 'nowhere'}: no results store"),
        ([root / "npu", "--compare", "--out", tmp_path / "x"], "name two or more report folders"),
        ([root / "npu", root / "gpu"], "need --compare"),
        ([root / "npu", root / "gpu", "--compare"], "with --out DIR"),
        ([root / "npu", root / "gpu", "--compare", "--out", root / "gpu"], "is one of the compared folders"),
        ([root / "npu", root / "npu", "--compare", "--out", tmp_path / "x"], "a folder is named twice"),
    ]
    for argv, message in cases:
        code = main(["report", *map(str, argv)])
        err = capsys.readouterr().err
        assert code == 2 and re.search(message, err) and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x").exists()


def test_names_of_studies_are_escaped(studies, tmp_path):
    root, _ = studies
    name = "<img src=x onerror=alert(1)>"       # a folder name holding markup (no '/', so one folder)
    shutil.copytree(root / "gpu", tmp_path / name)
    assert main(["report", str(root / "npu"), str(tmp_path / name), "--compare", "--out", str(tmp_path / "c")]) == 0
    page = (tmp_path / "c" / "index.html").read_text()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert name in {row[0] for row in _json_block(page, "cmp-data")["rows"]}   # the text itself, shown as text


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's scripts")
def test_the_comparison_tables_script_filters_the_joint_front(studies, tmp_path):
    _, page = studies
    data = page[page.index('<script type="application/json" id="cmp-data">'):]
    script = re.search(r"<script>\s*(\(function\(id\).*?)</script>", data, re.S).group(1)
    block = _json_block(page, "cmp-data")
    harness = tmp_path / "run.js"
    harness.write_text(NODE_HARNESS.replace("BLOCK", json.dumps(json.dumps(block))).replace("SCRIPT",
                                                                                            json.dumps(script)))
    out = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["all"] == len(block["rows"]) and shown["front"] == sum(r[-1] is True for r in block["rows"])
    assert shown["simt"] == sum(r[1] == "simt" for r in block["rows"]) < shown["all"]


NODE_HARNESS = r"""
const els = {};
function mk() { return {children: [], listeners: {}, textContent: '', value: '', checked: false,
  appendChild(c) { this.children.push(c); return c; },
  replaceChildren(...c) { this.children = c.flatMap(x => x.fragment ? x.children : [x]); },
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); },
  fire(t) { (this.listeners[t] || []).forEach(f => f()); }}; }
function el(id) { if (els[id]) return els[id]; const e = mk(); e.tHead = mk(); e.tBodies = [mk()];
  if (id === 'cmp-data') e.textContent = BLOCK; if (id === 'cmp-size') e.value = '25'; return els[id] = e; }
global.document = {getElementById: el, createElement: mk,
  createDocumentFragment() { const f = mk(); f.fragment = true; return f; }};
eval(SCRIPT);
const out = {all: el('cmp-table').tBodies[0].children.length};
el('cmp-front').checked = true; el('cmp-front').fire('change');
out.front = el('cmp-table').tBodies[0].children.length;
el('cmp-front').checked = false; el('cmp-filter').value = 'simt'; el('cmp-filter').fire('input');
out.simt = el('cmp-table').tBodies[0].children.length;
console.log(JSON.stringify(out));
"""

"""The sweep's HTML report, read as its content: the overview, the fronts (each pair's staircase and
the all-objective front), the drill-down of every front design, the points table, escaping of names
from models, specs and paths, and `dse report` rebuilding the same page from the store alone."""
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper, numpy_helper

import dse
from dse.cli import main
from dse.pareto import non_dominated
from dse.report_fronts import WEBGL_POINTS, front_figure, log_axis, pair_front

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
OBJECTIVES = ["latency_s", "energy_j", "area_mm2"]


def _spec(folder: Path, workloads: str = "[zoo:mlp]", name: str = "tiny") -> Path:
    path = folder / "s.yaml"
    path.write_text(f"name: {json.dumps(name)}\nworkloads: {workloads}\nsweep:\n  parameters:\n"
                    "    array.rows: [4, 8, 16]\n    array.cols: [8, 16]\n"
                    "    memory.weight_scratchpad_kib: [0.01, 64]\n"
                    "  constraints: ['array.rows * array.cols <= 128']\n"
                    f"  objectives: [{', '.join(OBJECTIVES)}]\n")
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 12-point sweep of zoo:mlp: 2 points over a parameter constraint, 5 that cannot map."""
    folder = tmp_path_factory.mktemp("report")
    result = dse.sweep(_spec(folder), out=folder / "r", workers=1)
    return folder / "r", result, (folder / "r" / "index.html").read_text()


def _json_block(page: str, element_id: str):
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def _store_front(folder: Path) -> set:
    """The front of all objectives computed from the store's rows (one workload: a point's row)."""
    rows = dse.load(folder)
    rows = rows[rows["feasible"]]
    return set(rows.loc[non_dominated(rows[OBJECTIVES].to_numpy(float)), "point_key"])


def test_front_count_in_the_page_equals_the_stores_front(swept):
    folder, result, page = swept
    front = _store_front(folder)
    assert 0 < len(front) == int(result.points["on_front"].sum())
    select = re.search(r'<select id="drill-design">(.*?)</select>', page, re.S).group(1)
    assert select.count("<option") == len(front)
    assert len(_json_block(page, "drill-data")["designs"]) == len(front)
    assert f"{len(front)} on the front of all objectives" in page


def test_overview_lists_points_reasons_strategy_and_best_designs(swept):
    _, result, page = swept
    overview = page[page.index('<section id="overview">'):page.index('<section id="fronts">')]
    assert "12 evaluated: 5 feasible, 7 infeasible" in overview and "grid over 12 points" in overview
    assert re.search(r'<td class="num">2</td><td>constraint violated: array.rows \* array.cols &lt;= 128', overview)
    assert re.search(r'<td class="num">5</td><td>zoo:mlp: [^<]*no tile fits', overview)
    best = result.points.loc[result.points["latency_s"].idxmin()]
    assert f"{best['latency_s'] * 1e3:.4g} ms" in overview and "mJ" in overview and "mm^2" in overview
    assert 'class="banner' not in page          # nothing wrong with this study


def test_each_pair_has_its_staircase_and_the_all_objective_front_apart(swept):
    folder, result, page = swept
    assert page.count("\"2-D front of this pair (") == 3 and page.count("\"front of all 3 objectives (") == 3
    fronts = page[page.index('<section id="fronts">'):page.index('<section id="search">')]
    assert fronts.count('"shape":"hv"') == 3 and '"symbol":"diamond"' in fronts
    assert "latency_s in ms per inference" in page and "energy_j in mJ per inference" in page
    pts = result.points
    stairs = pair_front(pts, "latency_s", "area_mm2", {"latency_s": 1.0, "area_mm2": 1.0})
    ok = pts[pts["feasible"]]
    for _, s in stairs.iterrows():  # no feasible point beats a staircase point on both
        assert not ((ok["latency_s"] <= s["latency_s"]) & (ok["area_mm2"] <= s["area_mm2"])
                    & ((ok["latency_s"] < s["latency_s"]) | (ok["area_mm2"] < s["area_mm2"]))).any()
    assert stairs["latency_s"].is_monotonic_increasing and stairs["area_mm2"].is_monotonic_decreasing


def test_a_pairs_staircase_is_its_non_dominated_set_in_any_direction():
    rng = np.random.default_rng(1)   # small integer grids: many ties and repeated points
    for _ in range(300):
        n = int(rng.integers(1, 40))
        pts = pd.DataFrame({"a": rng.integers(1, 6, n).astype(float), "b": rng.integers(1, 6, n).astype(float),
                            "feasible": rng.random(n) < 0.9})
        pts.loc[rng.random(n) < 0.1, "a"] = np.nan
        signs = {"a": float(rng.choice([1, -1])), "b": float(rng.choice([1, -1]))}
        ok = pts[pts["feasible"]]
        expected = ok.index[non_dominated(np.column_stack([ok["a"] * signs["a"], ok["b"] * signs["b"]]))]
        stairs = pair_front(pts, "a", "b", signs)
        assert set(stairs.index) == set(expected)
        assert (stairs["a"] * signs["a"]).is_monotonic_increasing


def test_drilldown_holds_per_layer_figures_for_every_front_design(swept):
    folder, result, page = swept
    data = _json_block(page, "drill-data")
    front = result.points[result.points["on_front"]]
    assert data["workloads"] == ["zoo:mlp"]
    stored = dse.load(folder).set_index("point_key")
    for design in data["designs"]:
        (run,) = design["runs"]
        layers = run["layers"]
        assert len(layers["name"]) >= 2 and "as stored" in run["note"]
        assert all(len(layers[k]) == len(layers["name"]) for k in ("compute", "stall", "util", "mapping"))
        assert sum(layers["compute"]) > 0 and {data["strings"][i] for i in layers["op"]} >= {"gemm"}
        assert design["key"] in set(front["point_key"])
        row = stored.loc[design["key"]]
        assert run["cycles"] == row["total_cycles"]
        assert run["energy_mj"]["dram"] == pytest.approx(row["energy_dram_j"] * 1e3, rel=1e-4)
        assert design["area_mm2"]["pe_array"] == pytest.approx(row["area_pe_array_mm2"], rel=1e-4)


def test_points_table_is_data_for_a_paged_sortable_script(swept):
    _, result, page = swept
    table = _json_block(page, "pts-data")
    assert len(table["rows"]) == len(result.points) == 12
    assert "latency_s in ms per inference" in table["headers"] and "reason" in table["headers"]
    assert "<tr>" not in page[page.index('<section id="points">'):]     # rows are drawn a page at a time
    assert "https://" not in re.sub(r"<script>.*?</script>", "", page, flags=re.S)   # nothing from the network


def test_dse_report_rebuilds_the_same_page_without_simulating_the_sweep(swept, tmp_path, monkeypatch, capsys):
    folder, _, page = swept
    copy = tmp_path / "r"
    shutil.copytree(folder, copy)
    (copy / "index.html").unlink()
    from dse import evaluate, executors

    def no_evaluation(*args, **kwargs):
        raise AssertionError("dse report evaluated a design point of the sweep")
    for name in ("run_task", "run_chunk", "evaluate"):
        monkeypatch.setattr(evaluate, name, no_evaluation)
    monkeypatch.setattr(executors, "make", no_evaluation)
    assert main(["report", str(copy)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (copy / "index.html").read_text() == page


def test_a_report_outlives_a_compiler_upgrade_and_says_what_is_missing(swept, tmp_path, monkeypatch):
    folder, _, page = swept
    copy = tmp_path / "r"
    shutil.copytree(folder, copy)
    from dse import report_rebuild, store
    monkeypatch.setattr(store, "compiler_version", lambda: "a-newer-compiler")
    assert report_rebuild.rebuild(copy).points == 12
    assert (copy / "index.html").read_text() == page   # stored rows matched by design point and workload
    db = sqlite3.connect(copy / "results.sqlite")
    db.execute("DELETE FROM evaluations WHERE rowid = (SELECT MAX(rowid) FROM evaluations WHERE feasible = 1)")
    db.commit()
    db.close()
    done = report_rebuild.rebuild(copy)
    assert done.missing == 1 and done.points == 11
    assert "1 evaluations of this study are not in the store" in (copy / "index.html").read_text()


def test_dse_report_refuses_a_folder_without_a_sweep_or_whose_spec_changed(swept, tmp_path, capsys):
    folder, _, _ = swept
    code = main(["report", str(tmp_path / "nowhere")])
    assert code == 2 and "no results store" in capsys.readouterr().err
    copy = tmp_path / "r"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "sweep.json").read_text())
    changed = Path(meta["spec"]).read_text().replace("[4, 8, 16]", "[4, 8]")
    (tmp_path / "changed.yaml").write_text(changed)
    (copy / "sweep.json").write_text(json.dumps({**meta, "spec": str(tmp_path / "changed.yaml")}))
    code = main(["report", str(copy)])
    assert code == 2 and "has changed since the sweep" in capsys.readouterr().err


def test_names_from_models_specs_and_paths_are_escaped(tmp_path):
    model_dir = tmp_path / "<script>alert(1)<"       # the workload's path is '.../<script>alert(1)</script>.onnx'
    model_dir.mkdir()
    weights = numpy_helper.from_array(np.ones((16, 8), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name=SCRIPT)], "g",
                              [helper.make_tensor_value_info("x", 1, [1, 16])],
                              [helper.make_tensor_value_info("y", 1, [1, 8])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model_dir / "script>.onnx")
    path = str(model_dir / "script>.onnx")
    dse.sweep(_spec(tmp_path, f"[{json.dumps(path)}]", name=SCRIPT), out=tmp_path / "r", workers=1)
    page = (tmp_path / "r" / "index.html").read_text()
    assert SCRIPT not in page and "alert(1)</" not in page
    assert f"Sweep report: {ESCAPED}" in page and ESCAPED in page[page.index('<section id="overview">'):]
    data = _json_block(page, "drill-data")
    assert SCRIPT in data["strings"] and path in data["workloads"]   # the text itself, shown as text


def test_an_all_infeasible_study_and_a_failed_verify_have_a_banner(swept, tmp_path):
    folder, _, _ = swept
    copy = tmp_path / "r"
    shutil.copytree(folder, copy)
    pd.DataFrame([{"workload": "zoo:mlp", "reference": "onnxruntime", "max_abs_error": 0.5, "ok": False,
                   "criterion": "rtol"}]).to_csv(copy / "verify.csv", index=False)
    main(["report", str(copy)])
    assert re.search(r'class="banner error"[^>]*>--verify failed: 1 of 1', (copy / "index.html").read_text())
    spec = tmp_path / "none.yaml"
    spec.write_text("name: none\nworkloads: [zoo:mlp]\nmemory: {weight_scratchpad_kib: 0.01}\n"
                    "sweep:\n  parameters:\n    array.rows: [4, 8]\n")
    with pytest.raises(dse.sweeper.NoFeasiblePoint):
        dse.sweep(spec, out=tmp_path / "none", workers=1)
    page = (tmp_path / "none" / "index.html").read_text()
    assert re.search(r'class="banner error"[^>]*>No feasible design point: all 2 points', page)
    assert "Plotly.newPlot" not in page and len(page) < 200_000   # no plot, so no plotly.js either


def test_log_axes_label_full_numbers_and_big_clouds_use_webgl():
    for values, expected in (([0.011, 0.03], [0.01, 0.02, 0.03]), ([1.0, 1e6], [1, 10, 100, 1e3, 1e4, 1e5, 1e6]),
                             ([3.0, 40.0], [5, 10, 20])):
        axis = log_axis(values)
        assert axis["type"] == "log" and axis["tickvals"] == pytest.approx(expected)
        assert all(float(t) == pytest.approx(v) for t, v in zip(axis["ticktext"], axis["tickvals"]))
    assert log_axis([0.0, 1.0])["type"] == "linear"
    rng = np.random.default_rng(0)
    n = WEBGL_POINTS + 1
    pts = pd.DataFrame({"latency_s": rng.uniform(1e-3, 1e-2, n), "area_mm2": rng.uniform(1, 10, n),
                        "feasible": True, "reason": "", "point_key": [str(i) for i in range(n)], "p": 1})
    pts["on_front"] = non_dominated(pts[["latency_s", "area_mm2"]].to_numpy())
    fig = front_figure(pts, "latency_s", "area_mm2", ["p"], {"latency_s": 1.0, "area_mm2": 1.0}, {}, 2)
    assert fig.data[0].type == "scattergl" and fig.data[-1].type == "scatter"
    assert fig.data[0].x[0] == pytest.approx(pts["latency_s"].iloc[0] * 1e3)      # ms


def test_a_large_front_is_drilled_into_evenly_spread_and_bounded():
    from dse.report_drilldown import MAX_DESIGNS, front_designs
    from dse.space import Objective
    n = 3 * MAX_DESIGNS
    pts = pd.DataFrame({"latency_s": np.arange(n, 0, -1.0), "feasible": True, "on_front": True,
                        "point_key": [f"{i:04d}" for i in range(n)]})
    chosen = front_designs(pts, (Objective("latency_s", "min"),))
    assert len(chosen) == MAX_DESIGNS and chosen["latency_s"].is_monotonic_increasing
    assert chosen["latency_s"].iloc[0] == 1 and chosen["latency_s"].iloc[-1] == n   # both ends kept


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's scripts")
def test_the_pages_scripts_draw_the_table_and_the_drilldown(swept, tmp_path):
    """The inline scripts run under node against a minimal DOM and a recording Plotly: the table
    pages, filters and sorts; the drill-down draws the chosen design. (No browser here: a headless
    browser test is issue 18's.)"""
    _, result, page = swept
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    ours = [s for s in scripts if "dseSelectDesign" in s or "pts-data" in s or "dseRoofline" in s]
    blocks = dict(re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S))
    harness = tmp_path / "run.js"
    harness.write_text(NODE_HARNESS.replace("BLOCKS", json.dumps(blocks)).replace("SCRIPTS", json.dumps(ours)))
    out = subprocess.run(["node", str(harness)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["rows_first_page"] == min(25, len(result.points))
    assert report["rows_feasible"] == int(result.points["feasible"].sum())
    assert report["sorted_first"] <= report["sorted_last"]
    assert report["plots"]["drill-layers"] == 2 and report["plots"]["drill-energy"] == 1
    assert report["plots"]["drill-roofline"] == 3      # two roofs and the layers
    assert report["layer_rows"] >= 2


NODE_HARNESS = r"""
const blocks = BLOCKS, scripts = SCRIPTS, plots = {}, els = {};
function el(id) {
  if (els[id]) return els[id];
  const e = {id, value: id.startsWith('drill-') ? '0' : '', checked: false, textContent: blocks[id] || '',
    children: [], listeners: {},
    addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); },
    fire(t) { (this.listeners[t] || []).forEach(f => f()); },
    appendChild(c) { this.children.push(c); return c; }, replaceChildren(...c) { this.children = c.flatMap(
      x => x.fragment ? x.children : [x]); }, scrollIntoView() {}};
  e.tHead = mk('thead'); e.tBodies = [mk('tbody')];
  if (id === 'pts-size') e.value = '25';
  return els[id] = e;
}
function mk(tag) { return {tag, children: [], listeners: {}, textContent: '', appendChild(c) { this.children.push(c);
  return c; }, replaceChildren(...c) { this.children = c.flatMap(x => x.fragment ? x.children : [x]); },
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); },
  fire(t) { (this.listeners[t] || []).forEach(f => f()); }}; }
global.window = global;
global.document = {getElementById: el, createElement: mk,
  createDocumentFragment() { const f = mk('fragment'); f.fragment = true; return f; }, querySelectorAll: () => []};
global.Plotly = {react(id, data) { plots[id] = data.length; }};
scripts.forEach(s => eval(s));
const body = () => el('pts-table').tBodies[0].children;
const out = {rows_first_page: body().length};
el('pts-feasible').checked = true; el('pts-feasible').fire('change');
out.rows_feasible = body().length;
el('pts-feasible').checked = false; el('pts-feasible').fire('change');
const head = el('pts-table').tHead.children[0].children;
const col = JSON.parse(blocks['pts-data']).headers.indexOf('latency_s in ms per inference');
head[col].fire('click');
const cells = body().filter(r => r.children[col].textContent !== '');
out.sorted_first = +cells[0].children[col].textContent;
out.sorted_last = +cells[cells.length - 1].children[col].textContent;
window.dseSelectDesign(JSON.parse(blocks['drill-data']).designs.length - 1);
out.plots = plots;
out.layer_rows = el('drill-table').tBodies[0].children.length;
console.log(JSON.stringify(out));
"""

"""The report's drill-down into each design on the front of all objectives: per-layer latency
stacked into compute and stall cycles, energy and area by component, a roofline of its layers
(dse/report_roofline.py) and the per-layer mapping, for the design and workload a user picks on the
page (or clicks in a front plot).

Per-layer figures come from re-running the design in timing mode when the report is built (front
designs only, a few ms each); energy and area by component from the store's rows (energy_*_j,
area_*_mm2). In: the points and evaluations frames, the space, the workloads. Out: the section's
HTML, its data embedded as JSON, and the small script that draws the chosen design with plotly.
"""
from __future__ import annotations

import time

import pandas as pd

from compiler.errors import UserError
from compiler.targets import lower
from dse.report_page import esc, json_block, plain, shown
from dse.report_roofline import SCRIPT as ROOFLINE_SCRIPT
from dse.report_roofline import roofs
from dse.store import point_key
from dse.workloads import graph_of
from sim import simulate

LAYER_NAMES_SHOWN = 40  # past this many layers the x axis shows indices; names stay on hover and in the table
# At most this many front designs are re-run and embedded (evenly spread along the first objective), so a
# 10,000-point study's page and build time stay bounded; the demo's front (~40) is far below it.
MAX_DESIGNS = 200


def front_designs(points: pd.DataFrame, objectives) -> pd.DataFrame:
    """The designs on the front of all objectives, best first objective first (at most MAX_DESIGNS of
    them, evenly spread along it)."""
    first = objectives[0]
    front = points[points["feasible"] & points["on_front"]].copy()
    front["_order"] = front[first.name] * first.sign
    front = front.sort_values(["_order", "point_key"], kind="stable").drop(columns="_order")
    if len(front) > MAX_DESIGNS:
        front = front.iloc[sorted({round(i * (len(front) - 1) / (MAX_DESIGNS - 1)) for i in range(MAX_DESIGNS)})]
    return front


def _mapping_text(mapping) -> str:
    """A layer's mapping on one line, whichever form the stats give it in (an object with text(),
    its dict, or text)."""
    if hasattr(mapping, "text"):
        return mapping.text()
    if not isinstance(mapping, dict):
        return str(mapping or "")
    words = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            words.append(f"{key} " + " ".join(f"{k}{v}" if key != "extras" else f"{k}={v}" for k, v in value.items()))
        elif isinstance(value, (list, tuple)) and value:
            words.append(f"{key} " + ">".join(map(str, value)))
        elif value not in (None, "", {}, [], ()):
            words.append(str(value) if key in ("unit", "dataflow") else f"{key}={value}")
    return " ".join(words)


class _Strings:
    """Layer names, ops and mappings repeat across designs: the page holds each text once."""

    def __init__(self):
        self.index: dict = {}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    @property
    def table(self) -> list:
        return list(self.index)


def _sig(value, digits: int = 5):
    value = plain(value)
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def _components(row: pd.Series, prefix: str, suffix: str, total: str, factor: float) -> dict:
    return {c[len(prefix):-len(suffix)]: _sig(row[c] * factor) for c in row.index
            if c.startswith(prefix) and c.endswith(suffix) and c != total and pd.notna(row[c])}


def _run(spec, workload, stored, strings: _Strings) -> dict:
    """One design on one workload: its layers from a timing-only run, its energy by component
    (mJ per inference) from the stored row, and whether the re-run agrees with the store."""
    stats = simulate(lower(graph_of(workload), spec), timing_only=True).stats
    layers = stats.layers
    stored_cycles = None if stored is None else plain(stored.get("total_cycles"))
    if stored_cycles is None:
        note = "not in the store"
    elif stored_cycles == stats.total_cycles:
        note = f"re-simulated: {stats.total_cycles:,} cycles, as stored"
    else:
        note = (f"re-simulated: {stats.total_cycles:,} cycles; the store holds {int(stored_cycles):,} "
                "(made by another compiler version)")
    return {
        "cycles": stats.total_cycles, "clock_ghz": spec.clock_ghz, "note": note,
        "energy_mj": {} if stored is None else _components(stored, "energy_", "_j", "energy_j",
                                                           1e3 / workload.batch),
        "layers": {
            "name": [strings(str(layer["name"])) for layer in layers],
            "op": [strings(str(layer["op"])) for layer in layers],
            "macs": [layer["macs"] for layer in layers],
            "compute": [layer["compute_cycles"] for layer in layers],
            "stall": [layer["stall_cycles"] for layer in layers],
            "util": [_sig(layer["utilisation"], 4) for layer in layers],
            "dram": [layer["bytes"].get("dram", 0) for layer in layers],
            "energy_uj": [_sig(layer.get("energy_j", 0.0) * 1e6, 4) for layer in layers],
            "mapping": [strings(_mapping_text(layer.get("mapping"))) for layer in layers],
        },
    }


def _design(row: pd.Series, space, workloads, evaluations: pd.DataFrame, strings: _Strings) -> dict:
    params = {p: plain(row[p]) for p in space.parameters}
    label = ", ".join(f"{k}={v}" for k, v in params.items()) or "the spec's values"
    objectives = ", ".join(f"{o.name} {shown(o.name, row[o.name])}" for o in space.objectives)
    design = {"key": row["point_key"], "label": label, "summary": f"{label}: {objectives}", "runs": [],
              "area_mm2": {}, "note": ""}
    rows = evaluations[evaluations["point_key"] == row["point_key"]].set_index("workload") \
        if len(evaluations) else pd.DataFrame()
    try:
        spec = space.spec_of(params)
        if point_key(spec) != row["point_key"]:
            raise UserError("the spec rebuilt from these parameters is not the one evaluated")
        design["roof"] = roofs(spec)
        for w in workloads:
            stored = rows.loc[w.label] if w.label in rows.index else None
            if isinstance(stored, pd.DataFrame):
                stored = stored.iloc[-1]
            design["runs"].append(_run(spec, w, stored, strings))
            if stored is not None and not design["area_mm2"]:
                design["area_mm2"] = _components(stored, "area_", "_mm2", "area_mm2", 1.0)
    except UserError as exc:  # the drill-down is missing for this design; the page says why
        design["runs"], design["note"] = [], f"no drill-down: {exc}"
    return design


def drilldown_section(points: pd.DataFrame, evaluations: pd.DataFrame, space, workloads) -> tuple:
    """(the section's HTML, point_key -> the design's index in its list, seconds spent re-simulating)."""
    t0 = time.perf_counter()
    front = front_designs(points, space.objectives)
    strings = _Strings()
    designs = [_design(row, space, workloads, evaluations, strings) for _, row in front.iterrows()]
    index = {key: i for i, key in enumerate(front["point_key"])}
    seconds = time.perf_counter() - t0
    if not designs:
        return "<p>No design is on the front: nothing to drill into.</p>", index, seconds
    options = "".join(f'<option value="{i}">#{i + 1} {esc(d["summary"])}</option>' for i, d in enumerate(designs))
    choices = "".join(f'<option value="{i}">{esc(w.label)}</option>' for i, w in enumerate(workloads))
    data = {"workloads": [w.label for w in workloads], "designs": designs, "strings": strings.table,
            "names_shown": LAYER_NAMES_SHOWN}
    total = int((points["feasible"] & points["on_front"]).sum())
    which = f"Each of the {total}" if total == len(designs) else \
        f"{len(designs)} of the {total} (evenly spread along {esc(space.objectives[0].name)})"
    html = (f'<p class="note">{which} designs on the front of all objectives, re-run in timing '
            "mode when this page was built (per-layer figures); energy and area by component from the store. "
            "Pick one here or click a red diamond in a front plot.</p>"
            f'<div class="controls"><label>design <select id="drill-design">{options}</select></label>'
            f'<label>workload <select id="drill-workload">{choices}</select></label></div>'
            '<p id="drill-summary"></p><div id="drill-layers" style="height:440px"></div>'
            '<div class="plots"><div id="drill-energy" style="height:360px"></div>'
            '<div id="drill-area" style="height:360px"></div></div>'
            '<div id="drill-roofline" style="height:480px"></div>'
            "<details><summary>per-layer table: cycles, utilisation, DRAM bytes, energy, mapping</summary>"
            '<table id="drill-table"><thead></thead><tbody></tbody></table></details>'
            + json_block("drill-data", data) + f"<script>{ROOFLINE_SCRIPT}</script><script>{SCRIPT}</script>")
    return html, index, seconds


# Draws the chosen design. Names reach plotly escaped (h) and the table as text (textContent).
SCRIPT = r"""
(function(){
const D=JSON.parse(document.getElementById('drill-data').textContent);
const sel=document.getElementById('drill-design'), wsel=document.getElementById('drill-workload');
const h=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const num=v=>v===null||v===undefined?'n/a':Number.isInteger(v)?v.toLocaleString('en-US'):Number(v).toPrecision(4);
const cfg={displaylogo:false,responsive:true};
function bars(id,obj,title,unit){
  const k=Object.keys(obj);
  Plotly.react(id,[{type:'bar',x:k.map(h),y:k.map(c=>obj[c]),hovertemplate:'%{x}: %{y:.4g} '+unit+'<extra></extra>',
    marker:{color:'#4c78a8'}}],{title:{text:title},yaxis:{title:{text:unit}},margin:{t:50,b:90}},cfg);
}
function render(){
  const d=D.designs[+sel.value], r=d.runs[+wsel.value], summary=document.getElementById('drill-summary');
  if(!r){summary.textContent=d.summary+' | '+d.note; return;}
  summary.textContent=d.summary+' | '+D.workloads[+wsel.value]+': '+r.note+' at '+r.clock_ghz+' GHz';
  const S=D.strings, R=r.layers;
  const L={...R, name:R.name.map(i=>S[i]), op:R.op.map(i=>S[i]), mapping:R.mapping.map(i=>S[i])};
  const x=L.name.map((_,i)=>i), cd=L.name.map((n,i)=>[h(n),h(L.op[i]),L.util[i],h(L.mapping[i])]);
  const hover='%{customdata[0]} (%{customdata[1]})<br>%{y:,} cycles<br>utilisation %{customdata[2]}'+
    '<br>%{customdata[3]}<extra>%{fullData.name}</extra>';
  const few=L.name.length<=D.names_shown;
  const trace=(name,y,color)=>({type:'bar',name:name,x:x,y:y,customdata:cd,hovertemplate:hover,marker:{color:color}});
  Plotly.react('drill-layers',[trace('compute cycles (matrix or vector unit busy)',L.compute,'#1f77b4'),
    trace('stall cycles (waiting on memory or dependencies)',L.stall,'#ff7f0e')],
    {barmode:'stack',title:{text:'per-layer latency: compute and stall cycles ('+h(D.workloads[+wsel.value])+')'},
     xaxis:{title:{text:'layer, in execution order'+(few?'':' (index; name on hover)')},tickvals:x,
            ticktext:few?L.name.map(h):x.map(String),tickangle:few?-45:0},
     yaxis:{title:{text:'cycles'}},legend:{orientation:'h',y:1.08},margin:{t:80,b:few?140:60}},cfg);
  bars('drill-energy',r.energy_mj,'energy by component (mJ per inference)','mJ');
  bars('drill-area',d.area_mm2,'area by component (mm^2)','mm^2');
  window.dseRoofline('drill-roofline',d.roof,r,L.name);
  const cols=['#','layer','op','cycles','compute cycles','stall cycles','utilisation','DRAM bytes','energy (uJ)',
    'mapping'];
  const t=document.getElementById('drill-table'), head=document.createElement('tr');
  cols.forEach(c=>{const th=document.createElement('th'); th.textContent=c; head.appendChild(th);});
  t.tHead.replaceChildren(head);
  const body=document.createDocumentFragment();
  L.name.forEach((n,i)=>{
    const tr=document.createElement('tr');
    [i+1,n,L.op[i],L.compute[i]+L.stall[i],L.compute[i],L.stall[i],L.util[i],L.dram[i],L.energy_uj[i],
     L.mapping[i]].forEach(v=>{
      const td=document.createElement('td'); td.textContent=typeof v==='number'?num(v):v;
      if(typeof v==='number') td.className='num'; tr.appendChild(td);});
    body.appendChild(tr);});
  t.tBodies[0].replaceChildren(body);
}
sel.addEventListener('change',render); wsel.addEventListener('change',render);
window.dseSelectDesign=function(i){sel.value=String(i); render();
  document.getElementById('drilldown').scrollIntoView({behavior:'smooth'});};
render();
})();
"""

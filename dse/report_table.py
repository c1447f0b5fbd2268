"""The report's table of every design point: sortable (click a header), filterable (text, feasible
only, front only) and paged, drawn by a small inline script from rows embedded as JSON, so 10,000
points stay a short page and need nothing from the network.

In: the points frame, the space (parameters, derived fields, objectives). Out: the section's HTML.
"""
from __future__ import annotations

import pandas as pd

from dse.report_page import json_block, plain, scale, title

PAGE_SIZES = (25, 100, 500)   # rows per page the user can pick; the first is the default


def _cell(value, factor: float = 1.0):
    value = plain(value)
    if isinstance(value, float):
        return float(f"{value * factor:.6g}")
    return value


def points_table(points: pd.DataFrame, space) -> str:
    names = [*space.parameters, *(d for d in space.derived if d not in space.parameters)]
    metrics = [*(o.name for o in space.objectives), "utilisation"]
    metrics = list(dict.fromkeys(m for m in metrics if m in points.columns))
    columns = [*names, "feasible", "on_front", "pareto_rank", *metrics, "reason"]
    columns = [c for c in columns if c in points.columns]
    headers = [title(c) if c in metrics else c for c in columns]
    rows = [[_cell(row[c], scale(c) if c in metrics else 1.0) for c in columns] for _, row in points.iterrows()]
    data = {"headers": headers, "rows": rows, "feasible": columns.index("feasible") if "feasible" in columns else -1,
            "front": columns.index("on_front") if "on_front" in columns else -1}
    return ('<div class="controls"><input type="search" id="pts-filter" placeholder="filter: any text in a row">'
            '<label><input type="checkbox" id="pts-feasible"> feasible only</label>'
            '<label><input type="checkbox" id="pts-front"> on the front only</label>'
            '<label>rows per page <select id="pts-size">'
            + "".join(f"<option>{n}</option>" for n in PAGE_SIZES) + '</select></label>'
            '<button id="pts-prev" type="button">previous</button><span id="pts-info"></span>'
            '<button id="pts-next" type="button">next</button></div>'
            '<table class="sortable" id="pts-table"><thead></thead><tbody></tbody></table>'
            '<p class="note">Click a header to sort (again to reverse). Every row is in points.csv too.</p>'
            + json_block("pts-data", data) + f"<script>{SCRIPT}</script>")


SCRIPT = r"""
(function(){
const D=JSON.parse(document.getElementById('pts-data').textContent);
const $=id=>document.getElementById(id), table=$('pts-table');
let col=-1, dir=1, page=0;
const num=v=>Number.isInteger(v)?String(v):Number(v).toPrecision(4);
function cmp(a,b){
  if(a===b) return 0; if(a===null||a==='') return 1; if(b===null||b==='') return -1;
  if(typeof a==='number'&&typeof b==='number') return dir*(a-b);
  return dir*String(a).localeCompare(String(b),undefined,{numeric:true});
}
function rows(){
  const q=$('pts-filter').value.trim().toLowerCase();
  let r=D.rows.filter(row=>(!$('pts-feasible').checked||row[D.feasible]===true)&&
    (!$('pts-front').checked||row[D.front]===true)&&
    (!q||row.some(v=>v!==null&&String(v).toLowerCase().includes(q))));
  if(col>=0) r=r.slice().sort((a,b)=>cmp(a[col],b[col]));
  return r;
}
function header(){
  const tr=document.createElement('tr');
  D.headers.forEach((name,i)=>{const th=document.createElement('th');
    th.textContent=name+(i===col?(dir>0?' \u25b2':' \u25bc'):'');
    th.addEventListener('click',()=>{dir=(col===i)?-dir:1; col=i; page=0; draw();}); tr.appendChild(th);});
  table.tHead.replaceChildren(tr);
}
function draw(){
  header();
  const r=rows(), size=+$('pts-size').value, pages=Math.max(1,Math.ceil(r.length/size));
  page=Math.min(page,pages-1);
  const body=document.createDocumentFragment();
  r.slice(page*size,(page+1)*size).forEach(row=>{const tr=document.createElement('tr');
    row.forEach(v=>{const td=document.createElement('td');
      td.textContent=v===null?'':typeof v==='number'?num(v):String(v);
      if(typeof v==='number') td.className='num'; tr.appendChild(td);});
    body.appendChild(tr);});
  table.tBodies[0].replaceChildren(body);
  $('pts-info').textContent=r.length?` rows ${page*size+1}-${Math.min((page+1)*size,r.length)} of ${r.length}`+
    (r.length<D.rows.length?` (filtered from ${D.rows.length})`:'')+' ':' no row matches ';
  $('pts-prev').disabled=page===0; $('pts-next').disabled=page>=pages-1;
}
$('pts-filter').addEventListener('input',()=>{page=0; draw();});
['pts-feasible','pts-front','pts-size'].forEach(id=>$(id).addEventListener('change',()=>{page=0; draw();}));
$('pts-prev').addEventListener('click',()=>{page--; draw();});
$('pts-next').addEventListener('click',()=>{page++; draw();});
draw();
})();
"""

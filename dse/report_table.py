"""The report's tables: sortable (click a header), filterable (text, and a checkbox per flag column
such as feasible or on the front) and paged, drawn by a small inline script from rows embedded as
JSON, so 10,000 points stay a short page and need nothing from the network. points_table is a
sweep's every design point; paged_table draws any rows (the comparison's table uses it).

In: the points frame and the space, or headers and rows. Out: the section's HTML.
"""
from __future__ import annotations

import pandas as pd

from dse.report_page import esc, json_block, plain, scale, title

PAGE_SIZES = (25, 100, 500)   # rows per page the user can pick; the first is the default


def cell(value, factor: float = 1.0):
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
    rows = [[cell(row[c], scale(c) if c in metrics else 1.0) for c in columns] for _, row in points.iterrows()]
    flags = [(name, label, columns.index(column)) for name, label, column in
             (("feasible", "feasible only", "feasible"), ("front", "on the front only", "on_front"))
             if column in columns]
    return paged_table("pts", headers, rows, flags, "Every row is in points.csv too.")


def paged_table(prefix: str, headers: list, rows: list, flags=(), note: str = "") -> str:
    """A table drawn a page at a time by SCRIPT from `rows` (lists of JSON-ready cells) embedded as JSON;
    element ids start with `prefix`. `flags`: (name, label, column) per checkbox that keeps only the
    rows whose `column` is true (its id is prefix-name)."""
    data = {"headers": headers, "rows": rows, "flags": [[f"{prefix}-{name}", column] for name, _, column in flags]}
    return (f'<div class="controls"><input type="search" id="{prefix}-filter" placeholder="filter: any text in a row">'
            + "".join(f'<label><input type="checkbox" id="{prefix}-{name}"> {esc(label)}</label>'
                      for name, label, _ in flags)
            + f'<label>rows per page <select id="{prefix}-size">'
            + "".join(f"<option>{n}</option>" for n in PAGE_SIZES) + '</select></label>'
            f'<button id="{prefix}-prev" type="button">previous</button><span id="{prefix}-info"></span>'
            f'<button id="{prefix}-next" type="button">next</button></div>'
            f'<table class="sortable" id="{prefix}-table"><thead></thead><tbody></tbody></table>'
            f'<p class="note">Click a header to sort (again to reverse). {esc(note)}</p>'
            + json_block(f"{prefix}-data", data) + f"<script>{SCRIPT.replace('DATA_ID', f'{prefix}-data')}</script>")


SCRIPT = r"""
(function(id){
const D=JSON.parse(document.getElementById(id).textContent), P=id.slice(0,-5);
const $=s=>document.getElementById(P+s), table=$('-table');
let col=-1, dir=1, page=0;
const num=v=>Number.isInteger(v)?String(v):Number(v).toPrecision(4);
function cmp(a,b){
  if(a===b) return 0; if(a===null||a==='') return 1; if(b===null||b==='') return -1;
  if(typeof a==='number'&&typeof b==='number') return dir*(a-b);
  return dir*String(a).localeCompare(String(b),undefined,{numeric:true});
}
function rows(){
  const q=$('-filter').value.trim().toLowerCase();
  let r=D.rows.filter(row=>D.flags.every(([f,c])=>!document.getElementById(f).checked||row[c]===true)&&
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
  const r=rows(), size=+$('-size').value, pages=Math.max(1,Math.ceil(r.length/size));
  page=Math.min(page,pages-1);
  const body=document.createDocumentFragment();
  r.slice(page*size,(page+1)*size).forEach(row=>{const tr=document.createElement('tr');
    row.forEach(v=>{const td=document.createElement('td');
      td.textContent=v===null?'':typeof v==='number'?num(v):String(v);
      if(typeof v==='number') td.className='num'; tr.appendChild(td);});
    body.appendChild(tr);});
  table.tBodies[0].replaceChildren(body);
  $('-info').textContent=r.length?` rows ${page*size+1}-${Math.min((page+1)*size,r.length)} of ${r.length}`+
    (r.length<D.rows.length?` (filtered from ${D.rows.length})`:'')+' ':' no row matches ';
  $('-prev').disabled=page===0; $('-next').disabled=page>=pages-1;
}
$('-filter').addEventListener('input',()=>{page=0; draw();});
[...D.flags.map(f=>f[0]),P+'-size'].forEach(f=>document.getElementById(f).addEventListener('change',
  ()=>{page=0; draw();}));
$('-prev').addEventListener('click',()=>{page--; draw();});
$('-next').addEventListener('click',()=>{page++; draw();});
draw();
})('DATA_ID');
"""

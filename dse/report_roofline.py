"""The drill-down's roofline (Williams, Waterman and Patterson, "Roofline: an insightful visual performance
model for multicore architectures", CACM 2009): each conv/GEMM layer of the chosen design and workload
as a point, its arithmetic intensity (ops per DRAM byte, an op being a multiply or an add: 2 x MACs)
against the ops/s it achieved, under the design's two roofs: compute, 2 x peak MACs per cycle x clock,
and DRAM bandwidth x intensity.

In: a design's Spec (its roofs) and the per-layer MACs, DRAM bytes and cycles the drill-down holds.
Out: the roofs as data, and the script that draws the chart in the page (dseRoofline).
"""
from __future__ import annotations


def dram_gbps(spec) -> float:
    """The design's DRAM bandwidth (GB/s): the target's own figure where it derives one (the CPU's channels
    x per-channel rate), else the spec's memory.dram_gbps."""
    value = getattr(spec, "dram_gbps", None)
    return float(value if value is not None else spec.memory.dram_gbps)


def roofs(spec) -> dict:
    """{peak_ops_s, dram_gbps, peak_macs_per_cycle, clock_ghz}: what the chart's roofs are drawn from."""
    return {"peak_ops_s": 2.0 * spec.peak_macs_per_cycle * spec.clock_ghz * 1e9, "dram_gbps": dram_gbps(spec),
            "peak_macs_per_cycle": float(spec.peak_macs_per_cycle), "clock_ghz": spec.clock_ghz}


# dseRoofline(id, roof, run, names): draws run's layers (run.layers: macs, dram, compute + stall cycles;
# names: each layer's name) under roof. Layers without MACs (vector-unit ops) or without DRAM bytes (every
# operand on chip: infinite intensity) are left out and counted in the title.
SCRIPT = r"""
window.dseRoofline=function(id,roof,run,names){
  const h=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
  const R=run.layers, hz=run.clock_ghz*1e9, pts=[];
  let vector=0, onchip=0;
  R.macs.forEach((m,i)=>{
    if(!m){vector++; return;} if(!R.dram[i]){onchip++; return;}
    const cycles=R.compute[i]+R.stall[i]; if(!cycles) return;
    pts.push({x:2*m/R.dram[i], y:2*m*hz/cycles, name:names[i]});});
  const bw=roof.dram_gbps*1e9, peak=roof.peak_ops_s, ridge=peak/bw;
  const xs=pts.map(p=>p.x).concat([ridge]);
  const lo=Math.min(...xs)/4, hi=Math.max(...xs)*4;
  const fmt=v=>v>=1e12?(v/1e12).toPrecision(3)+' Tops/s':(v/1e9).toPrecision(3)+' Gops/s';
  const traces=[
    {type:'scatter',mode:'lines',x:[lo,ridge],y:[bw*lo,peak],line:{color:'#ff7f0e',width:2},hoverinfo:'skip',
     name:'bandwidth roof: DRAM '+roof.dram_gbps.toPrecision(4)+' GB/s x intensity'},
    {type:'scatter',mode:'lines',x:[ridge,hi],y:[peak,peak],line:{color:'#1f77b4',width:2},hoverinfo:'skip',
     name:'compute roof: 2 x '+roof.peak_macs_per_cycle+' MACs/cycle x '+roof.clock_ghz+' GHz = '+fmt(peak)},
    {type:'scatter',mode:'markers',x:pts.map(p=>p.x),y:pts.map(p=>p.y),customdata:pts.map(p=>[h(p.name)]),
     marker:{size:8,color:'#2ca02c',line:{width:1,color:'#14532d'}},name:'layer (conv/GEMM): achieved ops/s',
     hovertemplate:'%{customdata[0]}<br>intensity %{x:.3g} ops/byte<br>%{y:.3g} ops/s<extra></extra>'}];
  const left=(vector?vector+' vector-unit layers (no MACs)':'')+(vector&&onchip?', ':'')+
    (onchip?onchip+' layers with no DRAM traffic':'');
  Plotly.react(id,traces,{title:{text:'roofline: achieved ops/s per layer'+(left?' ('+left+' not shown)':'')},
    xaxis:{type:'log',title:{text:'arithmetic intensity (ops per DRAM byte; ops = 2 x MACs)'}},
    yaxis:{type:'log',title:{text:'attainable ops/s (ops per second)'}},legend:{orientation:'h',y:-0.25},
    margin:{t:50,b:110}},{displaylogo:false,responsive:true});
};
"""

"""`dse reprice FOLDER --technology T`: a finished sweep priced again with another technology table,
compiling and simulating nothing (Accelergy's split: a run's action counts are stored, its prices
come from a table).

In: a sweep's report folder (its store, and sweep.json naming the spec, unchanged since the sweep)
and a table (a bundled name or a .yaml path). Out: a new folder (default FOLDER-<table>) holding the
same study with the spec's `technology` replaced. Each stored evaluation keeps its cycles, action
counts and mapping and is priced again for its design point's spec with the new table
(sim.stats.reprice_flat); the sweep's own steps (dse.sweeper) then make the point metrics, check the
constraints and rank the Pareto fronts. The rows, keys and fronts are those `dse sweep` of the spec
with that table gives, except that an nsga2/tpe study keeps its source's points (a new search might
choose others). A study that sweeps `technology` itself is refused. The page has no drill-down
(building it re-simulates the front designs); `dse report` on the new folder adds it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from compiler import spec as specmod
from compiler.bundled import is_path, technology_path
from compiler.errors import SpecError
from dse import report_rebuild
from dse import sweeper as sweepmod
from dse.folder import claim
from dse.report import write_report
from dse.store import (STORE_FILE, Store, StoreError, cannot_write, evaluation_key, point_key, study_description,
                       study_key)
from sim.energy import load_technology
from sim.stats import reprice_flat


def reprice(folder, technology: str, out=None, force: bool = False, stream=None) -> sweepmod.SweepResult:
    """Price the study in `folder` again with `technology` into `out` (default FOLDER-<table name>);
    `force` replaces what a non-empty `out` holds. Returns the new study as dse.sweep does."""
    stream = stream or sys.stderr
    t0 = time.perf_counter()
    folder = Path(folder)
    table = _table(technology)
    meta = report_rebuild._sweep_meta(folder)
    spec_path, space, workloads, search = report_rebuild.load_study(folder, meta)
    _refuse_swept_technology(folder, space)
    _, new_space, _, _ = sweepmod._validated(spec_path, strategy=meta.get("strategy"), budget=meta.get("budget"),
                                             seed=meta.get("seed"), technology=table)
    target = _target(folder, table, out, force)
    print(f"reprice {folder} ({study_description(space.base.name, space)}; technology {space.base.technology}) "
          f"with {table} ({technology_path(table)})", file=stream, flush=True)
    with Store(folder) as source:
        report_rebuild.check_study(folder, source, spec_path, space, workloads)
        points, missing = report_rebuild._replay(space, workloads, search,
                                                 report_rebuild._StoredResults(source, workloads))
        stored = [r for p in points.values() for r in p.records.values()]
        if missing and not stored:
            raise SpecError(f"{folder}: none of the study's evaluations is in its store for the spec as it reads "
                            f"now ({spec_path}): has its technology table changed since the sweep?")
        print(f"read {len(points)} design points, {len(stored)} stored evaluations "
              f"({sum(r['feasible'] for r in stored)} feasible) in {time.perf_counter() - t0:.2f} s; nothing is "
              "compiled or simulated", file=stream, flush=True)
        t1 = time.perf_counter()
        priced = _priced(points, new_space, workloads, source)
    description = f"{study_description(new_space.base.name, new_space)}, technology {table}, re-priced from {folder}"
    store = claim(target, study_key(new_space, workloads), description, force)
    try:
        new_points = _points(new_space, workloads, priced, points, store)
        unmapped = sum(not r["feasible"] for r in priced.values())
        print(f"priced {len(priced) - unmapped} evaluations again with {table}"
              + (f", kept {unmapped} that could not be mapped with their reasons" if unmapped else "")
              + f" in {time.perf_counter() - t1:.2f} s", file=stream, flush=True)
        result = _write(target, folder, spec_path, space, new_space, workloads, store, new_points, missing, table)
    except OSError as exc:  # writing the outputs (the store's own writes raise StoreError)
        if exc.errno not in sweepmod._FOLDER_ERRNOS:
            raise
        raise cannot_write(target, exc) from None
    finally:
        store.close()
    result.summary = _summary(result, points, new_points, new_space, space.base.technology, table,
                              time.perf_counter() - t0)
    print(result.summary, file=stream, flush=True)
    return result


def _table(value) -> str:
    """The --technology value as a spec holds it (a bundled name, or an absolute path), its table
    read and checked now: a mistake is one SpecError before any work."""
    if not isinstance(value, str) or not value:
        raise SpecError("--technology: name a bundled table (hwspecs/tech/<name>.yaml) or a path to a .yaml table")
    problem = specmod.check_technology(value)
    if problem:
        raise SpecError(f"--technology {value!r}: {problem}")
    load_technology(str(technology_path(value)))
    return os.path.abspath(value) if is_path(value) else value


def _refuse_swept_technology(folder: Path, space) -> None:
    role = "a swept parameter" if "technology" in space.parameters else \
        "a derived field" if "technology" in space.derived else ""
    if role:
        raise SpecError(f"{folder}: this study has technology as {role}; re-pricing puts one table in place of "
                        "every one it names, so points would merge: sweep the spec again with the tables you want")


def _target(folder: Path, table: str, out, force: bool) -> Path:
    """The new folder: never the source; a non-empty one only with --force (as dse sweep's claim)."""
    if out is None:
        base = folder if folder.name else folder.resolve()
        out = base.parent / f"{base.name}-{technology_path(table).stem}"
    target = Path(out)
    if target.resolve() == folder.resolve():
        raise SpecError(f"{target} is the study being re-priced: pass another --out")
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target}: exists and is not a folder; pass --out DIR")
    if target.exists() and any(target.iterdir()) and not force:
        raise StoreError(f"{target} exists and is not empty: pass --out DIR to keep it, or --force to replace "
                         "the study there")
    return target


def _priced(points: dict, new_space, workloads, source: Store) -> dict:
    """The new study's records, by the key this compiler asks for (evaluation_key): each stored record
    priced for its point's spec with the new table, keyed for the compiler version that simulated it,
    with that version, its evaluation time and its per-layer mappings."""
    by_label = {w.label: w for w in workloads}
    origins = source.origins()
    out = {}
    for p in points.values():
        if not p.records:
            continue
        spec = new_space.spec_of(p.point)
        new_key = point_key(spec)
        for record in p.records.values():
            workload = by_label[record["workload"]]
            version, seconds = origins[record["key"]]
            layers = source.layer_mappings(record["key"]) if record["feasible"] else None
            out[evaluation_key(new_key, workload.identity)] = {
                "key": evaluation_key(new_key, workload.identity, version), "point_key": new_key,
                "point": p.point, "workload": record["workload"], "feasible": record["feasible"],
                "reason": record["reason"], "eval_seconds": seconds, "compiler_version": version,
                "metrics": _repriced(record, spec, version) if record["feasible"] else {},
                "layers": None if layers is None else
                [dict(layer, mapping=layer["mapping"] and layer["mapping"].to_dict()) for layer in layers]}
    return out


def _repriced(record: dict, spec, version: str) -> dict:
    try:
        return reprice_flat(record["metrics"], spec)
    except KeyError as exc:  # a row from a compiler that counted other actions
        raise SpecError(f"evaluation {record['key'][:12]} ({record['workload']}, compiler {version}) holds no "
                        f"count {exc.args[0]!r}, which this version's {spec.target} target prices: run dse sweep "
                        "again to simulate it with this version") from None


class _Records:
    """Store.records as dse.sweeper._prepare asks for them: the re-priced records."""

    def __init__(self, priced: dict):
        self.priced = priced

    def records(self, keys) -> dict:
        return {k: self.priced[k] for k in keys if k in self.priced}


def _points(new_space, workloads, priced: dict, points: dict, store: Store) -> dict:
    """The source study's points in its order, built by the sweep's own steps (spec, constraints,
    metrics) from the re-priced records, each record committed to the new store."""
    new_points: dict = {}
    sweepmod._prepare(new_space, workloads, _Records(priced), list(points), new_points)
    for p in new_points.values():
        for record in p.records.values():
            store.put(record)
            record.pop("layers", None)
        if p.waiting == 0:
            sweepmod._finish(new_space, p, workloads, [])
    return new_points


def _write(target, folder, spec_path, space, new_space, workloads, store, points, missing, table):
    """points.csv, results.csv, sweep.json (what dse report needs to build the study again) and index.html."""
    evaluations = store.frame([r["key"] for p in points.values() for r in p.records.values()])
    pts = sweepmod.points_frame(new_space, points)
    evaluations.to_csv(target / "results.csv", index=False)
    pts.to_csv(target / "points.csv", index=False)
    meta = sweepmod.sweep_meta(str(Path(spec_path).resolve()) if Path(spec_path).is_file() else spec_path,
                               new_space, workloads, store, points, bool(missing))
    meta.update(technology=table, indices=[list(map(int, idx)) for idx in points],
                repriced_from={"folder": str(folder), "technology": space.base.technology})
    (target / sweepmod.SWEEP_FILE).write_text(json.dumps(meta, indent=1))
    notes = [f"Re-priced by dse reprice from {folder} (technology {space.base.technology}) with {table}: cycles, "
             "bytes moved and mappings are that sweep's; energy, area, power and the fronts are priced again. "
             "Nothing was simulated."]
    if missing:
        notes.append(f"{missing} evaluations of the source study are not in its store (its sweep did not finish): "
                     "the points whose results are all there are re-priced")
    write_report(pts, evaluations, new_space, workloads, target / "index.html", notes=notes, drilldown=False)
    return sweepmod.SweepResult(target, pts, evaluations, interrupted=bool(missing))


def _summary(result, points: dict, new_points: dict, space, old: str, new: str, seconds: float) -> str:
    pts = result.points
    feasible = int(pts["feasible"].sum()) if len(pts) else 0
    front = int(pts["on_front"].sum()) if len(pts) else 0
    lines = [f"done: {len(pts)} points ({feasible} feasible, {front} on the Pareto front of "
             f"{', '.join(o.name for o in space.objectives)}) re-priced in {seconds:.1f} s"]
    ratios = []
    for metric in ("energy_j", "area_mm2", "power_w"):
        ratio = np.array([p.metrics[metric] / points[idx].metrics[metric] for idx, p in new_points.items()
                          if p.metrics and points[idx].metrics], float)
        ratio = ratio[np.isfinite(ratio)]
        if len(ratio):
            ratios.append(f"{metric} x{ratio.min():.3g} to x{ratio.max():.3g}")
    if ratios:
        lines.append(f"  {new} over {old}: " + ", ".join(ratios) + " (ratios, over the points measured in both)")
    if feasible:
        lines += sweepmod.best_lines(pts, space)
    lines.append(f"wrote {result.folder}/: points.csv, results.csv, {STORE_FILE}, index.html (no drill-down: "
                 f"dse report {result.folder} adds it)")
    return "\n".join(lines)

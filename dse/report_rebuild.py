"""`dse report FOLDER`: rebuild a sweep's index.html from its store, simulating none of the sweep.

The spec named in the folder's sweep.json gives the space and workloads again (checked to be the
study the store holds); the strategy replays its proposals, each point built by the sweep's own
steps (dse.sweeper: _prepare, _finish, points_frame) with every result read from the store; then the
sweep's dse.report.write_report writes the page. A stored result is matched by design point and
workload, whichever compiler version made it, so a report survives an upgrade.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import SpecError
from dse import sweeper as sweepmod
from dse.report import write_report
from dse.store import STORE_FILE, Store, evaluation_key, study_key
from dse.strategies import Listed


@dataclass
class Rebuilt:
    path: Path            # the index.html written
    points: int           # design points on the page
    front: int            # of them on the front of all objectives
    missing: int          # evaluations of the study not in the store (an unfinished sweep)
    page_bytes: int
    seconds: float        # building the page, the drill-down's timing runs included
    drilldown_s: float


class _StoredResults:
    """Store.records as dse.sweeper._prepare asks for them (by this compiler's evaluation keys), answered
    with the row stored for the same design point and workload: the one under that very key when there
    is one, else the latest (a sweep by another compiler version)."""

    def __init__(self, store: Store, workloads):
        self.store = store
        rows = store.frame()
        self.alias = {}
        if len(rows):
            by_label = {w.label: w for w in workloads}
            for key, pkey, label in rows[["key", "point_key", "workload"]].itertuples(index=False):
                if label in by_label:
                    current = evaluation_key(pkey, by_label[label].identity)
                    if self.alias.get(current) != current:  # the exact key wins; else the latest row
                        self.alias[current] = key

    def records(self, keys) -> dict:
        wanted = {k: self.alias[k] for k in keys if k in self.alias}
        stored = self.store.records(wanted.values())
        return {k: {**stored[s], "key": s} for k, s in wanted.items() if s in stored}


def _replay(space, workloads, search, results: _StoredResults) -> tuple:
    """The sweep's points as dse.sweeper._explore builds them, from the store alone. Returns (points,
    evaluations missing from the store); the replay stops at the first batch that misses some."""
    points, missing = {}, 0
    while (batch := search.propose()) is not None:
        fresh = [idx for idx in dict.fromkeys(batch) if idx not in points]
        tasks, _ = sweepmod._prepare(space, workloads, results, fresh, points)
        for idx in fresh:
            if points[idx].waiting == 0:
                sweepmod._finish(space, points[idx], workloads, [])
        if tasks:
            missing = len(tasks)
            break
        search.tell({idx: sweepmod._objective_values(space, points[idx]) for idx in set(batch)})
    return points, missing


def _sweep_meta(folder: Path) -> dict:
    if not (folder / STORE_FILE).exists():
        raise SpecError(f"{folder}: no results store ({STORE_FILE}) there; run dse sweep first")
    try:
        return json.loads((folder / sweepmod.SWEEP_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"{folder}: no finished sweep there ({exc}); run dse sweep first") from None


def load_study(folder: Path, meta: dict) -> tuple:
    """(spec path, space, workloads, search) of the sweep whose sweep.json is `meta`, built again from
    the spec it names (with the technology dse reprice put in its place; a re-priced study proposes
    its source's points, whatever the strategy would propose with the new figures)."""
    spec_path = meta.get("spec", "?")
    beside = folder.parent.parent / spec_path   # a relative path from where the sweep ran (reports/NAME/..)
    if not Path(spec_path).is_absolute() and not Path(spec_path).exists() and beside.is_file():
        spec_path = str(beside)
    try:
        _, space, workloads, search = sweepmod._validated(spec_path, strategy=meta.get("strategy"),
                                                          budget=meta.get("budget"), seed=meta.get("seed"),
                                                          technology=meta.get("technology"))
    except SpecError as exc:
        raise SpecError(f"{folder}: the sweep's spec ({spec_path}, from sweep.json) cannot be read again: {exc} "
                        "(run dse report from the folder the sweep ran in)") from None
    if "indices" in meta:
        search = Listed(meta["indices"])
    return spec_path, space, workloads, search


def check_study(folder: Path, store: Store, spec_path, space, workloads) -> None:
    """SpecError unless the store holds the study the spec describes now."""
    if store.study[0] != study_key(space, workloads):
        raise SpecError(f"{folder}: {spec_path} has changed since the sweep stored there ({store.study[1]}); "
                        "restore it, or run dse sweep again")


@dataclass
class Study:
    """One folder's sweep as its store holds it: what dse report and dse report --compare draw."""
    folder: Path
    spec_path: str
    space: object              # dse.space.Space
    workloads: tuple
    points: object             # pandas frame: one row per design point (dse.sweeper.points_frame)
    evaluations: object        # pandas frame: one row per point and workload, in the order they were stored
    missing: int               # evaluations of the study not in the store (an unfinished sweep)


def load(folder) -> Study:
    """FOLDER's study from its store and sweep.json, simulating nothing; SpecError (one line) when the
    folder holds no store or no finished sweep, or its spec has changed since."""
    folder = Path(folder)
    spec_path, space, workloads, search = load_study(folder, _sweep_meta(folder))
    with Store(folder) as store:
        check_study(folder, store, spec_path, space, workloads)
        results = _StoredResults(store, workloads)
        points, missing = _replay(space, workloads, search, results)
        frame = sweepmod.points_frame(space, points)
        evaluations = store.frame([r["key"] for p in points.values() for r in p.records.values()])
    return Study(folder, spec_path, space, workloads, frame, evaluations, missing)


def rebuild(folder) -> Rebuilt:
    """Write FOLDER/index.html from FOLDER's store and sweep.json, as the sweep that made them would."""
    t0 = time.perf_counter()
    study = load(folder)
    notes = [f"{study.missing} evaluations of this study are not in the store (the sweep did not finish): the "
             "report shows the points whose results are all there; run the same dse sweep command to finish it"] \
        if study.missing else []
    path = study.folder / "index.html"
    page = write_report(study.points, study.evaluations, study.space, study.workloads, path, notes=notes)
    return Rebuilt(path, len(study.points), page["front"], study.missing, page["bytes"],
                   time.perf_counter() - t0, page["drilldown_s"])

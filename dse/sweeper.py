"""`dse sweep`: explore the design space a spec describes, durably.

Read top to bottom, a sweep is: load the spec -> parse its space (dse.space)
and workloads -> the strategy proposes a batch of points -> each point's
Spec is built and checked against the parameter constraints -> evaluations
not already in the store run on the executor (in-process, local pool or Dask)
and are committed as they finish -> each finished point's metrics go back to
the strategy -> repeat -> write points.csv, results.csv, sweep.json and
index.html next to the store. Ctrl-C stops cleanly: what finished is kept,
and running the same command again finishes the rest without recomputing.
"""
from __future__ import annotations

import errno
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from compiler import spec as specmod
from compiler.errors import SpecError
from dse import executors, strategies
from dse import space as spacemod
from dse import workloads as workloadsmod
from dse.evaluate import Task, point_metrics
from dse.folder import claim
from dse.pareto import non_dominated, ranks
from dse.progress import Progress
from dse.report import write_report
from dse.store import STORE_FILE, Store, cannot_write, evaluation_key, point_key, study_description, study_key

SWEEP_FILE = "sweep.json"
# An OSError with one of these while writing the report folder is the user's to fix, not a bug.
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass
class SweepResult:
    folder: Path
    points: pd.DataFrame        # one row per design point: parameters, metrics, front rank
    evaluations: pd.DataFrame   # one row per (design point, workload): the full stats
    interrupted: bool = False
    computed: int = 0           # evaluations run by this call (the rest came from the store)
    summary: str = ""
    verified: list = field(default_factory=list)   # --verify: one check per (front point, workload)
    # Where the call's wall time went, in seconds: "start" (starting the executor: pool, warm-up), "evaluate"
    # (the strategy's loop, "start" included), "outputs" (points.csv, results.csv, sweep.json and index.html),
    # of them "report" (index.html), and of that "drilldown" (re-running the front designs in timing mode).
    seconds: dict = field(default_factory=dict)


@dataclass
class _Point:
    indices: tuple
    point: dict
    key: str = ""
    reason: str = ""                    # why infeasible ('' when feasible)
    records: dict = field(default_factory=dict)   # evaluation key -> record
    metrics: dict = field(default_factory=dict)
    waiting: int = 0                    # evaluations not finished yet
    derived: dict = field(default_factory=dict)   # derived field path -> its value at this point
    reused: bool = False                # every evaluation came from the store
    on_front: bool = False


def _chunks(tasks: list, workers: int) -> list:
    """Several tasks per message keeps IPC small next to ~10 ms evaluations; small
    enough that all workers stay busy and each commit loses little on a kill."""
    size = max(1, min(4, len(tasks) // (4 * max(workers, 1)) or 1))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def sweep(spec_path, out=None, strategy=None, budget=None, seed=None, workers=None, scheduler=None,
          verify=0, stream=None, force=False) -> SweepResult:
    """Run the sweep a spec file describes (options override the spec's `sweep:` section);
    `verify` > 0 then simulates that many Pareto points functionally against references.
    `force` replaces another study's results in the report folder instead of refusing."""
    stream = stream or sys.stderr
    t0 = time.perf_counter()
    spec, space, workloads, search = _validated(spec_path, strategy=strategy, budget=budget, seed=seed)
    folder = Path(out) if out else Path("reports") / spec.name
    # A cluster is connected to first, so a wrong address fails before anything is written;
    # a local pool starts when the first evaluation is missing from the store.
    executor = executors.make(workers, scheduler, workloads) if scheduler else None
    store = _claim_folder(folder, spec.name, space, workloads, force, executor)
    try:
        return _explore(spec, spec_path, space, workloads, search, executor, store, workers, scheduler, verify,
                        stream, t0)
    except OSError as exc:  # writing the outputs: the store's own writes raise StoreError
        if exc.errno not in _FOLDER_ERRNOS:
            raise
        raise cannot_write(folder, exc) from None
    finally:
        store.close()  # and with it the folder's lock


def _claim_folder(folder, name, space, workloads, force, executor) -> Store:
    """The report folder's store, locked for this sweep and holding this study (dse.folder).
    A refusal comes before any work, and closes the cluster connection made before it."""
    try:
        return claim(folder, study_key(space, workloads), study_description(name, space), force)
    except BaseException:
        if executor is not None:
            executor.close()
        raise


def _explore(spec, spec_path, space, workloads, search, executor, store, workers, scheduler, verify, stream,
             t0) -> SweepResult:
    """The strategy's loop over the claimed folder, then the outputs (and --verify) written there."""
    folder = store.folder
    total = min(space.budget, space.size) if space.budget is not None else space.size
    print(f"sweep {spec.name}: {len(space.parameters)} parameters, {space.size} points in the space, "
          f"strategy {space.strategy}, {total} to evaluate x {len(workloads)} workloads; "
          f"store {folder / STORE_FILE}", file=stream, flush=True)
    progress = Progress(total, stream)
    points: dict = {}           # indices -> _Point
    front_values: list = []
    computed = 0
    stop = _CtrlC(stream)
    t_loop, t_start = time.perf_counter(), 0.0
    try:
        while not stop() and (batch := search.propose()) is not None:
            fresh = [idx for idx in dict.fromkeys(batch) if idx not in points]
            tasks, waiting = _prepare(space, workloads, store, fresh, points)
            for idx in fresh:
                if points[idx].waiting == 0:
                    _finish(space, points[idx], workloads, front_values)
            _report_progress(progress, points, front_values, total)
            if tasks and executor is None:
                t_start = time.perf_counter()
                executor = executors.make(workers, scheduler, workloads)
                t_start = time.perf_counter() - t_start
                print(f"evaluating on {executor.description}", file=stream, flush=True)
            chunks = _chunks(tasks, getattr(executor, "workers", 1)) if tasks else []
            for _, records in (executor.run(chunks, stop) if tasks else ()):
                store.put_many(records)   # one transaction per chunk
                for record in records:
                    record.pop("layers", None)   # stored; the points need only the metrics
                    computed += 1
                    for p in waiting.pop(record["key"]):
                        p.records[record["key"]] = record
                        p.waiting -= 1
                        if p.waiting == 0:
                            _finish(space, p, workloads, front_values)
                _report_progress(progress, points, front_values, total)
            if not stop():
                search.tell({idx: _objective_values(space, points[idx]) for idx in set(batch)})
    finally:
        if executor is not None:
            executor.close()
        stop.restore()
        _report_progress(progress, points, front_values, total, force=True)
        progress.close()
    interrupted = stop()
    t_outputs = time.perf_counter()
    result = _write_outputs(folder, spec_path, space, workloads, store, points, interrupted, computed)
    result.seconds.update(start=t_start, evaluate=t_outputs - t_loop, outputs=time.perf_counter() - t_outputs)
    result.summary = _summary(result, space, time.perf_counter() - t0)
    print(result.summary, file=stream, flush=True)
    _refuse_all_infeasible(result, spec_path)
    if verify and not interrupted:
        from dse.verify import verify_front
        result.verified = verify_front(space, points, workloads, verify, stream)
        pd.DataFrame(result.verified).to_csv(folder / "verify.csv", index=False)
        write_report(result.points, result.evaluations, space, workloads, folder / "index.html")  # + the checks
    return result


def _validated(spec_path, technology=None, **overrides):
    """The spec, its design space, workloads and search strategy, everything checked before the
    first evaluation (names, paths, values, ranges, expressions): a mistake is one SpecError
    naming the file and the field path. `overrides` (strategy, budget, seed) replace the spec's;
    `technology` replaces its table (a study re-priced by dse reprice)."""
    spec = specmod.load(spec_path)
    if technology is not None:
        spec = specmod.replace_path(spec, "technology", technology)
    raw = dict(spec.sweep or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        space = spacemod.parse(spec, raw)
        workloads = workloadsmod.parse(spec.workloads)
        search = strategies.make(space, len(space.objectives))
    except SpecError as exc:
        raise SpecError(f"{spec_path}: {exc}") from None
    return spec, space, workloads, search


class NoFeasiblePoint(SpecError):
    """A finished sweep in which every design point is infeasible. Its outputs are written (each
    point with its reason) and `result` holds them; the CLI prints the one line and exits 2."""

    def __init__(self, message: str, result: SweepResult):
        super().__init__(message)
        self.result = result


def _refuse_all_infeasible(result: SweepResult, spec_path) -> None:
    """A complete sweep with no feasible point is a mistake to fix (a workload that never
    compiles, constraints nothing meets), not a result: raise with its most common reason."""
    pts = result.points
    if result.interrupted or not len(pts) or pts["feasible"].any():
        return
    count, reason = _most_common_reason(pts)
    raise NoFeasiblePoint(f"{spec_path}: no feasible design point; most common reason ({count} of {len(pts)} "
                          f"points): {reason} (every point's reason: {result.folder / 'points.csv'})", result)


def _most_common_reason(pts: pd.DataFrame) -> tuple:
    """(how many points, the first one's text) of the most common infeasibility reason, reasons
    that differ only in their numbers (array sizes, bytes) counted as one."""
    shapes = pts["reason"].str.replace(r"\d+(\.\d+)?", "#", regex=True)
    common = shapes.value_counts().index[0]
    return int((shapes == common).sum()), pts["reason"][shapes == common].iloc[0]


class _CtrlC:
    """Ctrl-C during a sweep asks it to stop: the evaluations in flight finish and are
    committed, then the outputs are written. A second Ctrl-C aborts at once. Calling
    the object says whether a stop was asked for."""

    def __init__(self, stream):
        self.requested, self.stream = False, stream
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: finishing the evaluations in flight (Ctrl-C again to abort)", file=self.stream,
              flush=True)

    def __call__(self) -> bool:
        return self.requested

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _prepare(space, workloads, store, fresh, points):
    """Build the points of a batch. Returns the tasks for evaluations not in the store
    and, per task key, the points waiting for it (two value choices can make one Spec)."""
    tasks, waiting = {}, {}
    for idx in fresh:
        p = points[idx] = _Point(idx, space.point(idx))
        try:
            spec = space.spec_of(p.point)
        except SpecError as exc:
            p.reason = str(exc)
            continue
        p.key = point_key(spec)
        p.derived = {path: spacemod.field_value(spec, path) for path in space.derived}
        p.reason = space.violated(spec)
        if p.reason:
            continue
        keys = {evaluation_key(p.key, w.identity): w for w in workloads}
        p.records = store.records(keys)
        p.reused = len(p.records) == len(keys)
        for key, workload in keys.items():
            if key not in p.records:
                tasks.setdefault(key, Task(key, p.key, p.point, workload, spec))
                waiting.setdefault(key, []).append(p)
                p.waiting += 1
    return list(tasks.values()), waiting


def _finish(space, p: _Point, workloads, front_values: list) -> None:
    """All of a point's evaluations are in: aggregate, check result constraints."""
    if p.reason:
        return
    bad = [r for r in p.records.values() if not r["feasible"]]
    if bad:
        p.reason = f"{bad[0]['workload']}: {bad[0]['reason']}"
        return
    p.metrics = point_metrics(list(p.records.values()), workloads)
    p.reason = space.violated_by_results(p.metrics)
    if not p.reason:
        front_values.append(_objective_values(space, p))


def _objective_values(space, p: _Point):
    if p.reason or not p.metrics:
        return None
    return tuple(p.metrics[o.name] * o.sign for o in space.objectives)


def _report_progress(progress, points, front_values, total, force=False) -> None:
    if not (force or progress.due()):
        return
    finished = [p for p in points.values() if p.waiting == 0]
    reused = sum(1 for p in finished if p.reused)
    front = int(non_dominated(np.array(front_values)).sum()) if front_values else 0
    progress.update(min(len(finished), total), len(front_values), front, reused, force=True)


def points_frame(space, points) -> pd.DataFrame:
    """One row per design point: its parameters, feasible/reason, metrics, Pareto rank."""
    rows = []
    for p in points.values():
        if p.waiting:
            continue  # interrupted before all its workloads finished
        rows.append({**p.point, **p.derived, "point_key": p.key, "feasible": not p.reason, "reason": p.reason,
                     **{m: p.metrics.get(m, math.nan) for m in spacemod.METRICS}})
    df = pd.DataFrame(rows)
    if len(df):
        objectives = df[[o.name for o in space.objectives]].to_numpy(float) \
            * np.array([o.sign for o in space.objectives])
        objectives[~df["feasible"].to_numpy()] = np.nan
        df["pareto_rank"] = ranks(objectives)
        df["on_front"] = df["pareto_rank"] == 0
        for p, on_front in zip((p for p in points.values() if not p.waiting), df["on_front"]):
            p.on_front = bool(on_front)
    return df


def _write_outputs(folder, spec_path, space, workloads, store, points, interrupted, computed) -> SweepResult:
    keys = [k for p in points.values() for k in p.records]
    evaluations = store.frame(keys)
    pts = points_frame(space, points)
    evaluations.to_csv(folder / "results.csv", index=False)
    pts.to_csv(folder / "points.csv", index=False)
    (folder / SWEEP_FILE).write_text(json.dumps(sweep_meta(spec_path, space, workloads, store, points,
                                                           interrupted), indent=1))
    t0 = time.perf_counter()
    page = write_report(pts, evaluations, space, workloads, folder / "index.html")
    return SweepResult(folder, pts, evaluations, interrupted, computed,
                       seconds={"report": time.perf_counter() - t0, "drilldown": page["drilldown_s"]})


def sweep_meta(spec_path, space, workloads, store, points, interrupted) -> dict:
    """What sweep.json records: the spec and options to build the study again (dse report), and its state."""
    return {
        "spec": str(spec_path), "strategy": space.strategy, "budget": space.budget, "seed": space.seed,
        "parameters": space.parameters, "objectives": [[o.name, o.direction] for o in space.objectives],
        "workloads": [[w.model, w.batch, w.weight] for w in workloads], "interrupted": interrupted,
        "point_keys": sorted({p.key for p in points.values() if p.key}), "study": store.study[0],
    }


def best_lines(pts: pd.DataFrame, space) -> list:
    """One line per objective: the best feasible point's figure, with its unit, and its parameters."""
    ok, lines = pts[pts["feasible"]], []
    for o in space.objectives:
        if ok[o.name].isna().all():
            lines.append(f"  {o.name}: not available from this target's stats")
            continue
        best = ok.loc[ok[o.name].idxmin() if o.direction == "min" else ok[o.name].idxmax()]
        params = ", ".join(f"{k}={best[k]}" for k in space.parameters) or "the spec's values"
        figure = f"{best[o.name]:.4g} {spacemod.METRICS[o.name][0]}"
        lines.append(f"  best {o.name:<18} {figure:<18} at {params}")
    return lines


def _summary(result: SweepResult, space, seconds: float) -> str:
    pts = result.points
    feasible = int(pts["feasible"].sum()) if len(pts) else 0
    lines = [("interrupted: " if result.interrupted else "done: ")
             + f"{len(pts)} points ({feasible} feasible, {int(pts['on_front'].sum()) if len(pts) else 0} "
             f"on the Pareto front of {', '.join(o.name for o in space.objectives)}) in {seconds:.1f} s; "
             f"{result.computed} evaluations computed, the rest reused from the store"]
    if feasible:
        lines += best_lines(pts, space)
    if len(pts) and not feasible and result.interrupted:  # complete: NoFeasiblePoint says it
        count, reason = _most_common_reason(pts)
        lines.append(f"  no feasible point; most common reason ({count} of {len(pts)}): {reason}")
    lines.append(f"wrote {result.folder}/: points.csv, results.csv, {STORE_FILE}, index.html")
    if result.interrupted:
        lines.append("run the same command again to finish: stored evaluations are not recomputed")
    return "\n".join(lines)


def load(path, level: str = "evaluations") -> pd.DataFrame:
    """A sweep's results as a DataFrame: `evaluations` (one row per design point and
    workload, everything in the store) or `points` (one row per design point of the
    last sweep written there, with its metrics and Pareto rank)."""
    path = Path(path)
    if level == "points":
        return pd.read_csv(path / "points.csv" if path.is_dir() else path)
    if level != "evaluations":
        raise ValueError(f"level must be 'evaluations' or 'points', got {level!r}")
    if path.is_dir() and (path / STORE_FILE).exists():
        with Store(path) as store:
            return store.frame()
    return pd.read_csv(path / "results.csv" if path.is_dir() else path)


def pareto_table(folder, objectives: str | None = None) -> str:
    """The Pareto front of a finished sweep as a text table (`dse pareto`)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / SWEEP_FILE).read_text())
        pts = pd.read_csv(folder / "points.csv")
    except (OSError, ValueError) as exc:
        raise SpecError(f"{folder}: no finished sweep there ({exc})") from None
    if objectives:
        chosen = []
        for item in objectives.split(","):
            name, _, direction = item.strip().partition(":")
            name = spacemod.metric_name(name, "--objectives")
            direction = direction or spacemod.METRICS[name][1]
            if direction not in ("min", "max"):
                raise SpecError(f"--objectives: direction of '{name}' is {direction!r}; allowed: min, max")
            chosen.append((name, direction))
    else:
        chosen = [tuple(o) for o in meta["objectives"]]
    ok = pts[pts["feasible"].astype(bool)]
    values = ok[[n for n, _ in chosen]].to_numpy(float) * np.array([1.0 if d == "min" else -1.0 for _, d in chosen])
    front = ok[non_dominated(values)].sort_values(chosen[0][0])
    params = list(meta["parameters"])
    header = [*params, *(f"{n} ({spacemod.METRICS[n][0]})" for n, _ in chosen)]
    body = [[str(r[p]) for p in params] + [f"{r[n]:.4g}" for n, _ in chosen] for _, r in front.iterrows()]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [f"Pareto front of {len(ok)} feasible points ({len(front)} on it), "
             + ", ".join(f"{d}imise {n}" for n, d in chosen),
             "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)

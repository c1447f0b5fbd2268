"""The durable result store of a sweep: SQLite in WAL mode, one file per report folder.

Each evaluation (one design point on one workload) is a row keyed by a content
hash of (the design point's full Spec, the workload's identity, the compiler
version), committed as soon as it finishes, so a killed sweep loses at most the
evaluations in flight and a re-run skips every key already present. Only the
process that runs the sweep writes; workers return rows to it. The store also
records which study (space, strategy, workloads, objectives) it holds.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pandas as pd

from compiler import spec as specmod
from compiler.errors import SpecError

STORE_FILE = "results.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    key TEXT PRIMARY KEY,        -- content hash of (spec, workload, compiler version)
    point_key TEXT NOT NULL,     -- content hash of the spec alone: groups a point's workloads
    point TEXT NOT NULL,         -- JSON: swept field path -> value
    workload TEXT NOT NULL,
    feasible INTEGER NOT NULL,
    reason TEXT NOT NULL,
    metrics TEXT NOT NULL,       -- JSON: the flat Stats row (units in the names)
    eval_seconds REAL NOT NULL,  -- wall time the evaluation took in its worker
    finished_at REAL NOT NULL,   -- UNIX time it was committed
    compiler_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mappings (
    key TEXT PRIMARY KEY,        -- the evaluation's key (evaluations.key); feasible evaluations only
    layers TEXT NOT NULL         -- JSON: per layer {name, op, cycles, mapping} (compiler/mapping.py's to_dict)
);
"""


@functools.lru_cache(maxsize=1)
def compiler_version() -> str:
    """Package version plus a hash of the compiler and simulator sources: results
    from a different compiler or timing model are never mistaken for these."""
    from importlib.metadata import PackageNotFoundError, version
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in ("compiler", "sim"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    try:
        release = version("accel-dse")
    except PackageNotFoundError:  # running from a source tree that is not installed
        release = "source"
    return f"{release}+{digest.hexdigest()[:12]}"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def point_key(spec) -> str:
    """Hash of everything in a Spec that can change a result (not its name, workloads or sweep)."""
    fields = dataclasses.asdict(spec)
    for name in ("name", "workloads", "sweep"):
        fields.pop(name, None)
    if "technology" in fields:  # the table's figures, not just its name, decide energy and area
        fields["technology"] = [fields["technology"], _file_hash(specmod.technology_path(spec.technology))]
    return _hash(fields)


@functools.lru_cache(maxsize=32)
def _file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def evaluation_key(spec_key: str, workload_identity: str, version: str | None = None) -> str:
    """`version`: the compiler version that made the result (default: this one)."""
    return _hash([spec_key, workload_identity, version or compiler_version()])


def study_key(space, workloads) -> str:
    """Hash of what decides which rows a report shows: the base Spec, the space (parameters,
    derived fields, constraints), the strategy with its budget and seed, the objectives and
    the workloads. Not the worker count, the scheduler, --verify, the spec's name or path,
    nor the compiler version (a new compiler re-runs the same study; its keys differ)."""
    base = dataclasses.asdict(space.base)
    for name in ("name", "workloads", "sweep"):
        base.pop(name, None)
    return _hash({
        "base": base, "parameters": space.parameters,
        "derived": {path: e.text for path, e in space.derived.items()},
        "constraints": [e.text for e in (*space.point_constraints, *space.result_constraints)],
        "objectives": [[o.name, o.direction] for o in space.objectives],
        "strategy": space.strategy, "budget": space.budget,
        "seed": None if space.strategy == "grid" else space.seed,  # the grid draws nothing
        "workloads": [[w.label, w.weight] for w in workloads]})


def study_description(spec_name: str, space) -> str:
    """The few words that tell two studies apart in an error message."""
    words = [spec_name, space.strategy]
    if space.budget is not None:
        words.append(f"budget {space.budget}")
    if space.strategy != "grid":
        words.append(f"seed {space.seed}")
    return ", ".join(words) + f" over {', '.join(space.parameters) or 'no parameters'}"


class StoreError(SpecError):
    """The report folder cannot take this sweep: another sweep holds it, it holds another
    study, or it cannot be written (full disk, read-only). A SpecError, so the CLI prints
    it in one line and exits 2; every result committed before it stays in the store."""


def cannot_write(folder, exc) -> StoreError:
    return StoreError(f"{folder}: cannot write ({exc}); every result committed so far is kept: "
                      "free space or make the folder writable, then run the same command to resume")


class Store:
    """Results of every evaluation made in one report folder."""
    lock = None  # the open sweep.lock when dse.folder.claim opened it: released on close

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / STORE_FILE
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60)
            # WAL: a commit is one append to the log, readers never block the writer,
            # and a killed process leaves every committed row intact.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.commit()
        except (sqlite3.OperationalError, OSError) as exc:
            raise cannot_write(self.folder, exc) from None

    def close(self) -> None:
        self.db.close()
        if self.lock is not None:
            self.lock.close()  # closing the file releases its flock
            self.lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def records(self, keys) -> dict:
        """key -> {feasible, reason, metrics, workload, point} for the stored ones among `keys`."""
        keys, out = list(keys), {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for key, pkey, point, workload, feasible, reason, metrics in self.db.execute(
                    "SELECT key, point_key, point, workload, feasible, reason, metrics FROM evaluations "
                    f"WHERE key IN ({marks})", chunk):
                out[key] = {"key": key, "point_key": pkey, "point": json.loads(point), "workload": workload,
                            "feasible": bool(feasible), "reason": reason, "metrics": json.loads(metrics)}
        return out

    def put(self, record: dict) -> None:
        """Commit one evaluation. A key stored twice keeps the first row (results are deterministic).
        A write that fails (full disk, read-only folder) is rolled back and raises StoreError."""
        layers = record.get("layers")     # per-layer mappings (dse/evaluate.py), in the same transaction
        more = (("INSERT OR IGNORE INTO mappings VALUES (?, ?)", (record["key"], json.dumps(layers))),) \
            if layers is not None else ()
        self._write("INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record["key"], record["point_key"], json.dumps(record["point"], sort_keys=True),
                     record["workload"], int(bool(record["feasible"])), record.get("reason", ""),
                     json.dumps(record.get("metrics", {}), sort_keys=True),
                     float(record.get("eval_seconds", 0.0)), time.time(),
                     record.get("compiler_version") or compiler_version()), more)   # a copied row keeps its own

    def origins(self) -> dict:
        """key -> (compiler version, eval_seconds) of every stored evaluation: what made it, in how long."""
        return {key: (version, seconds) for key, version, seconds in
                self.db.execute("SELECT key, compiler_version, eval_seconds FROM evaluations")}

    def layer_mappings(self, key: str) -> list | None:
        """Which mapping gave evaluation `key` its cycles: per layer {name, op, cycles, mapping (a
        compiler.mapping.Mapping)}; None where the store has none (an infeasible evaluation, or
        one stored before mappings were kept)."""
        from compiler.mapping import Mapping
        row = self.db.execute("SELECT layers FROM mappings WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return [dict(layer, mapping=layer["mapping"] and Mapping.from_dict(layer["mapping"]))
                for layer in json.loads(row[0])]

    def _write(self, sql: str, values: tuple, more: tuple = ()) -> None:
        """Run the statement (and `more`: (sql, values) pairs) as one transaction."""
        try:
            self.db.execute(sql, values)
            for statement in more:
                self.db.execute(*statement)
            self.db.commit()
        except (sqlite3.OperationalError, OSError) as exc:
            try:
                self.db.rollback()
            except sqlite3.Error:
                pass  # the failed statement already undid itself
            raise cannot_write(self.folder, exc) from None

    @property
    def study(self) -> tuple:
        """(study key, description) of the study this store holds, or (None, '') before its first sweep."""
        meta = dict(self.db.execute("SELECT name, value FROM meta WHERE name IN ('study', 'study_description')"))
        return meta.get("study"), meta.get("study_description", "")

    def record_study(self, key: str, description: str) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES ('study', ?), ('study_description', ?)", (key, description))

    def frame(self, keys=None) -> pd.DataFrame:
        """Stored evaluations (all, or those whose key is in `keys`) as one row each:
        key, point_key, workload, the swept fields, feasible, reason, then the metrics."""
        rows = self.db.execute("SELECT key, point_key, point, workload, feasible, reason, metrics, "
                               "eval_seconds FROM evaluations ORDER BY rowid").fetchall()
        if keys is not None:
            keys = set(keys)
            rows = [r for r in rows if r[0] in keys]
        return to_frame(rows)


def to_frame(rows) -> pd.DataFrame:
    records = []
    for key, pkey, point, workload, feasible, reason, metrics, seconds in rows:
        records.append({"key": key, "point_key": pkey, "workload": workload, **json.loads(point),
                        "feasible": bool(feasible), "reason": reason, **json.loads(metrics),
                        "eval_seconds": seconds})
    return pd.DataFrame.from_records(records)

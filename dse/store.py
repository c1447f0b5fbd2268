"""The durable result store of a sweep: SQLite in WAL mode, one file per report folder.

Each evaluation (one design point on one workload) is a row keyed by a content
hash of (the design point's full Spec, the workload's identity, the compiler
version), committed as soon as it finishes, so a killed sweep loses at most the
evaluations in flight and a re-run skips every key already present. Only the
process that runs the sweep writes; workers return rows to it.
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


def evaluation_key(spec_key: str, workload_identity: str) -> str:
    return _hash([spec_key, workload_identity, compiler_version()])


class Store:
    """Results of every evaluation made in one report folder."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STORE_FILE
        self.db = sqlite3.connect(self.path, timeout=60)
        # WAL: a commit is one append to the log, readers never block the writer,
        # and a killed process leaves every committed row intact.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.db.commit()

    def close(self) -> None:
        self.db.close()

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
        """Commit one evaluation. A key stored twice keeps the first row (results are deterministic)."""
        self.db.execute(
            "INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record["key"], record["point_key"], json.dumps(record["point"], sort_keys=True),
             record["workload"], int(bool(record["feasible"])), record.get("reason", ""),
             json.dumps(record.get("metrics", {}), sort_keys=True), float(record.get("eval_seconds", 0.0)),
             time.time(), compiler_version()))
        self.db.commit()

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

"""The durable result store of a sweep: SQLite in WAL mode, one file per report folder.

Each evaluation (one design point on one workload) is a row keyed by a content
hash of (the design point's full Spec, the workload's identity, the compiler
version), committed as soon as it comes back from its worker (one transaction per
chunk of tasks), so a killed sweep loses at most the evaluations in flight and a
re-run skips every key already present. Only the process that runs the sweep
writes; workers return rows to it. The store also records which study (space,
strategy, workloads, objectives) it holds, and per evaluation which mapping gave
each layer its cycles: each distinct mapping is stored once (LayerEncoder).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import marshal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from compiler import spec as specmod
from compiler.errors import SpecError

STORE_FILE = "results.sqlite"
# 2: per-layer mappings as evaluation_layers + mapping_dicts (each distinct mapping once); schema 1's
# `mappings` rows (the whole per-layer list as JSON per evaluation) are still read, no longer written.
SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS evaluation_layers (
    key TEXT PRIMARY KEY,        -- the evaluation's key (evaluations.key); feasible evaluations only
    layers TEXT NOT NULL         -- JSON: {"name": [...], "op": [...], "cycles": [...], "mapping": [...]}, one entry
                                 -- per layer in execution order, and "mappings": [mapping_dicts.id, ...];
                                 -- a layer's mapping is an index into "mappings", or null
);
CREATE TABLE IF NOT EXISTS mapping_dicts (
    id TEXT PRIMARY KEY,         -- content hash of `mapping`
    mapping TEXT NOT NULL        -- JSON: one layer's mapping (compiler/mapping.py's to_dict)
);
CREATE TABLE IF NOT EXISTS mappings (
    key TEXT PRIMARY KEY,        -- schema 1 (read only): the evaluation's key; feasible evaluations only
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


@dataclass(frozen=True)
class EncodedLayers:
    """One evaluation's per-layer figures as the store keeps them: `layers` (an evaluation_layers row's
    JSON) and, mapping id -> JSON, every mapping it names (the store adds those it lacks)."""
    layers: str
    mappings: dict


class LayerEncoder:
    """Per-layer lists (Stats.layers' {name, op, cycles, mapping (a to_dict)}) in the store's form.

    A sweep's design points share most layer mappings but rarely all of them: ResNet-50 over the 225
    array shapes, dataflows and scratchpads of benchmarks/sweep_speed.py has 224 distinct per-layer
    lists but 2,259 distinct mappings in its 20,025 layers. So each distinct mapping is JSON-encoded once
    per process and stored once, and an evaluation keeps its layers' names, ops, cycles and which
    mapping each has. A mapping is recognised by its marshal bytes (version 0: content only, 1 us):
    equal bytes are equal mappings, and an equal mapping marshalled differently is merely encoded again,
    to the same id."""

    def __init__(self, limit: int = 4096):
        self.known: dict = {}       # marshalled mapping -> (id, JSON)
        self.limit = limit          # distinct mappings remembered (a few hundred bytes each)

    def __call__(self, layers) -> EncodedLayers:
        slots, ids, texts = [], {}, {}     # per layer: index into ids (first-use order), or None
        for layer in layers:
            mapping = layer["mapping"]
            if mapping is None:
                slots.append(None)
                continue
            try:
                fingerprint = marshal.dumps(mapping, 0)
            except ValueError:              # a value marshal does not take (a NumPy scalar): its JSON
                fingerprint = json.dumps(mapping)
            mapping_id, text = self.known.get(fingerprint) or self._add(fingerprint, mapping)
            slot = ids.get(mapping_id)
            if slot is None:
                slot = ids[mapping_id] = len(ids)
                texts[mapping_id] = text
            slots.append(slot)
        return EncodedLayers(json.dumps({
            "name": [layer["name"] for layer in layers], "op": [layer["op"] for layer in layers],
            "cycles": [layer["cycles"] for layer in layers], "mapping": slots, "mappings": list(ids)}), texts)

    def _add(self, fingerprint, mapping) -> tuple:
        text = json.dumps(mapping)
        known = (hashlib.sha256(text.encode()).hexdigest()[:32], text)
        if len(self.known) >= self.limit:
            self.known.clear()
        self.known[fingerprint] = known
        return known


class Store:
    """Results of every evaluation made in one report folder."""
    lock = None  # the open sweep.lock when dse.folder.claim opened it: released on close

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / STORE_FILE
        self._encode_layers = LayerEncoder()   # for records that bring their layers as a list (dse reprice's)
        self._mappings_stored: set = set()     # mapping_dicts ids this connection has committed
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60)
            # WAL: a commit is one append to the log, readers never block the writer,
            # and a killed process leaves every committed row intact.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            found = self._schema_version()
            if found is not None and not (found.isdigit() and int(found) <= SCHEMA_VERSION):
                self.db.close()
                raise StoreError(f"{self.path}: store schema {found}, newer than this dse reads (schema "
                                 f"{SCHEMA_VERSION} and older): upgrade accel-dse to use it, or use another folder")
            self.db.executescript(_SCHEMA)      # an older store gains the newer tables; its rows stay readable
            if found != str(SCHEMA_VERSION):
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.commit()
        except (sqlite3.OperationalError, OSError) as exc:
            raise cannot_write(self.folder, exc) from None

    def _schema_version(self) -> str | None:
        """The schema version the file records; None for a new file."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
            return None
        row = self.db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        return None if row is None else str(row[0])

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
        """Commit one evaluation (see put_many)."""
        self.put_many([record])

    def put_many(self, records) -> None:
        """Commit evaluations (a chunk's, as it comes back) in one transaction. A key stored twice keeps the
        first row (results are deterministic). A record's `layers`, its per-layer mappings, are an
        EncodedLayers (dse/evaluate.py) or the per-layer list (Stats.layers' name, op, cycles, mapping).
        A write that fails (full disk, read-only folder) is rolled back and raises StoreError."""
        statements, layer_rows, mapping_rows = [], [], {}
        for record in records:
            statements.append(("INSERT OR IGNORE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                record["key"], record["point_key"], json.dumps(record["point"], sort_keys=True),
                record["workload"], int(bool(record["feasible"])), record.get("reason", ""),
                json.dumps(record.get("metrics", {}), sort_keys=True), float(record.get("eval_seconds", 0.0)),
                time.time(), record.get("compiler_version") or compiler_version())))  # a copied row keeps its own
            layers = record.get("layers")
            if layers is None:
                continue
            if not isinstance(layers, EncodedLayers):
                layers = self._encode_layers(layers)
            layer_rows.append((record["key"], layers.layers))
            mapping_rows.update((i, text) for i, text in layers.mappings.items() if i not in self._mappings_stored)
        statements += [("INSERT OR IGNORE INTO evaluation_layers VALUES (?, ?)", row) for row in layer_rows]
        statements += [("INSERT OR IGNORE INTO mapping_dicts VALUES (?, ?)", row) for row in mapping_rows.items()]
        self._write(statements)
        self._mappings_stored.update(mapping_rows)

    def origins(self) -> dict:
        """key -> (compiler version, eval_seconds) of every stored evaluation: what made it, in how long."""
        return {key: (version, seconds) for key, version, seconds in
                self.db.execute("SELECT key, compiler_version, eval_seconds FROM evaluations")}

    def layer_mappings(self, key: str) -> list | None:
        """Which mapping gave evaluation `key` its cycles: per layer {name, op, cycles, mapping (a
        compiler.mapping.Mapping, or None)}; None where the store has none (an infeasible evaluation,
        or one stored before mappings were kept)."""
        from compiler.mapping import Mapping
        row = self.db.execute("SELECT layers FROM evaluation_layers WHERE key = ?", (key,)).fetchone()
        if row is None:
            row = self.db.execute("SELECT layers FROM mappings WHERE key = ?", (key,)).fetchone()   # schema 1
            return None if row is None else [dict(layer, mapping=layer["mapping"] and Mapping.from_dict(
                layer["mapping"])) for layer in json.loads(row[0])]
        columns = json.loads(row[0])
        ids, stored = columns["mappings"], {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            stored.update((i, json.loads(text)) for i, text in self.db.execute(
                f"SELECT id, mapping FROM mapping_dicts WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        # from_dict copies the dicts: layers that share a mapping get a Mapping each
        return [{"name": name, "op": op, "cycles": cycles,
                 "mapping": None if slot is None else Mapping.from_dict(stored[ids[slot]])}
                for name, op, cycles, slot in zip(*(columns[c] for c in ("name", "op", "cycles", "mapping")))]

    def _write(self, statements) -> None:
        """Run the statements ((sql, values) pairs) as one transaction."""
        try:
            for statement in statements:
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
        self._write([("INSERT OR REPLACE INTO meta VALUES ('study', ?), ('study_description', ?)",
                      (key, description))])

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

"""The target registry: every hardware target the compiler lowers onto, by name.

A target is registered once (`register(Target(...))`) and brings everything target-specific:
  spec   its Spec type (a frozen dataclass of compiler.spec.spec_field fields: the YAML schema);
         it declares `name`, `target`, `clock_ghz`, `technology`, `workloads`, `sweep`, the
         properties `peak_macs_per_cycle` and `figures` (design figures for the explorer's
         table, e.g. PE count) with FIGURE_FIELDS (the fields those come from), and may define
         `validate(where)` for checks across fields; FIGURES defines each figure (unit, the better
         direction, one line) for the explorer's metrics (dse/space.py METRICS); optionally
         `with_ideal_memory()` (the spec `--ideal-memory` compiles for) and an `ideal_memory` property;
  lower  (Graph, Spec) -> Program (compiler/program.py), verified, its Layers carrying the mapping;
  sim    its simulator side: a module, or the import path of one, with `instruction_cycles`,
         `level_bytes`, `requant_ops` and `unit_costs` (the contract: sim/targets/__init__.py).
The built-in targets are imported on first use (BUILTIN), so loading a spec does not import the
lowering's Numba code. Generic code (pipeline, Program, simulator, explorer) reaches a target only
through this registry and never names one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from compiler.errors import SpecError

# name -> module that registers the target when imported
BUILTIN = {"systolic": "compiler.targets.systolic", "simt": "compiler.targets.simt", "cpu": "compiler.targets.cpu"}
DEFAULT_TARGET = "systolic"      # a spec without a `target:` field
_REGISTRY: dict = {}


@dataclass(frozen=True)
class Target:
    name: str
    spec: type
    lower: Callable
    sim: str | ModuleType


def register(target: Target) -> Target:
    """Add (or replace) a target; returns it, so a module can keep the record."""
    _REGISTRY[target.name] = target
    return target


def names() -> list:
    """Every target a spec may name: the built-in ones and any registered since."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def get(name) -> Target:
    """The registered target `name` (importing a built-in one on first use); SpecError if unknown."""
    if not isinstance(name, str) or name not in _REGISTRY and name not in BUILTIN:
        raise SpecError(f"field 'target' is {name!r}; allowed: {', '.join(names())}")
    if name not in _REGISTRY:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:            # a built-in module that does not register: a bug
        raise SpecError(f"field 'target' is {name!r}; allowed: {', '.join(names())}")
    return _REGISTRY[name]


def lower(graph, spec):
    """Lower `graph` for `spec` with the target the spec names."""
    return get(spec.target).lower(graph, spec)

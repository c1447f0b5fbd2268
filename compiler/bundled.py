"""The data files the package ships: hardware specs (hwspecs/<name>.yaml) and technology
tables (hwspecs/tech/<name>.yaml), found by name from a source checkout or an installed wheel.

In: what a user wrote for `--hw`, `dse sweep` or a spec's `technology` (a name or a path).
Out: the file it means; an unknown spec name is a SpecError listing the bundled ones.
"""
from __future__ import annotations

import os
from pathlib import Path

from compiler.errors import SpecError
from compiler.targets import DEFAULT_TARGET

# hwspecs/ sits beside compiler/ in both layouts: the repository root (an editable install
# or a checkout on sys.path) and site-packages, where pyproject.toml installs it as package data.
HWSPECS_DIR = Path(__file__).resolve().parents[1] / "hwspecs"
TECH_DIR = HWSPECS_DIR / "tech"
DEFAULT_SPEC = DEFAULT_TARGET  # hwspecs/<default target>.yaml: what `dse run` and `dse compile` use without --hw


def spec_names() -> tuple:
    """Names of the bundled hardware specs (hwspecs/<name>.yaml)."""
    return tuple(sorted(p.stem for p in HWSPECS_DIR.glob("*.yaml")))


def technology_names() -> tuple:
    """Names of the bundled technology tables (hwspecs/tech/<name>.yaml)."""
    return tuple(sorted(p.stem for p in TECH_DIR.glob("*.yaml")))


def is_path(value) -> bool:
    """Whether a user's value names a file rather than a bundled name: a path object, or
    text ending in .yaml/.yml or naming a folder (`./x`, `specs/x`)."""
    if not isinstance(value, str):
        return True
    separators = tuple(s for s in (os.sep, os.altsep) if s)
    return value.endswith((".yaml", ".yml")) or any(s in value for s in separators)


def spec_path(value) -> Path:
    """The spec file `value` names: a path as given, or a bundled spec by name."""
    if is_path(value):
        return Path(value)
    if value in spec_names():
        return HWSPECS_DIR / f"{value}.yaml"
    raise SpecError(f"spec {value!r} is neither a bundled spec ({', '.join(spec_names())}) "
                    f"nor a path to a .yaml spec file")


def technology_path(value: str) -> Path:
    """The table file a `technology` value names: a path as given, or a bundled table by
    name (whether that file exists is the spec loader's check)."""
    return Path(value) if is_path(value) else TECH_DIR / f"{value}.yaml"

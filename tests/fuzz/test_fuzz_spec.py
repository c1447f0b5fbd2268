"""Fuzz the hardware spec loader: random YAML documents (random nesting, keys that are the
real field names, near misses of them or junk, values of every YAML type including huge,
negative and non-finite numbers) and the bundled systolic.yaml with its text damaged, each
loaded by `compiler.spec.load`; a spec that loads then times a small model (which prices it
with its technology table). Technology tables are fuzzed the same way (45nm.yaml damaged,
or random documents), named by a spec that is otherwise the default."""
from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

import dse
from compiler import spec as specmod
from compiler import targets
from dse import zoo
from tests.fuzz.contract import FAST, SLOW, holds, rarely

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = {"spec": (ROOT / "hwspecs" / "systolic.yaml").read_text(),
           "technology": (ROOT / "hwspecs" / "tech" / "45nm.yaml").read_text()}
NUMBERS = (0, 1, -1, 2, 7, 0.5, -0.001, 1e-9, 2**31, 2**63, 10**30, 1e308, float("inf"), -float("inf"),
           float("nan"))
WORDS = ("weight_stationary", "output_stationary", "fp32", "int8", "uint8", "bf16", "ddr4", "hbm2", "45nm",
         "7nm", "3nm", "systolic", "zoo:mlp", "zoo:squeezent", "grid", "nsga2", "latency_s", "", "yes", "~")


@functools.lru_cache(maxsize=None)
def field_names() -> tuple:
    """Every field name of the Spec tree, and the dotted paths a sweep names."""
    names, paths = set(), set()

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            names.add(f.name)
            paths.add(prefix + f.name)
            sub = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(sub):
                walk(sub, f"{f.name}.")
    for name in targets.names():
        walk(targets.get(name).spec, "")
    return tuple(sorted(names)), tuple(sorted(paths))


def keys():
    real, paths = field_names()
    near = st.sampled_from(real).map(lambda k: k[:-1] or "x") | st.sampled_from(real).map(str.upper)
    section = st.sampled_from(("sweep", "parameters", "strategy", "objectives", "constraints", "derived", "budget"))
    odd = st.text(max_size=6) | st.integers(-2, 3) | st.none() | st.booleans()      # YAML keys need not be strings
    return st.sampled_from(real) | st.sampled_from(paths) | near | section | odd


scalars = st.one_of(st.sampled_from(NUMBERS), st.integers(-10, 5000), st.sampled_from(WORDS), st.booleans(),
                    st.none(), st.floats(allow_nan=True, allow_infinity=True))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys(), inner,
                                                                                                  max_size=5),
                         max_leaves=20)


@st.composite
def spec_texts(draw, kind: str = "spec") -> str:
    """A YAML text: a random document (mostly a mapping, as a spec is), or the bundled
    systolic.yaml (kind "spec") or 45nm.yaml (kind "technology") damaged."""
    if draw(st.booleans()):
        document = draw(documents if rarely(draw, 6) else st.dictionaries(keys(), documents, max_size=6))
        return yaml.safe_dump(document, allow_unicode=True)
    text = BUNDLED[kind]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 12))
        insert = draw(st.sampled_from(("", ":", "- ", "[", "{", "}", "\t", "\n", " ", "&a ", "*a", "!!python/none",
                                       "1e999", "-5", ".nan", "0x", "'", '"', "%", "? ", "|")) | st.text(max_size=4))
        text = text[:at] + insert + text[at + cut:]
    return text


def check(tmp_path_factory, text: str, kind: str = "spec") -> None:
    folder = tmp_path_factory.mktemp("spec")
    path = folder / "fuzzed.yaml"
    (folder / "tech.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    path.write_text(text if kind == "spec" else "technology: tech.yaml\n", encoding="utf-8", errors="surrogatepass")
    spec = holds(specmod.load, path)
    if spec is not None:
        holds(dse.run, zoo.mlp(sizes=(16, 8)), str(path), timing_only=True)


@FAST
@given(text=spec_texts())
@example(text="target: []\n")                        # unhashable target: TypeError
@example(text="1: a\nname: x\n")                     # number and string keys sorted together: TypeError
def test_random_spec_files_load_or_are_refused(tmp_path_factory, text):
    check(tmp_path_factory, text)


@FAST
@given(text=spec_texts("technology"))
@example(text="1: 2\n")                              # number key: TypeError sorting unknown keys
def test_random_technology_tables_load_or_are_refused(tmp_path_factory, text):
    check(tmp_path_factory, text, "technology")


@pytest.mark.slow
@SLOW
@given(text=spec_texts())
def test_random_spec_files_many(tmp_path_factory, text):
    check(tmp_path_factory, text)


@pytest.mark.slow
@SLOW
@given(text=spec_texts("technology"))
def test_random_technology_tables_many(tmp_path_factory, text):
    check(tmp_path_factory, text, "technology")

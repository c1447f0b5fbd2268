"""Targets: each lowers (Graph, Spec) to a Program. One module set per target,
registered here by the Spec's `target` field."""
from compiler.targets import systolic

TARGETS = {"systolic": systolic.lower}


def lower(graph, spec):
    """Lower `graph` for `spec` with the target the spec names."""
    return TARGETS[spec.target](graph, spec)

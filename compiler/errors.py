"""User-facing error types of the compiler layer.

Each carries what failed and where (file, node, field path) so the CLI can print
it in one line and exit 2. Tracebacks are reserved for bugs.
"""


class CompileError(Exception):
    """A model cannot be read or lowered (malformed file, unsupported op, unmappable layer)."""


class SpecError(Exception):
    """A hardware spec file is invalid (unknown key, wrong type, out-of-range value)."""

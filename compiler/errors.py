"""User-facing error types of the compiler layer.

Each carries what failed and where (file, node, field path) so the CLI can print
it in one line and exit 2. Tracebacks are reserved for bugs.
"""


class UserError(Exception):
    """Base of the user-facing errors (CompileError, SpecError, sim's SimError). Its text is one
    line: names quoted from the input (an ONNX tensor name, a YAML key) may hold newlines or other
    control characters, which are shown escaped."""

    def __str__(self) -> str:
        text = super().__str__()
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class CompileError(UserError):
    """A model cannot be read or lowered (malformed file, unsupported op, unmappable layer)."""


class SpecError(UserError):
    """A hardware spec file is invalid (unknown key, wrong type, out-of-range value)."""


class ProgramError(CompileError):
    """A Program breaks its contract (compiler/program.py): an unknown opcode, an address or size
    outside the memory it addresses. The target that emitted it has a bug; the text names the
    instruction row, its opcode and operand, and the memory."""

"""User-facing error type of the simulator layer."""
from compiler.errors import UserError


class SimError(UserError):
    """Inputs do not match the Program (missing name, wrong shape) or execution failed."""

"""User-facing error type of the simulator layer."""


class SimError(Exception):
    """Inputs do not match the Program (missing name, wrong shape) or execution failed."""

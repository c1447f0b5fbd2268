"""Puts the repository root on sys.path so tests can import shared helpers as `tests.*`,
and makes hypothesis deterministic under CI (CI=true) so a run is reproducible."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

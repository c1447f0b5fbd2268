"""The contract every fuzzer checks, and the budgets they run under.

A call on any input either returns or raises one of the project's user errors
(CompileError, SpecError, SimError) whose message is one line, without printing a
warning (stderr must hold that one line only); it finishes within
a time limit (a SIGALRM stops a hang) and its peak traced allocation stays under a
bound (tracemalloc sees NumPy's buffers), so an absurd shape is refused, not allocated.
"""
from __future__ import annotations

import contextlib
import signal
import tracemalloc
import warnings

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from compiler.errors import CompileError, SpecError
from sim.errors import SimError

USER_ERRORS = (CompileError, SpecError, SimError)
# One example of any fuzzer: generous next to the ~0.05 s a small model takes, so a loaded
# two-core machine does not flag it, and short enough that a hang ends the run quickly.
TIME_LIMIT_S = 20
# Peak bytes one call may allocate: the fuzzed models are small (zoo:mlp's weights are 1 MiB),
# so anything near this is an absurd shape that got through.
ALLOCATION_LIMIT_BYTES = 256 * 2**20

# Default tier: all fuzzers together stay under ~60 s on two shared cores. The slow
# variants (-m slow) run many more examples of the same tests.
FAST = settings(max_examples=200, print_blob=True, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                database=None)
SLOW = settings(max_examples=2000, print_blob=True, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                database=None)


def rarely(draw, one_in: int) -> bool:
    """True about once in `one_in` draws (hypothesis favours 0 and the bounds, so test a middle value)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


class Hang(AssertionError):
    """The call ran past TIME_LIMIT_S."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"ran past {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def holds(call, *args, **kwargs):
    """Run call(*args, **kwargs) under the contract; its result, or None after a user error."""
    tracemalloc.start()
    try:
        with _time_limit(TIME_LIMIT_S), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return call(*args, **kwargs)
            except USER_ERRORS as exc:
                message = str(exc)
                assert message and len(message.splitlines()) == 1, f"{type(exc).__name__} is not one line: {message!r}"
                return None
            finally:
                noisy = [w for w in caught if not issubclass(w.category, (DeprecationWarning,
                                                                          PendingDeprecationWarning))]
                assert not noisy, f"warned on stderr: {noisy[0].category.__name__}: {noisy[0].message}"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < ALLOCATION_LIMIT_BYTES, f"allocated {peak / 2**20:.0f} MiB"

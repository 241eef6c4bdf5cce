"""How many CPU threads an engine may take: the default, the bound, and the one check every backend makes.

``threads`` reaches a backend from ``--threads`` (streamavs run, streamavs bench latency),
:class:`~streamavs.bench.latency.LatencyConfig` or ``load_engine(..., threads=N)``. Every backend
checks it with :func:`check_threads`, so 2.5 (or True) is refused with the same message everywhere
instead of being truncated to 2 (or taken as 1) by ``int()``.
"""

from __future__ import annotations

import operator
import os

from streamavs.errors import EngineError

__all__ = ["check_threads", "default_threads", "max_threads", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's cpuset), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """Intra-op threads by default: all usable cores but one (at least 1), leaving a core for the capture threads."""
    return max(1, usable_cores() - 1)


def max_threads() -> int:
    """The most threads an engine may take: 4 per usable core (ONNX Runtime starts every one of them,
    and far more than the cores only costs switching; 100000 exhausted the machine while loading)."""
    return 4 * usable_cores()


def check_threads(value: object, key: str = "threads") -> int | None:
    """`value` as an int when it is a whole number from 1 to :func:`max_threads`; None stays None
    (the backend's default). An integer type is required (numpy integers count): a float, even
    2.0, a bool or a string raises EngineError naming `key`, the value and the fix."""
    if value is None:
        return None
    most = max_threads()
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not 1 <= number <= most:
        raise EngineError(f"{key} must be a whole number from 1 to {most} (4 per core this process may use), "
                          f"got {value!r}; leave it out for the default, {default_threads()}")
    return number

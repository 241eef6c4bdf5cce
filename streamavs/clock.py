"""The one clock of StreamAVS: ``time.monotonic_ns`` stamps everything at capture.

Wall-clock (Unix) time is carried alongside only to measure latency between processes
on one host; it is derived from a monotonic timestamp through one anchor pair taken the
first time it is needed (never at import). At most once a second :func:`wall_time` checks the
anchor against the wall clock and takes a new one when they disagree by more than STEP_S (the
wall clock was stepped: NTP's first sync on a device without a battery-backed clock, a manual
change), so ``t_capture`` keeps agreeing with ``t_publish``.
"""

from __future__ import annotations

import threading
import time

__all__ = ["now_ns", "wall_time", "reanchor"]

STEP_S = 0.05  # a wall clock this far from the anchor's prediction was stepped: re-anchor
_CHECK_NS = 1_000_000_000  # how often wall_time compares the anchor with the wall clock

_lock = threading.Lock()
_anchor: tuple[int, float] | None = None  # (monotonic ns, Unix seconds) read together
_checked_ns = 0  # monotonic ns of the last comparison


def now_ns() -> int:
    """Current time on the capture clock: ``time.monotonic_ns()`` (int nanoseconds)."""
    return time.monotonic_ns()


def reanchor() -> tuple[int, float]:
    """Re-read the (monotonic ns, Unix s) anchor pair, e.g. after the wall clock was stepped.

    Of three back-to-back readings the one with the tightest bracket is kept, so the pair
    is accurate to about a microsecond.
    """
    global _anchor
    best: tuple[int, int, float] | None = None
    for _ in range(3):
        before = time.monotonic_ns()
        wall = time.time()
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) // 2, wall)
    assert best is not None  # three iterations always run
    with _lock:
        _anchor = (best[1], best[2])
        return _anchor


def wall_time(t_ns: int) -> float:
    """Unix time in seconds (float) of a monotonic timestamp `t_ns` (ns)."""
    global _checked_ns
    anchor = _anchor if _anchor is not None else reanchor()
    now = time.monotonic_ns()
    if now - _checked_ns >= _CHECK_NS:
        _checked_ns = now
        if abs(time.time() - (anchor[1] + (now - anchor[0]) * 1e-9)) > STEP_S:
            anchor = reanchor()
    return anchor[1] + (t_ns - anchor[0]) * 1e-9

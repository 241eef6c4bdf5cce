"""Rate limiting on stream time, shared by the pipeline's `rate_hz` and the preview rate."""

from __future__ import annotations

__all__ = ["next_slot"]


def next_slot(next_due: int | None, t_ns: int, period_ns: int) -> int | None:
    """The next slot (ns) when a frame at stream time `t_ns` takes the slot `next_due`; None when it
    is early. The next slot is one period later; far behind (a gap in the stream), it restarts
    from this frame."""
    if next_due is not None and t_ns < next_due:
        return None
    nxt = (next_due or t_ns) + period_ns
    return nxt if nxt > t_ns else t_ns + period_ns

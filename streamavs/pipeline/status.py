"""The run's periodic status line: rates and latency while frames flow, how long none came when they stop.

The pipeline calls a :class:`StatusLine` from its loop (``Pipeline(on_tick=...)``) at least every
``PipelineConfig.poll_s``, frames or not, so a camera that stops sending is reported while it is
being reopened, not only once it comes back or gives up.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from streamavs.errors import InputError

__all__ = ["StatusLine", "NO_FRAMES_S"]

NO_FRAMES_S = 2.0  # no frame for this long: the line says so, with the reconnects, instead of the rates


class StatusLine:
    """Writes one status line with `write` every `interval_s` seconds; call it with the pipeline.

    While frames flow (the format scripts may read):
    ``frames N  F fps  inference p50 X ms  total p50 Y ms  dropped D  audio gaps G  overflows O``,
    followed by ``  reconnects R`` once the source has reconnected. After NO_FRAMES_S or more
    without a frame: ``no frames for S s (N so far)  reconnects R``, then ``  failed reopens F`` once a
    reopen attempt brought no frame back, and the same drop counters.
    """

    def __init__(self, interval_s: float, write: Callable[[str], None]) -> None:
        if not interval_s > 0:
            raise InputError(f"the status interval must be > 0 seconds, got {interval_s!r}")
        self.interval_s = interval_s
        self.write = write
        self._next = time.monotonic() + interval_s

    def __call__(self, pipeline: Any) -> None:
        """Write the line when its interval has passed (cheap otherwise: one clock read)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self.write(self.line(pipeline))

    @staticmethod
    def line(pipeline: Any) -> str:
        """The status of `pipeline` (a :class:`streamavs.pipeline.Pipeline`) now."""
        s = pipeline.stats.snapshot()
        losses = f"dropped {s.dropped}  audio gaps {s.audio_gaps}  overflows {s.audio_overflows}"
        idle_s = pipeline.seconds_without_frames
        if idle_s >= NO_FRAMES_S:
            failed = pipeline.capture.counters().get("reconnect_failures", 0)
            tries = f"  failed reopens {failed}" if failed else ""
            return f"no frames for {idle_s:.0f} s ({s.frames} so far)  reconnects {s.reconnects}{tries}  {losses}"
        inf = s.stages_ms.get("inference", {}).get("p50", float("nan"))
        tot = s.stages_ms.get("total", {}).get("p50", float("nan"))
        again = f"  reconnects {s.reconnects}" if s.reconnects else ""
        rates = f"frames {s.frames}  {s.fps:.1f} fps  inference p50 {inf:.1f} ms  total p50 {tot:.1f} ms"
        return f"{rates}  {losses}{again}"

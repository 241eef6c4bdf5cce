"""Per-stage timing and counters of the live pipeline.

Stages, in milliseconds per processed frame:

* ``capture``: from the frame's capture stamp to the moment the pairer handed it over
  (queueing + any wait for audio, which happens only when less than the frame time minus one
  audio block had arrived). For files processed as fast as possible the stamps come from PTS,
  not the wall clock, so this stage measures the pairer's own wait only.
* ``preprocess``: resize the frame to the engine's size + the log-mel example.
* ``inference``: one engine call.
* ``postprocess``: probability -> published mask (sounding gate).
* ``publish``: encode + send.
* ``total``: capture stamp (or pairer hand-over) to the end of publish.

Counters are cumulative: frames processed, frames dropped (by the frame ring and by the
`rate_hz` limiter), audio gaps (frames whose window misses audio after the stream's first
sample: lost, late, not yet started or already ended; zeros before the first sample are the
stream's start, not a gap), audio waits (frames the pairer had to wait for audio), audio
overflows, reconnects; with preview frames on, the previews sent and those dropped because
the JPEG encoder was still busy (never a pipeline frame).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["STAGES", "PipelineStats", "StatsSnapshot"]

STAGES = ("capture", "preprocess", "inference", "postprocess", "publish", "total")


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters and per-stage latency percentiles (ms: p50, p90, p99, max, mean) at one instant."""

    frames: int
    dropped: int
    audio_gaps: int
    audio_overflows: int
    reconnects: int
    published: int
    rate_skipped: int
    elapsed_s: float
    fps: float
    audio_waits: int = 0
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    previews: int = 0  # preview frames sent (PipelineConfig.preview)
    previews_dropped: int = 0  # preview frames dropped: the encoder was still busy

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    def summary(self) -> str:
        """Multi-line human-readable summary (the CLI's final report)."""
        lines = [
            f"frames {self.frames}  published {self.published}  in {self.elapsed_s:.1f} s  ({self.fps:.1f} fps)",
            f"dropped {self.dropped}  audio gaps {self.audio_gaps}  audio overflows {self.audio_overflows}"
            f"  reconnects {self.reconnects}"
            f"  skipped for --rate {self.rate_skipped}  audio waits {self.audio_waits}",
        ]
        if self.previews or self.previews_dropped:
            lines.append(f"preview frames {self.previews}  dropped {self.previews_dropped} (encoder busy)")
        if self.stages_ms:
            lines.append(f"{'stage ms':<12}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
            for stage in STAGES:
                p = self.stages_ms.get(stage)
                if p:
                    lines.append(f"{stage:<12}{p['p50']:>8.2f}{p['p90']:>8.2f}{p['p99']:>8.2f}{p['max']:>8.2f}")
        return "\n".join(lines)


class PipelineStats:
    """Thread-safe per-stage timings (a bounded window of recent frames) and cumulative counters."""

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, collections.deque[float]] = {s: collections.deque(maxlen=window) for s in STAGES}
        self._last: dict[str, float] = {}
        self.frames = 0
        self.dropped = 0
        self.audio_gaps = 0
        self.audio_waits = 0
        self.audio_overflows = 0
        self.reconnects = 0
        self.published = 0
        self.rate_skipped = 0
        self.previews = 0
        self.previews_dropped = 0
        self._t_first: float | None = None  # perf_counter seconds of the first processed frame
        self._t_last: float | None = None

    def record_frame(
        self, stage_ms: dict[str, float], t_done: float, audio_gap: bool, audio_waited: bool = False
    ) -> None:
        """Account one processed frame: its stage durations (ms), completion time (perf_counter s),
        whether its window missed audio (an audio gap) and whether the pairer waited for audio."""
        with self._lock:
            for stage, ms in stage_ms.items():
                self._samples[stage].append(float(ms))
            self._last = dict(stage_ms)
            self.frames += 1
            self.audio_gaps += bool(audio_gap)
            self.audio_waits += bool(audio_waited)
            if self._t_first is None:
                self._t_first = t_done
            self._t_last = t_done

    def count_published(self) -> None:
        with self._lock:
            self.published += 1

    def count_skipped(self) -> None:
        """A frame skipped on purpose by the rate limiter (not a drop)."""
        with self._lock:
            self.rate_skipped += 1

    def count_previews(self, *, sent: int, dropped: int) -> None:
        """Add `sent` preview frames; `dropped` is the encoder's cumulative count."""
        with self._lock:
            self.previews += int(sent)
            self.previews_dropped = max(self.previews_dropped, int(dropped))

    def set_source_counters(self, *, dropped: int, audio_overflows: int, reconnects: int) -> None:
        """Update the cumulative counters that the sources and rings own (monotonic: never lowered)."""
        with self._lock:
            self.dropped = max(self.dropped, int(dropped))
            self.audio_overflows = max(self.audio_overflows, int(audio_overflows))
            self.reconnects = max(self.reconnects, int(reconnects))

    def last_stage_ms(self) -> dict[str, float]:
        """The stage durations of the most recent frame (ms), for the message header."""
        with self._lock:
            return dict(self._last)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            stages = {}
            for stage, samples in self._samples.items():
                if samples:
                    a = np.fromiter(samples, dtype=np.float64, count=len(samples))
                    p50, p90, p99 = np.percentile(a, [50, 90, 99])
                    stages[stage] = {
                        "p50": float(p50), "p90": float(p90), "p99": float(p99),
                        "max": float(a.max()), "mean": float(a.mean()),
                    }  # fmt: skip
            span = (self._t_last - self._t_first) if self._t_first is not None else 0.0
            fps = (self.frames - 1) / span if self.frames > 1 and span > 0 else 0.0
            return StatsSnapshot(
                frames=self.frames, dropped=self.dropped, audio_gaps=self.audio_gaps,
                audio_overflows=self.audio_overflows, reconnects=self.reconnects, published=self.published,
                rate_skipped=self.rate_skipped, elapsed_s=span, fps=fps, audio_waits=self.audio_waits,
                stages_ms=stages, previews=self.previews, previews_dropped=self.previews_dropped,
            )  # fmt: skip

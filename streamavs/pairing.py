"""The frame/audio pairer: the newest frame F(t) and the 1 s of audio that ends at it.

Policy (docs/protocol.md, "Audio window"): the window ends at min(t, end of the audio that has
arrived) as long as that end is at most one audio block before t; only when less audio has
arrived does the pairer wait, at most ``max_wait_s`` and once per stall. Audio a source says
will never come (written with :meth:`AudioRing.fill`) is paired at once, counted as a gap and
marked padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.errors import InputError

__all__ = ["Pair", "Pairer"]


@dataclass(frozen=True)
class Pair:
    """A frame and the audio window paired with it.

    audio: float32 (window samples,) at the ring's rate (16000 for 1 s). window_ns: (start, end)
    clock times of the window as paired: end = frame.t_ns, or up to one audio block earlier.
    padded: samples of the window that are zeros in place of audio, for any reason. missed: those
    of them after the stream's first sample (audio that was lost, did not arrive within the wait,
    started late or had ended); a pair with missed > 0 is what the pipeline counts as an audio gap,
    while padding before the first sample is only the stream's start. waited: the pairer had to
    wait for audio (less than the frame time minus one block had arrived).
    dropped_total: frames dropped by the frame ring so far.
    """

    frame: VideoFrame
    audio: np.ndarray
    window_ns: tuple[int, int]
    padded: int
    missed: int
    waited: bool
    dropped_total: int

    @property
    def audio_gap(self) -> bool:
        """Some samples of the window are zeros in place of audio (published as ``audio_padded``)."""
        return self.padded > 0


class Pairer:
    """Pairs the newest frame F(t) with the 1 s of audio that has arrived up to t; one frame in flight.

    The policy (docs/protocol.md, "Audio window"): with B the audio ring's block (the longest
    block the source delivered recently) and A the end of the audio that has arrived, a frame is
    paired AT ONCE with the window ending at min(t, A) whenever A >= t - B: it never waits for
    the block that covers its own instant. Only when less audio has arrived does it wait, at most
    max_wait_s; if the audio still lags by more than a block, the window ends at t and its missing
    tail is zeros. Audio that will not come never costs a wait: the source fills it
    (AudioRing.fill) or finishes the ring; and once a wait timed out, later frames do not wait
    again until new audio arrives (a stalled microphone costs one wait, not one per frame).

    lossless=False (live): frames older than the newest are dropped and counted.
    lossless=True (files processed as fast as possible): every frame is taken in order.
    """

    def __init__(
        self,
        frames: FrameRing,
        audio: AudioRing,
        window_s: float = 1.0,
        max_wait_s: float = 0.1,
        lossless: bool = False,
    ) -> None:
        if not window_s > 0 or not max_wait_s >= 0:
            raise InputError(f"Pairer needs window_s > 0 and max_wait_s >= 0, got {window_s!r}, {max_wait_s!r}")
        self.frames = frames
        self.audio = audio
        self.window_samples = int(round(window_s * audio.sample_rate))
        self.window_ns = int(round(window_s * 1e9))
        self.max_wait_s = max_wait_s
        self.lossless = lossless
        self._last_t: int | None = None
        self._stalled_at: int | None = None  # ring head when a wait last timed out

    def next_pair(self, timeout: float | None = None) -> Pair | None:
        """The next pair, or None if no frame came within `timeout` s (or the stream ended)."""
        frame = self.frames.take(timeout, newest=not self.lossless)
        if frame is None:
            return None
        if self._last_t is not None and frame.t_ns <= self._last_t:
            raise InputError(
                f"frame {frame.index} at {frame.t_ns} ns is not after the previous paired frame at "
                f"{self._last_t} ns; frame timestamps must increase strictly"
            )
        self._last_t = frame.t_ns
        patience = 0.0 if self._stalled_at == self.audio.head else self.max_wait_s
        sample, head, ready, waited = self.audio.wait_for(frame.t_ns, patience)
        self._stalled_at = None if ready else head
        n = self.window_samples
        if sample is None:  # no audio has arrived at all: nothing to place the window by
            samples, padded, missed, end_ns = np.zeros(n, np.float32), n, n, frame.t_ns
        else:
            end = min(sample, head) if ready else sample
            samples, padded, missed = self.audio.read_window(end, n)
            end_ns = frame.t_ns - (sample - end) * 1_000_000_000 // self.audio.sample_rate
        return Pair(
            frame=frame, audio=samples, window_ns=(end_ns - self.window_ns, end_ns),
            padded=padded, missed=missed, waited=waited, dropped_total=self.frames.drops,
        )  # fmt: skip

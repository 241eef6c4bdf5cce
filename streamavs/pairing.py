"""The frame/audio pairer: the newest frame F(t) and the 1 s of audio that ends at it.

Policy (docs/protocol.md, "Audio window"): the window ends at min(t, end of the audio that has
arrived) as long as that end is at most one audio block before t; only when less audio has
arrived does the pairer wait, at most ``max_wait_s`` and once per stall. Audio a source says
will never come (written with :meth:`AudioRing.fill`) is paired at once, counted as a gap and
marked padded. With ``hold_s`` (a microphone whose sound arrives later than the frames) it
pairs the newest frame whose audio has arrived instead, holding the newer ones back (see
:class:`Pairer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.clock import now_ns
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
    wait for audio (less than the frame time minus one block had arrived; with a hold, only a wait
    that lasted past the frame time plus the hold counts).
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

    hold_s > 0 (a microphone whose sound arrives that much later than the camera's frames, e.g.
    Bluetooth; its samples are stamped at their true capture time, so the newest frame's audio is
    always about hold_s away): the pairer takes the NEWEST frame whose audio has arrived (by the
    readiness rule above: t <= end of the arrived audio + one block) and leaves the newer frames in
    the ring for later calls; the older ones are dropped and counted as above. When no held frame's
    audio has arrived (the steady state right after a pair: the next frame's sound is due in at
    most a frame interval) it takes the OLDEST held frame and waits for its audio, at most
    hold_s + max_wait_s, padding what did not arrive as above. So pairs come at the camera's frame
    rate, each hold_s after its frame, not one per hold_s (which taking the newest frame and
    waiting for its audio would give). The ring must hold hold_s of frames (live_capture sizes it).
    A wait counts (Pair.waited) only when the audio came after t + hold_s: later than the stated
    delay says. hold_s = 0 is the path without any of this: one take, as above.
    """

    def __init__(
        self,
        frames: FrameRing,
        audio: AudioRing,
        window_s: float = 1.0,
        max_wait_s: float = 0.1,
        lossless: bool = False,
        hold_s: float = 0.0,
    ) -> None:
        if not window_s > 0 or not max_wait_s >= 0 or not 0 <= hold_s < float("inf"):
            raise InputError(
                f"Pairer needs window_s > 0, max_wait_s >= 0 and a finite hold_s >= 0 (seconds), got "
                f"{window_s!r}, {max_wait_s!r}, {hold_s!r}"
            )
        if hold_s and lossless:
            raise InputError("Pairer hold_s holds live frames back for late sound; a lossless source (a file) stamps "
                             "picture and sound from one clock: pass hold_s=0")
        self.frames = frames
        self.audio = audio
        self.window_samples = int(round(window_s * audio.sample_rate))
        self.window_ns = int(round(window_s * 1e9))
        self.max_wait_s = max_wait_s
        self.lossless = lossless
        self.hold_s = hold_s
        self.hold_ns = int(round(hold_s * 1e9))
        self._last_t: int | None = None
        self._stalled_at: int | None = None  # ring head when a wait last timed out

    def next_pair(self, timeout: float | None = None) -> Pair | None:
        """The next pair, or None if no frame came within `timeout` s (or the stream ended)."""
        if self.hold_ns:
            frame, wait_s = self._take_held(timeout)
        else:  # the latency hot path: one take, nothing else
            frame, wait_s = self.frames.take(timeout, newest=not self.lossless), self.max_wait_s
        if frame is None:
            return None
        if self._last_t is not None and frame.t_ns <= self._last_t:
            raise InputError(
                f"frame {frame.index} at {frame.t_ns} ns is not after the previous paired frame at "
                f"{self._last_t} ns; frame timestamps must increase strictly"
            )
        self._last_t = frame.t_ns
        patience = 0.0 if self._stalled_at == self.audio.head else wait_s
        sample, head, ready, waited = self.audio.wait_for(frame.t_ns, patience)
        if waited and self.hold_ns:  # held frames wait for their sound by design; late is after t + hold
            waited = now_ns() > frame.t_ns + self.hold_ns
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

    def _take_held(self, timeout: float | None) -> tuple[VideoFrame | None, float]:
        """hold_s > 0: the frame to pair (see the class docstring) and how long it may wait for its audio."""
        newest = self.frames.latest(timeout)
        if newest is None:
            return None, 0.0
        if self._stalled_at == self.audio.head or self.audio.finished:  # no audio is coming: hold nothing
            return self.frames.take(0, newest=True), self.max_wait_s
        sample, head, _, _ = self.audio.wait_for(newest.t_ns, 0)  # no wait: where the audio reaches now
        if sample is not None:
            # The clock time the arrived audio reaches plus one block (the readiness rule), measured from
            # the newest frame's sample at the nominal rate: off from the ring's clock fit by the sound
            # card's drift times the lag (microseconds); rounded down, so the frame taken is ready.
            reach_ns = newest.t_ns + (head + self.audio.block - sample) * 1_000_000_000 // self.audio.sample_rate
            frame = self.frames.take_at_or_before(reach_ns, 0)
            if frame is not None:
                return frame, self.max_wait_s
        return self.frames.take(0, newest=False), self.hold_s + self.max_wait_s

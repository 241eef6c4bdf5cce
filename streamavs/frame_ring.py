"""The video side of the buffers: :class:`VideoFrame` and the :class:`FrameRing` a camera fills.

Re-exported by :mod:`streamavs.buffers` (``from streamavs.buffers import FrameRing`` keeps working);
it lives here so that each ring is a module of its own. The pairer (:mod:`streamavs.pairing`) takes
frames out of it in one of three ways: the newest (live), the oldest (lossless files), or the newest at
or before a time (live, while frames are held back for a microphone whose sound arrives late).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from streamavs.errors import InputError

__all__ = ["VideoFrame", "FrameRing", "FRAME_SLOTS"]

# Frames a ring keeps by default: a live pairer takes the newest, a lossless one makes the source wait for
# space, so a few are enough to ride out one slow engine step.
FRAME_SLOTS = 4


@dataclass(frozen=True)
class VideoFrame:
    """One video frame as captured.

    image: (H, W, 3) uint8 RGB. t_ns: capture time on the monotonic clock (ns; files: from
    PTS). wall_time: the same instant in Unix seconds. index: frame number from the source (0, 1, ...).
    """

    image: np.ndarray
    t_ns: int
    wall_time: float
    index: int


class FrameRing:
    """Newest-frame store for video frames (preallocated slots, oldest overwritten).

    Frames must arrive with increasing timestamps and are stored in that order, oldest first. A
    frame that is overwritten or skipped before anyone took it counts as a drop. `push(...,
    block=True)` instead waits for space (backpressure for files processed without loss); a live
    camera never blocks.
    """

    def __init__(self, capacity: int = FRAME_SLOTS) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise InputError(f"FrameRing capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._slots: collections.deque[VideoFrame] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._last_t: int | None = None
        self._pushed = 0
        self._drops = 0
        self._finished = False

    def push(self, frame: VideoFrame, block: bool = False, timeout: float | None = None) -> bool:
        """Store `frame`; returns False only if `block` and no space came within `timeout` s.

        Raises InputError when the timestamp does not increase (streaming contract).
        """
        with self._cond:
            if self._last_t is not None and frame.t_ns <= self._last_t:
                raise InputError(
                    f"frame {frame.index} has timestamp {frame.t_ns} ns, not after the previous frame's "
                    f"{self._last_t} ns; frame timestamps must increase strictly (stamp frames with "
                    "time.monotonic_ns() or monotonic PTS)"
                )
            if block:
                if not self._cond.wait_for(lambda: len(self._slots) < self.capacity, timeout):
                    return False
            elif len(self._slots) == self.capacity:
                self._slots.popleft()
                self._drops += 1
            self._slots.append(frame)
            self._last_t = frame.t_ns
            self._pushed += 1
            self._cond.notify_all()
            return True

    def latest(self, timeout: float | None = 0.0) -> VideoFrame | None:
        """The newest stored frame without taking it; waits up to `timeout` s (None: until a frame
        comes or the stream finishes) while the ring is empty. None if it stays empty."""
        with self._cond:
            if timeout != 0.0:
                self._cond.wait_for(lambda: self._slots or self._finished, timeout)
            return self._slots[-1] if self._slots else None

    def take(self, timeout: float | None = None, newest: bool = True) -> VideoFrame | None:
        """Wait up to `timeout` s for a frame and remove it; None on timeout or when finished and empty.

        newest=True takes the newest frame and drops (counts) the older ones; newest=False
        takes the oldest (lossless, first in first out).
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._finished, timeout):
                return None
            if not self._slots:
                return None
            if newest:
                frame = self._slots.pop()
                self._drops += len(self._slots)
                self._slots.clear()
            else:
                frame = self._slots.popleft()
            self._cond.notify_all()
            return frame

    def take_at_or_before(self, t_ns: int, timeout: float | None = None) -> VideoFrame | None:
        """Wait up to `timeout` s for a frame and remove the newest one stamped at or before `t_ns`.

        The frames older than it are dropped (counted, as by take(newest=True)); the frames after
        `t_ns` stay stored, in order, for a later take. Returns None on timeout, when the ring is
        finished and empty, or at once when every stored frame is after `t_ns` (frames arrive in
        time order, so none at or before it can come any more).
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._finished, timeout):
                return None
            if not self._slots or self._slots[0].t_ns > t_ns:  # slots are in time order, oldest first
                return None
            frame = self._slots.popleft()
            while self._slots and self._slots[0].t_ns <= t_ns:  # a newer one qualifies: this one is skipped
                frame = self._slots.popleft()
                self._drops += 1
            self._cond.notify_all()
            return frame

    def finish(self) -> None:
        """Mark the end of the stream: `take` returns None once the stored frames are taken."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """True after :meth:`finish`."""
        with self._cond:
            return self._finished

    @property
    def drops(self) -> int:
        """Frames overwritten or skipped before being taken."""
        with self._cond:
            return self._drops

    @property
    def pushed(self) -> int:
        """Frames pushed so far."""
        with self._cond:
            return self._pushed

    def __len__(self) -> int:
        with self._cond:
            return len(self._slots)


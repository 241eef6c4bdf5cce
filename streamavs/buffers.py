"""Ring buffers between the capture threads and the engine (the pairer is in :mod:`streamavs.pairing`).

:class:`AudioRing` is defined here; :class:`VideoFrame` and :class:`FrameRing` in
:mod:`streamavs.frame_ring`, re-exported from this module.

``camera -> FrameRing``, ``microphone -> AudioRing``; :class:`~streamavs.pairing.Pairer` takes the newest frame
F(t) and the 1 s audio window that ends at it, or up to one audio block before it (see
:class:`~streamavs.pairing.Pairer` for the policy). Everything is stamped with the one monotonic clock
(:mod:`streamavs.clock`, nanoseconds).

The audio ring is indexed by ABSOLUTE sample number (sample 0 = first sample ever written),
so a reader asks for "the 16000 samples ending at sample k" and learns whether any of them
were never written or already overwritten. Each written block is stamped on arrival
(its last sample ends at ``t_end_ns``); a running least-squares fit of sample index against
the clock over the recent blocks maps a frame time to a sample index and absorbs both the
arrival jitter and the drift between the audio clock and the monotonic clock.

A source that knows no audio will come for some stretch of time (a file whose audio track
starts late or ends early) writes it with :meth:`AudioRing.fill`: zeros that readers see as
missing audio, so a frame there is paired at once instead of waiting, and its window is
reported as padded.

An overflow (the device lost input before a block) is handled the same way:
:meth:`AudioRing.mark_overflow` writes zeros for the stretch the clock fit says was lost, so a
window reaching across the loss is reported as padded instead of stitching the audio on both
sides of it together.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import NamedTuple

import numpy as np

from streamavs.errors import InputError
from streamavs.frame_ring import FrameRing, VideoFrame

__all__ = ["VideoFrame", "Coverage", "AudioRing", "FrameRing", "MAX_LOST_FILL_S"]

# At most this much silence stands in for audio lost in one overflow. Longer than any audio
# window (1 s), so every window that reaches across the loss is reported padded; a longer
# estimate means a stopped process or a broken clock fit, not an overflow, and the re-anchored
# fit places the new audio in time anyway.
MAX_LOST_FILL_S = 5.0


class Coverage(NamedTuple):
    """How far the audio reaches for one frame time (AudioRing.wait_for).

    sample: the frame time's sample index from the drift fit (None while no audio anchors the
    clock). head: samples written so far. ready: head >= sample - block. waited: not ready at
    the first look (the caller waited).
    """

    sample: int | None
    head: int
    ready: bool
    waited: bool


class AudioRing:
    """Preallocated ring of mono float32 samples, indexed by absolute sample number.

    Thread-safe: one writer (a capture thread) and any number of readers. Never rolls or
    reallocates the buffer; a write copies into at most two slices.
    """

    def __init__(self, capacity_s: float = 10.0, sample_rate: int = 16000, fit_window_s: float = 5.0) -> None:
        if not capacity_s > 0 or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise InputError(
                f"AudioRing needs capacity_s > 0 and a positive integer sample_rate, got "
                f"capacity_s={capacity_s!r}, sample_rate={sample_rate!r}"
            )
        self.sample_rate = sample_rate
        self.capacity = int(round(capacity_s * sample_rate))
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._cond = threading.Condition(threading.Lock())
        self._head = 0  # absolute index of the next sample to be written
        self._overflows = 0
        self._finished = False
        # Fit points (sample index at a block end, t_end_ns) since the last re-anchor.
        self._fit_window_ns = int(fit_window_s * 1e9)
        self._points: collections.deque[tuple[int, int]] = collections.deque()
        self._reanchor = False
        self._fit: tuple[float, float, float] | None = None  # (t0_ns, s0, samples per ns)
        self._blocks: collections.deque[tuple[int, int]] = collections.deque()  # (t_end_ns, samples), audio only
        self._fills: collections.deque[list[int]] = collections.deque()  # [start, end) sample ranges of fill()

    # -- writer side -------------------------------------------------------------------
    def write(self, block: np.ndarray, t_end_ns: int) -> None:
        """Append mono float32 samples (n,) whose last sample ended at clock time `t_end_ns` (ns)."""
        x = np.asarray(block)
        if x.ndim != 1:
            raise InputError(f"AudioRing.write expects mono (n,) samples, got shape {x.shape}; downmix first")
        with self._cond:
            self._store(x, x.size, t_end_ns)
            if x.size:
                self._blocks.append((int(t_end_ns), x.size))
                while self._blocks[-1][0] - self._blocks[0][0] > self._fit_window_ns:
                    self._blocks.popleft()

    def fill(self, n: int, t_end_ns: int) -> None:
        """Append `n` samples of silence for a time that has no audio, ending at clock time `t_end_ns`.

        For a source that knows no audio will come there (before a late audio start, after the
        end of the audio track): readers get zeros and count them as padded and missed, exactly
        like audio that never arrived, but never wait for them. n = 0 only stamps the clock.
        """
        _check_count("AudioRing.fill", "n", n)
        with self._cond:
            self._fill_locked(int(n), t_end_ns)

    def _fill_locked(self, n: int, t_end_ns: int) -> None:
        start = self._head
        self._store(None, n, t_end_ns)
        if n:
            if self._fills and self._fills[-1][1] == start:
                self._fills[-1][1] = self._head
            else:
                self._fills.append([start, self._head])
            while self._fills and self._fills[0][1] <= self._head - self.capacity:
                self._fills.popleft()

    def _store(self, x: np.ndarray | None, n: int, t_end_ns: int) -> None:
        """Write samples `x` (or n zeros when x is None) and add the clock point; lock held."""
        if self._finished:
            raise InputError("AudioRing.write after finish(): the stream already ended")
        m = min(n, self.capacity)  # only the newest `capacity` samples can be kept
        start = (self._head + n - m) % self.capacity
        first = min(m, self.capacity - start)
        if x is None:
            self._buf[start : start + first] = 0.0
            self._buf[: m - first] = 0.0
        else:
            x = x[n - m :]
            self._buf[start : start + first] = x[:first]
            self._buf[: m - first] = x[first:]
        self._head += n
        if self._reanchor:
            self._points.clear()
            self._reanchor = False
        self._points.append((self._head, int(t_end_ns)))
        while self._points and self._points[-1][1] - self._points[0][1] > self._fit_window_ns:
            self._points.popleft()
        self._fit = None
        self._cond.notify_all()

    def mark_overflow(self, next_samples: int, t_next_end_ns: int) -> int:
        """Record that input was lost before the next block, which holds `next_samples` samples
        ending at clock time `t_next_end_ns` (ns) and is not written yet; returns the zeros written.

        Counts the overflow, writes zeros for the lost stretch (what the clock fit predicts at the
        block's end, minus what was written and the block itself; 0 to MAX_LOST_FILL_S) that
        readers count as padded and missed like fill(), and re-anchors the clock fit: without the
        zeros the block would follow the audio from before the loss as if nothing was missing.
        """
        _check_count("AudioRing.mark_overflow", "next_samples", next_samples)
        with self._cond:
            self._overflows += 1
            lost = 0
            if self._points:  # before any audio there is no clock to measure the loss by
                predicted = self._sample_at_locked(int(t_next_end_ns))
                most = min(self.capacity, int(MAX_LOST_FILL_S * self.sample_rate))
                lost = min(max(0, predicted - self._head - int(next_samples)), most)
            self._reanchor = True  # the fit restarts from the points written from here on
            if lost:  # the zeros end where the next block starts
                self._fill_locked(lost, int(t_next_end_ns) - int(next_samples) * 1_000_000_000 // self.sample_rate)
            return lost

    def finish(self) -> None:
        """Mark the end of the stream: readers stop waiting for samples that will never come."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    # -- reader side -------------------------------------------------------------------
    @property
    def head(self) -> int:
        """Absolute index of the next sample to be written (= samples written so far)."""
        with self._cond:
            return self._head

    @property
    def overflows(self) -> int:
        """Number of overflows marked so far."""
        with self._cond:
            return self._overflows

    @property
    def finished(self) -> bool:
        """True after :meth:`finish` (end of a file or a closed source)."""
        with self._cond:
            return self._finished

    @property
    def block(self) -> int:
        """Samples in the longest audio block written over the last `fit_window_s` (0 before any):
        the source's block size as delivered (fill() does not count)."""
        with self._cond:
            return self._block_locked()

    def _block_locked(self) -> int:
        return max((n for _, n in self._blocks), default=0)

    def read(self, end_sample: int, n: int) -> tuple[np.ndarray, bool]:
        """Samples [end_sample - n, end_sample) as float32 (n,) and a gap flag (any sample missing).

        Samples that were never written (negative index or >= head), already overwritten
        (< head - capacity) or written by fill() come back as zeros and set the gap flag.
        """
        out, padded, _ = self.read_window(end_sample, n)
        return out, padded > 0

    def read_window(self, end_sample: int, n: int) -> tuple[np.ndarray, int, int]:
        """Samples [end_sample - n, end_sample) as float32 (n,), and two counts of samples:
        padded (zeros in place of audio: never written, overwritten or filled) and missed
        (those of them at index >= 0, i.e. after the stream's first sample: audio that was
        lost, has not arrived, or that the source filled)."""
        out = np.zeros(n, dtype=np.float32)
        start = int(end_sample) - n
        with self._cond:
            lo = max(start, self._head - self.capacity, 0)
            hi = min(int(end_sample), self._head)
            filled = 0
            if hi > lo:
                i = lo % self.capacity
                m = hi - lo
                first = min(m, self.capacity - i)
                out[lo - start : lo - start + first] = self._buf[i : i + first]
                out[lo - start + first : hi - start] = self._buf[: m - first]
                filled = sum(max(0, min(hi, b) - max(lo, a)) for a, b in self._fills)
        padded = n - max(0, hi - lo) + filled
        before_start = min(n, max(0, -start))  # never written: nothing existed to miss
        return out, padded, padded - before_start

    def sample_at(self, t_ns: int) -> int:
        """Absolute sample index that corresponds to clock time `t_ns`, from the drift fit.

        Before any audio arrived there is no anchor: returns 0 (stream start).
        """
        with self._cond:
            return self._sample_at_locked(t_ns)

    def _sample_at_locked(self, t_ns: int) -> int:
        if not self._points:
            return 0
        if self._fit is None:
            self._fit = self._fit_locked()
        t0, s0, slope = self._fit
        return int(round(s0 + (t_ns - t0) * slope))

    def _fit_locked(self) -> tuple[float, float, float]:
        nominal = self.sample_rate * 1e-9  # samples per ns
        pts = np.array(self._points, dtype=np.float64)  # (P, 2): sample index, t_ns
        s, t = pts[:, 0], pts[:, 1]
        t0 = t[-1]
        dt = t - t0  # small numbers keep float64 exact
        slope = nominal
        if len(pts) >= 3 and dt[-1] - dt[0] >= 1e9:  # a slope needs at least 1 s of span
            fitted = float(np.polyfit(dt, s, 1)[0])
            slope = min(max(fitted, 0.95 * nominal), 1.05 * nominal)  # a sound card is never 5 % off
        s0 = float(np.mean(s - slope * dt))  # intercept at t0 given the slope
        return t0, s0, slope

    def wait_for(self, t_ns: int, timeout: float) -> Coverage:
        """Wait up to `timeout` s until the audio written reaches one block before clock time `t_ns`
        (head >= sample - block); returns at once when it already does or the ring is finished."""
        deadline = time.monotonic() + timeout
        waited = False
        with self._cond:
            while True:
                sample = self._sample_at_locked(t_ns) if self._points else None
                ready = sample is not None and self._head >= sample - self._block_locked()
                left = deadline - time.monotonic()
                if ready or self._finished or left <= 0:
                    return Coverage(sample, self._head, ready, waited)
                waited = True
                self._cond.wait(left)


def _check_count(where: str, name: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"{where} needs a sample count {name} >= 0, got {n!r}")

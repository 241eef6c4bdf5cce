"""The live pipeline: capture -> pairer -> preprocess -> engine -> postprocess -> publisher.

One loop in the caller's thread; the capture sources run their own threads and store their
errors, which the loop re-raises (with the original as cause) as soon as it sees them.

    with Pipeline(capture, engine, publisher) as pipe:   # start(): sources start here
        snapshot = pipe.run(seconds=10)                  # or frames=N, or until the stream ends

The pipeline owns the engine's temporal feature cache (``engine.initial_cache()`` at start,
each output's cache fed back) and the stream's mask hysteresis (the manifest's
``thresholds.hysteresis``, :mod:`streamavs.engine.hysteresis`): what it publishes is the
probability after the hysteresis, to be cut at ``thresholds.mask``. Both start again (counted in
:attr:`Pipeline.context_resets`) when the source reconnects, its timestamps jump, or more than
CONTEXT_GAP_S pass between processed frames: a past that does not lead to the frame is no context.
Per-stage timings and counters live in :attr:`Pipeline.stats`
and travel in every message header (``stage_ms``, ``dropped``, ``audio_overflows``), with the
frame's actual audio window (``audio_window``) and, when part of it was zeros, ``audio_padded``.

With ``PipelineConfig(preview=PreviewConfig(fps))`` the loop also sends downscaled JPEG copies of
some frames on ``frame.<stream>`` for viewers; they are encoded in their own thread and sent
after the frame's mask (:mod:`streamavs.pipeline.preview`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from streamavs.audio import LogMel
from streamavs.capture.builders import Capture
from streamavs.pairing import Pair, Pairer
from streamavs.clock import now_ns, wall_time
from streamavs.engine.hysteresis import MaskHysteresis
from streamavs.errors import InputError
from streamavs.pipeline.config import PipelineConfig
from streamavs.pipeline.preview import FramePreview
from streamavs.pipeline.rate import next_slot
from streamavs.pipeline.stats import PipelineStats, StatsSnapshot
from streamavs.threads import limit_blas_threads

__all__ = ["PipelineConfig", "Result", "Pipeline", "preprocess_frame", "CONTEXT_GAP_S"]

CONTEXT_GAP_S = 2.0  # frames further apart than this do not share a temporal context (cache, hysteresis)


@dataclass(frozen=True)
class Result:
    """One processed frame, handed to the `on_result` callback (e.g. the overlay window/recorder).

    mask_prob: (h, w) float32 in [0, 1] at the engine's size, as published (zeros when gated).
    seq: the message's sequence number. stage_ms: this frame's stage durations (ms).
    """

    pair: Pair
    mask_prob: np.ndarray
    uncertainty: float
    sounding: float
    gated: bool
    seq: int
    stage_ms: dict[str, float]


def preprocess_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 RGB frame to `size` = (height, width) without keeping the aspect
    ratio (as AVSBench does): INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    import cv2

    h, w = size
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image)
    shrink = image.shape[0] >= h and image.shape[1] >= w
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)  # (h, w, 3)


class Pipeline:
    """Runs `engine` on `capture` and publishes every result with `publisher`.

    engine: a loaded :class:`streamavs.engine.Engine`. publisher: a bound
    :class:`streamavs.publish.Publisher`. on_result: called in the loop's thread after each
    message is sent. on_tick: called in the loop's thread with the pipeline at least every
    ``config.poll_s`` while a run goes on, whether frames arrive or not (the CLI's status line:
    :class:`streamavs.pipeline.status.StatusLine`). The pipeline owns capture, engine and
    publisher and closes them in :meth:`close`.
    """

    def __init__(
        self,
        capture: Capture,
        engine: Any,
        publisher: Any,
        config: PipelineConfig = PipelineConfig(),
        on_result: Callable[[Result], None] | None = None,
        on_tick: Callable[["Pipeline"], None] | None = None,
    ) -> None:
        try:
            self._setup(capture, engine, publisher, config, on_result, on_tick)
        except BaseException:  # owned from the call on: a refused pipeline leaves nothing open
            engine.close()
            publisher.close()
            raise

    def _setup(self, capture: Capture, engine: Any, publisher: Any, config: PipelineConfig,
               on_result: Callable[[Result], None] | None, on_tick: Callable[["Pipeline"], None] | None) -> None:
        audio_spec = engine.manifest.audio
        if capture.audio.sample_rate != audio_spec.params.sample_rate:
            raise InputError(
                f"engine {engine.name!r} expects audio at {audio_spec.params.sample_rate} Hz but the capture "
                f"delivers {capture.audio.sample_rate} Hz; build the AudioRing at the engine's rate"
            )
        self.capture = capture
        self.engine = engine
        self.publisher = publisher
        self.config = config
        self.on_result = on_result
        self.on_tick = on_tick
        self.stats = PipelineStats()
        self._logmel = LogMel(audio_spec.params)
        self._pairer = Pairer(
            capture.frames, capture.audio, window_s=audio_spec.window_s,
            max_wait_s=config.max_audio_wait_s, lossless=capture.lossless, hold_s=capture.audio_delay_s,
        )  # fmt: skip
        self._cache = engine.initial_cache()
        self._last_t_ns: int | None = None  # the last processed frame's stamp
        self._last_frame_s: float | None = None  # monotonic s: the last frame handed over (or the run's start)
        self._breaks = 0  # the source's reconnects + PTS discontinuities seen so far
        self.context_resets = 0  # times the temporal context was dropped (see _context_broken)
        limits = engine.manifest.thresholds
        self._hysteresis = MaskHysteresis(limits.mask, limits.hysteresis, limits.hysteresis_reset)  # this stream's
        self._engine_id = {"name": engine.name, "sha256": (engine.manifest.sha256 or "")[:12]}
        self._gate = float(limits.gate)
        self._threshold = float(limits.mask)
        self._stop = False
        self._started = False
        self._closed = False
        self._next_due: int | None = None  # rate limiter: stream time (ns) of the next frame to process
        self._period_ns = None if config.rate_hz is None else int(round(1e9 / config.rate_hz))
        self._stream_ended = False
        self._ended_on_its_own = False  # the last run was not stopped and raised nothing: its masks linger
        self._preview: FramePreview | None = None  # started in start(): it owns a thread

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        """Set thread counts and start the capture sources; returns self. Raises on a bad source."""
        if self._closed:
            raise InputError("this Pipeline is closed; build a new one to run again")
        if self._started:
            return self
        import cv2

        cv2.setNumThreads(int(self.config.cv2_threads))
        if self.config.blas_threads is not None:
            limit_blas_threads(self.config.blas_threads)
        if self.config.preview is not None:
            self._preview = FramePreview(self.config.preview)
        self.capture.start()
        self._started = True
        return self

    def stop(self) -> None:
        """End the current run after the current frame, or the next run at once if none is running
        (safe from a signal handler or another thread)."""
        self._stop = True

    def close(self) -> None:
        """Stop, then close the sources (threads joined), the engine and the publisher. Idempotent.

        After a run that ended on its own the publisher lingers up to ``config.linger_s``, so
        subscribers that are behind still receive the last masks; otherwise it drops what is queued."""
        if self._closed:
            return
        self._closed = True
        self._stop = True
        try:
            self.capture.close()
        finally:
            try:
                self.engine.close()
            finally:
                try:
                    if self._preview is not None:
                        self._preview.close()
                finally:
                    self.publisher.close(linger_s=self.config.linger_s if self._ended_on_its_own else 0.0)

    def __enter__(self) -> "Pipeline":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def seconds_without_frames(self) -> float:
        """Seconds since the loop last received a frame (processed or skipped for the rate), or since
        the current run started when none has come in it; 0.0 before the first run."""
        return 0.0 if self._last_frame_s is None else time.monotonic() - self._last_frame_s

    @property
    def ended(self) -> bool:
        """True when the last run ended because the stream ended (end of file)."""
        return self._stream_ended

    @property
    def ended_on_its_own(self) -> bool:
        """True when the last run ended without a stop request or an error: the stream ended, or its
        `frames` or `seconds` were reached (its masks linger on close)."""
        return self._ended_on_its_own

    # -- the loop --------------------------------------------------------------------------
    def run(self, *, frames: int | None = None, seconds: float | None = None) -> StatsSnapshot:
        """Process until `frames` frames were published, `seconds` passed, the stream ended, or
        :meth:`stop` was called (whichever comes first); returns the final stats snapshot.

        Re-raises a capture thread's error (StreamAVS errors as they are, others as SourceError).
        """
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
            raise InputError(f"frames must be a positive integer, got {frames!r}")
        if seconds is not None and not seconds > 0:
            raise InputError(f"seconds must be > 0, got {seconds!r}")
        if not self._started:
            self.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        target = None if frames is None else self.stats.frames + frames
        self._ended_on_its_own = False
        self._last_frame_s = time.monotonic()
        try:
            self._loop(target, deadline)
            self._send_previews(flush=True)  # the last frame's preview follows its mask
            self._ended_on_its_own = not self._stop
        finally:
            self._stop = False  # a stop request ends one run (it may come before the run starts)
            self._update_counters()  # also for the counters printed after an error
        return self.stats.snapshot()

    def _loop(self, target: int | None, deadline: float | None) -> None:
        while not self._stop:
            self._send_previews()
            if self.on_tick is not None:
                self.on_tick(self)
            if target is not None and self.stats.frames >= target:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not (self.capture.ended and len(self.capture.frames)):  # frames decoded before a failure still run
                self.capture.check()
            t_wait = now_ns()
            pair = self._pairer.next_pair(timeout=self.config.poll_s)
            if pair is None:
                if self.capture.ended and len(self.capture.frames) == 0:
                    self.capture.check()  # an error that ended the stream wins over a clean end
                    self._stream_ended = True
                    break
                self.publisher.heartbeat()
                self._update_counters()  # reconnects and drops stay current while no frame comes
                continue
            self._last_frame_s = time.monotonic()
            if not self._due(pair.frame.t_ns):
                self.stats.count_skipped()
                continue
            self._process(pair, t_wait)

    def _due(self, t_ns: int) -> bool:
        """Rate limiter on stream time: a frame is processed when it reaches the next slot."""
        if self._period_ns is None:
            return True
        nxt = next_slot(self._next_due, t_ns, self._period_ns)
        if nxt is None:
            return False
        self._next_due = nxt
        return True

    def _send_previews(self, flush: bool = False) -> None:
        """Send the preview frames encoded since the last call (flush: wait for the one in the encoder)."""
        if self._preview is None:
            return
        frames = self._preview.flush() if flush else self._preview.take()
        for f in frames:
            self.publisher.publish_frame(f.jpeg, shape=f.shape, t_capture=f.t_capture,
                                         quality=self._preview.config.quality, index=f.index)
        self.stats.count_previews(sent=len(frames), dropped=self._preview.dropped)

    def _update_counters(self) -> dict[str, int]:
        """Read the capture's counters into the stats; returns them."""
        c = self.capture.counters()
        self.stats.set_source_counters(
            dropped=c.get("drops", 0), audio_overflows=c.get("overflows", 0), reconnects=c.get("reconnects", 0)
        )
        return c

    def _context_broken(self, t_ns: int, counters: dict[str, int]) -> bool:
        """True when the temporal context (the engine's feature cache, the mask hysteresis) must start
        again: the source reconnected or its timestamps jumped (its `counters`), or more than
        CONTEXT_GAP_S (three processing periods with --rate) passed since the last processed frame."""
        breaks = counters.get("reconnects", 0) + counters.get("pts_jumps", 0)
        gap = max(CONTEXT_GAP_S * 1e9, 3 * (self._period_ns or 0))
        broken = breaks != self._breaks or (self._last_t_ns is not None and t_ns - self._last_t_ns > gap)
        self._breaks, self._last_t_ns = breaks, t_ns
        return broken

    def _process(self, pair: Pair, t_wait_ns: int) -> None:
        ms: dict[str, float] = {}
        t0 = now_ns()
        # Capture stage: stamp -> hand-over on a live clock; PTS stamps (fast files) say nothing
        # about real time, so there it is the pairer's own wait.
        start_ns = pair.frame.t_ns if self.capture.live_clock else t_wait_ns
        ms["capture"] = (t0 - start_ns) / 1e6

        frame = preprocess_frame(pair.frame.image, self.engine.frame_size)  # (h, w, 3) uint8
        log_mel = self._logmel.example_ending_at(pair.audio, pair.audio.size)  # (96, 64) float32
        if self._context_broken(pair.frame.t_ns, self._update_counters()):  # the past no longer leads to this frame
            self._cache = self.engine.initial_cache()
            self._hysteresis.restart()
            self.context_resets += 1
        t1 = now_ns()
        ms["preprocess"] = (t1 - t0) / 1e6

        out = self.engine.run(frame, log_mel, self._cache)
        self._cache = out.cache
        t2 = now_ns()
        ms["inference"] = (t2 - t1) / 1e6

        sounding = float(out.sounding)
        gated = self.config.gate and sounding < self._gate
        if gated:  # nothing published: the next mask is held against nothing it could be held to
            mask = np.zeros_like(out.mask_prob)
            self._hysteresis.restart()
        else:
            mask = self._hysteresis(out.mask_prob, sounding)  # the manifest's band; identity when it is 0
        uncertainty = float(np.mean(out.uncertainty))
        t3 = now_ns()
        ms["postprocess"] = (t3 - t2) / 1e6

        header_ms = dict(ms)
        last_publish = self.stats.last_stage_ms().get("publish")
        if last_publish is not None:
            header_ms["publish_prev"] = last_publish  # this message's own send time is not known yet
        snap_dropped, snap_overflows = self.stats.dropped, self.stats.audio_overflows
        seq = self.publisher.publish(
            mask, t_capture=pair.frame.wall_time,
            audio_window=(wall_time(pair.window_ns[0]), wall_time(pair.window_ns[1])),
            sounding=sounding, uncertainty=uncertainty, engine=self._engine_id, backend=self.engine.backend,
            stage_ms={k: round(v, 3) for k, v in header_ms.items()}, dropped=snap_dropped,
            audio_overflows=snap_overflows, encoding=self.config.encoding, threshold=self._threshold,
            audio_padded=pair.padded > 0,
        )  # fmt: skip
        t4 = now_ns()
        ms["publish"] = (t4 - t3) / 1e6
        ms["total"] = (t4 - start_ns) / 1e6
        self.stats.count_published()
        # Padding before the stream's first sample is the stream starting, not lost audio.
        self.stats.record_frame(ms, time.perf_counter(), audio_gap=pair.missed > 0, audio_waited=pair.waited)
        if self._preview is not None:  # after the mask: a copy, and the encoder's thread does the rest
            self._preview.offer(pair.frame)
        if self.on_result is not None:
            self.on_result(Result(pair, mask, uncertainty, sounding, gated, seq, ms))

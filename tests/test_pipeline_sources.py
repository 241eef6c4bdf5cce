"""The pipeline fed by capture sources that misbehave: a capture thread that fails and audio at a
rate the engine does not take (hand-written sources: real Source threads writing real rings), and
a recorded file with 30 s between two frames."""

from __future__ import annotations

import numpy as np
import pytest

from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.capture.base import Source
from streamavs.capture.builders import Capture
from streamavs.clock import now_ns, wall_time
from streamavs.errors import InputError, SourceError
from streamavs.pipeline import Pipeline
from streamavs.publish import Publisher


def load(path):
    from streamavs.audio import LogMelParams
    from streamavs.engine import load_engine

    return load_engine(path, audio_params=LogMelParams(), threads=1)


class _RingSource(Source):
    """A real Source writing into given rings from its own _run; the rings finish when it ends."""

    def __init__(self, frames: FrameRing, audio: AudioRing) -> None:
        super().__init__()
        self.frames, self.audio = frames, audio

    def _on_end(self) -> None:
        self.frames.finish()
        self.audio.finish()


class _Failing(_RingSource):
    """A real Source whose capture thread fails after a few frames (the pipeline must re-raise it)."""

    name = "failing"

    def _run(self) -> None:
        image = np.zeros((48, 64, 3), np.uint8)
        t0 = now_ns()
        self.audio.write(np.zeros(16000, np.float32), t0 + 200_000_000)
        for i in range(3):
            t = t0 + i * 40_000_000
            self.frames.push(VideoFrame(image, t, wall_time(t), i), block=True)
        raise RuntimeError("the device went away")


def test_an_error_in_a_capture_thread_surfaces_in_run_with_its_cause(tiny_engine):
    frames, audio = FrameRing(), AudioRing()
    capture = Capture((_Failing(frames, audio),), frames, audio, lossless=True, live_clock=False, description="failing")
    pub = Publisher("tcp://127.0.0.1:*")
    with Pipeline(capture, load(tiny_engine), pub) as pipe:
        with pytest.raises(SourceError, match="failing capture thread failed: RuntimeError: the device went away") as info:
            pipe.run()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert pipe.stats.frames <= 3


class _Gap(_RingSource):
    """Five frames, 30 s without any (a reconnect, a stalled URL), five more; audio all along."""

    name = "gap"

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        t0 = 10**12
        self.audio.write(rng.standard_normal(16000 * 40).astype(np.float32) * 0.1, t0 + 40 * 10**9)
        times = [t0 + 2 * 10**9 + i * 40_000_000 for i in range(5)] + [t0 + 32 * 10**9 + i * 40_000_000 for i in range(5)]
        for i, t in enumerate(times):
            self.frames.push(VideoFrame(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), t, wall_time(t), i), block=True)


def test_the_temporal_context_starts_again_after_a_gap(tiny_engine, tmp_path):
    """The frame after 30 s without frames (a recorded file) gets the initial cache (and a fresh
    hysteresis), not the features of frames from before the gap; frames in a row carry their cache on."""
    from media import make_gap_video

    from streamavs.capture.builders import media_capture

    engine = load(tiny_engine)
    fed = []
    run = engine.run
    engine.run = lambda frame, mel, cache: fed.append(np.abs(cache).sum()) or run(frame, mel, cache)
    capture = media_capture(make_gap_video(tmp_path), realtime=False)
    with Pipeline(capture, engine, Publisher("tcp://127.0.0.1:*")) as pipe:
        pipe.run()
    assert len(fed) == 10 and pipe.context_resets == 1
    assert fed[0] == fed[5] == 0.0, "the first frame and the first after the gap start from the initial cache"
    assert all(fed[i] > 0 for i in (1, 2, 3, 4, 6, 7, 8, 9))


def test_a_refused_pipeline_closes_the_engine_and_publisher_it_was_given(tiny_engine):
    """The pipeline owns both from the call on: refused (audio at another rate), it leaves neither
    open; the address is free again and the engine refuses to run."""
    from streamavs.errors import EngineError

    frames, audio = FrameRing(), AudioRing(sample_rate=48000)
    capture = Capture((_Gap(frames, audio),), frames, audio, lossless=True, live_clock=False, description="48 kHz")
    engine, pub = load(tiny_engine), Publisher("tcp://127.0.0.1:*")
    with pytest.raises(InputError, match="expects audio at 16000 Hz but the capture delivers 48000 Hz"):
        Pipeline(capture, engine, pub)
    with Publisher(pub.address):  # bound again: the refused pipeline released it
        pass
    with pytest.raises(EngineError, match="is closed"):
        engine.run(np.zeros((32, 32, 3), np.uint8), np.zeros((96, 64), np.float32), engine.initial_cache())

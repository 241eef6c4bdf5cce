"""Capture builders: the sources a run reads (file, live, synthetic) and the two rings they fill.

A :class:`Capture` bundles the running sources with the :class:`FrameRing` and
:class:`AudioRing` they write into, and says how the pairer must read them:

* ``lossless``: take every frame in order (files and synthetic scenes processed as fast as
  possible; the source waits for space instead of overwriting), else take the newest frame and
  count the older ones as drops (live).
* ``live_clock``: frame stamps are real capture instants on the monotonic clock (camera,
  microphone, real-time playback); for as-fast-as-possible playback they come from PTS, so the
  "capture" stage cannot be measured against them.
* ``audio_delay_s``: how much later the sound arrives than the frames of the same moment (a
  Bluetooth microphone); the pairer holds frames back that long (``Pairer(hold_s=...)``) and the
  frame ring has room for them.

The builders construct the sources but start nothing; :meth:`Pipeline.start` starts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamavs.buffers import AudioRing
from streamavs.frame_ring import FRAME_SLOTS, FrameRing
from streamavs.capture.base import Source
from streamavs.errors import StreamAVSError

__all__ = ["Capture", "media_capture", "live_capture", "synthetic_capture", "HELD_FPS"]

# The fastest camera a ring holding frames for a late microphone is sized for: audio_delay_s of frames
# at this rate, so that none is overwritten before its sound arrives.
HELD_FPS = 60


@dataclass
class Capture:
    """Sources (started by the pipeline) and the rings they fill; see the module docstring."""

    sources: tuple[Source, ...]
    frames: FrameRing
    audio: AudioRing
    lossless: bool
    live_clock: bool
    description: str
    fps: float | None = None  # nominal frame rate, when the source knows it (after start)
    audio_delay_s: float = 0.0  # the pairer's hold: how much later the sound arrives than the frames

    def start(self) -> None:
        """Start every source (opens devices/files in this thread: failures raise here)."""
        started: list[Source] = []
        try:
            for source in self.sources:
                source.start()
                started.append(source)
        except BaseException:
            for source in started:
                source.close()
            raise
        self.fps = self._nominal_fps()

    def _nominal_fps(self) -> float | None:
        for source in self.sources:
            fps = getattr(source, "fps", None)
            if isinstance(fps, (int, float)) and fps > 0:
                return float(fps)
            nominal = getattr(source, "nominal_fps", None)
            if isinstance(nominal, (int, float)) and nominal > 0:
                return float(nominal)
        return None

    def check(self) -> None:
        """Re-raise the first error stored by a source thread."""
        for source in self.sources:
            source.check()

    @property
    def ended(self) -> bool:
        """True once the frame stream has ended (end of file, or every source thread stopped)."""
        return self.frames.finished or all(s.eof for s in self.sources)

    def counters(self) -> dict[str, int]:
        """Summed source counters, plus ring-owned ones: drops (frame ring) and overflows (audio ring)."""
        total: dict[str, int] = {}
        for source in self.sources:
            for key, value in source.counters().items():
                if key != "drops":
                    total[key] = total.get(key, 0) + int(value)
        total["drops"] = self.frames.drops
        total["overflows"] = max(total.get("overflows", 0), self.audio.overflows)
        return total

    def close(self) -> None:
        """Close every source (each joins its thread within ~1 s); idempotent. Raises nothing."""
        for source in self.sources:
            try:
                source.close()
            except StreamAVSError:
                pass  # closing is best effort: the run's own error, if any, is what matters


def media_capture(path_or_url: str | Path, realtime: bool) -> Capture:
    """A file or URL decoded with PyAV. realtime=False: as fast as possible and lossless."""
    from streamavs.capture.media import MediaSource

    frames, audio = FrameRing(capacity=FRAME_SLOTS), AudioRing()
    lossless = not realtime
    source = MediaSource(path_or_url, realtime=realtime, lossless=lossless, frames=frames, audio=audio)
    pace = "real time" if realtime else "as fast as possible, every frame"
    return Capture((source,), frames, audio, lossless=lossless, live_clock=realtime, description=f"{path_or_url} ({pace})")


def live_capture(
    camera: int | str = 0, microphone: int | str | None = None, video_delay_s: float = 0.0, audio_delay_s: float = 0.0
) -> Capture:
    """A camera (OpenCV: index, file or URL) and a PortAudio microphone (index, name or default).

    video_delay_s: how late the camera's frames arrive (a network camera's encoder, network and
    decoder); their stamps are moved back by it so they pair with the sound of their moment.
    audio_delay_s: how late the microphone's sound arrives (Bluetooth); its stamps are moved back
    by it, and the pairer holds the frames back until their sound has arrived, so each frame's
    latency includes it. Only their difference matters: the CLI takes one of them.
    """
    from streamavs.capture.camera import CameraSource
    from streamavs.capture.microphone import MicrophoneSource

    audio = AudioRing()  # 10 s: the window of a frame stamped MAX_VIDEO_DELAY_S back
    mic_source = MicrophoneSource(microphone, ring=audio, audio_delay_s=audio_delay_s)  # checks the delay first
    frames = FrameRing(capacity=FRAME_SLOTS + math.ceil(audio_delay_s * HELD_FPS))
    sources = (CameraSource(camera, frames=frames, video_delay_s=video_delay_s), mic_source)
    mic = "default microphone" if microphone is None else f"microphone {microphone}"
    late = f" (frames {video_delay_s * 1000:.0f} ms late)" if video_delay_s else ""
    mic_late = f" (sound {audio_delay_s * 1000:.0f} ms late)" if audio_delay_s else ""
    return Capture(sources, frames, audio, lossless=False, live_clock=True,
                   description=f"camera {camera}{late} + {mic}{mic_late}", audio_delay_s=audio_delay_s)


def synthetic_capture(
    realtime: bool = True, seed: int = 0, fps: float = 15.0, clips: int | None = None, config: Any = None
) -> Capture:
    """The procedural synthetic scene as a live source (endless unless `clips`).

    config: a streamavs.synthetic.SceneConfig (None: its defaults).
    """
    from streamavs.capture.synthetic_live import SyntheticLiveSource

    frames, audio = FrameRing(capacity=FRAME_SLOTS), AudioRing()
    lossless = not realtime
    source = SyntheticLiveSource(
        config=config, seed=seed, fps=fps, realtime=realtime, lossless=lossless, clips=clips,
        frames=frames, audio=audio,
    )
    return Capture((source,), frames, audio, lossless=lossless, live_clock=realtime, description=f"synthetic scene (seed {seed})")

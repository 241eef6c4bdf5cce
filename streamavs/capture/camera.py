"""Camera capture with OpenCV: a device index, a video file, or a stream URL.

A grab thread reads as fast as the camera delivers, stamps each frame right after
``grab()`` returns, and pushes it into a :class:`FrameRing` that keeps only the newest
frames (a live camera never blocks). The real frame rate is measured over the last
frames. After a read failure on a live camera or URL the source reopens it with bounded
exponential backoff; a file simply ends (``eof``). A reopen is a reconnect only once a frame
arrives: a camera that still opens but sends nothing (a V4L2 device that stopped streaming, a
stream that answers without pictures) uses up the retries and ends the stream with an error
instead of being reopened forever.

A network camera's frames arrive after its encoder, the network and the decoder (0.1-0.5 s for
a typical IP camera) while a local microphone's sound arrives within milliseconds, so a frame
stamped on arrival would be paired with sound from after the moment it shows. ``video_delay_s``
moves every stamp back by that delay (``streamavs run --video-delay``); it cannot be negative,
because a frame cannot be paired with sound that has not arrived yet: a microphone later than the
camera (a Bluetooth one) is corrected on the microphone's side (``MicrophoneSource(audio_delay_s=...)``,
``streamavs run --audio-delay``), and the pairer holds the frames back until their sound is there.
"""

from __future__ import annotations

import collections
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.buffers import FrameRing, VideoFrame
from streamavs.capture.base import Source, local_path
from streamavs.clock import now_ns, wall_time
from streamavs.errors import InputError, SourceError

__all__ = ["CameraSource"]

_NO_CAMERA_ADVICE = "run with --input FILE to process a video file or URL, or --synthetic for the built-in synthetic scene"
_FIRST_BACKOFF_S = 0.1  # the wait before the first reopen; it doubles with each attempt up to max_backoff_s
# OpenCV's V4L2 backend takes no read-timeout property (CAP_PROP_READ_TIMEOUT_MSEC is for its FFmpeg and
# GStreamer backends): it waits this environment variable's whole seconds (default 10) for each frame of a
# camera that stopped streaming, and reads it once per process, on the first wait.
_V4L2_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"
# The longest video_delay_s accepted: half of AudioRing's default 10 s, so a frame's 1 s window stamped that far
# back is still held with room to spare; no camera worth running is later than this.
MAX_VIDEO_DELAY_S = 5.0


class CameraSource(Source):
    """OpenCV VideoCapture on `device` (int index, digit string, file path or URL).

    Files are paced at their nominal frame rate (like a camera). After a failed read the camera is
    reopened, waiting 0.1 s, 0.2 s, ... up to `max_backoff_s` before each attempt; `reconnect_attempts`
    attempts in a row that bring no frame back (it did not open, or opened and sent nothing) end the
    stream with a SourceError. `timeout_s` bounds opening a URL and each read of a URL or a V4L2 camera
    (for V4L2 in whole seconds, process-wide, unless OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT is already set).
    `video_delay_s` (0 to MAX_VIDEO_DELAY_S): how late frames arrive after the moment they show; every
    stamp is moved back by it.
    Counters: frames, drops (frame ring), reconnects (reopens after which frames came again),
    reconnect_failures (attempts that did not open, or opened and gave no frame).
    """

    name = "camera"

    def __init__(
        self,
        device: int | str = 0,
        frames: FrameRing | None = None,
        reconnect_attempts: int = 10,
        max_backoff_s: float = 2.0,
        timeout_s: float = 2.0,
        video_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= video_delay_s <= MAX_VIDEO_DELAY_S:  # also refuses NaN
            raise InputError(
                f"video delay must be 0 to {MAX_VIDEO_DELAY_S:g} s (how late the camera's frames arrive), got "
                f"{video_delay_s!r}; measure it by filming a clap and comparing picture and sound, or leave it at 0"
            )
        device = local_path(device) if isinstance(device, str) else device
        self.device: int | str = int(device) if isinstance(device, str) and device.isdigit() else device
        self.frames = frames if frames is not None else FrameRing(capacity=4)
        self.reconnect_attempts = reconnect_attempts
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._delay_ns = int(round(video_delay_s * 1e9))
        # a device node (/dev/video0) is a camera, opened like a camera index; other paths are video files
        self.is_device = isinstance(self.device, str) and self.device.startswith("/dev/")
        self.is_file = isinstance(self.device, str) and "://" not in self.device and not self.is_device
        self.nominal_fps: float | None = None
        self._cap: Any = None
        self._stamps: collections.deque[int] = collections.deque(maxlen=31)
        self._index = 0
        self._tries = 0  # reopen attempts since the last frame
        self._backoff_s = _FIRST_BACKOFF_S  # the wait before the next reopen attempt
        self._reopened = False  # reopened after a failure, and no frame since
        self._counters.update({"reconnect_failures": 0})

    # -- opening ---------------------------------------------------------------------------
    def _try_open(self) -> Any:
        """A VideoCapture that its backend reports opened, else None. Whether frames come is only known
        from the reads that follow (see _reconnect and _deliver)."""
        import cv2

        if isinstance(self.device, int) or self.is_device:
            cap = cv2.VideoCapture(self.device)  # the platform's camera backend (V4L2 on Linux)
        else:
            ms = int(self.timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(str(self.device), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _open(self) -> None:
        if self.is_file and not Path(str(self.device)).is_file():
            raise SourceError(f"video file '{self.device}' does not exist; check the path, or {_NO_CAMERA_ADVICE}")
        if self.is_device and not Path(str(self.device)).exists():
            raise SourceError(f"camera device '{self.device}' does not exist (ls /dev/video*); {_NO_CAMERA_ADVICE}")
        if isinstance(self.device, int) or self.is_device:  # read by OpenCV once per process, on its first wait
            os.environ.setdefault(_V4L2_TIMEOUT_ENV, str(max(1, math.ceil(self.timeout_s))))
        self._cap = self._try_open()
        if self._cap is None:
            what = f"camera {self.device}" if isinstance(self.device, int) or self.is_device else f"'{self.device}'"
            raise SourceError(f"cannot open {what} (no camera found, busy, or unreachable); {_NO_CAMERA_ADVICE}")
        import cv2

        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0 < fps < 1000 else None

    # -- grab thread ---------------------------------------------------------------------
    def _run(self) -> None:
        import cv2

        period_ns = int(1e9 / self.nominal_fps) if self.is_file and self.nominal_fps else 0
        next_ns = now_ns()
        try:
            while not self._stop.is_set():
                if period_ns:  # files play at their frame rate, like a camera
                    delay = (next_ns - now_ns()) * 1e-9
                    if delay > 0 and self._stop.wait(delay):
                        return
                    next_ns += period_ns
                ok = self._cap.grab()
                t_ns = now_ns() - self._delay_ns  # stamp on arrival, before decoding, less the known delay
                image = self._cap.retrieve()[1] if ok else None
                if image is None:
                    if self.is_file or self._stop.is_set():
                        return  # end of file
                    if not self._reconnect():
                        return
                    continue
                rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8
                self._deliver(rgb, t_ns)
        finally:
            cap, self._cap = self._cap, None
            if cap is not None:
                cap.release()

    def _deliver(self, rgb: np.ndarray, t_ns: int) -> None:
        if self._reopened:  # frames came back after a reopen: a reconnect (counted before the pipeline sees the frame)
            self._reopened, self._tries, self._backoff_s = False, 0, _FIRST_BACKOFF_S
            self._count("reconnects")
        self.frames.push(VideoFrame(image=rgb, t_ns=t_ns, wall_time=wall_time(t_ns), index=self._index))
        self._index += 1
        self._stamps.append(t_ns)
        self._count("frames")

    def _reconnect(self) -> bool:
        """Reopen after a failed read; True once reopened, False if closing.

        The attempts since the last frame carry over from call to call: a reopen whose first read fails
        is a failed attempt, not a reconnect (that is counted by _deliver when a frame arrives). Raises
        SourceError when `reconnect_attempts` attempts in a row brought no frame back."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._stamps.clear()
        if self._reopened:  # the last reopen opened but gave no frame
            self._reopened = False
            self._count("reconnect_failures")
        while self._tries < self.reconnect_attempts:
            self._tries += 1
            delay, self._backoff_s = self._backoff_s, min(2 * self._backoff_s, self.max_backoff_s)
            if self._stop.wait(delay):
                return False
            self._cap = self._try_open()
            if self._cap is not None:
                self._reopened = True
                return True
            self._count("reconnect_failures")
        lost = f"lost camera {self.device!r}" if self._index else f"camera {self.device!r} opened but sent no frame"
        raise SourceError(
            f"{lost}, and {self.reconnect_attempts} attempts to reopen it brought no frame (it did not open, or "
            f"opened and sent nothing); check the camera or stream, or {_NO_CAMERA_ADVICE}"
        )

    def _on_end(self) -> None:
        self.frames.finish()

    # -- consumer side ---------------------------------------------------------------------
    @property
    def fps(self) -> float | None:
        """Measured frame rate (Hz) over the last up to 30 frame intervals; None before 2 frames."""
        stamps = list(self._stamps)
        if len(stamps) < 2 or stamps[-1] == stamps[0]:
            return None
        return (len(stamps) - 1) * 1e9 / (stamps[-1] - stamps[0])

    def counters(self) -> dict[str, int]:
        """frames, drops (frame ring), reconnects, reconnect_failures, overflows (always 0)."""
        out = super().counters()
        out["drops"] = self.frames.drops
        return out

"""Camera capture with OpenCV: a device index, a video file, or a stream URL.

A grab thread reads as fast as the camera delivers, stamps each frame right after
``grab()`` returns, and pushes it into a :class:`FrameRing` that keeps only the newest
frames (a live camera never blocks). The real frame rate is measured over the last
frames. After a read failure on a live camera or URL the source reopens it with bounded
exponential backoff and counts the reconnects; a file simply ends (``eof``).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.buffers import FrameRing, VideoFrame
from streamavs.capture.base import Source
from streamavs.clock import now_ns, wall_time
from streamavs.errors import SourceError

__all__ = ["CameraSource"]

_NO_CAMERA_ADVICE = "run with --input FILE to process a video file or URL, or --synthetic for the built-in synthetic scene"


class CameraSource(Source):
    """OpenCV VideoCapture on `device` (int index, digit string, file path or URL).

    Files are paced at their nominal frame rate (like a camera). `reconnect_attempts` bounds
    the retries after a failure, waiting 0.1 s, 0.2 s, ... up to `max_backoff_s` between them.
    Counters: frames, drops (frame ring), reconnects, reconnect_failures.
    """

    name = "camera"

    def __init__(
        self,
        device: int | str = 0,
        frames: FrameRing | None = None,
        reconnect_attempts: int = 10,
        max_backoff_s: float = 2.0,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__()
        self.device: int | str = int(device) if isinstance(device, str) and device.isdigit() else device
        self.frames = frames if frames is not None else FrameRing(capacity=4)
        self.reconnect_attempts = reconnect_attempts
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        # a device node (/dev/video0) is a camera, opened like a camera index; other paths are video files
        self.is_device = isinstance(self.device, str) and self.device.startswith("/dev/")
        self.is_file = isinstance(self.device, str) and "://" not in self.device and not self.is_device
        self.nominal_fps: float | None = None
        self._cap: Any = None
        self._stamps: collections.deque[int] = collections.deque(maxlen=31)
        self._index = 0
        self._counters.update({"reconnect_failures": 0})

    # -- opening ---------------------------------------------------------------------------
    def _try_open(self) -> Any:
        """A VideoCapture that delivered its first frame is opened, else None."""
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
                t_ns = now_ns()  # stamp at capture, before decoding
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
        self.frames.push(VideoFrame(image=rgb, t_ns=t_ns, wall_time=wall_time(t_ns), index=self._index))
        self._index += 1
        self._stamps.append(t_ns)
        self._count("frames")

    def _reconnect(self) -> bool:
        """Reopen after a failure; True once frames can flow again, False if closing. Raises when out of retries."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._stamps.clear()
        delay = 0.1
        for _attempt in range(self.reconnect_attempts):
            if self._stop.wait(delay):
                return False
            self._cap = self._try_open()
            if self._cap is not None:
                self._count("reconnects")
                return True
            self._count("reconnect_failures")
            delay = min(2 * delay, self.max_backoff_s)
        raise SourceError(
            f"lost camera {self.device!r} and could not reopen it after {self.reconnect_attempts} attempts; "
            f"check the camera or stream, or {_NO_CAMERA_ADVICE}"
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

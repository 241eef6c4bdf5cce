"""Preview frames for viewers: downscaled JPEGs on the topic ``frame.<stream>``, off the frame loop.

The loop offers each processed frame; at most `fps` per second of stream time are taken (a
copy of the image, a few hundred kB), and a :class:`SinkWorker` thread downscales and encodes
them (OpenCV releases the GIL while it works). The encoded frames wait in a small list until
the loop sends them with its own publisher (a ZeroMQ socket belongs to one thread), after the
frame's mask. When the encoder is still busy with the previous frame, the new one is dropped
and counted: a preview never delays a mask.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from streamavs.buffers import VideoFrame
from streamavs.errors import InputError
from streamavs.pipeline.rate import next_slot
from streamavs.pipeline.worker import SinkWorker

__all__ = ["PreviewConfig", "EncodedFrame", "FramePreview"]


@dataclass(frozen=True)
class PreviewConfig:
    """Preview frames: at most `fps` per second of stream time, the longer side scaled down to at
    most `max_side` pixels (never up), JPEG `quality` 1-100."""

    fps: float
    max_side: int = 480
    quality: int = 75

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise InputError(f"the preview rate must be > 0 frames per second, got {self.fps!r}; e.g. --preview-fps 10")
        if isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or self.max_side < 16:
            raise InputError(f"the preview size must be an integer >= 16 pixels, got {self.max_side!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise InputError(f"the preview JPEG quality must be an integer in 1..100, got {self.quality!r}")


@dataclass(frozen=True)
class EncodedFrame:
    """One preview ready to send: `jpeg` of (H, W) = `shape`, for the frame at `t_capture` (Unix s)."""

    jpeg: bytes
    shape: tuple[int, int]
    t_capture: float
    index: int


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 image scaled so that its longer side is at most `max_side` (INTER_AREA), aspect kept."""
    import cv2

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 takes (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # (h', w', 3)


class FramePreview:
    """Takes frames at the preview rate, encodes them in a worker thread, hands them back to send.

    Use from the loop's thread: :meth:`offer` each processed frame, :meth:`take` what is encoded.
    ``offered`` counts frames taken for the preview, ``dropped`` those the busy encoder refused.
    :meth:`close` (idempotent) finishes the queued frame, stops the thread and re-raises its error.
    """

    def __init__(self, config: PreviewConfig) -> None:
        self.config = config
        self._period_ns = int(round(1e9 / config.fps))
        self._next_due: int | None = None
        self._lock = threading.Lock()
        self._ready: list[EncodedFrame] = []
        self.offered = 0
        self._worker = SinkWorker(self._encode, maxsize=1, name="preview")

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    def _due(self, t_ns: int) -> bool:
        nxt = next_slot(self._next_due, t_ns, self._period_ns)
        if nxt is None:
            return False
        self._next_due = nxt
        return True

    def offer(self, frame: VideoFrame) -> bool:
        """Queue `frame` for encoding when a preview is due at its stream time; False otherwise or
        when the encoder is busy (dropped). Never blocks; copies the image (the ring reuses it)."""
        if not self._due(frame.t_ns):
            return False
        self.offered += 1
        return self._worker.submit((np.array(frame.image, copy=True), frame.wall_time, frame.index))

    def _encode(self, item: tuple[np.ndarray, float, int]) -> None:
        """In the worker thread: downscale and JPEG-encode one frame."""
        from streamavs.protocol import encode_jpeg

        image, t_capture, index = item
        small = downscale(image, self.config.max_side)  # (h, w, 3) uint8
        encoded = EncodedFrame(encode_jpeg(small, self.config.quality), small.shape[:2], t_capture, index)
        with self._lock:
            self._ready.append(encoded)

    def take(self) -> list[EncodedFrame]:
        """The frames encoded since the last call, oldest first (re-raises the worker's error)."""
        self._worker.check()
        with self._lock:
            ready, self._ready = self._ready, []
        return ready

    def flush(self) -> list[EncodedFrame]:
        """Wait for the frame being encoded, then :meth:`take` (the end of a run sends its last preview)."""
        self._worker.wait_idle()
        return self.take()

    def close(self) -> None:
        """Finish the queued frame and stop the worker thread; re-raises its error. Idempotent."""
        self._worker.close()

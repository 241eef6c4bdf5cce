"""Draw a mask, its sounding score and uncertainty over a frame; show it or record it.

Used by ``streamavs run --show`` (an OpenCV window) and ``--record FILE`` (a video written
with PyAV); ``streamavs subscribe --show`` shows its masks in the same window. Everything here
works on RGB uint8 images; OpenCV windows get BGR at the last moment.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamavs.errors import InputError, MissingDependency

__all__ = ["draw_overlay", "check_display", "OverlayWindow", "OverlayRecorder"]

_MASK_RGB = np.array([255, 40, 40], dtype=np.float32)  # red tint for sounding pixels


def draw_overlay(
    image: np.ndarray,
    mask_prob: np.ndarray,
    *,
    sounding: float,
    uncertainty: float,
    threshold: float,
    gated: bool = False,
    alpha: float = 0.5,
) -> np.ndarray:
    """The frame with the mask tinted red, its outline, and a status line.

    image: (H, W, 3) uint8 RGB. mask_prob: (h, w) float probabilities in [0, 1] at any size
    (resized to H x W with bilinear interpolation). sounding, uncertainty: scalars in [0, 1].
    threshold: pixels with ``mask_prob >= threshold`` are tinted, the engine manifest's
    ``thresholds.mask`` (the same pixels a binary wire encoding marks).
    gated: the sounding gate emptied this mask (shown in the status line).
    Returns a new (H, W, 3) uint8 RGB image; the input is not modified.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"draw_overlay expects an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    prob = np.asarray(mask_prob, dtype=np.float32)
    if prob.ndim != 2:
        raise InputError(f"draw_overlay expects an (h, w) probability mask, got shape {prob.shape}")
    if prob.shape != (h, w):
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)  # (H, W)
    binary = prob >= threshold
    out = img.astype(np.float32)
    weight = (alpha * binary)[..., None]  # (H, W, 1)
    out = out * (1.0 - weight) + _MASK_RGB * weight
    out = np.clip(out, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
    text = f"sounding {sounding:.2f}  unc {uncertainty:.2f}" + ("  gated" if gated else "")
    scale = max(0.35, min(1.0, w / 640.0 * 0.6))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (min(w, tw + 8), th + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (4, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    # A bar along the bottom edge: sounding score as its length.
    bar = int(round(np.clip(sounding, 0.0, 1.0) * (w - 1)))
    cv2.rectangle(out, (0, h - 4), (bar, h - 1), (0, 255, 0) if not gated else (128, 128, 128), -1)
    return out


def check_display(instead: str) -> None:
    """Raise InputError when ``--show`` cannot open a window: Linux without DISPLAY or WAYLAND_DISPLAY.

    instead: the option to use instead, e.g. ``"--record FILE"``.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError(f"--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set; use {instead} instead")


class OverlayWindow:
    """An OpenCV window that shows images. Needs a display and OpenCV with GUI support.

    instead: the option the errors suggest when there is no display or no GUI support.
    """

    def __init__(self, title: str = "streamavs run", instead: str = "--record FILE to write the overlay video") -> None:
        check_display(instead)
        import cv2

        self._cv2 = cv2
        self.title = title
        self.instead = instead
        self._closed = False

    def show(self, rgb: np.ndarray) -> None:
        """Display one (H, W, 3) uint8 RGB image."""
        self.show_bgr(self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2BGR))

    def show_bgr(self, bgr: np.ndarray) -> None:
        """Display one (H, W, 3) uint8 BGR image (OpenCV's own order, e.g. from cv2.applyColorMap)."""
        cv2 = self._cv2
        try:
            cv2.imshow(self.title, bgr)
            cv2.waitKey(1)
        except cv2.error as exc:
            raise MissingDependency(
                f"--show needs OpenCV with GUI support ({exc.err}); install opencv-python instead of "
                f"opencv-python-headless, or use {self.instead}"
            ) from exc

    def close(self) -> None:
        """Destroy the window; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._cv2.destroyWindow(self.title)
        except self._cv2.error:
            pass  # never shown, or no GUI: nothing to destroy

    def __enter__(self) -> "OverlayWindow":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OverlayRecorder:
    """Writes overlay images to a video file with PyAV (H.264 when available, else MPEG-4 Part 2).

    fps: frame rate of the file's time base. Each write may give the frame's capture time
    `t_s` (seconds, any origin): frames are then placed at their real times on the fps grid
    (frames dropped upstream leave holes instead of speeding the video up); without it frames
    are consecutive. The frame size is taken from the first image; later images are resized.
    """

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        import av

        self.path = Path(path)
        if not self.path.parent.exists():
            raise InputError(f"--record {self.path}: the folder {self.path.parent} does not exist; create it first")
        if not fps > 0:
            raise InputError(f"the recording frame rate must be > 0, got {fps!r}")
        self._av = av
        try:
            self._container = av.open(str(self.path), mode="w")
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(
                f"cannot write a video to {self.path}: {exc}; use a name ending in .mp4, .mkv or .avi"
            ) from exc
        self._rate = Fraction(fps).limit_denominator(1001)
        self._stream = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        self._t0: float | None = None
        self._last_pts = -1
        self._closed = False

    def _open_stream(self, w: int, h: int) -> None:
        codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
        stream = self._container.add_stream(codec, rate=self._rate)
        stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        self._stream = stream
        self._size = (stream.width, stream.height)

    def write(self, rgb: np.ndarray, t_s: float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB image, captured at `t_s` seconds if given."""
        if self._closed:
            raise InputError("this OverlayRecorder is closed; create a new one to record again")
        if self._stream is None:
            self._open_stream(rgb.shape[1], rgb.shape[0])
        w, h = self._size
        if rgb.shape[:2] != (h, w):
            import cv2

            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        pts = self._last_pts + 1
        if t_s is not None:
            if self._t0 is None:
                self._t0 = t_s
            pts = max(pts, int(round((t_s - self._t0) * float(self._rate))))  # strictly increasing
        frame.pts = self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> "OverlayRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

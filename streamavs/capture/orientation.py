"""Upright pictures: the display rotation a video file states (a phone's portrait video).

A phone records its sensor's landscape picture and states in the stream's display matrix how it
must be turned to be seen upright (the ``rotate`` tag). Players, ffmpeg and OpenCV's file reader
apply it; a decoder's raw frames do not, so a frame from PyAV is turned here before anything sees
it (the engine, the overlay, a recording). Only quarter turns are applied, as ffmpeg's
``autorotate`` does; another angle is rounded to the nearest quarter turn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["upright"]


def upright(image: np.ndarray, rotation_deg: float) -> np.ndarray:
    """`image` (H, W, C) turned by `rotation_deg` counterclockwise (PyAV's ``VideoFrame.rotation``,
    the display matrix's angle); a contiguous (W, H, C) array for a quarter turn."""
    quarter_turns = round(rotation_deg / 90.0) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image

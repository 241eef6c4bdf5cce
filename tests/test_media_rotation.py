"""A phone's portrait video: the display rotation its stream states is applied to every frame.

The file is a real H.264 + AAC MP4 whose video stream carries a display matrix (ffmpeg's
``rotate`` tag, as a phone writes it); the reference picture is the first frame as ffmpeg itself
shows it (its decoder applies the rotation), so the check is against the player, not against
StreamAVS's own idea of which way is up.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from media import make_video

from streamavs.capture.media import MediaSource


def first_frame_as_ffmpeg_shows_it(ffmpeg: str, path) -> np.ndarray:
    """The first frame decoded and rotated by the ffmpeg command line, as (H, W, 3) uint8 RGB."""
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                            "rgb24", "-"], capture_output=True, check=True).stdout  # fmt: skip
    return np.frombuffer(raw, np.uint8)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_a_rotated_video_is_turned_upright_as_a_player_shows_it(tmp_path, ffmpeg, rotate):
    plain = make_video(tmp_path / "plain.mp4", seconds=1.0, fps=10, size="160x120")
    tagged = tmp_path / f"rotate{rotate}.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(plain), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}",
                    str(tagged)], check=True)  # fmt: skip
    with MediaSource(str(tagged), realtime=False, lossless=True) as src:
        first = src.frames.take(timeout=10.0, newest=False)
        src.check()
    assert first is not None
    shape = (120, 160, 3) if rotate == 180 else (160, 120, 3)
    assert first.image.shape == shape and first.image.flags.c_contiguous
    shown = first_frame_as_ffmpeg_shows_it(ffmpeg, tagged).reshape(shape)
    # The same decoded picture, turned the same way: equal but for the RGB conversion's rounding.
    assert np.abs(first.image.astype(int) - shown).mean() < 1.0
    # Turned the other way (or, for 180, not at all), which is this frame upside down, it would be far off.
    assert np.abs(np.rot90(first.image, 2).astype(int) - shown).mean() > 20.0

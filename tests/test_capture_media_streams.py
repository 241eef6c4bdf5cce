"""MediaSource on streams that change under it, made by ffmpeg: timestamps that restart (spliced
MPEG-TS), an audio format that changes mid-stream, a last audio frame of one sample, and a still
stretch of variable-frame-rate video (a gap that is real time, not a discontinuity)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from media import make_video

from streamavs.capture.media import MediaSource
from streamavs.pairing import Pairer

FPS = 10


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


def stream_pairs(path: Path, realtime: bool = False) -> tuple[list, dict]:
    """Every (frame, audio window) pair of `path` as the pipeline gets them, and the source's counters;
    re-raises the capture thread's error."""
    src = MediaSource(path, realtime=realtime, lossless=not realtime).start()
    pairer, pairs = Pairer(src.frames, src.audio, lossless=not realtime), []  # as the pipeline pairs a file
    try:
        while True:
            pair = pairer.next_pair(timeout=0.5)
            if pair is not None:
                pairs.append(pair)
            elif src.frames.finished and len(src.frames) == 0:
                break
        src.check()
        return pairs, src.counters()
    finally:
        src.close()


@pytest.fixture(scope="module")
def spliced(tmp_path_factory, ffmpeg) -> Path:
    """Two 2 s MPEG-TS files joined byte for byte: the second one's timestamps start again."""
    d = tmp_path_factory.mktemp("spliced")
    parts = [make_video(d / f"part{i}.ts", seconds=2.0, fps=FPS, onset_s=0.0, tone_hz=440.0 * (i + 1)) for i in (0, 1)]
    out = d / "spliced.ts"
    out.write_bytes(b"".join(p.read_bytes() for p in parts))
    return out


def test_timestamps_that_restart_continue_the_timeline_with_the_audio(spliced):
    pairs, counters = stream_pairs(spliced)
    t = np.array([p.frame.t_ns for p in pairs]) / 1e9
    assert len(pairs) == 2 * 2 * FPS and counters["pts_jumps"] == 1
    assert np.allclose(np.diff(t), 1 / FPS, atol=2e-3), "one frame period between frames, across the splice too"
    # Each window ends at its frame and holds the part's own tone: the second part's audio (880 Hz)
    # is paired with the second part's frames, not with a frozen time.
    second = pairs[2 * FPS + 12].audio[-4000:]
    spectrum = np.abs(np.fft.rfft(second))
    assert abs(np.argmax(spectrum) * 16000 / len(second) - 880.0) < 20.0
    assert all(p.window_ns[1] == p.frame.t_ns for p in pairs[FPS:])


def test_a_forward_jump_is_not_waited_out_in_real_time(tmp_path, ffmpeg):
    """The second part starts 28 s later: played at real time, the source does not sleep for 28 s."""
    parts = [make_video(tmp_path / f"p{i}.ts", seconds=1.0, fps=FPS) for i in (0, 1)]
    shifted = tmp_path / "shifted.ts"
    _ffmpeg("-i", str(parts[1]), "-c", "copy", "-output_ts_offset", "28", str(shifted))
    path = tmp_path / "jump.ts"
    path.write_bytes(parts[0].read_bytes() + shifted.read_bytes())
    pairs, counters = stream_pairs(path, realtime=True)  # would take ~29 s if the jump were waited out
    assert len(pairs) >= 2 * FPS - 2 and counters["pts_jumps"] == 1
    assert (pairs[-1].frame.t_ns - pairs[0].frame.t_ns) / 1e9 < 3.0


def test_an_audio_format_change_mid_stream_keeps_every_frame(tmp_path, ffmpeg):
    """MP2 decodes to int16 planar: stereo then mono made PyAV's resampler raise (it keeps its first format)."""
    parts = [make_video(tmp_path / f"c{ch}.ts", seconds=2.0, fps=FPS, channels=ch, acodec="mp2") for ch in (2, 1)]
    path = tmp_path / "layout.ts"
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    pairs, counters = stream_pairs(path)
    assert len(pairs) == 2 * 2 * FPS
    assert sum(p.missed > 0 for p in pairs) == 0 and counters["audio_samples"] > 3.5 * 16000


def test_a_last_audio_frame_of_one_sample(tmp_path, ffmpeg):
    """Stereo PCM whose last decoded frame holds one sample, shape (1, 2): it is one stereo sample, not
    two samples of one channel laid out channels-first."""
    path = tmp_path / "pcm.mkv"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration=1", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=16000", "-af", "atrim=end_sample=15361", "-ac", "2",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
            "-frame_size", "1024", str(path))  # fmt: skip
    pairs, counters = stream_pairs(path)
    assert len(pairs) == FPS and counters["audio_samples"] == 15361


def test_a_still_stretch_of_variable_frame_rate_video_is_real_time(tmp_path, ffmpeg):
    """No frame between 1 s and 3 s while the audio goes on: the later frames keep their time."""
    path = tmp_path / "vfr.mkv"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration=4", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=16000:duration=4", "-vf", "select='not(between(t,1,2.99))'",
            "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(path))  # fmt: skip
    pairs, counters = stream_pairs(path)
    t = (np.array([p.frame.t_ns for p in pairs]) - pairs[0].frame.t_ns) / 1e9
    assert len(pairs) == 2 * FPS and counters["pts_jumps"] == 0
    assert t[FPS] == pytest.approx(3.0, abs=0.02)


def test_a_spliced_stream_has_no_stated_audio_end_to_cut_its_audio_at(tmp_path, ffmpeg):
    """MPEG-TS states no duration: FFmpeg estimates one from the timestamps, which here cover the
    first part only (the second part's restart, and a new audio rate). Taken as the header's word,
    it filled the second part with silence and dropped its real audio; the end of the file is the
    only sign there, so every window after the first second is audio."""
    parts = []
    for i, (hz, rate) in enumerate(((440, 44100), (880, 48000))):
        parts.append(tmp_path / f"p{i}.ts")
        _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=15", "-f", "lavfi", "-i", f"sine=f={hz}:sample_rate={rate}",
                "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", str(parts[-1]))  # fmt: skip
    joined = tmp_path / "joined.ts"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    pairs, counters = stream_pairs(joined)
    assert len(pairs) == 2 * 3 * 15 and counters["pts_jumps"] == 1
    assert counters["audio_filled"] == counters["audio_dropped"] == 0, counters
    assert [p.frame.index for p in pairs[15:] if p.missed] == []

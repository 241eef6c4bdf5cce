"""`streamavs run --audio-delay SECONDS`: its refusals, and a real run with a clocked microphone.

The run is the live path end to end: OpenCV on a file paced like a camera, PortAudio on the clocked
ALSA test device (tests/c/clocked_pcm.c), the pairer holding frames back, the tiny ONNX engine and
ZeroMQ on loopback. The pairer itself is tested in tests/test_audio_delay.py.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from media import alsa_env, make_video, write_clocked_asoundrc
from test_run_cli import one_line_error, run_then_signal

DEVICE_BUFFER_S = 0.1  # the clocked test device's buffer (tests/c/clocked_pcm.c): the longest block it delivers


def test_audio_delay_refusals_say_what_to_do(capsys, tmp_path):
    mp4 = tmp_path / "clip.mp4"  # refused before anything opens it
    for other in ("--input", "--synthetic"):
        args = [other, mp4] if other == "--input" else [other]
        line = one_line_error(capsys, *args, "--audio-delay", "0.2")
        assert f"--audio-delay applies to --camera; {other} stamps picture and sound from one clock" in line
        assert "drop --audio-delay" in line
    line = one_line_error(capsys, "--video-delay", "0.5", "--audio-delay", "0.2")
    assert "only their difference matters" in line and "e.g. --video-delay 0.3" in line
    line = one_line_error(capsys, "--video-delay", "0.1", "--audio-delay", "0.3")
    assert "e.g. --audio-delay 0.2" in line
    line = one_line_error(capsys, "--audio-delay", "2")
    assert "audio delay must be 0 to 1 s" in line and "filming a clap" in line


@pytest.fixture(scope="module")
def long_mp4(tmp_path_factory, ffmpeg) -> Path:
    """10 s of the same picture and tone at 25 fps: a real-time run of it is still going when the test signals it."""
    return make_video(tmp_path_factory.mktemp("audio-delay") / "long.mp4", seconds=10.0, onset_s=1.0)


@pytest.mark.slow  # ~6 s: 4 s of a real-time run
def test_audio_delay_pairs_each_frame_with_its_own_sound_at_the_camera_rate(long_mp4, tiny_engine, tmp_path):
    """--audio-delay 0.3 with a microphone that has a clock: its samples are stamped 0.3 s before they
    arrive, so the sound of a frame's moment arrives 0.3 s after the frame. The pairer holds frames
    until it has: each mask's audio window ends at its capture time (within one audio block) and,
    once past the stream's first second, is audio, not padding; masks come at the camera's 25 fps,
    not one per 0.3 s; and each is published at least the delay after its capture time. Without the
    hold the window of the newest frame lacks its last 0.3 s and every mask is padded."""
    write_clocked_asoundrc(tmp_path)
    args = ["--camera", str(long_mp4), "--engine", str(tiny_engine), "--audio-delay", "0.3"]
    _out, err, received, returncode = run_then_signal(
        args, f"camera {long_mp4} + default microphone (sound 300 ms late) -> tcp://127.0.0.1:", signal.SIGTERM,
        env=alsa_env(tmp_path), masks=100,
    )
    assert returncode == 0, err
    # 100 masks of a 25 fps camera span at least 4 s: those 2.5 s after the first received are past the
    # delay, their 1 s window and the microphone opening after the camera.
    late = [m for m in received if m.t_capture - received[0].t_capture >= 2.5]
    assert len(late) >= 10, len(late)
    for m in late:
        # Within one block of t: the device's 10 ms periods, but a callback held up on a busy machine hands
        # over what gathered meanwhile, up to the device's 100 ms buffer (measured: 30.3 ms with other jobs
        # on both cores). Without the hold the window would end 0.3 s short.
        assert 0 <= m.t_capture - m.audio_window[1] <= DEVICE_BUFFER_S, m.t_capture - m.audio_window[1]
        assert not m.audio_padded
        assert m.t_publish - m.t_capture >= 0.3 - DEVICE_BUFFER_S  # the frame waited for its sound, less a block
    gaps = sorted(b.t_capture - a.t_capture for a, b in zip(late, late[1:]))
    assert gaps[len(gaps) // 2] <= 0.2, gaps  # the camera's 40 ms (dropped frames on a busy machine: 80-120), not 0.3 s

"""CameraSource with OpenCV on a real file, on a live MJPEG-over-HTTP stream from ffmpeg, and on
a fake IP camera (a small HTTP MJPEG server in a thread) that stalls."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from media import free_port, make_video
from http_servers import SERVED_FPS, stalling_mjpeg_server

from streamavs.capture.camera import CameraSource
from streamavs.clock import now_ns, wall_time
from streamavs.errors import InputError, SourceError


def serve_mjpeg(ffmpeg: str, port: int) -> subprocess.Popen:
    """ffmpeg serving a 15 fps test pattern as multipart JPEG to one HTTP client."""
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc=size=320x240:rate={SERVED_FPS}", "-f", "mpjpeg", "-q:v", "5",
         "-listen", "1", f"http://127.0.0.1:{port}/stream.mjpg"],
        stdin=subprocess.DEVNULL,
    )


def wait_for(pred, timeout: float, source: CameraSource | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if source is not None:
            source.check()
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_camera_on_a_file_plays_all_frames_at_its_rate(tmp_path, ffmpeg):
    path = make_video(tmp_path / "cam.mp4", seconds=1.0, fps=20, audio_rate=None)
    with CameraSource(str(path)) as cam:
        frames = []
        while (f := cam.frames.take(timeout=2.0)) is not None:
            frames.append(f)
        cam.check()
        fps = cam.fps
    assert cam.eof and cam.counters()["frames"] == 20
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert all(b.t_ns > a.t_ns for a, b in zip(frames, frames[1:]))
    # Paced on an absolute schedule from the first frame: never faster than the file's 20 fps; a
    # loaded machine only makes frames late, so the lower bound is generous.
    assert fps is not None and 10 < fps < 21


def test_video_delay_moves_every_stamp_back(tmp_path, ffmpeg):
    """A camera whose frames arrive 2 s late: each frame is stamped 2 s before it arrived. Taken as
    soon as it is pushed, a frame stamped on arrival would be well inside the last 2 s."""
    path = make_video(tmp_path / "cam.mp4", seconds=1.0, fps=20, audio_rate=None)
    started = now_ns()
    with CameraSource(str(path), video_delay_s=2.0) as cam:
        ages = []
        while (f := cam.frames.take(timeout=2.0)) is not None:
            ages.append(now_ns() - f.t_ns)
            assert time.time() - f.wall_time >= 2.0  # the published capture time moves too
            assert f.t_ns >= started - 2_000_000_000
            assert f.wall_time == pytest.approx(wall_time(f.t_ns), abs=1e-3)
        cam.check()
    assert len(ages) == 20 and min(ages) >= 2_000_000_000


@pytest.mark.parametrize("delay", [-0.1, 5.5, float("nan")])
def test_video_delay_out_of_range_is_refused_with_the_fix(delay):
    with pytest.raises(InputError, match=r"video delay must be 0 to 5 s .*got .*; measure it by filming a clap"):
        CameraSource(0, video_delay_s=delay)


def test_no_camera_names_input_and_synthetic():
    with pytest.raises(SourceError, match="--input FILE.*--synthetic") as info:
        CameraSource(97).start()  # no /dev/video97
    assert "\n" not in str(info.value)


def test_a_device_node_is_a_camera_not_a_missing_video_file():
    src = CameraSource("/dev/video97")
    assert src.is_device and not src.is_file
    with pytest.raises(SourceError, match=r"camera device '/dev/video97' does not exist \(ls /dev/video\*\); run with --input"):
        src.start()
    with pytest.raises(SourceError, match="cannot open camera /dev/null .*--input FILE"):
        CameraSource("/dev/null").start()  # exists, is no camera: opened by the camera backend, which refuses it


def test_live_mjpeg_stream_rate_and_reconnect(ffmpeg):
    port = free_port()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    server = serve_mjpeg(ffmpeg, port)
    cam = None
    try:
        deadline = time.monotonic() + 10
        while cam is None:  # the server needs a moment to listen
            try:
                cam = CameraSource(url, reconnect_attempts=8, max_backoff_s=0.5).start()
            except SourceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # The waits return as soon as the condition holds; their bounds are generous for a loaded machine.
        assert wait_for(lambda: cam.counters()["frames"] >= 25, 15, cam)
        # The rate the reader measures is the server's pace; a loaded machine can stall ffmpeg -re
        # and then deliver a burst, so the band is wide (a reader that lost or duplicated frames is far outside it).
        assert SERVED_FPS - 5 < cam.fps < SERVED_FPS + 5
        assert cam.frames.latest().image.shape == (240, 320, 3)

        server.kill()  # the stream goes away ...
        server.wait()
        time.sleep(0.3)
        server = serve_mjpeg(ffmpeg, port)  # ... and comes back on the same port
        before = cam.counters()["frames"]
        assert wait_for(lambda: cam.counters()["reconnects"] >= 1, 15, cam)
        assert wait_for(lambda: cam.counters()["frames"] >= before + 10, 15, cam)
        cam.check()

        cam.close()  # while the stream is still being served: the reader must not stay blocked in it
        assert wait_for(lambda: cam.eof, 10), "the capture thread did not end after close()"
        assert cam.error is None
    finally:
        if cam is not None:
            cam.close()  # idempotent; here only when an assert above failed
        server.kill()
        server.wait()


@pytest.mark.slow  # ~10 s: the reopen attempts and their backoff
def test_a_camera_that_reopens_but_sends_no_frame_ends_with_the_reconnect_error():
    """A fake IP camera sends 20 frames, hangs, and then answers every reconnect without a picture.
    Each reopen succeeds, and counting an open as a reconnect reset the retries: it was reopened
    forever, silently. Now a reopen counts only once a frame arrives, and `reconnect_attempts`
    reopens in a row without one end the stream with the reconnect error."""
    with stalling_mjpeg_server(frames=20) as url:
        cam = CameraSource(url, reconnect_attempts=3, max_backoff_s=0.2).start()
        try:
            # ~1.3 s of frames, the 2 s read timeout, then 3 reopens that each wait out the 2 s open timeout;
            # the bound is for a loaded machine. Reopens counted as reconnects pass the budget: stop waiting then.
            assert wait_for(lambda: cam.eof or cam.counters()["reconnects"] > 3, 60)
            counters = cam.counters()
            assert cam.eof, f"the camera is still being reopened: {counters}"
            with pytest.raises(SourceError, match=r"lost camera 'http://127\.0\.0\.1:\d+/stream\.mjpg', and 3 "
                                                  r"attempts to reopen it brought no frame .*--input FILE") as info:
                cam.check()
            assert "\n" not in str(info.value)
            assert counters["frames"] > 0 and counters["reconnects"] == 0 and counters["reconnect_failures"] == 3
        finally:
            cam.close()


def test_a_file_url_is_the_file_it_names(tmp_path, ffmpeg):
    """--camera file:///path is a video file (checked to exist, played at its rate), not a network stream."""
    path = make_video(tmp_path / "cam.mp4", seconds=0.5, fps=20, audio_rate=None)
    cam = CameraSource(f"file://{path}")
    assert cam.device == str(path) and cam.is_file
    with pytest.raises(SourceError, match=r"video file '.*missing.mp4' does not exist"):
        CameraSource(f"file://{tmp_path}/missing.mp4").start()

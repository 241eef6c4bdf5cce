"""MediaSource on URLs that stall, served by a real HTTP server on 127.0.0.1 in a thread.

PyAV stops FFmpeg with "Immediate exit requested" when a URL sends nothing in time; the source
turns that into one line saying what happened and what to check, and a stall part-way through
still hands over every frame decoded before it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from http_servers import stalling_server
from media import make_video

from streamavs.capture.media import URL_OPEN_TIMEOUT_S, URL_READ_TIMEOUT_S, MediaSource
from streamavs.errors import InputError, SourceError


@pytest.fixture(scope="module")
def clip_ts(tmp_path_factory, ffmpeg) -> Path:
    """4 s MPEG-TS, H.264 25 fps + AAC: a format that plays from any prefix (no index needed)."""
    return make_video(tmp_path_factory.mktemp("url") / "clip.ts", seconds=4.0)


def test_timeouts_are_named_constants_and_must_be_positive():
    src = MediaSource("http://127.0.0.1:1/x.ts")
    assert (src.open_timeout_s, src.read_timeout_s) == (URL_OPEN_TIMEOUT_S, URL_READ_TIMEOUT_S) == (10.0, 5.0)
    with pytest.raises(InputError, match="must be > 0 seconds.*leave them out for 10 s and 5 s"):
        MediaSource("http://127.0.0.1:1/x.ts", read_timeout_s=0)


def test_a_url_that_accepts_and_never_answers_fails_at_open_with_ffprobe_advice():
    with stalling_server(None) as url:
        src = MediaSource(url, open_timeout_s=1.0, read_timeout_s=1.0)
        with pytest.raises(SourceError) as info:
            src.start()
    message = str(info.value)
    assert message == (
        f"no answer from '{url}' within 1 s: the host did not answer, or the server accepted the connection "
        f"but sent no media; check the address and that it plays: ffprobe '{url}'"
    )
    assert "Immediate exit requested" not in message and "\n" not in message


def test_closing_during_a_stalled_read_still_closes_the_connection(clip_ts):
    """close() waits 1 s for the thread; a read blocked for the 3 s read timeout outlives that, and the
    thread closes the container when the read gives up (it used to stay open)."""
    data = clip_ts.read_bytes()
    with stalling_server(data[: len(data) // 2], total=len(data)) as url:
        src = MediaSource(url, realtime=False, open_timeout_s=5.0, read_timeout_s=3.0).start()
        deadline = time.monotonic() + 30
        while src.counters()["frames"] < 10 and time.monotonic() < deadline:  # then it reads into the stall
            time.sleep(0.05)
        src.close()
        src._thread.join(30)  # the read times out after 3 s
        assert not src._thread.is_alive() and src._container is None


def test_a_url_that_stalls_mid_stream_hands_over_every_frame_decoded_before_it(clip_ts):
    """The server sends the first half of the file and then nothing: the source hands over all
    frames decoded from that half, in order, then fails with the stall (not "the file may be truncated").
    The cut falls inside a packet, which the demuxer hands over cut before the read stalls; with this
    ffmpeg's clip it is an AAC packet that fails to decode, and that must not hide the stall."""
    data = clip_ts.read_bytes()
    with stalling_server(data[: len(data) // 2], total=len(data)) as url:
        with MediaSource(url, realtime=False, lossless=True, open_timeout_s=5.0, read_timeout_s=1.0) as src:
            frames = []
            deadline = time.monotonic() + 60  # a guard against a hang, far above the 1 s stall
            while time.monotonic() < deadline:
                frame = src.frames.take(timeout=0.5, newest=False)
                if frame is None and src.frames.finished:
                    break
                if frame is not None:
                    frames.append(frame)
            assert src.eof
            message = str(src.error)
            decoded, skipped = src.counters()["frames"], src.counters()["decode_errors"]
    assert isinstance(src.error, SourceError)
    assert message == (
        f"'{url}' stopped sending: no data for 1 s after {decoded} frames; the stream stalled: check the network "
        f"and the server (ffprobe '{url}'); the frames before it were processed"
    )
    assert 10 < decoded < 100  # part of the 4 s, 25 fps clip
    assert [f.index for f in frames] == list(range(decoded))  # every decoded frame reached the consumer, in order
    assert skipped <= 1  # at most the packet the stall cut (MPEG-TS hands it over), skipped instead of fatal


@pytest.mark.slow
def test_run_on_a_stalled_url_processes_the_frames_then_prints_counters_and_one_line(clip_ts, tiny_engine):
    """`streamavs run --input URL` with the default 5 s read timeout: every frame before the stall is
    published, the final counters come first, then the one-line error and exit 2."""
    data = clip_ts.read_bytes()
    with stalling_server(data[: len(data) // 2], total=len(data)) as url:
        proc = subprocess.run([sys.executable, "-m", "streamavs", "run", "--input", url, "--fast", "--engine",
                               str(tiny_engine), "--publish", "tcp://127.0.0.1:*"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"streamavs: error: '{re.escape(url)}' stopped sending: no data for 5 s after (\d+) "
                         rf"frames; .* \(ffprobe '{re.escape(url)}'\); the frames before it were processed", last)
    assert match, last
    decoded = int(match.group(1))
    assert decoded > 10 and "final (error):" in proc.stdout
    assert f"frames {decoded}  published {decoded}" in proc.stdout  # every frame before the stall ran

"""The end of a run: masks still queued in the publisher reach a subscriber that is behind.

Real parts: ZeroMQ on loopback, an ffmpeg-made MP4, the tiny ONNX engine. The subscriber takes one
message at a time off the wire (RCVHWM 1) and reads nothing until the run is over, while a backlog
of large masks (BACKLOG_MB, well past what the loopback socket buffers hold) keeps the publisher's
queue full; so when the publisher closes, most masks have not left it yet.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from media import make_mp4_tone

from streamavs.capture.builders import media_capture
from streamavs.pipeline import Pipeline, PipelineConfig
from streamavs.publish import Publisher, Subscriber

BACKLOG, SIDE = 16, 2048  # 16 masks of 2048 x 2048 u8: 64 MB
BACKLOG_MB = BACKLOG * SIDE * SIDE // 2**20
RECV_S = 30.0  # bounds the wait for a message that must arrive: recv returns as soon as it does
ENGINE = {"name": "tiny", "sha256": "0123abcd"}


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, ffmpeg) -> Path:
    """3 s, 25 fps H.264 + AAC: 75 frames."""
    return make_mp4_tone(tmp_path_factory.mktemp("linger-media"), seconds=3.0, onset_s=1.0)


def _behind() -> tuple[Publisher, Subscriber]:
    """A connected publisher and a subscriber that holds one message at a time and has not read the
    BACKLOG large masks published to it (seq 0 .. BACKLOG-1)."""
    pub = Publisher("tcp://127.0.0.1:*", sndhwm=1000)  # the queue holds backlog + run: nothing dropped by HWM
    sub = Subscriber(pub.address, rcvhwm=1)
    deadline = time.monotonic() + RECV_S  # liveness only: it returns as soon as a heartbeat arrives
    while sub.stats().heartbeats == 0:
        assert time.monotonic() < deadline, "subscriber never connected"
        pub.heartbeat(force=True)
        sub.recv(timeout=0.02)
    big = np.full((SIDE, SIDE), 0.25, dtype=np.float32)
    for _ in range(BACKLOG):
        pub.publish(big, t_capture=time.time(), audio_window=(0.0, 1.0), sounding=0.5, uncertainty=0.0,
                    engine=ENGINE, backend="test")
    return pub, sub


def _load(path: Path):
    from streamavs.audio import LogMelParams
    from streamavs.engine import load_engine

    return load_engine(path, audio_params=LogMelParams(), threads=1)


def test_closing_at_once_drops_what_is_queued():
    """LINGER 0 (a stopped run): masks the socket buffers did not take are lost. This is what the
    tests below rely on: with this backlog, the publisher still holds masks when it closes."""
    pub, sub = _behind()
    with sub:
        pub.close(linger_s=0.0)
        received = 0
        while sub.recv(timeout=1.0) is not None:  # what reached the buffers arrives within a second
            received += 1
    assert received < BACKLOG, f"the loopback buffers held all {BACKLOG_MB} MB: make the backlog larger"


def test_a_file_run_that_ends_delivers_every_mask_to_a_subscriber_that_is_behind(mp4, tiny_engine):
    pub, sub = _behind()
    with sub:
        # A generous linger: close() returns as soon as everything is delivered (the default is 2 s).
        pipe = Pipeline(media_capture(mp4, realtime=False), _load(tiny_engine), pub, PipelineConfig(linger_s=60.0))
        with pipe:
            snap = pipe.run()
            assert pipe.ended and snap.published == 75
            closer = threading.Thread(target=pipe.close)  # lingers while this thread reads, slowly
            closer.start()
            try:
                seqs = []
                for _ in range(BACKLOG + snap.published):
                    msg = sub.recv(timeout=RECV_S)
                    assert msg is not None, f"mask {len(seqs)} of {BACKLOG + snap.published} never arrived"
                    seqs.append(msg.seq)
            finally:
                closer.join()
    assert seqs == list(range(BACKLOG + snap.published))  # every mask, in order, the run's last ones too


def test_linger_is_a_non_negative_time():
    from streamavs.errors import InputError

    with pytest.raises(InputError, match=r"linger_s must be >= 0 seconds, got -1"):
        PipelineConfig(linger_s=-1)

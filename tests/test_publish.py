"""Publisher and Subscriber over real ZeroMQ sockets on 127.0.0.1 (ephemeral ports), a C
subscriber built with gcc + libzmq, and the `streamavs subscribe` command."""

from __future__ import annotations

import itertools
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from media import start_c_subscriber

from streamavs.errors import InputError, ProtocolError
from streamavs.protocol import ENCODINGS, decode_png, encode_heartbeat, encode_mask, encode_message
from streamavs.publish import Publisher, Subscriber, is_loopback
from test_protocol import hostile_messages

ENGINE = {"name": "tiny", "sha256": "0123abcd"}
ANY_PORT = "tcp://127.0.0.1:*"
RECV_S = 10.0  # bounds the wait for a message that must arrive: recv returns as soon as it does


def _publish(pub: Publisher, prob: np.ndarray, encoding: str = "u8") -> int:
    t = time.time()
    return pub.publish(
        prob, t_capture=t, audio_window=(t - 1.0, t), sounding=0.9, uncertainty=0.1,
        engine=ENGINE, backend="onnxruntime", stage_ms={"engine": 3.0}, encoding=encoding,
    )  # fmt: skip


def _join(send_heartbeat, sub: Subscriber, timeout: float = 30.0) -> None:
    """Send heartbeats until `sub` has one more: PUB drops messages until a subscription arrives."""
    before, deadline = sub.stats().heartbeats, time.monotonic() + timeout
    while sub.stats().heartbeats == before:
        if time.monotonic() > deadline:
            pytest.fail("the subscriber never received a heartbeat")
        send_heartbeat()
        sub.recv(timeout=0.02)


_HB_SEQ = itertools.count()  # heartbeats count up, as a publisher's do: a repeated seq is an error


def _raw_heartbeat(sock: zmq.Socket) -> None:
    sock.send_multipart(encode_heartbeat(stream="cam0", session="s1", seq=next(_HB_SEQ), t_publish=time.time()))


def _frames(seq: int, value: float = 0.5, session: str = "s1", stream: str = "cam0") -> list[bytes]:
    t = time.time()
    return encode_message(
        np.full((4, 4), value, np.float32), stream=stream, session=session, seq=seq, t_capture=t,
        t_publish=t, audio_window=(t - 1, t), sounding=0.5, uncertainty=0.2, engine=ENGINE,
        backend="torch", stage_ms={}, dropped=0, audio_overflows=0,
    )  # fmt: skip


def test_every_encoding_arrives_intact():
    rng = np.random.default_rng(1)
    with Publisher(ANY_PORT, stream="cam0") as pub, Subscriber(pub.address) as sub:
        _join(lambda: pub.heartbeat(force=True), sub)
        t_start = time.time()
        for i, enc in enumerate(ENCODINGS):
            prob = rng.random((15, 22), dtype=np.float32)
            assert _publish(pub, prob, enc) == i  # per-topic seq counts masks only
            msg = sub.recv(timeout=RECV_S)
            assert msg is not None and (msg.seq, msg.encoding, msg.stream) == (i, enc, "cam0")
            assert msg.session == pub.session and msg.engine == ENGINE
            expected = np.rint(prob * 255) / 255 if enc == "u8" else prob >= 0.5
            np.testing.assert_allclose(msg.mask, expected, atol=1e-6)
        span_ms = (time.time() - t_start) * 1000
        stats = sub.stats()
        assert (stats.received, stats.gaps, stats.restarts) == (4, 0, 0)
        assert 0 <= stats.latency_publish_ms["p50"] <= span_ms  # each was published and received within the loop


def test_stream_filter_is_exact_not_prefix(raw_pub):
    sock, address = raw_pub
    with Subscriber(address, stream="cam0") as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        sock.send_multipart(_frames(0, stream="cam01"))  # passes the SUB prefix filter "mask.cam0"
        sock.send_multipart(_frames(0, stream="cam0"))
        msg = sub.recv(timeout=RECV_S)
        assert msg.stream == "cam0" and sub.recv(timeout=0.05) is None


def test_latest_only_returns_newest_and_counts_superseded():
    with Publisher(ANY_PORT) as pub, Subscriber(pub.address, latest_only=True) as sub:
        _join(lambda: pub.heartbeat(force=True), sub)
        for i in range(5):
            _publish(pub, np.full((3, 3), i / 10, np.float32))
        deadline = time.monotonic() + 30  # superseded is counted where the newest is kept (received, before it)
        while sub.stats().superseded < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        msg = sub.recv(timeout=RECV_S)
        assert msg.seq == 4 and np.allclose(msg.mask, 0.4, atol=1 / 255)
        assert sub.recv(timeout=0.05) is None  # nothing newer
        assert sub.stats().superseded == 4


def _wrong_version(seq: int) -> list[bytes]:
    bad = _frames(seq)
    return [bad[0], bad[1].replace(b'"v":1', b'"v":9'), bad[2]]


@pytest.mark.parametrize("latest_only", [True, False])
def test_raise_mode_raises_each_protocol_error_once_then_goes_on(raw_pub, latest_only):
    sock, address = raw_pub
    with Subscriber(address, latest_only=latest_only, on_protocol_error="raise") as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        sock.send_multipart(_wrong_version(0))
        with pytest.raises(ProtocolError, match="speaks protocol v1, the message is v9"):
            sub.recv(timeout=RECV_S)
        sock.send_multipart(_frames(1))
        assert sub.recv(timeout=RECV_S).seq == 1  # not the same error again: the stream goes on
        assert sub.stats().protocol_errors == 1
    with pytest.raises(InputError, match="on_protocol_error must be one of skip, raise, got 'ignore'"):
        Subscriber(address, on_protocol_error="ignore")


@pytest.mark.parametrize("latest_only", [True, False])
def test_subscriber_survives_1000_malformed_messages(raw_pub, latest_only):
    """Each malformed message is counted and skipped; valid ones keep coming (both modes)."""
    sock, address = raw_pub
    hostile = [make() for name, (make, _) in hostile_messages().items() if "bomb" not in name]
    bad = [hostile[i % len(hostile)] for i in range(999)] + [_wrong_version(0)]
    with Subscriber(address, latest_only=latest_only, rcvhwm=0) as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        for frames in bad:
            sock.send_multipart(frames)
        for seq in range(3):
            sock.send_multipart(_frames(seq, value=seq / 4))
            msg = sub.recv(timeout=RECV_S)
            assert msg is not None and msg.seq == seq and np.allclose(msg.mask, seq / 4, atol=1 / 255)
        stats = sub.stats()
        assert (stats.protocol_errors, stats.received, stats.gaps) == (1000, 3, 0)
        assert "speaks protocol v1, the message is v9" in stats.last_protocol_error


def _peak_rss_mb(reset: bool = False) -> float:
    """Peak resident memory of this process in MB; `reset` restarts the peak at the current RSS
    (Linux /proc/self/clear_refs). Without /proc it is the peak since the process started."""
    try:
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_hostile_messages_do_not_grow_memory(raw_pub):
    """4-byte RLE of 20000x20000 and 65535x65535, PNG zlib bombs, deep JSON, a short IHDR ..."""
    sock, address = raw_pub
    hostile = [make() for make, _ in hostile_messages().values()]  # built before measuring
    with Subscriber(address, latest_only=True, rcvhwm=0) as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        before = _peak_rss_mb(reset=True)
        for frames in hostile:
            sock.send_multipart(frames)
        deadline = time.monotonic() + 30
        while sub.stats().protocol_errors < len(hostile) and time.monotonic() < deadline:
            time.sleep(0.01)
        growth = _peak_rss_mb() - before
        assert sub.stats().protocol_errors == len(hostile)
    assert growth < 50, f"peak resident memory grew by {growth:.0f} MB decoding {len(hostile)} hostile messages"


def test_address_in_use_names_address_and_suggests_another():
    with Publisher(ANY_PORT) as pub:
        port = int(pub.address.rsplit(":", 1)[1])
        with pytest.raises(InputError) as err:
            Publisher(pub.address)
    text = str(err.value)
    assert f"cannot publish on tcp://127.0.0.1:{port}: the address is already in use" in text
    assert f"--publish tcp://127.0.0.1:{port + 1}" in text


def test_remote_bind_needs_explicit_permission():
    with pytest.raises(InputError, match="allow_remote=True"):
        Publisher("tcp://0.0.0.0:5555")
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:5") and is_loopback("tcp://localhost:1")
    assert not any(map(is_loopback, ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.2:1", "tcp://eth0:1"]))
    with pytest.raises(InputError, match="looks like tcp://127.0.0.1:5555"):
        is_loopback("udp://127.0.0.1:5555")


def test_heartbeat_schedule_and_idempotent_close():
    # Asserted on lower bounds only: an hour cannot pass between two lines, 60 ms have passed after sleep(0.06).
    with Publisher(ANY_PORT, heartbeat_s=3600) as pub, Subscriber(pub.address) as sub:
        _join(lambda: pub.heartbeat(force=True), sub)
        assert pub.heartbeat() is False  # not due yet
        _publish(pub, np.zeros((2, 2), np.float32))  # received after every heartbeat sent while joining
        assert sub.recv(timeout=RECV_S).seq == 0
        before = sub.stats().heartbeats
        pub.heartbeat_s = 0.05
        time.sleep(0.06)
        _publish(pub, np.zeros((2, 2), np.float32))  # sends the due heartbeat first
        assert sub.recv(timeout=RECV_S).seq == 1
        assert sub.stats().heartbeats == before + 1
    pub.close()
    sub.close()
    with pytest.raises(InputError, match="closed"):
        pub.heartbeat(force=True)


# ------------------------------------------------------------------------------ C client
def _c_expectation(prob: np.ndarray, enc: str) -> str:
    h, w = prob.shape
    if enc == "u8":
        v = np.frombuffer(encode_mask(prob, "u8"), np.uint8).astype(np.uint64)
        ones, idxsum = int((v >= 128).sum()), int((np.arange(v.size, dtype=np.uint64) * v).sum())
    elif enc == "png":
        ones, idxsum = -1, 0
    else:
        on = np.flatnonzero((prob >= 0.5).ravel())  # row-major indices
        ones, idxsum = int(on.size), int(on.sum())
    tail = f" png_w={w} png_h={h}" if enc == "png" else ""
    return f"enc={enc} h={h} w={w} ones={ones} idxsum={idxsum}{tail}"


def test_c_subscriber_decodes_every_encoding(c_subscriber):
    rng = np.random.default_rng(2)
    masks = []
    for shape in [(1, 1), (3, 5), (17, 9), (224, 224)]:
        masks += [rng.random(shape, dtype=np.float32), np.zeros(shape, np.float32), np.ones(shape, np.float32)]
    sent = [(prob, enc) for prob in masks for enc in ENCODINGS]
    with Publisher(ANY_PORT) as pub:
        cmd = [str(c_subscriber), pub.address, str(len(sent)), "5000"]
        proc = start_c_subscriber(cmd, pub)
        try:
            seqs = [_publish(pub, prob, enc) for prob, enc in sent]
            out, _ = proc.communicate(timeout=20)
        finally:
            proc.kill() if proc.poll() is None else None
    lines = out.strip().splitlines()
    assert proc.returncode == 0, out
    assert lines[-1] == f"done {len(sent)}" and len(lines) == len(sent) + 1, out
    for line, seq, (prob, enc) in zip(lines[:-1], seqs, sent):
        assert line == f"mask seq={seq} {_c_expectation(prob, enc)}"


# ------------------------------------------------------------------------------ CLI
def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamavs", "subscribe", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_cli_subscribe_saves_pngs_and_reports(tmp_path):
    with Publisher(ANY_PORT) as pub:
        proc = _cli(pub.address, "--count", "3", "--save", str(tmp_path), "--interval", "0.2")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            _publish(pub, np.full((6, 8), 0.6, np.float32))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    final = [line for line in out.splitlines() if line.startswith("final:")]
    assert len(final) == 1 and re.search(r"masks 3 .* gaps 0 \(lost 0\)\s+missed at join \d+\s+restarts 0", final[0]), out
    files = sorted(tmp_path.glob("default-*.png"))
    assert len(files) == 3
    assert decode_png(files[0].read_bytes()).tolist() == [[153] * 8] * 6  # rint(0.6 * 255)


def test_cli_subscribe_exits_non_zero_on_protocol_error(raw_pub):
    sock, address = raw_pub
    proc = _cli(address, "--duration", "30")
    deadline = time.monotonic() + 30
    bad = _frames(0)
    while proc.poll() is None and time.monotonic() < deadline:
        sock.send_multipart([bad[0], bad[1].replace(b'"schema":"streamavs.mask"', b'"schema":"x"'), bad[2]])
        time.sleep(0.02)
    out, err = proc.communicate(timeout=5)
    assert proc.returncode == 2
    assert err.strip() == "streamavs: error: header schema must be 'streamavs.mask', got 'x'"
    final = [line for line in out.splitlines() if line.startswith("final:")]
    assert len(final) == 1 and "protocol errors 1" in final[0], out


def test_cli_subscribe_tolerate_counts_protocol_errors_and_goes_on(raw_pub):
    sock, address = raw_pub
    proc = _cli(address, "--count", "2", "--tolerate", "--latest-only", "--interval", "0.2")
    deadline, seq = time.monotonic() + 30, 0
    while proc.poll() is None and time.monotonic() < deadline:
        sock.send_multipart(_wrong_version(0))
        sock.send_multipart(_frames(seq))
        seq += 1
        time.sleep(0.02)
    out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    final = [line for line in out.splitlines() if line.startswith("final:")]
    # "masks" counts what the receive thread took: 2 or more (recv returned 2, newer ones may have come meanwhile)
    found = re.search(r"masks (\d+) .* protocol errors [1-9]", final[0]) if len(final) == 1 else None
    assert found and int(found.group(1)) >= 2, out
    assert "last protocol error: this client speaks protocol v1, the message is v9" in err


def test_cli_show_without_display_is_one_line_error():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = _cli("tcp://127.0.0.1:1", "--show", "--duration", "0.1", env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--show needs a display" in err and "--save DIR" in err and len(err.strip().splitlines()) == 1

"""Seq and session accounting of the Subscriber over real ZeroMQ sockets: gaps, masks missed at
join, seq going backwards, publisher restarts (the rules of docs/protocol.md, "Subscriber rules")."""

from __future__ import annotations

import numpy as np
import pytest

from streamavs.errors import ProtocolError
from streamavs.publish import Publisher, Subscriber
from media import free_port
from test_publish import ANY_PORT, RECV_S, _frames, _join, _publish, _raw_heartbeat


def test_gap_is_counted_by_seq(raw_pub):
    sock, address = raw_pub
    with Subscriber(address) as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        for seq in (0, 1, 5, 6):  # 2, 3, 4 were "lost"
            sock.send_multipart(_frames(seq))
        assert [sub.recv(timeout=RECV_S).seq for _ in range(4)] == [0, 1, 5, 6]
        stats = sub.stats()
        assert (stats.gaps, stats.lost, stats.restarts) == (1, 3, 0)


def test_masks_sent_before_the_first_one_received_are_counted_as_missed_at_join(raw_pub):
    sock, address = raw_pub
    with Subscriber(address) as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        for seq in (4, 5, 7):  # this session sent 0-3 before the subscriber got any, then lost 6
            sock.send_multipart(_frames(seq))
        sock.send_multipart(_frames(2, session="s2"))  # a restarted publisher: 0 and 1 of s2 missed too
        assert [sub.recv(timeout=RECV_S).seq for _ in range(4)] == [4, 5, 7, 2]
        stats = sub.stats()
        assert (stats.missed_at_join, stats.gaps, stats.lost, stats.restarts) == (4 + 2, 1, 1, 1)


def test_a_subscriber_that_joins_late_reports_what_it_missed():
    """A real Publisher sends masks with nobody listening, then a Subscriber joins: every mask of the
    session is either received or counted (missed at join, or lost in a gap), none silently."""
    prob = np.full((4, 4), 0.7, np.float32)
    with Publisher(ANY_PORT, stream="cam0") as pub:
        sent = sum(1 for _ in range(5) if _publish(pub, prob) >= 0)  # dropped by PUB: no subscriber yet
        with Subscriber(pub.address) as sub:
            _join(lambda: pub.heartbeat(force=True), sub)
            for _ in range(3):
                _publish(pub, prob)
                sent += 1
            got = [sub.recv(timeout=RECV_S) for _ in range(3)]
            stats = sub.stats()
    assert [m.seq for m in got] == [5, 6, 7]
    assert (stats.missed_at_join, stats.received, stats.lost) == (5, 3, 0)
    assert stats.missed_at_join + stats.received + stats.lost == sent


def test_seq_going_backwards_is_a_protocol_error(raw_pub):
    sock, address = raw_pub
    with Subscriber(address, on_protocol_error="raise") as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        sock.send_multipart(_frames(3))
        sock.send_multipart(_frames(2))
        assert sub.recv(timeout=RECV_S).seq == 3
        with pytest.raises(ProtocolError, match="seq went backwards on mask.cam0 within session s1: 3 then 2"):
            sub.recv(timeout=RECV_S)


def test_seq_going_backwards_is_skipped_and_resynchronised(raw_pub):
    """A message with a huge seq must not make every later message look old."""
    sock, address = raw_pub
    with Subscriber(address) as sub:
        _join(lambda: _raw_heartbeat(sock), sub)
        for seq in (10**15, 0, 1):
            sock.send_multipart(_frames(seq))
        assert [sub.recv(timeout=RECV_S).seq for _ in range(2)] == [10**15, 1]
        stats = sub.stats()
        assert (stats.protocol_errors, stats.received) == (1, 2)
        assert "seq went backwards on mask.cam0 within session s1: 1000000000000000 then 0" in stats.last_protocol_error


def test_publisher_restart_is_detected_by_session():
    with Publisher(ANY_PORT) as first:
        address = first.address
        sub = Subscriber(address)
        _join(lambda: first.heartbeat(force=True), sub)
        for _ in range(3):
            _publish(first, np.zeros((4, 4), np.float32))
        assert [sub.recv(timeout=RECV_S).seq for _ in range(3)] == [0, 1, 2]
    with sub, Publisher(address) as second:  # same port, new session, seq from 0 again
        assert second.session != first.session
        _join(lambda: second.heartbeat(force=True), sub)
        _publish(second, np.zeros((4, 4), np.float32))
        msg = sub.recv(timeout=RECV_S)
        assert (msg.session, msg.seq) == (second.session, 0)
        stats = sub.stats()
        assert (stats.restarts, stats.gaps, stats.received) == (1, 0, 4)


def test_reconnect_interval_is_set_on_the_socket_and_checked():
    import zmq

    from streamavs.errors import InputError

    with Subscriber(f"tcp://127.0.0.1:{free_port()}", reconnect_s=0.01) as sub:
        assert sub._sock.getsockopt(zmq.RECONNECT_IVL) == 10
    for bad in (0, -1, 61, True, "fast"):
        with pytest.raises(InputError, match=r"reconnect_s must be a number of seconds in \[0.001, 60\]"):
            Subscriber("tcp://127.0.0.1:5555", reconnect_s=bad)

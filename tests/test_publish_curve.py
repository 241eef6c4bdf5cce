"""CurveZMQ: only subscribers holding the publisher's public key receive, over real ZeroMQ
sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from streamavs.errors import InputError
from streamavs.publish import Publisher, Subscriber, generate_curve_keys, load_curve_key
from test_publish import ANY_PORT, RECV_S, _join, _publish


def test_curve_keys_restrict_subscribers(tmp_path):
    public, secret = generate_curve_keys(tmp_path / "server")
    other_public, _ = generate_curve_keys(tmp_path / "other")
    assert load_curve_key(secret, secret=True)[0] == load_curve_key(public, secret=False)[0]
    with (
        Publisher(ANY_PORT, curve_secret_key=secret) as pub,
        Subscriber(pub.address, curve_server_key=public) as good,
        Subscriber(pub.address) as plain,  # no key
        Subscriber(pub.address, curve_server_key=other_public) as wrong,
    ):
        _join(lambda: pub.heartbeat(force=True), good)
        for i in range(5):
            seq = _publish(pub, np.ones((4, 4), np.float32))
            assert good.recv(timeout=RECV_S).seq == seq == i
            assert plain.recv(timeout=0) is None and wrong.recv(timeout=0) is None
        for sub in (plain, wrong):  # given time: a handshake that failed open would have delivered by now
            assert sub.recv(timeout=1.0) is None
            assert (sub.stats().received, sub.stats().heartbeats) == (0, 0)


def test_curve_secret_key_as_z85_string():
    public, secret = zmq.curve_keypair()
    with Publisher(ANY_PORT, curve_secret_key=secret.decode()) as pub:
        with Subscriber(pub.address, curve_server_key=public) as sub:
            _join(lambda: pub.heartbeat(force=True), sub)
    with pytest.raises(InputError, match="does not exist; create a pair"):
        Publisher(ANY_PORT, curve_secret_key="no/such/server.key_secret")

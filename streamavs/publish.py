"""Publisher of the mask stream (ZeroMQ PUB, wire protocol v1); the Subscriber is in streamavs.subscriber.

Threading: a ZeroMQ socket is used by one thread only. The Publisher has no thread of its
own; it sends a heartbeat from `publish()` when one is due and from `heartbeat()`, which the
pipeline's loop calls while it has no mask to send.

CurveZMQ: a publisher given its secret key encrypts the stream, and only subscribers that
hold the matching *public* key can connect (no ZAP allow-list: any client key is accepted).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import zmq

from streamavs.errors import InputError
from streamavs.protocol import (
    DEFAULT_THRESHOLD,
    FRAME_PREFIX,
    HEARTBEAT_PREFIX,
    MASK_PREFIX,
    check_stream_name,
    encode_frame,
    encode_heartbeat,
    encode_message,
)
from streamavs.transport import (  # noqa: F401  (re-exported: one import path for users)
    DEFAULT_ADDRESS,
    _next_port_hint,
    check_port,
    generate_curve_keys,
    is_loopback,
    load_curve_key,
)

class Publisher:
    """Binds a PUB socket and sends mask messages and heartbeats (protocol v1).

    >>> with Publisher("tcp://127.0.0.1:*") as pub:  # doctest: +SKIP
    ...     pub.publish(prob, t_capture=t, audio_window=(t - 1, t), sounding=0.9, ...)
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        stream: str = "default",
        allow_remote: bool = False,
        curve_secret_key: str | bytes | Path | None = None,
        sndhwm: int = 100,
        heartbeat_s: float = 1.0,
    ) -> None:
        self.stream = check_stream_name(stream)
        if not allow_remote and not is_loopback(address):
            raise InputError(
                f"binding {address} would expose the mask stream beyond this machine; pass "
                "allow_remote=True to mean it (the CLI does so when --publish names a non-loopback "
                "address), or publish on tcp://127.0.0.1:5555"
            )
        self.session = secrets.token_hex(8)
        self.heartbeat_s = float(heartbeat_s)
        self._seq: dict[str, int] = {}
        self._last_hb = -float("inf")
        self._closed = False
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.SNDHWM, int(sndhwm))
            if curve_secret_key is not None:
                _, secret = load_curve_key(curve_secret_key, secret=True)
                self._sock.curve_secretkey = secret
                self._sock.curve_server = True
            try:
                self._sock.bind(check_port(address))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EADDRINUSE:
                    raise InputError(
                        f"cannot publish on {address}: the address is already in use by another "
                        f"program; choose a free port, e.g. --publish {_next_port_hint(address)}"
                    ) from exc
                raise InputError(f"cannot bind the mask stream to {address}: {exc}") from exc
            self.address: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)  # real port for ":*"
        except BaseException:
            self.close()
            raise

    def _next_seq(self, topic: str) -> int:
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        return seq

    def _send(self, frames: list[bytes]) -> None:
        if self._closed:
            raise InputError("this Publisher is closed; create a new one to publish again")
        # copy=True: ZeroMQ gets its own copy, so no caller buffer is ever shared with the I/O thread.
        self._sock.send_multipart(frames, copy=True)

    def heartbeat(self, *, force: bool = False) -> bool:
        """Send a heartbeat if one is due (every `heartbeat_s`) or `force`; True when sent."""
        now = time.monotonic()
        if not force and now - self._last_hb < self.heartbeat_s:
            return False
        self._last_hb = now
        topic = HEARTBEAT_PREFIX + self.stream
        seq = self._next_seq(topic)
        self._send(encode_heartbeat(stream=self.stream, session=self.session, seq=seq, t_publish=time.time()))
        return True

    def publish(
        self,
        mask_prob: np.ndarray,
        *,
        t_capture: float,
        audio_window: tuple[float, float],
        sounding: float,
        uncertainty: float,
        engine: Mapping[str, str],
        backend: str,
        stage_ms: Mapping[str, float] | None = None,
        dropped: int = 0,
        audio_overflows: int = 0,
        encoding: str = "u8",
        threshold: float = DEFAULT_THRESHOLD,
        audio_padded: bool = False,
    ) -> int:
        """Send one (H, W) probability mask (float in [0, 1]); times are Unix seconds.

        Returns the message's seq. PUB never blocks: past SNDHWM queued messages per
        subscriber, ZeroMQ drops new ones and subscribers see a seq gap.
        """
        self.heartbeat()
        topic = MASK_PREFIX + self.stream
        seq = self._seq.get(topic, 0)
        frames = encode_message(
            mask_prob, stream=self.stream, session=self.session, seq=seq, t_capture=t_capture,
            t_publish=time.time(), audio_window=audio_window, sounding=sounding, uncertainty=uncertainty,
            engine=engine, backend=backend, stage_ms=stage_ms or {}, dropped=dropped,
            audio_overflows=audio_overflows, encoding=encoding, threshold=threshold, audio_padded=audio_padded,
        )  # fmt: skip
        self._send(frames)
        self._seq[topic] = seq + 1  # only a message that was sent consumes a seq
        return seq

    def publish_frame(
        self, jpeg: bytes, *, shape: tuple[int, int], t_capture: float, quality: int, index: int | None = None
    ) -> int:
        """Send one JPEG preview frame on ``frame.<stream>`` (an addition to v1 that v1 clients
        never subscribe to); returns its seq, counted on its own topic.

        `shape` is the JPEG's (H, W); `t_capture` must be the number sent with the frame's mask
        (viewers pair the two by equality). Frames are dropped like masks past SNDHWM.
        """
        topic = FRAME_PREFIX + self.stream
        seq = self._seq.get(topic, 0)
        self._send(encode_frame(
            jpeg, stream=self.stream, session=self.session, seq=seq, t_capture=t_capture,
            t_publish=time.time(), shape=shape, quality=quality, index=index,
        ))  # fmt: skip
        self._seq[topic] = seq + 1
        return seq

    def close(self, linger_s: float = 0.0) -> None:
        """Close the socket and context; idempotent.

        linger_s: the longest messages still queued may take to reach the connected subscribers
        before they are dropped (seconds; 0: dropped at once, as after Ctrl-C). It bounds the wait
        for a subscriber that is behind or gone; one that keeps up costs nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._sock.close(linger=max(0, int(round(linger_s * 1000))))  # ms
        self._ctx.term()  # returns when the queued messages are sent or the linger ran out

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The Subscriber lives in streamavs.subscriber; re-exported so both ends import from here.
from streamavs.subscriber import Subscriber, SubscriberStats  # noqa: E402,F401

"""Subscriber of the mask stream (ZeroMQ SUB, wire protocol v1): gaps, restarts, latency, latest-only.

Threading: the latest-only mode runs one receive thread that owns its socket; the consumer never
touches that socket, and an unexpected exception in the thread is re-raised by the consumer's
recv() (every call: the thread has stopped).

Preview frames: ``frames=True`` also subscribes to ``frame.<stream>`` (JPEG previews, an addition
to v1); they are checked, counted (``stats().frames``) and returned by :meth:`Subscriber.recv_any`,
which hands over every message in arrival order (plain mode only); :meth:`Subscriber.recv` still
returns masks only.

Malformed messages: the publisher side is not trusted. A message that breaks protocol v1 or the
subscriber's DecodeLimits is a ProtocolError that is counted (``stats().protocol_errors``, the
text of the last one in ``stats().last_protocol_error``) and skipped, in both modes, so one bad
message never stops the stream; ``on_protocol_error="raise"`` hands each one to recv() instead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import zmq

from streamavs.errors import InputError, ProtocolError
from streamavs.protocol import (
    DEFAULT_LIMITS,
    FRAME_PREFIX,
    FrameMessage,
    HEARTBEAT_PREFIX,
    MASK_PREFIX,
    DecodeLimits,
    Heartbeat,
    MaskMessage,
    check_stream_name,
    decode_message,
)
from streamavs.transport import DEFAULT_ADDRESS, check_port, load_curve_key

ON_PROTOCOL_ERROR = ("skip", "raise")
MAX_TRACKED_TOPICS = 1024  # seq counters kept per session; the oldest is forgotten beyond this
DEFAULT_RECONNECT_S = 0.1  # ZeroMQ's own default RECONNECT_IVL
MAX_LATENCY_S = 1e12  # ~31,700 years: samples beyond it (any finite stamp passes protocol v1) are left out


@dataclass(frozen=True)
class SubscriberStats:
    """A snapshot of what a Subscriber has seen. Latencies in milliseconds (recent messages)."""

    received: int
    heartbeats: int
    rate_hz: float  # masks per second over the last ~2 s
    mean_rate_hz: float  # masks per second from the first to the last mask
    gaps: int  # seq jumps on mask topics
    lost: int  # masks missing in those jumps
    restarts: int  # publisher session changes
    superseded: int  # latest-only: masks replaced by a newer one before the consumer took them
    latency_capture_ms: dict[str, float]  # now - t_capture: p50, p90, p99, max
    latency_publish_ms: dict[str, float]  # now - t_publish
    protocol_errors: int  # malformed messages rejected (ProtocolError), skipped or raised
    last_protocol_error: str | None  # the text of the last of them
    frames: int = 0  # preview frames received (frames=True)
    # masks a publisher session sent before the first one this subscriber received (the first seq
    # seen, per stream and session): a subscriber that joins a running stream, or ZeroMQ's "slow
    # joiner" (PUB drops what it sends before a new subscription has arrived), not a gap
    missed_at_join: int = 0


def _percentiles(samples: deque) -> dict[str, float]:
    if not samples:
        return {}
    a = np.asarray(samples, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(a.max())}


class _Tracker:
    """Counts rate, latency, seq gaps and session changes; thread-safe."""

    def __init__(self, window: int = 10_000) -> None:
        self.lock = threading.Lock()
        self.session: str | None = None
        self.last_seq: dict[str, int] = {}
        self.received = self.heartbeats = self.frames = self.gaps = self.lost = self.restarts = self.superseded = 0
        self.missed_at_join = 0
        self.protocol_errors = 0
        self.last_protocol_error: str | None = None
        self.arrivals: deque = deque(maxlen=window)
        self.first_arrival: float | None = None
        self.lat_capture: deque = deque(maxlen=window)
        self.lat_publish: deque = deque(maxlen=window)

    def update(self, msg: MaskMessage | Heartbeat | FrameMessage, now: float, mono: float) -> None:
        """Account a decoded message; raises ProtocolError when its seq goes backwards."""
        is_mask = isinstance(msg, MaskMessage)
        is_frame = isinstance(msg, FrameMessage)
        topic = (MASK_PREFIX if is_mask else FRAME_PREFIX if is_frame else HEARTBEAT_PREFIX) + msg.stream
        with self.lock:
            if msg.session != self.session:
                self.restarts += self.session is not None
                self.session = msg.session
                self.last_seq.clear()  # a new publisher counts from 0 again
            last = self.last_seq.pop(topic, None)  # re-inserted below: the dict keeps recent topics last
            self.last_seq[topic] = msg.seq  # also after a backwards seq: resynchronise, so that one
            # hostile message with a huge seq cannot make every later message look old
            if len(self.last_seq) > MAX_TRACKED_TOPICS:  # hostile stream names cannot grow memory
                del self.last_seq[next(iter(self.last_seq))]
            if last is not None and msg.seq <= last:
                raise ProtocolError(
                    f"seq went backwards on {topic} within session {msg.session}: {last} then {msg.seq} "
                    "(the message is skipped; later messages are compared with its seq)"
                )
            if is_frame:
                self.frames += 1
                return
            if not is_mask:
                self.heartbeats += 1
                return
            if last is None:
                self.missed_at_join += msg.seq  # seq counts from 0 in every session
            elif msg.seq > last + 1:
                self.gaps += 1
                self.lost += msg.seq - last - 1
            self.received += 1
            self.arrivals.append(mono)
            if self.first_arrival is None:
                self.first_arrival = mono
            for samples, t in ((self.lat_capture, msg.t_capture), (self.lat_publish, msg.t_publish)):
                if abs(now - t) < MAX_LATENCY_S:  # no clock is that far off; it would overflow the ms
                    samples.append(now - t)

    def reject(self, error: ProtocolError) -> None:
        with self.lock:
            self.protocol_errors += 1
            self.last_protocol_error = str(error)

    def snapshot(self) -> SubscriberStats:
        with self.lock:
            now = time.monotonic()
            recent = [t for t in self.arrivals if now - t <= 2.0]
            span = now - recent[0] if len(recent) > 1 else 0.0
            rate = (len(recent) - 1) / span if span > 0 else 0.0
            total = self.arrivals[-1] - self.first_arrival if self.received > 1 else 0.0
            mean = (self.received - 1) / total if total > 0 else 0.0
            return SubscriberStats(
                received=self.received, heartbeats=self.heartbeats, rate_hz=rate, mean_rate_hz=mean,
                gaps=self.gaps, lost=self.lost, restarts=self.restarts, superseded=self.superseded,
                latency_capture_ms=_percentiles(self.lat_capture),
                latency_publish_ms=_percentiles(self.lat_publish),
                protocol_errors=self.protocol_errors, last_protocol_error=self.last_protocol_error,
                frames=self.frames, missed_at_join=self.missed_at_join,
            )  # fmt: skip


class Subscriber:
    """Connects a SUB socket to a publisher and yields decoded MaskMessages.

    `latest_only`: a receive thread decodes everything (so gaps and restarts are still
    counted) but keeps only the newest mask; `recv` returns it, older unread ones are counted
    as `superseded`. An unexpected error in that thread is re-raised by every later `recv`.

    `limits`: what one message may make the decoder allocate (largest mask in pixels, header
    bytes and JSON depth; see DecodeLimits and docs/protocol.md "Limits").

    `on_protocol_error`: what a malformed message does (one that breaks protocol v1 or
    `limits`, or whose seq goes backwards). Either way it is counted in
    ``stats().protocol_errors`` and its text kept in ``stats().last_protocol_error``.
    ``"skip"`` (default): it is dropped and `recv` goes on waiting for a valid mask.
    ``"raise"``: `recv` raises its ProtocolError, once; the following `recv` goes on (in
    latest-only mode, errors that arrive while one is waiting to be raised are only counted).

    `frames`: also receive the JPEG preview frames (``frame.<stream>``), through
    :meth:`recv_any`; plain mode only.

    `reconnect_s`: how often to try again to connect to a publisher that is not up yet, or that
    went away (ZeroMQ's ``RECONNECT_IVL``; default 0.1 s). Until the subscription reaches a
    publisher, what it publishes is lost (counted in ``stats().missed_at_join``); a subscriber
    started before a short run on the same machine may want 0.01 s.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        stream: str | None = None,
        latest_only: bool = False,
        curve_server_key: str | bytes | Path | None = None,
        rcvhwm: int = 1000,
        limits: DecodeLimits = DEFAULT_LIMITS,
        on_protocol_error: str = "skip",
        frames: bool = False,
        reconnect_s: float = DEFAULT_RECONNECT_S,
    ) -> None:
        if isinstance(reconnect_s, bool) or not isinstance(reconnect_s, (int, float)) or not 0.001 <= reconnect_s <= 60:
            raise InputError(f"reconnect_s must be a number of seconds in [0.001, 60], got {reconnect_s!r} "
                             f"(default {DEFAULT_RECONNECT_S})")
        if frames and latest_only:
            raise InputError(
                "frames=True needs the plain mode (latest_only=False): recv_any() hands over masks, frames "
                "and heartbeats in order; keep the newest of each yourself"
            )
        if on_protocol_error not in ON_PROTOCOL_ERROR:
            raise InputError(
                f"on_protocol_error must be one of {', '.join(ON_PROTOCOL_ERROR)}, got {on_protocol_error!r}"
            )
        if not isinstance(limits, DecodeLimits):
            raise InputError(f"limits must be a streamavs.protocol.DecodeLimits, got {type(limits).__name__}")
        self.address = check_port(address)  # before any socket exists
        self._limits, self._raise_errors = limits, on_protocol_error == "raise"
        self._topics = [MASK_PREFIX + (check_stream_name(stream) if stream else ""), HEARTBEAT_PREFIX]
        if frames:
            self._topics.append(FRAME_PREFIX + (stream or ""))
        self._stream = stream
        self._curve = None if curve_server_key is None else load_curve_key(curve_server_key, secret=False)[0]
        self._rcvhwm = int(rcvhwm)
        self._reconnect_ms = max(1, round(1000 * reconnect_s))
        self._tracker = _Tracker()
        self._closed = False
        self._ctx = zmq.Context()
        self._thread: threading.Thread | None = None
        self._sock: zmq.Socket | None = None
        if not latest_only:
            try:
                self._sock = self._open()
            except BaseException:
                self._ctx.term()
                raise
            return
        self._cond = threading.Condition()
        self._latest: MaskMessage | None = None
        self._error: BaseException | None = None  # the thread died of it: raised by every recv
        self._pending: ProtocolError | None = None  # on_protocol_error="raise": raised by one recv
        self._stop, self._ready = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, name="streamavs-subscriber", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:  # the socket could not be opened: fail here, not at recv
            error = self._error
            self.close()
            raise error

    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        sock.setsockopt(zmq.RECONNECT_IVL, self._reconnect_ms)
        if self._curve is not None:
            public, secret = zmq.curve_keypair()  # an ephemeral client identity
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve, public, secret
        for topic in self._topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise InputError(
                f"cannot connect to the mask stream at {self.address}: {exc}; give the publisher's "
                "address, e.g. tcp://127.0.0.1:5555"
            ) from exc
        return sock

    def _take(self, sock: zmq.Socket) -> MaskMessage | Heartbeat | FrameMessage | None:
        """Receive and account one message (socket must be readable); None if filtered out.

        Raises ProtocolError for a malformed message, after counting it.
        """
        try:
            msg = decode_message(sock.recv_multipart(copy=True), self._limits)
            if self._stream is not None and msg.stream != self._stream:
                return None  # "mask.cam" also matches "mask.cam2" by prefix
            self._tracker.update(msg, time.time(), time.monotonic())
        except ProtocolError as exc:
            self._tracker.reject(exc)
            raise
        return msg

    def _receive_loop(self) -> None:
        sock = None
        try:
            sock = self._open()
            self._ready.set()
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                try:
                    msg = self._take(sock)
                except ProtocolError as exc:  # counted by _take; the stream goes on
                    if self._raise_errors:
                        with self._cond:
                            self._pending = self._pending or exc
                            self._cond.notify_all()
                    continue
                if isinstance(msg, MaskMessage):
                    with self._cond:
                        if self._latest is not None:
                            with self._tracker.lock:
                                self._tracker.superseded += 1
                        self._latest = msg
                        self._cond.notify_all()
        except BaseException as exc:  # stored and re-raised in the consumer
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            self._ready.set()
        finally:
            if sock is not None:
                sock.close(linger=0)

    def recv(self, timeout: float | None = None) -> MaskMessage | None:
        """The next mask (latest-only: the newest one), or None after `timeout` seconds.

        Heartbeats are consumed and counted, never returned. A malformed message is counted in
        ``stats().protocol_errors`` and skipped, or raised here as ProtocolError (once) when the
        Subscriber was made with ``on_protocol_error="raise"``.
        """
        if self._closed:
            raise InputError("this Subscriber is closed; create a new one to receive again")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is not None:
            with self._cond:
                while self._latest is None and self._error is None and self._pending is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return None
                    self._cond.wait(left)
                if self._error is not None:
                    raise self._error
                if self._pending is not None:
                    error, self._pending = self._pending, None
                    raise error
                msg, self._latest = self._latest, None
                return msg
        return self._recv_plain(deadline, (MaskMessage,))

    def recv_any(self, timeout: float | None = None) -> MaskMessage | FrameMessage | Heartbeat | None:
        """The next message of any kind in arrival order (plain mode), or None after `timeout` seconds.

        Every message is accounted as by :meth:`recv`; malformed ones are skipped or raised the same way.
        """
        if self._closed:
            raise InputError("this Subscriber is closed; create a new one to receive again")
        if self._thread is not None:
            raise InputError("recv_any() needs the plain mode; this Subscriber is latest-only: use recv()")
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._recv_plain(deadline, (MaskMessage, FrameMessage, Heartbeat))

    def _recv_plain(
        self, deadline: float | None, kinds: tuple[type, ...]
    ) -> MaskMessage | FrameMessage | Heartbeat | None:
        """Plain mode: the next message of one of `kinds`, or None at `deadline` (time.monotonic()).

        Every message read is accounted (by :meth:`_take`); the others are consumed. A malformed
        one is skipped, or raised with ``on_protocol_error="raise"``.
        """
        while True:
            left = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(left):
                return None
            try:
                msg = self._take(self._sock)
            except ProtocolError:  # counted by _take
                if self._raise_errors:
                    raise
                continue
            if isinstance(msg, kinds):
                return msg

    def stats(self) -> SubscriberStats:
        """Counts (masks, gaps, restarts, protocol errors ...) and latency percentiles so far."""
        return self._tracker.snapshot()

    def __iter__(self) -> Iterator[MaskMessage]:
        """Yield masks until the subscriber is closed (blocks between messages)."""
        while not self._closed:
            msg = self.recv(timeout=0.1)
            if msg is not None:
                yield msg

    def close(self) -> None:
        """Stop the receive thread, close the socket and the context. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._sock is not None:
            self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

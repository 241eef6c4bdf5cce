"""The thread that receives the mask stream and hands it to the viewer's asyncio loop.

A :class:`streamavs.subscriber.Subscriber` in plain mode (masks, preview frames, heartbeats,
in order; malformed messages counted and skipped) owns its socket in this thread. Received
messages collect in a bounded deque, and the loop is woken once per batch, not once per
message; if the loop ever fell more than `backlog` messages (or BACKLOG_BYTES of payloads)
behind, the oldest would be dropped here rather than memory grow. The viewer forwards each mask
as it arrived (its payload); the decoded array (up to 64 MB at the decode limit) is dropped
before the hand-over, so neither the backlog nor the hub's recent masks hold it. An unexpected
error is stored, shown on the page and re-raised by :meth:`Bridge.close` (threads never swallow
errors).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque

import numpy as np

from streamavs.protocol import MaskMessage
from streamavs.subscriber import Subscriber
from streamavs.viewer.hub import StreamHub

__all__ = ["Bridge", "BACKLOG_BYTES"]

BACKLOG_BYTES = 256 * 2**20  # payload bytes waiting for the loop at most (masks and JPEGs)
_NOT_KEPT = np.zeros((0, 0), np.float32)  # a forwarded mask's decoded array: not kept


def _payload_bytes(item: tuple) -> int:
    kind, value, _ = item
    if kind != "msg":
        return 0
    return len(getattr(value, "payload", b"") or getattr(value, "jpeg", b"") or b"")


class Bridge:
    """Subscribes to `hub.config.address` in a thread and feeds `hub` on `loop`."""

    def __init__(self, hub: StreamHub, loop: asyncio.AbstractEventLoop, backlog: int = 1024) -> None:
        self.hub = hub
        self._loop = loop
        self._pending: deque = deque()
        self._backlog, self._pending_bytes = backlog, 0
        self.dropped = 0  # messages dropped because the loop fell behind (by count or bytes)
        self._lock = threading.Lock()
        self._scheduled = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="streamavs-viewer-zmq", daemon=True)

    def start(self) -> "Bridge":
        """Start the thread; raises (e.g. InputError for a bad address) if the subscriber cannot open."""
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            error, self.error = self.error, None
            self._thread.join()
            raise error
        return self

    def _run(self) -> None:
        cfg = self.hub.config
        try:
            sub = Subscriber(cfg.address, stream=cfg.stream, curve_server_key=cfg.curve_server_key, frames=True)
        except BaseException as exc:  # re-raised by start()
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        next_stats = 0.0
        try:
            with sub:
                while not self._stop.is_set():
                    msg = sub.recv_any(timeout=0.1)
                    now = time.monotonic()
                    if isinstance(msg, MaskMessage):
                        msg = dataclasses.replace(msg, mask=_NOT_KEPT)  # pack_view sends the payload
                    if msg is not None:
                        self._hand_over(("msg", msg, now))
                    if now >= next_stats:
                        next_stats = now + 0.25
                        self._hand_over(("stats", sub.stats(), now))
        except BaseException as exc:  # noqa: BLE001 - stored, shown on the page, re-raised by close()
            self.error = exc
            self._hand_over(("error", f"{type(exc).__name__}: {exc}", time.monotonic()))

    def _hand_over(self, item: tuple) -> None:
        with self._lock:
            self._pending.append(item)
            self._pending_bytes += _payload_bytes(item)
            while len(self._pending) > 1 and (len(self._pending) > self._backlog
                                              or self._pending_bytes > BACKLOG_BYTES):
                dropped = self._pending.popleft()
                self._pending_bytes -= _payload_bytes(dropped)
                self.dropped += dropped[0] == "msg"  # a stats snapshot dropped is no message lost
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    def _drain(self) -> None:
        """In the loop: give every pending item to the hub."""
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self.hub.backlog_dropped = self.dropped
            self._scheduled = False
        try:
            for kind, value, mono in items:
                if kind == "msg":
                    self.hub.on_message(value, mono)
                elif kind == "stats":
                    self.hub.sub_stats = value
                else:
                    self.hub.error = value
        except Exception as exc:  # noqa: BLE001 - a bug in the hub: shown on the page, re-raised by close()
            self.error = self.error or exc
            self.hub.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Stop and join the thread; re-raise its error, if it died of one. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

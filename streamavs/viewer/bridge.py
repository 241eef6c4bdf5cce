"""The thread that receives the mask stream and hands it to the viewer's asyncio loop.

A :class:`streamavs.subscriber.Subscriber` in plain mode (masks, preview frames, heartbeats,
in order; malformed messages counted and skipped) owns its socket in this thread. Received
messages collect in a bounded deque, and the loop is woken once per batch, not once per
message; if the loop ever fell more than `backlog` messages behind, the oldest would be
dropped here rather than memory grow. An unexpected error is stored, shown on the page and
re-raised by :meth:`Bridge.close` (threads never swallow errors).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from streamavs.subscriber import Subscriber
from streamavs.viewer.hub import StreamHub

__all__ = ["Bridge"]


class Bridge:
    """Subscribes to `hub.config.address` in a thread and feeds `hub` on `loop`."""

    def __init__(self, hub: StreamHub, loop: asyncio.AbstractEventLoop, backlog: int = 1024) -> None:
        self.hub = hub
        self._loop = loop
        self._pending: deque = deque(maxlen=backlog)
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

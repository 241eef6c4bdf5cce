"""The viewer's state: the stream as seen so far, and one latest-only slot per browser.

Runs in the server's asyncio loop only (the ZeroMQ thread hands messages over with
``loop.call_soon_threadsafe``), so nothing here takes a lock.

Each mask adds a point to a 30 s history of the sounding score and uncertainty. Each preview
frame is paired with the mask of the same frame (equal ``t_capture``) and becomes one *view*:
the JPEG, the mask payload as it arrived and a small JSON header, packed once into bytes and
put in every client's slot. A slot holds only the newest view: a browser that reads slowly
gets fewer views, never an older one, and never slows the stream or the other browsers
(``superseded`` counts the views it missed). Without frames (``streamavs run`` without
``--preview-fps``) every mask becomes a view of its own.

Status messages (JSON text) carry the state, counters and the plot points a client has not
had yet, so the plot is complete even for a slow browser.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamavs.errors import InputError
from streamavs.protocol import DEFAULT_THRESHOLD, FrameMessage, Heartbeat, MaskMessage
from streamavs.subscriber import SubscriberStats

__all__ = ["ViewerConfig", "StreamHub", "ClientSlot", "pack_view", "STATES"]

# Page states, in the order they win when several apply.
STATES = ("unreachable", "waiting", "restarted", "no_masks", "no_frames", "live")
_RECENT_MASKS = 64  # masks kept to pair a frame that arrives after its mask
_RECENT_BYTES = 64 * 2**20  # and their payloads' bytes at most (large masks keep fewer)
MAX_POINTS = 20_000  # plot points kept at most, here and by the page (30 s at 660 masks a second)


@dataclass(frozen=True)
class ViewerConfig:
    """What the viewer subscribes to and how it judges the stream.

    address: the publisher's address (``tcp://127.0.0.1:5555``). stream: only this stream (None:
    any). curve_server_key: the publisher's CurveZMQ public key, when it has one.
    history_s: seconds of sounding/uncertainty points the plot keeps. stale_s: nothing at all
    (not even a heartbeat, sent every second) for this long: the publisher is not reachable.
    status_hz: status messages per second to each browser.
    """

    address: str
    stream: str | None = None
    curve_server_key: str | Path | None = None
    history_s: float = 30.0
    stale_s: float = 3.0
    status_hz: float = 4.0

    def __post_init__(self) -> None:
        if not (self.history_s > 0 and self.stale_s > 0 and self.status_hz > 0):
            raise InputError(
                f"history_s, stale_s and status_hz must be > 0, got {self.history_s!r}, {self.stale_s!r}, "
                f"{self.status_hz!r}"
            )


def pack_view(mask: MaskMessage | None, frame: FrameMessage | None, exact: bool) -> bytes:
    """One view as sent to browsers: ``[u32 LE header length][header JSON][jpeg][mask payload]``.

    The header names both parts' metadata and byte counts (``jpeg``, ``mask_bytes``); `exact`
    says the mask is the frame's own (same ``t_capture``), not the newest one before it.
    """
    jpeg = frame.jpeg if frame is not None else b""
    payload = mask.payload if mask is not None else b""
    head: dict[str, Any] = {"type": "view", "exact": exact, "jpeg": len(jpeg), "mask_bytes": len(payload)}
    head["frame"] = None if frame is None else {
        "seq": frame.seq, "index": frame.index, "t_capture": frame.t_capture, "shape": list(frame.shape),
    }  # fmt: skip
    head["mask"] = None if mask is None else {
        "seq": mask.seq, "t_capture": mask.t_capture, "shape": list(mask.shape), "encoding": mask.encoding,
        "threshold": mask.threshold if mask.threshold is not None else DEFAULT_THRESHOLD,
        "sounding": mask.sounding, "uncertainty": mask.uncertainty,
    }  # fmt: skip
    head_b = json.dumps(head, separators=(",", ":")).encode("utf-8")
    return struct.pack("<I", len(head_b)) + head_b + jpeg + payload


class ClientSlot:
    """One browser: the newest view not yet sent, whether a status is due, and what it was sent.

    `cursor` is the id of the next plot point this client needs.
    """

    def __init__(self) -> None:
        self.view: bytes | None = None
        self.status_due = True
        self.cursor = 0
        self.wake = asyncio.Event()
        self.sent_views = 0
        self.superseded = 0

    def put_view(self, view: bytes) -> None:
        if self.view is not None:
            self.superseded += 1  # the browser had not taken the previous one: it is replaced
        self.view = view
        self.wake.set()

    def want_status(self) -> None:
        self.status_due = True
        self.wake.set()


class StreamHub:
    """The stream as the viewer sees it, and the browsers connected to it (asyncio loop only)."""

    def __init__(self, config: ViewerConfig) -> None:
        self.config = config
        self.clients: set[ClientSlot] = set()
        self.started = time.monotonic()
        self.session: str | None = None
        self.engine: dict[str, str] | None = None
        self.backend: str | None = None
        # (id, t_capture, sounding, uncertainty); the cap holds even if a publisher's clock jumps back
        self.points: deque[tuple[int, float, float, float]] = deque(maxlen=MAX_POINTS)
        self._next_point = 0
        self._recent: OrderedDict[float, MaskMessage] = OrderedDict()  # t_capture -> mask
        self._recent_bytes = 0
        self.backlog_dropped = 0  # messages the receive thread dropped because this loop fell behind
        self.last_message: float | None = None  # monotonic s of the last message of any kind
        self.last_mask: float | None = None
        self.last_frame: float | None = None
        self.restarted_at: float | None = None
        self.masks = self.frames = self.heartbeats = self.views = 0
        self.latest: MaskMessage | None = None
        self.sub_stats: SubscriberStats | None = None
        self.error: str | None = None  # the receive thread died of it

    # -- messages from the stream ---------------------------------------------------------
    def on_message(self, msg: MaskMessage | FrameMessage | Heartbeat, mono: float) -> None:
        """Account one message received at monotonic time `mono` (seconds)."""
        self.last_message = mono
        if msg.session != self.session:
            if self.session is not None:
                self.restarted_at = mono
            self.session = msg.session
            self.points.clear()  # a new publisher: its plot starts empty (clients see the new session)
            self._recent.clear()
            self._recent_bytes = 0
            self.last_frame = self.last_mask = None
            self.latest = None
        if isinstance(msg, Heartbeat):
            self.heartbeats += 1
        elif isinstance(msg, MaskMessage):
            self._on_mask(msg, mono)
        else:
            self._on_frame(msg, mono)

    def _on_mask(self, msg: MaskMessage, mono: float) -> None:
        self.masks += 1
        self.last_mask = mono
        self.latest = msg
        self.engine, self.backend = dict(msg.engine), msg.backend
        self.points.append((self._next_point, msg.t_capture, msg.sounding, msg.uncertainty))
        self._next_point += 1
        while self.points and self.points[0][1] < msg.t_capture - self.config.history_s:
            self.points.popleft()
        self._recent[msg.t_capture] = msg
        self._recent_bytes += len(msg.payload)
        while len(self._recent) > 1 and (len(self._recent) > _RECENT_MASKS or self._recent_bytes > _RECENT_BYTES):
            self._recent_bytes -= len(self._recent.popitem(last=False)[1].payload)
        if self.last_frame is None or mono - self.last_frame > self.config.stale_s:
            self._broadcast(pack_view(msg, None, exact=True))  # no frames: the mask is the view

    def _on_frame(self, msg: FrameMessage, mono: float) -> None:
        self.frames += 1
        self.last_frame = mono
        mask = self._recent.get(msg.t_capture)
        exact = mask is not None
        if mask is None:  # its mask was lost: the newest one before the frame, if any
            mask = next((m for t, m in reversed(self._recent.items()) if t <= msg.t_capture), None)
        self._broadcast(pack_view(mask, msg, exact))

    def _broadcast(self, view: bytes) -> None:
        self.views += 1
        for client in self.clients:
            client.put_view(view)

    # -- state -----------------------------------------------------------------------------
    def state(self, now: float) -> str:
        """One of STATES for monotonic time `now`."""
        stale = self.config.stale_s
        if self.last_message is None:
            return "unreachable" if now - self.started > stale else "waiting"
        if now - self.last_message > stale:
            return "unreachable"
        if self.restarted_at is not None and now - self.restarted_at < stale:
            return "restarted"
        if self.last_mask is None or now - self.last_mask > stale:
            return "no_masks"
        if self.last_frame is None or now - self.last_frame > stale:
            return "no_frames"
        return "live"

    def status(self, client: ClientSlot, now: float) -> str:
        """The JSON status message for `client`, with the plot points it has not had; advances its cursor."""
        points = [[round(t, 4), round(s, 4), round(u, 4)] for i, t, s, u in self.points if i >= client.cursor]
        client.cursor = self._next_point
        st = self.sub_stats
        latest = self.latest
        msg = {
            "type": "status", "state": self.state(now), "address": self.config.address,
            "session": self.session, "engine": self.engine, "backend": self.backend,
            "silence_s": None if self.last_message is None else round(now - self.last_message, 2),
            "masks": self.masks, "frames": self.frames, "views": self.views, "heartbeats": self.heartbeats,
            "history_s": self.config.history_s, "points": points,
            "dropped": latest.dropped if latest is not None else 0,
            "stage_ms": dict(latest.stage_ms) if latest is not None else {},
            "client": {"sent_views": client.sent_views, "superseded": client.superseded},
            "clients": len(self.clients), "error": self.error,
        }  # fmt: skip
        if st is not None:
            msg.update({
                "rate_hz": round(st.rate_hz, 2), "gaps": st.gaps, "lost": st.lost, "restarts": st.restarts,
                "protocol_errors": st.protocol_errors,
                "latency_ms": {k: round(v, 1) for k, v in st.latency_capture_ms.items()},
            })  # fmt: skip
        return json.dumps(msg, separators=(",", ":"), allow_nan=False)

    def stats(self) -> dict[str, Any]:
        """Counters for /stats and tests: messages seen, views made, and each client's slot."""
        return {
            "state": self.state(time.monotonic()), "session": self.session, "masks": self.masks,
            "frames": self.frames, "heartbeats": self.heartbeats, "views": self.views,
            "clients": [{"sent_views": c.sent_views, "superseded": c.superseded} for c in self.clients],
            "backlog_dropped": self.backlog_dropped, "error": self.error,
        }  # fmt: skip

    # -- clients ---------------------------------------------------------------------------
    def add_client(self) -> ClientSlot:
        slot = ClientSlot()
        self.clients.add(slot)
        return slot

    def remove_client(self, slot: ClientSlot) -> None:
        self.clients.discard(slot)

    def tick(self) -> None:
        """Ask every client for a status message (called status_hz times a second)."""
        for client in self.clients:
            client.want_status()

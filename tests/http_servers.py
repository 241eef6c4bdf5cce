"""Fake HTTP servers on 127.0.0.1 for the capture tests: a URL that stalls, and an IP camera
(multipart JPEG) that stalls. Each serves in threads and keeps its connections open until the
block exits, so a reader sees a server that hangs, not one that closes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import numpy as np

SERVED_FPS = 15  # the rate the fake camera sends its pictures at
BOUNDARY = b"frame"


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket, int, threading.Event], None], path: str,
            accepted: threading.Event | None = None) -> Iterator[str]:
    """`http://127.0.0.1:PORT/path` served in a thread: each connection goes to
    ``handle(conn, n, done)`` in a thread of its own (n counts connections from 0; `done` is set when
    the block exits). `accepted` is set at the first connection. Connections stay open until then."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # the accept loop checks `done` this often
    done = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn, len(conns), done), daemon=True).start()
            conns.append(conn)
            if accepted is not None:
                accepted.set()

    thread = threading.Thread(target=serve, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/{path}"
    finally:
        done.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        server.close()


def read_request(conn: socket.socket) -> bytes:
    """The request's head, read up to its blank line (or until the client closes)."""
    request = b""
    while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
        request += chunk
    return request


@contextlib.contextmanager
def stalling_server(payload: bytes | None, total: int = 0, accepted: threading.Event | None = None) -> Iterator[str]:
    """An HTTP URL (an MPEG-TS clip) whose server accepts connections and then stalls without closing.

    payload None: it never answers (not even the response line). Else it answers 200 with
    Content-Length `total` (more than it sends), sends `payload`, and then nothing more.
    """

    def handle(conn: socket.socket, _n: int, _done: threading.Event) -> None:
        if payload is None:
            return
        with contextlib.suppress(OSError):  # the reader went away
            read_request(conn)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {total}\r\n\r\n"
            conn.sendall(head.encode("ascii") + payload)

    with serving(handle, "clip.ts", accepted) as url:
        yield url


def _jpeg(i: int) -> bytes:
    """A real 320x240 JPEG picture that changes with `i`."""
    import cv2

    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :, 0] = np.arange(320, dtype=np.uint8)[None, :]
    image[:, :, 1] = (8 * i) % 256
    return cv2.imencode(".jpg", image)[1].tobytes()


def _broken_jpeg(i: int) -> bytes:
    """A JPEG cut inside its first Huffman table: its size can be parsed, the picture cannot be decoded."""
    jpeg = _jpeg(i)
    return jpeg[: jpeg.index(b"\xff\xc4") + 12]


def _part(jpeg: bytes) -> bytes:
    return (b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
            + b"\r\n\r\n" + jpeg + b"\r\n")


@contextlib.contextmanager
def stalling_mjpeg_server(frames: int, fps: float = SERVED_FPS) -> Iterator[str]:
    """A fake IP camera serving multipart JPEG over HTTP; yields its URL.

    The first connection gets `frames` pictures at `fps`, then nothing, the connection kept open
    (the camera hangs). Every later connection (a reconnect) gets the stream's header and 30
    parts whose JPEGs are cut short, then nothing: OpenCV opens it, and no frame can be read
    from it (the camera answers but sends no picture).
    """
    head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n"

    def handle(conn: socket.socket, n: int, done: threading.Event) -> None:
        with contextlib.suppress(OSError):  # the reader went away (closed, or gave up on a broken stream)
            read_request(conn)
            conn.sendall(head)
            if n > 0:
                conn.sendall(b"".join(_part(_broken_jpeg(i)) for i in range(30)))  # fewer: the open fails
                return
            for i in range(frames):
                if done.wait(1 / fps):
                    return
                conn.sendall(_part(_jpeg(i)))

    with serving(handle, "stream.mjpg") as url:
        yield url

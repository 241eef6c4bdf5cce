"""A fake IP camera for tests: a small HTTP multipart-JPEG server in a thread that stalls."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import numpy as np

SERVED_FPS = 15  # the rate the fake camera sends its pictures at
BOUNDARY = b"frame"


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
    """A fake IP camera on 127.0.0.1 serving multipart JPEG over HTTP; yields its URL.

    The first connection gets `frames` pictures at `fps`, then nothing, the connection kept open
    (the camera hangs). Every later connection (a reconnect) gets the stream's header and 30
    parts whose JPEGs are cut short, then nothing: OpenCV opens it, and no frame can be read
    from it (the camera answers but sends no picture). Connections stay open until the block exits.
    """
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)  # the accept loop checks `done` this often
    done = threading.Event()
    conns: list[socket.socket] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n"

    def feed(conn: socket.socket, first: bool) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                request += chunk
            conn.sendall(head)
            if not first:
                conn.sendall(b"".join(_part(_broken_jpeg(i)) for i in range(30)))  # fewer: the open fails
                return
            for i in range(frames):
                if done.wait(1 / fps):
                    return
                conn.sendall(_part(_jpeg(i)))
        except OSError:  # the reader went away (closed, or gave up on a broken stream)
            pass

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=feed, args=(conn, not conns), daemon=True).start()
            conns.append(conn)

    thread = threading.Thread(target=serve, name="stalling-mjpeg", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    finally:
        done.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        server.close()

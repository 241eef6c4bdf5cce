"""Base class of every capture source: a context manager that runs one thread.

A source opens its device in :meth:`Source.start` (in the caller's thread, so a missing
camera or file fails right there), then runs :meth:`Source._run` in a daemon thread. The
thread never swallows an error: it stores the exception, ends the stream, and
:meth:`Source.check` re-raises it in the consumer with the original as its cause.
"""

from __future__ import annotations

import threading
from typing import Any

from streamavs.errors import SourceError, StreamAVSError

__all__ = ["Source", "local_path"]


def local_path(path_or_url: str) -> str:
    """`path_or_url` as given, or the path a file: URL names (file:///tmp/a.mp4, file:a.mp4): a local
    file is read as a file (no URL timeouts, every frame), not as a live stream."""
    if not path_or_url.startswith("file:"):
        return path_or_url
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(path_or_url).path)


class Source:
    """A capture source with its own thread, counters and an idempotent close().

    Subclasses implement `_open()` (caller thread), `_run()` (capture thread; return at end
    of stream or when `self._stop` is set) and `_release()` (free the device; called once).
    """

    name = "source"
    join_timeout_s = 1.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._eof = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._counters: dict[str, int] = {"frames": 0, "drops": 0, "reconnects": 0, "overflows": 0}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Source":
        """Open the device and start the capture thread; returns self. Raises SourceError."""
        if self._thread is not None:
            return self
        if self._closed:
            raise SourceError(f"{self.name} was closed; create a new source to capture again")
        self._open()
        self._thread = threading.Thread(target=self._main, name=f"streamavs-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # stored and re-raised in the consumer by check()
            self._error = exc
        finally:
            self._eof.set()
            self._on_end()

    def close(self) -> None:
        """Stop the thread (joined within ~1 s) and release the device (bounded by `_release`); safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._interrupt()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.join_timeout_s)
        self._release()

    def __enter__(self) -> "Source":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- consumer side ---------------------------------------------------------------------
    def check(self) -> None:
        """Re-raise the capture thread's error, if any (StreamAVS errors as they are, others wrapped)."""
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, StreamAVSError):
            raise exc
        raise SourceError(f"{self.name} capture thread failed: {type(exc).__name__}: {exc}") from exc

    @property
    def eof(self) -> bool:
        """True once the capture thread has ended (end of stream, error or close)."""
        return self._eof.is_set()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the capture thread, if any."""
        return self._error

    def counters(self) -> dict[str, int]:
        """A copy of the counters: frames, drops, reconnects, overflows (and source-specific ones)."""
        with self._counter_lock:
            return dict(self._counters)

    def _count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self._counters[key] = self._counters.get(key, 0) + n

    # -- subclass hooks ------------------------------------------------------------------
    def _open(self) -> None:
        """Open the device in the caller's thread (raise SourceError with advice on failure)."""

    def _run(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake the capture thread if it may be blocked (called by close before joining)."""

    def _on_end(self) -> None:
        """Called in the capture thread when it ends, e.g. to finish the rings."""

    def _release(self) -> None:
        """Free the device (called once, after the thread was joined or timed out).

        close() has no time limit of its own around this call: a driver call that can block on a
        stuck device must be bounded here (MicrophoneSource abandons a stream after STOP_TIMEOUT_S).
        """

"""A consumer thread behind a bounded queue: slow side work (drawing, video encoding) off the frame loop.

A live pipeline loop must never wait for an overlay to be drawn or a video frame to be encoded:
:meth:`SinkWorker.submit` hands the item over without blocking and, when the worker is behind
by `maxsize` items, drops it and counts it (``dropped``). A run that is not live (a file as fast
as possible) submits with ``block=True`` and loses nothing. An exception in the worker is stored and
re-raised by the next :meth:`submit` and by :meth:`close` (threads never swallow errors).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

__all__ = ["SinkWorker"]

_STOP = object()


class SinkWorker:
    """Runs ``handle(item)`` for each submitted item in its own thread, in order.

    maxsize: items waiting at most (a full queue drops the new item). Use as a context manager,
    or call :meth:`close` (idempotent): it processes what is queued, then joins the thread.
    """

    def __init__(self, handle: Callable[[Any], None], maxsize: int = 8, name: str = "sink") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")  # programming error
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._closed = False
        self.dropped = 0
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=f"streamavs-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._queue.task_done()
                return
            try:
                if self._error is None:  # after a failure: drain without handling
                    self._handle(item)
                    self.handled += 1
            except BaseException as exc:  # noqa: BLE001 - stored and re-raised in the producer
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_stored(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def check(self) -> None:
        """Re-raise the worker's stored error, if any (as the next submit would)."""
        self._raise_stored()

    def wait_idle(self) -> None:
        """Block until every submitted item is handled (the worker is then idle); re-raise its error."""
        if not self._closed:
            self._queue.join()
        self._raise_stored()

    def submit(self, item: Any, block: bool = False) -> bool:
        """Queue `item`; False (and counted in ``dropped``) when the worker is `maxsize` items behind.

        block=True waits for room instead (a file processed as fast as possible loses nothing).
        """
        self._raise_stored()
        if self._closed:
            raise RuntimeError("this SinkWorker is closed")  # programming error
        try:
            self._queue.put(item, block=block)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self) -> None:
        """Finish the queued items, stop the thread, and re-raise a stored error; idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)  # blocks only while the queue is full, i.e. while the worker drains it
            self._thread.join()
        self._raise_stored()

    def __enter__(self) -> "SinkWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

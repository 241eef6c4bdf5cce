"""Run a blocking call in a thread and know, without a clock, when it is waiting.

A test of "X waits for Y" used to start a timer that delivers Y after a few ms and check the
elapsed time; on a loaded machine the timer can fire before X has even looked, or X's wait can
run out before the timer fires. Instead the test starts X in a thread, waits until that thread
is blocked in `threading.Condition.wait` inside the function under test (read from its live
stack, sys._current_frames), and only then delivers Y. Once the thread is inside
`Condition.wait` it has checked its condition and found it false, and it still holds the lock
or is registered as a waiter, so the notification cannot be missed: the order is certain,
whatever the load.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

__all__ = ["InThread"]

_CONDITION_WAIT = threading.Condition.wait.__code__


class InThread:
    """`fn(*args)` running in a daemon thread; `result()` joins it and returns or re-raises."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._out: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._out["value"] = fn(*args)
        except BaseException as exc:  # handed to the test by result()
            self._out["error"] = exc

    def _stack_codes(self) -> list:
        frame = sys._current_frames().get(self.thread.ident)
        codes = []
        while frame is not None:
            codes.append(frame.f_code)
            frame = frame.f_back
        return codes

    def wait_until_blocked_in(self, where: Callable[..., Any], timeout: float = 30.0) -> None:
        """Return once the thread waits on a Condition inside `where` (a function or method).

        Fails at once if the call returned instead (it did not wait), and after `timeout` s if it
        never got there (a liveness bound, far above any scheduling delay).
        """
        target = where.__code__
        deadline = time.monotonic() + timeout
        while True:
            codes = self._stack_codes()
            if _CONDITION_WAIT in codes and target in codes:
                return
            if not self.thread.is_alive():
                raise AssertionError(
                    f"{where.__qualname__} returned without waiting: {self._out.get('error', self._out.get('value'))!r}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the thread did not wait in {where.__qualname__} within {timeout} s")
            time.sleep(0.001)

    def result(self, timeout: float = 30.0) -> Any:
        """The call's return value (re-raises its exception); fails if it has not returned within `timeout` s."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the call in the thread did not return within {timeout} s")
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]

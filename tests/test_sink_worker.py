"""SinkWorker: side work off the frame loop, never blocking it, never swallowing errors."""

from __future__ import annotations

import threading

import pytest

from streamavs.pipeline.worker import SinkWorker


def test_a_full_queue_drops_and_counts_instead_of_blocking():
    release, seen = threading.Event(), []

    def slow(item):
        release.wait(10)
        seen.append(item)

    worker = SinkWorker(slow, maxsize=2)
    accepted = [worker.submit(i) for i in range(10)]  # the worker holds item 0; 2 wait; the rest are dropped
    assert accepted.count(True) in (2, 3) and worker.dropped == 10 - accepted.count(True)
    release.set()
    worker.close()
    assert seen == [i for i, ok in enumerate(accepted) if ok]  # in order, nothing accepted is lost
    assert worker.handled == len(seen)


def test_an_error_in_the_worker_is_raised_in_the_producer():
    def boom(item):
        raise ValueError(f"cannot draw {item}")

    worker = SinkWorker(boom)
    worker.submit(1)
    with pytest.raises(ValueError, match="cannot draw 1"):
        worker.close()
    worker.close()  # idempotent, the error was raised once


def test_blocking_submit_loses_nothing():
    seen = []
    with SinkWorker(seen.append, maxsize=1) as worker:
        for i in range(200):
            assert worker.submit(i, block=True)
    assert seen == list(range(200)) and worker.dropped == 0

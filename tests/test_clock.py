"""The capture clock's wall-time anchor: accurate, and re-taken when the wall clock is stepped."""

from __future__ import annotations

import time

import pytest

from streamavs import clock


def test_wall_time_of_now_is_the_wall_clock():
    clock.reanchor()
    assert clock.wall_time(clock.now_ns()) == pytest.approx(time.time(), abs=0.01)


def test_a_stepped_wall_clock_is_followed_within_a_second(monkeypatch):
    """NTP's first sync on a device without a battery-backed clock steps the wall clock: t_capture
    must keep agreeing with t_publish (time.time()), not keep the old anchor for the whole run."""
    clock.reanchor()
    real = time.time
    monkeypatch.setattr(clock.time, "time", lambda: real() + 3600.0)  # stepped one hour ahead
    monkeypatch.setattr(clock, "_checked_ns", clock.now_ns())  # just compared: not due for _CHECK_NS
    assert clock.wall_time(clock.now_ns()) == pytest.approx(real(), abs=0.01)  # not looked at yet
    monkeypatch.setattr(clock, "_checked_ns", clock.now_ns() - 1_000_000_000)  # compared a second ago: due
    assert clock.wall_time(clock.now_ns()) == pytest.approx(real() + 3600.0, abs=0.01)
    monkeypatch.setattr(clock.time, "time", lambda: real() + 3600.0 + 0.5 * clock.STEP_S)  # within the step
    monkeypatch.setattr(clock, "_checked_ns", 0)
    anchor = clock._anchor
    clock.wall_time(clock.now_ns())
    assert clock._anchor is anchor, "a difference under STEP_S keeps the anchor"
    monkeypatch.undo()
    clock.reanchor()

"""A microphone whose sound arrives later than the camera's frames (Bluetooth): `--audio-delay`.

The microphone stamps its samples audio_delay_s before they arrived (their capture time), and the
pairer holds frames back until their sound has arrived (Pairer(hold_s=...), docs/protocol.md,
"Audio window"): it takes the newest frame whose audio is there and keeps the newer ones, so pairs
come at the camera's rate, d late, not one per d. Real parts: FrameRing, AudioRing fed from a thread
on the real clock, and MicrophoneSource on the clocked ALSA test device (tests/c/clocked_pcm.c).
The command line is in tests/test_audio_delay_cli.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from blocking import InThread
from media import alsa_env, write_clocked_asoundrc

from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.capture.builders import HELD_FPS
from streamavs.capture.microphone import MAX_AUDIO_DELAY_S, MicrophoneSource
from streamavs.clock import now_ns
from streamavs.errors import InputError
from streamavs.frame_ring import FRAME_SLOTS
from streamavs.pairing import Pairer

SR = 16000
MS = 1_000_000  # ns
BLOCK = 160  # 10 ms of audio per write
D = 0.3  # the microphone's delay, s (a Bluetooth headset)


def frame(t_ns: int, index: int = 0) -> VideoFrame:
    return VideoFrame(np.zeros((2, 2, 3), np.uint8), t_ns, t_ns * 1e-9, index)


def ramp(start: int, n: int) -> np.ndarray:
    """Samples whose value is their absolute index."""
    return np.arange(start, start + n, dtype=np.float32)


def blocks(ring: AudioRing, until_ns: int) -> None:
    """Write ramp blocks with true stamps (sample k ends at k / SR s) up to `until_ns`."""
    while (ring.head + BLOCK) * 10**9 // SR <= until_ns:
        ring.write(ramp(ring.head, BLOCK), (ring.head + BLOCK) * 10**9 // SR)


# ------------------------------------------------------------------------------ FrameRing
def test_take_at_or_before_takes_the_newest_such_frame_keeps_newer_and_drops_older():
    ring = FrameRing(capacity=8)
    for i in range(5):
        ring.push(frame(100 + i, i))
    got = ring.take_at_or_before(102, timeout=0)
    assert got.index == 2 and ring.drops == 2 and len(ring) == 2  # 0 and 1 dropped; 3 and 4 kept, in order
    assert ring.take_at_or_before(103, timeout=0).index == 3 and ring.drops == 2
    # Only newer frames: None at once (none at or before 103 can come any more); the newer one stays.
    call = InThread(ring.take_at_or_before, 103, None)  # no timeout: a wait would never end
    assert call.result() is None
    assert len(ring) == 1 and ring.latest().index == 4 and ring.drops == 2
    assert ring.take(timeout=0).index == 4


def test_take_at_or_before_waits_for_a_frame_and_ends_with_the_stream():
    ring = FrameRing(capacity=4)
    assert ring.take_at_or_before(10**9, timeout=0.01) is None  # empty: timeout
    call = InThread(ring.take_at_or_before, 500, 30.0)
    call.wait_until_blocked_in(FrameRing.take_at_or_before)
    ring.push(frame(400, 0))
    assert call.result().index == 0
    peek = InThread(ring.latest, 30.0)  # latest(timeout) waits for a frame too, without taking it
    peek.wait_until_blocked_in(FrameRing.latest)
    ring.push(frame(600, 1))
    assert peek.result().index == 1 and len(ring) == 1
    ring.push(frame(700, 2))
    ring.finish()
    assert ring.take_at_or_before(650, timeout=None).index == 1  # finished: what is stored is still taken
    assert ring.take_at_or_before(10**9, timeout=None) is not None
    assert ring.take_at_or_before(10**9, timeout=None) is None and ring.latest(None) is None  # finished, empty


# ------------------------------------------------------------------------------ Pairer, hold
def test_a_held_pairer_takes_the_newest_frame_whose_audio_has_arrived_and_keeps_the_newer():
    audio = AudioRing(capacity_s=4.0)
    blocks(audio, 2000 * MS)  # audio up to 2.0 s has arrived
    frames = FrameRing(capacity=32)
    for i in range(10):  # frames 1.85 ... 2.30 s: the sound of those after 2.01 s is still on its way
        frames.push(frame((1850 + 50 * i) * MS, i))
    pairer = Pairer(frames, audio, max_wait_s=30.0, hold_s=D)  # a wait would show (and take 30 s)
    p = pairer.next_pair(timeout=0)
    assert p.frame.index == 3 and not p.waited and p.padded == 0  # 2.00 s: the newest ready (reach 2.01 s)
    assert p.window_ns == (1000 * MS, 2000 * MS)
    assert frames.drops == 3 and len(frames) == 6  # older dropped, newer held
    # No held frame's audio has arrived: it takes the oldest held one (2.05 s) and waits for its sound.
    call = InThread(pairer.next_pair, 0)
    call.wait_until_blocked_in(AudioRing.wait_for)
    blocks(audio, 2100 * MS)
    p = call.result()
    assert p.frame.index == 4 and p.padded == 0 and 0 <= 2050 * MS - p.window_ns[1] <= BLOCK * 10**9 // SR
    assert frames.drops == 3 and len(frames) == 5
    # Without a hold the same ring gives the newest frame, whose sound is 0.2 s away: it is padded.
    p = Pairer(frames, audio, max_wait_s=0.0).next_pair(timeout=0)
    assert p.frame.index == 9 and p.padded > 0


def test_a_held_pairer_pairs_every_frame_on_the_real_clock_with_audio_that_arrives_late():
    """A thread writes 10 ms blocks that arrive D after their capture, stamped at their capture
    time (a Bluetooth microphone with --audio-delay D); another pushes 25 fps frames stamped on
    arrival. Once the audio flows, each frame is paired with its own sound (the window ends at it,
    within one block, and is audio, not padding), and frames are not thinned to one per D."""
    audio = AudioRing()
    frames = FrameRing(capacity=FRAME_SLOTS + math.ceil(D * HELD_FPS))
    # max_wait_s 1 s, not the pipeline's 0.1 s: a writer thread held up on a busy machine must not pad a
    # window; the hold's rule (newest ready frame, else the oldest and wait) is the same with either.
    pairer = Pairer(frames, audio, hold_s=D, max_wait_s=1.0)
    stop = threading.Event()
    pushed: list[int] = []
    t0 = now_ns()

    def microphone() -> None:
        while not stop.is_set():
            t_end = t0 + (audio.head + BLOCK) * 10**9 // SR  # the block's last sample was captured then
            if stop.wait(max(0.0, (t_end + int(D * 1e9) - now_ns()) / 1e9)):  # and arrives D later
                return
            audio.write(ramp(audio.head, BLOCK), t_end)

    def camera() -> None:
        for i in range(10**6):
            if stop.wait(max(0.0, (t0 + i * 40 * MS - now_ns()) / 1e9)):
                return
            t = now_ns()
            frames.push(frame(t, i))
            pushed.append(t)

    threads = [threading.Thread(target=f, daemon=True) for f in (microphone, camera)]
    for t in threads:
        t.start()
    pairs = []
    try:
        while len(pushed) < 75:  # 3 s of frames
            if (p := pairer.next_pair(timeout=1.0)) is not None:
                pairs.append(p)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    t_stop = now_ns()
    # Frames whose 1 s window lies after the first sample (t0 + D + 1 s, with room) and whose sound
    # had arrived well before the run stopped.
    lo, hi = t0 + int((D + 1.1) * 1e9), t_stop - int((D + 0.2) * 1e9)
    late_pushed = [t for t in pushed if lo <= t <= hi]
    late = [p for p in pairs if lo <= p.frame.t_ns <= hi]
    assert len(late_pushed) >= 15, "the run was too short to judge"
    # Paired at the camera's rate: one pair per D would put D = 0.3 s between paired frames; a writer
    # held up on a busy machine and catching up in a burst drops a few frames, which moves the median
    # gap from 40 ms to at most ~80 ms.
    assert len(late) >= 5, len(late)
    gaps = sorted(b.frame.t_ns - a.frame.t_ns for a, b in zip(late, late[1:]))
    assert gaps[len(gaps) // 2] <= D * 1e9 / 2, gaps
    for p in late:
        assert p.padded == 0, (p.frame.index, p.padded)
        assert 0 <= p.frame.t_ns - p.window_ns[1] <= BLOCK * 10**9 // SR + 1, p.frame.t_ns - p.window_ns[1]
        # The ramp: real samples, the newest of them captured at the window's end.
        assert abs(p.audio[-1] - ((p.window_ns[1] - t0) * SR // 10**9 - 1)) <= 1


def test_a_pairer_refuses_a_negative_hold():
    with pytest.raises(InputError, match="hold_s >= 0"):
        Pairer(FrameRing(), AudioRing(), hold_s=-0.1)
    with pytest.raises(InputError, match="a lossless source .* pass hold_s=0"):  # files stamp both from one clock
        Pairer(FrameRing(), AudioRing(), hold_s=0.3, lossless=True)


# ------------------------------------------------------------------------------ microphone
@pytest.mark.parametrize("delay", [-0.1, MAX_AUDIO_DELAY_S + 0.5, float("nan")])
def test_audio_delay_out_of_range_is_refused_with_the_fix(delay):
    with pytest.raises(InputError, match=r"audio delay must be 0 to 1 s .*filming a clap"):
        MicrophoneSource(None, audio_delay_s=delay)


STAMPS = textwrap.dedent(
    """
    import json, sys, time
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.clock import now_ns

    ring = AudioRing()
    with MicrophoneSource(None, ring, samplerate=48000, channels=2, audio_delay_s=float(sys.argv[1])) as mic:
        deadline = time.monotonic() + 20
        while ring.head < 16000 and time.monotonic() < deadline:  # 1 s of audio: the clock fit has a slope
            mic.check()
            time.sleep(0.01)
        ahead = ring.sample_at(now_ns()) - ring.head  # where "now" lies past the newest sample
    mic.check()
    print(json.dumps({"ahead": ahead, "head": ring.head}))
    """
)


@pytest.mark.slow  # ~3 s: two subprocesses of 1 s of real-time audio each
def test_the_microphone_stamps_its_samples_audio_delay_s_before_they_arrived(tmp_path):
    """On the clocked ALSA device (real time, 48 kHz): with audio_delay_s = D the ring's clock fit
    says the newest sample was captured D before now, i.e. "now" lies D * 16000 samples ahead of
    it; without a delay it lies within a block or two."""
    write_clocked_asoundrc(tmp_path)
    ahead = {}
    for delay in (0.0, 0.5):
        proc = subprocess.run([sys.executable, "-c", STAMPS, str(delay)], env=alsa_env(tmp_path),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert r["head"] >= SR
        ahead[delay] = r["ahead"] / SR
    # Each reading is off by up to a block, and more where a callback was held up on a busy machine; the
    # shift between them is the delay (without the stamp line it is ~0).
    assert -0.05 <= ahead[0.0] <= 0.25, ahead
    assert 0.3 <= ahead[0.5] - ahead[0.0] <= 0.7, ahead

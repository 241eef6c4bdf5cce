"""A real input overflow: PortAudio reports one when the capture device's buffer overruns.

The file-plugin microphone of the other tests cannot overrun: its `null` slave has no clock
and always holds a full buffer. So this test builds a capture device that has one: an ALSA
external I/O plugin (tests/c/clocked_pcm.c, compiled here with gcc against libasound.so.2; the
ABI it needs is declared in the source, so no ALSA headers are needed) whose hardware position advances
with CLOCK_MONOTONIC at 48 kHz, whose buffer holds at most 100 ms, and which enters ALSA's
XRUN state, as a sound card does, once a whole buffer was captured and not read. Everything
above it is the production path: ALSA's plug layer, PortAudio's xrun detection and restart,
sounddevice, MicrophoneSource._callback and AudioRing.

Its samples are a slow ramp (-0.9 at the first start, +0.05 full scale per second of device
time), so each sample tells when the device captured it: the test measures how much audio
the overflow really lost, and checks that the ring's zeros stand in for exactly that much
(the audio after the gap stays at the ring index of its capture time).

The overflow is made by holding the AudioRing's lock from the main thread (a reader that
does not let go): the PortAudio callback then waits in AudioRing.write, PortAudio stops
reading the device, and the device overruns 100 ms into the stall. Held for 1 s, and for longer
than the microphone's STALL_S: a callback held up in this process is no device that stopped
delivering, so that too is an overflow, not the end of the stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from media import alsa_env, write_clocked_asoundrc

from streamavs.capture.microphone import STALL_S

SR = 16000
# How long the ring's lock is held: ten times the device's largest buffer, and longer than the microphone
# waits for a silent device (slow: ~4 s)
HOLDS_S = (1.0, pytest.param(STALL_S + 0.5, marks=pytest.mark.slow))
RAMP_PER_S = 0.05  # the device's signal rises this much full scale per second


@pytest.fixture(scope="module")
def clocked_home(tmp_path_factory):
    """A HOME whose .asoundrc makes the default capture device the clocked plugin."""
    home = tmp_path_factory.mktemp("clocked")
    write_clocked_asoundrc(home, RAMP_PER_S)
    return home


OVERFLOW = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource

    SR, stall_s, out = 16000, float(sys.argv[1]), sys.argv[2]
    ring = AudioRing(capacity_s=30.0)
    with MicrophoneSource(None, ring, samplerate=48000, channels=2) as mic:
        def audio_for(seconds):  # wait until that much audio (not zeros) more has arrived
            want = mic.counters()["audio_samples"] + int(seconds * SR)
            deadline = time.monotonic() + 20
            while mic.counters()["audio_samples"] < want and time.monotonic() < deadline:
                mic.check()
                time.sleep(0.01)
        audio_for(0.6)
        before = mic.counters()
        with ring._cond:  # a reader that keeps the ring's lock: the next block's write() waits
            stall_head = ring._head
            t0 = time.monotonic()
            time.sleep(stall_s)
            stalled_s = time.monotonic() - t0
        audio_for(0.5)
        after, head, ring_overflows = mic.counters(), ring.head, ring.overflows
        x, padded, missed = ring.read_window(head, head)  # everything the ring holds
        n = head - stall_head + SR // 2  # from 0.5 s before the stall to the newest sample
        across = ring.read_window(head, n)[1:]
    mic.check()
    np.save(out, x)
    print(json.dumps({"before": before, "after": after, "stall_head": stall_head, "stalled_s": stalled_s,
                      "head": head, "ring_overflows": ring_overflows, "padded": padded, "missed": missed,
                      "across": [head - n, head, *across], "device": mic.device_name}))
    """
)


def zero_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of exact zeros (the ring's fill; the ramp never crosses zero here)."""
    z = np.concatenate([[0], (x == 0.0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def clock_offset_s(x: np.ndarray, lo: int, hi: int) -> float:
    """Device time at which ring sample 0 would have been captured, from the ramp in x[lo:hi]:
    constant along audio that has no gap, or whose gap the ring filled with the lost length."""
    device_s = (x[lo:hi].astype(np.float64) + 0.9) / RAMP_PER_S
    return float(np.median(device_s - np.arange(lo, hi) / SR))


@pytest.mark.parametrize("hold_s", HOLDS_S)
def test_a_real_overrun_is_counted_and_filled_with_the_lost_length(clocked_home, hold_s):
    out = clocked_home / f"ring-{hold_s}.npy"
    proc = subprocess.run(
        [sys.executable, "-c", OVERFLOW, str(hold_s), str(out)],
        env=alsa_env(clocked_home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    x = np.load(out)
    before, after = r["before"], r["after"]
    assert r["device"] == "default" and before["audio_samples"] >= 0.6 * SR

    # PortAudio reported the overrun to the callback, which counted it and wrote zeros for it.
    overflows = after["overflows"] - before["overflows"]
    lost = after["audio_lost"] - before["audio_lost"]
    assert overflows >= 1 and r["ring_overflows"] == after["overflows"]
    assert lost > 0, f"{overflows} overflow(s) but no zeros written for the lost audio"

    # The zeros in the ring are all the zeros the overflows wrote, and readers count each of them
    # as padded and missed. The stall's gap is a run of them shortly after the audio the ring held
    # when the stall began (behind the block that waited for the lock and what the device had
    # buffered: at most 100 ms).
    runs = zero_runs(x)
    assert sum(e - s for s, e in runs) == after["audio_lost"] == r["padded"] == r["missed"]
    gap = [(s, e) for s, e in runs if r["stall_head"] <= s <= r["stall_head"] + int(0.25 * SR)]
    assert len(gap) == 1, f"no zeros right after sample {r['stall_head']}: {runs[:10]}"
    g0, g1 = gap[0]
    # About as long as the stall (the device lost what it captured while nobody read it, less
    # what its buffer still held), far longer than the 100 ms buffer.
    assert 0.5 * r["stalled_s"] <= (g1 - g0) / SR <= r["stalled_s"] + 0.5, (g1 - g0, r["stalled_s"])

    # What the device really lost, told by its ramp: the audio after the gap sits at the ring
    # index of its capture time, i.e. the zeros are as long as the loss. Measured: within 5 ms,
    # also with 8 busy processes on 2 cores; the bound allows 0.1 s of block arrival jitter.
    # Without the zeros the audio after the gap would sit a whole stall (1 s) early.
    margin = int(0.03 * SR)  # the resampler's transient at the cut
    pre = clock_offset_s(x, g0 - int(0.3 * SR), g0 - margin)
    post = clock_offset_s(x, g1 + margin, g1 + int(0.3 * SR))
    assert abs(post - pre) <= 0.1, f"audio after the gap is {post - pre:+.3f} s off its capture time"

    # A window from before the stall to the newest sample is reported padded by the zeros in it.
    lo, hi, padded, missed = r["across"]
    assert padded == missed == np.count_nonzero(x[lo:hi] == 0.0) >= g1 - g0

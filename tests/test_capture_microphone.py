"""MicrophoneSource on a real PortAudio device: ALSA's `file` plugin reading a raw tone.

PortAudio reads the ALSA configuration when it initialises (at `import sounddevice`), so
the capture runs in a fresh Python process whose HOME holds the test's `.asoundrc`.
The `null` slave of the file plugin has no clock: the device delivers the file as fast as
it is read, so the test checks sample positions (onset, length), not real-time pacing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from media import make_raw_tone, write_asoundrc

SR = 16000
RATE = 48000
ONSET_S, TONE_END_S = 0.5, 1.5


CAPTURE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.errors import SourceError

    want = int(sys.argv[1])
    ring = AudioRing(capacity_s=120.0)
    with MicrophoneSource(None, ring, samplerate=int(sys.argv[2]), channels=2) as mic:
        deadline = time.monotonic() + 20
        while ring.head < want and time.monotonic() < deadline:
            mic.check()
            time.sleep(0.002)
        name = mic.device_name
    mic.check()
    x, gap = ring.read(want, want)
    np.save(sys.argv[3], x)
    try:
        MicrophoneSource("no-such-mic").start()
        unknown = ""
    except SourceError as exc:
        unknown = str(exc)
    print(json.dumps({"gap": gap, "device": name, "counters": mic.counters(), "unknown": unknown}))
    """
)


@pytest.fixture
def alsa_home(tmp_path):
    """A HOME whose .asoundrc makes the default capture device read a raw s16le stereo file."""
    raw = make_raw_tone(tmp_path / "tone.raw", seconds=TONE_END_S, rate=RATE, onset_s=ONSET_S, tail_s=20.0)
    write_asoundrc(tmp_path, raw, RATE)
    return tmp_path


def test_microphone_reads_a_tone_from_an_alsa_file_device(alsa_home):
    env = dict(os.environ, HOME=str(alsa_home))
    env.pop("ALSA_CONFIG_PATH", None)  # the default alsa.conf loads ~/.asoundrc
    want = 2 * SR
    out = alsa_home / "ring.npy"
    proc = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(want), str(RATE), str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    x = np.load(out)
    assert not result["gap"] and result["device"] == "default"
    assert result["counters"]["overflows"] == 0 and result["counters"]["audio_samples"] >= want
    # The tone occupies [0.5 s, 1.5 s) of the file: 16000 samples at 16 kHz, each edge within 5 ms.
    loud = np.flatnonzero(np.abs(x) > 0.1)
    assert abs(loud[0] - ONSET_S * SR) <= 80
    assert abs(loud[-1] + 1 - TONE_END_S * SR) <= 80
    assert np.abs(x[: int(0.45 * SR)]).max() < 1e-3 and np.abs(x[int(1.55 * SR) :]).max() < 1e-3
    tone = x[int(0.6 * SR) : int(1.4 * SR)]
    spec = np.abs(np.fft.rfft(tone * np.hanning(tone.size)))
    assert abs(np.argmax(spec) * SR / tone.size - 1000) < 2  # FFT peak at 1 kHz (1.25 Hz bins)
    assert 0.48 < np.abs(tone).max() < 0.52
    # An unknown device name lists the devices that exist.
    assert "no audio input device matches 'no-such-mic'" in result["unknown"]
    assert "[" in result["unknown"] and "default" in result["unknown"] and "--mic" in result["unknown"]
